"""Gateware arming (host/arming.py): thresholds on the tick grid, away from fair value, delta shift."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.arming import DELTA_ONE, ArmingError, arm, effective_thresholds, would_trigger
from host.config import ArmingConfig


def test_equity_thresholds_hand_checked():
    a = arm("A", 1_000_050.0, 100, ArmingConfig(edge_e4=200, max_qty=300))
    # fair 100.0050, edge 0.02: buy at or below 99.9850 -> 99.98, sell at or above 100.0250 -> 100.03
    assert (a.buy_below, a.sell_above, a.max_qty, a.delta_q16, a.ref_e4) == (999_800, 1_000_300, 300, 0, 0)
    assert would_trigger(a, 999_700, 999_800) == 1
    assert would_trigger(a, 999_700, 999_900) == 0
    assert would_trigger(a, 1_000_300, 1_000_400) == -1


def test_edge_in_basis_points():
    a = arm("A", 500_000.0, 1, ArmingConfig(edge_e4=0, edge_bps=10.0))  # 10 bps of 50.00 = 0.05
    assert (a.buy_below, a.sell_above) == (499_500, 500_500)


def test_derivative_thresholds_move_with_the_underlying():
    a = arm("OPT", 52_000.0, 100, ArmingConfig(edge_e4=500), delta=0.5, ref_e4=1_000_000)
    assert (a.buy_below, a.sell_above, a.delta_q16) == (51_500, 52_500, DELTA_ONE // 2)
    # underlying +1.00 -> fair +0.50
    assert effective_thresholds(a, 1_010_000) == (56_500, 57_500)
    assert effective_thresholds(a, 990_001) == (46_500, 47_501)  # fair -0.49995: buy floored, sell ceiled
    assert would_trigger(a, 0, 56_000, underlying_e4=1_010_000) == 1


def test_fair_below_edge_disarms_buying():
    a = arm("A", 100.0, 100, ArmingConfig(edge_e4=200))
    assert a.buy_below == 0 and would_trigger(a, 0, 1) == 0


@pytest.mark.parametrize("kw,name", [(dict(fair_e4=0.0), "fair_e4"), (dict(tick_e4=0), "tick_e4"),
                                     (dict(delta=0.4), "ref_e4"), (dict(max_qty=0), "max_qty")])
def test_bad_arguments_are_named(kw, name):
    args = dict(fair_e4=1e6, tick_e4=100) | kw
    with pytest.raises(ArmingError, match=name):
        arm("A", args.pop("fair_e4"), args.pop("tick_e4"), **args)


@settings(max_examples=400, deadline=None)
@given(st.floats(1.0, 1e8), st.sampled_from([1, 5, 100, 500]), st.integers(0, 10_000), st.floats(0, 50))
def test_thresholds_never_promise_less_than_the_edge(fair, tick, edge_e4, bps):
    a = arm("A", fair, tick, ArmingConfig(edge_e4=edge_e4, edge_bps=bps))
    edge = edge_e4 + fair * bps / 10_000
    assert a.buy_below % tick == 0 and a.sell_above % tick == 0
    assert a.buy_below <= fair - edge or a.buy_below == 0
    assert a.sell_above >= fair + edge
    assert a.sell_above - tick < fair + edge  # the nearest tick that keeps the edge
    assert a.buy_below == 0 or a.buy_below + tick > fair - edge


@settings(max_examples=300, deadline=None)
@given(st.floats(1e4, 1e7), st.floats(-1.0, 1.0), st.integers(100_000, 10_000_000), st.integers(-500_000, 500_000))
def test_delta_shift_rounds_away_from_fair(fair, delta, ref, move):
    a = arm("OPT", fair, 1, ArmingConfig(edge_e4=100), delta=delta, ref_e4=ref)
    buy, sell = effective_thresholds(a, ref + move)
    exact = a.delta_q16 / DELTA_ONE * move  # the quantised delta's shift
    assert sell - a.sell_above >= exact - 1e-6 and sell - a.sell_above < exact + 1
    if a.buy_below > 0 and buy > 0:
        assert buy - a.buy_below <= exact + 1e-6 and buy - a.buy_below > exact - 1
