"""The short soak (calarb/soak.py): a minute of the loop with faults, then the end checks.

The simulated NIC (Verilated gateware) takes the example market with its background flow while
the soak drops market data datagrams, cuts the FIX sessions twice, restarts the host once and
makes two option calibrations fail. The checks compare the gateware's books with the software
golden model fed the venues' complete feeds (and with the venues' matching engines where no order
was lost by design), every order and report with the venues' record, and read back every file.
``make soak`` runs the same for ten minutes (``python -m calarb.soak --minutes 10``).
"""

from __future__ import annotations

import asyncio

from calarb.soak import soak


def test_short_soak_books_orders_and_files_survive_faults(tmp_path):
    result = asyncio.run(soak(1.0, tmp_path / "soak", nic="sim", rate=100.0))
    faults = result["faults"]
    assert faults.get("host_restarts") == 1
    assert faults.get("fix_disconnects", 0) >= 2
    assert faults.get("calibration_failures") == 2
    assert faults.get("md_datagrams_dropped", 0) > 0
    checks = result["checks"]
    books = checks["books"]
    assert books["compared"] == 10 and books["differ"] == [], books
    assert books["exchange_differ"] == [], books
    orders = checks["orders"]
    assert orders["ok"], orders
    assert orders["orders"] > 0 and orders["reports"] >= orders["orders"]
    assert checks["files"]["ok"], checks["files"]
    assert result["calibrations"]["refused"] >= 2 and result["calibrations"]["accepted"] >= 1
    assert result["ok"]
