"""Reconciliation (host/reconcile.py): positions and P&L from fills, every mismatch flagged, feedback."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import ReconcileConfig
from host.reconcile import Reconciler
from host.types import Execution, Position, Side


def ack(clordid, qty, t=1, exec_id=None, instrument="A", side=Side.BUY):
    return Execution(clordid, exec_id or f"{clordid}-ack", "0", instrument, side, 0, 0, 0, qty, t)


def fill(clordid, last, price, cum, leaves, exec_id, t=2, instrument="A", side=Side.BUY):
    return Execution(clordid, exec_id, "F", instrument, side, last, price, cum, leaves, t)


def kinds(ms):
    return [m.kind for m in ms]


def test_position_and_pnl_hand_checked():
    r = Reconciler()
    r.on_sent("1", "A", Side.BUY, 100, 1_000_000, timestamp=0)
    assert r.on_execution(ack("1", 100)) == []
    assert r.on_execution(fill("1", 60, 990_000, 60, 40, "e1")) == []
    assert r.on_execution(fill("1", 40, 1_000_000, 100, 0, "e2")) == []
    pos = r.positions["A"]
    assert pos.quantity == 100 and pos.avg_price == pytest.approx((60 * 99 + 40 * 100) / 100)  # 99.40
    r.on_sent("2", "A", Side.SELL, 150, 1_010_000, timestamp=3)
    r.on_execution(ack("2", 150, side=Side.SELL))
    assert r.on_execution(fill("2", 150, 1_010_000, 150, 0, "e3", side=Side.SELL)) == []
    # 100 closed at 101 against 99.40: +160 realised; short 50 opened at 101
    assert pos.quantity == -50 and pos.avg_price == 101.0
    r.mark("A", 100.0)
    assert r.pnl() == pytest.approx({"realised": 160.0, "unrealised": 50.0, "total": 210.0})


def test_unknown_order_fill_is_applied_and_flagged():
    seen = []
    r = Reconciler(on_mismatch=seen.append)
    ms = r.on_execution(fill("X", 10, 1_000_000, 10, 0, "e1"))
    assert kinds(ms) == ["unknown_order"] and seen == ms
    assert r.position("A") == 10  # the venue says we own it


def test_duplicate_exec_id_is_not_applied_twice():
    r = Reconciler()
    r.on_sent("1", "A", Side.BUY, 100, 1_000_000)
    r.on_execution(ack("1", 100))
    r.on_execution(fill("1", 10, 1_000_000, 10, 90, "e1"))
    assert kinds(r.on_execution(fill("1", 10, 1_000_000, 10, 90, "e1"))) == ["duplicate_exec"]
    assert r.position("A") == 10


@pytest.mark.parametrize("report,expected", [
    (fill("1", 10, 1_000_000, 10, 90, "e9"), ["fill_without_ack"]),
    (fill("1", 120, 1_000_000, 120, 0, "e9", t=2), ["fill_without_ack", "overfill", "leaves_qty_mismatch"]),
    (fill("1", 10, 1_000_100, 10, 90, "e9"), ["fill_without_ack", "price_through_limit"]),
    (fill("1", 10, 1_000_000, 20, 80, "e9"), ["fill_without_ack", "cum_qty_mismatch", ]),
    (fill("1", 10, 1_000_000, 10, 90, "e9", instrument="B"), ["instrument_mismatch", "fill_without_ack"]),
    (fill("1", 10, 1_000_000, 10, 90, "e9", side=Side.SELL), ["side_mismatch", "fill_without_ack"]),
    (ack("1", 50), ["leaves_qty_mismatch"]),
])
def test_each_mismatch_is_flagged(report, expected):
    r = Reconciler()
    r.on_sent("1", "A", Side.BUY, 100, 1_000_000)
    assert kinds(r.on_execution(report)) == expected


def test_duplicate_sent_ack_and_fill_after_cancel():
    r = Reconciler()
    r.on_sent("1", "A", Side.BUY, 100, 1_000_000, origin="gateware")
    assert kinds(r.on_sent("1", "A", Side.BUY, 100, 1_000_000, origin="host")) == ["duplicate_sent"]
    r.on_execution(ack("1", 100))
    assert kinds(r.on_execution(ack("1", 100, exec_id="a2"))) == ["duplicate_ack"]
    r.on_execution(Execution("1", "c1", "4", "A", Side.BUY, 0, 0, 0, 0, 3))
    assert kinds(r.on_execution(fill("1", 5, 1_000_000, 5, 0, "e1"))) == ["fill_after_final"]


def test_ack_timeout_flagged_once():
    r = Reconciler(ReconcileConfig(ack_timeout_ns=1000))
    r.on_sent("1", "A", Side.BUY, 100, 1_000_000, timestamp=0)
    r.on_sent("2", "A", Side.BUY, 100, 1_000_000, timestamp=0)
    r.on_execution(ack("2", 100, t=10))
    assert r.overdue(500) == []
    assert [(m.kind, m.clordid) for m in r.overdue(1001)] == [("ack_timeout", "1")]
    assert r.overdue(5000) == []


def test_slippage_feeds_the_recalibration_trigger():
    calls = []
    r = Reconciler(ReconcileConfig(slippage_alert_bps=5.0, slippage_window=4), on_recalibrate=calls.append)
    for i in range(4):
        r.on_sent(str(i), "A", Side.BUY, 10, 1_010_000, timestamp=i, decision_price=100.0)
        r.on_execution(ack(str(i), 10, t=i))
        # paid 100.03 against a decision at 100: 3 bps three times, then 100.13: 13 bps (mean 5.5)
        r.on_execution(fill(str(i), 10, 1_000_300 if i < 3 else 1_001_300, 10, 0, f"e{i}", t=i + 100))
        assert calls == ([] if i < 3 else ["A"])
    assert r.mean_slippage_bps("A") == pytest.approx(5.5)
    assert r.fill_latency_ns["A"].mean == 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 500), st.integers(9_000, 11_000)), max_size=30))
def test_position_and_realised_pnl_match_a_fifo_free_ledger(fills):
    """Average-cost P&L: realised + unrealised at any mark equals cash flow + position * mark."""
    r = Reconciler()
    cash = 0.0
    for i, (sign, qty, px) in enumerate(fills):
        side = Side(sign)
        r.on_execution(Execution(f"c{i}", f"e{i}", "F", "A", side, qty, px * 100, qty, 0, i))
        cash -= sign * qty * px / 100
    qty = sum(s * q for s, q, _ in fills)
    assert r.position("A") == qty
    r.mark("A", 100.0)
    assert r.pnl()["total"] == pytest.approx(cash + qty * 100.0, abs=1e-6)
    assert all(m.kind == "unknown_order" for m in r.mismatches) and len(r.mismatches) == len(fills)


def test_position_apply_fill_flip():
    p = Position("A")
    assert p.apply_fill(10, 5.0) == 0.0
    assert p.apply_fill(-15, 6.0) == pytest.approx(10.0)
    assert (p.quantity, p.avg_price) == (-5, 6.0)
