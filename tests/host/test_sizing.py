"""Position sizing (host/sizing.py): vol scaling, fractional Kelly, sector headroom; never above a bound."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import SizingConfig
from host.sizing import SizingError, kelly_fraction, size_legs, size_order, target_position
from host.types import Side

BIG = dict(max_position_notional=1e12, max_sector_gross=1e12)


def test_kelly_fraction_hand_checked():
    assert kelly_fraction(0.6) == pytest.approx(0.2)
    assert kelly_fraction(0.5) == 0.0 and kelly_fraction(0.3) == 0.0
    assert kelly_fraction(0.5, payoff=2.0) == pytest.approx(0.25)
    with pytest.raises(SizingError, match="payoff"):
        kelly_fraction(0.6, 0.0)


def test_vol_scaling_binds_hand_checked():
    cfg = SizingConfig(target_vol=0.1, kelly_fraction=1.0, **BIG)
    # vol target 0.8 * 1e6 * 0.1 / 0.4 = 200k; Kelly (2*0.8-1) * 1e6 = 600k -> 200k / 50 = 4000 shares
    r = target_position(1, 0.8, 50.0, 0.4, 1e6, config=cfg)
    assert (r.target, r.binding) == (4000, "vol_target")
    assert r.bounds["kelly"] == pytest.approx(600_000.0)


def test_fractional_kelly_binds_hand_checked():
    cfg = SizingConfig(target_vol=0.5, kelly_fraction=0.25, **BIG)
    # Kelly 0.25 * 0.3 * 1e6 = 75k; vol 0.65 * 1e6 * 0.5 / 0.2 = 1.625M -> 75k / 30 = 2500, short
    r = target_position(-1, 0.65, 30.0, 0.2, 1e6, config=cfg)
    assert (r.target, r.binding) == (-2500, "kelly")


def test_sector_headroom_and_lots():
    cfg = SizingConfig(target_vol=1.0, kelly_fraction=1.0, max_position_notional=1e12, max_sector_gross=100_000.0)
    r = target_position(1, 0.9, 33.0, 0.2, 1e7, sector_other_gross=60_000.0, config=cfg, lot=100)
    # 40k headroom / 33 = 1212 shares -> 1200 in lots of 100
    assert (r.target, r.binding) == (1200, "sector")
    assert target_position(1, 0.9, 33.0, 0.2, 1e7, sector_other_gross=200_000.0, config=cfg).target == 0


def test_unknown_vol_uses_default():
    cfg = SizingConfig(target_vol=0.1, kelly_fraction=1.0, default_vol=0.25, **BIG)
    assert target_position(1, 1.0, 10.0, None, 1e5, config=cfg).target == 4000  # 1e5 * 0.1 / 0.25 / 10


def test_size_order_moves_position_to_target():
    cfg = SizingConfig(target_vol=0.1, kelly_fraction=1.0, **BIG)
    o = size_order("A", 1, 0.8, 50.0, 0.4, 1e6, position=1000, config=cfg)
    assert (o.side, o.quantity, o.limit_price) == (Side.BUY, 3000, 500_000)
    exit_ = size_order("A", 0, 1.0, 50.0, 0.4, 1e6, position=-700, config=cfg)
    assert (exit_.side, exit_.quantity) == (Side.BUY, 700)
    assert size_order("A", 1, 0.8, 50.0, 0.4, 1e6, position=4000, config=cfg) is None


def test_size_legs_keeps_the_hedge_ratio():
    cfg = SizingConfig(target_vol=0.1, kelly_fraction=1.0, max_position_notional=30_000.0, max_sector_gross=1e12)
    legs = [dict(direction=1, confidence=0.9, price=150.0, vol=0.2, ratio=1.0),
            dict(direction=-1, confidence=0.9, price=100.0, vol=0.2, ratio=1.5)]
    # the B leg binds: 30k / (100 * 1.5) = 200 units -> 200 A, -300 B
    assert size_legs(legs, 1e6, cfg) == [200, -300]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([-1, 1]), st.floats(0.0, 1.0), st.floats(0.01, 5000.0), st.one_of(st.none(), st.floats(0.01, 3.0)),
       st.floats(0.0, 1e8), st.floats(0.0, 2e6), st.floats(0.01, 1.0), st.floats(0.05, 1.0),
       st.floats(1e3, 2e6), st.floats(1e3, 5e6), st.integers(1, 500))
def test_sizing_never_exceeds_its_bounds(direction, conf, price, vol, equity, other, tvol, kf, max_pos, max_sec, lot):
    cfg = SizingConfig(target_vol=tvol, kelly_fraction=kf, max_position_notional=max_pos, max_sector_gross=max_sec)
    r = target_position(direction, conf, price, vol, equity, other, cfg, lot=lot)
    notional = abs(r.target) * price
    v = vol if vol is not None else cfg.default_vol
    assert notional <= conf * equity * tvol / v
    assert notional <= kf * max(0.0, 2 * conf - 1) * equity
    assert notional <= max_pos
    assert notional <= max(0.0, max_sec - other)
    assert r.target % lot == 0 and (r.target == 0 or math.copysign(1, r.target) == direction)
    # and it is the largest number of lots that fits
    assert (abs(r.target) + lot) * price > min(r.bounds.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.6, 1.0), st.floats(1.0, 1000.0), st.floats(0.05, 1.0), st.floats(0.1, 5.0),
                          st.integers(1, 100)), min_size=1, max_size=3),
       st.floats(1e4, 1e8), st.floats(1e3, 1e6))
def test_size_legs_never_exceeds_any_legs_bounds(legs, equity, max_pos):
    cfg = SizingConfig(max_position_notional=max_pos)
    spec = [dict(direction=1, confidence=c, price=p, vol=v, ratio=r, lot=lot) for c, p, v, r, lot in legs]
    for leg, qty in zip(spec, size_legs(spec, equity, cfg)):
        bound = target_position(1, leg["confidence"], leg["price"], leg["vol"], equity, 0.0, cfg, lot=1)
        assert qty * leg["price"] <= min(bound.bounds.values()) and qty % leg["lot"] == 0
