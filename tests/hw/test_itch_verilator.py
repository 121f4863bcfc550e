"""The ITCH decoder in the core on Verilator through cocotb (see ``tests/hw/cocotb_itch.py``)."""

import os
from pathlib import Path

import pytest

from hw.top import build_top
from sim import runner


@pytest.mark.sim
def test_itch_decoder_on_verilator():
    runner.run(build_top(), "calarb_top", "cocotb_itch", test_dir=Path(__file__).parent,
               env={"CALARB_ITCH_MESSAGES": os.environ.get("CALARB_ITCH_MESSAGES", "10000"),
                    "CALARB_SEED": os.environ.get("CALARB_SEED", "2026")})
