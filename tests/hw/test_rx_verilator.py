"""The receive pipeline on Verilator through cocotb (see ``tests/hw/cocotb_rx.py``)."""

import os
from pathlib import Path

import pytest

from hw.top import build_top
from sim import runner

HERE = Path(__file__).parent


@pytest.mark.sim
def test_rx_pipeline_on_verilator():
    report = runner.BUILD / "latency" / "rx.json"
    runner.run(build_top(), "calarb_top", "cocotb_rx", test_dir=HERE,
               env={"CALARB_FRAMES": os.environ.get("CALARB_FRAMES", "10000"),
                    "CALARB_SEED": os.environ.get("CALARB_SEED", "2026"), "CALARB_REPORT": str(report)})
    assert report.exists()
    print(report.read_text())
