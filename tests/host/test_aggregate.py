"""Signal aggregation (host/aggregate.py): confidence weighting, conflicts, the 0.6 floor, order independence."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.aggregate import aggregate
from host.config import AggregationConfig
from host.types import Signal


def sig(instrument, direction, confidence, source="pairs", strength=0.0, er=None):
    return Signal(instrument, direction, confidence, source, strength, expected_return=er)


def test_drops_signals_under_min_confidence():
    assert aggregate([sig("A", 1, 0.59)]) == []
    (a,) = aggregate([sig("A", 1, 0.6)])
    assert (a.direction, a.confidence) == (1, 0.6)


def test_agreeing_signals_combine_by_confidence_weight():
    (a,) = aggregate([sig("A", 1, 0.9, "pairs", 2.0, 0.01), sig("A", 1, 0.7, "volarb", 4.0)])
    # margin 1, mean confidence weighted by confidence: (0.81 + 0.49) / 1.6
    assert a.direction == 1
    assert a.confidence == pytest.approx(1.3 / 1.6)
    assert a.strength == pytest.approx((0.9 * 2.0 + 0.7 * 4.0) / 1.6)
    assert a.sources == ("pairs", "volarb") and a.n_signals == 2
    assert a.expected_return == pytest.approx(0.01)  # only one had one


def test_conflict_resolved_by_margin_and_dropped_when_weak():
    # 0.9 long against 0.7 short: margin 0.2/1.6, confidence 0.125 * 0.9 -> dropped
    assert aggregate([sig("A", 1, 0.9), sig("A", -1, 0.7, "volarb")]) == []
    # a majority keeps its direction with its confidence cut by the margin: long 0.95 + 0.95 against
    # short 0.61 gives (1.9 - 0.61) / 2.51 * 0.95 = 0.488 (dropped at the default floor of 0.6)
    many = [sig("A", 1, 0.95), sig("A", 1, 0.95, "term"), sig("A", -1, 0.61, "volarb")]
    assert aggregate(many) == []
    (a,) = aggregate(many, AggregationConfig(min_confidence=0.4))
    assert a.direction == 1
    assert a.confidence == pytest.approx((1.9 - 0.61) / 2.51 * 0.95)


def test_tie_never_opens_risk():
    assert aggregate([sig("A", 1, 0.8), sig("A", -1, 0.8, "volarb")]) == []


def test_exit_outweighs_a_weaker_entry():
    (a,) = aggregate([sig("A", 0, 1.0), sig("A", 1, 0.6, "volarb")]
                     , AggregationConfig(min_confidence=0.2))
    assert a.direction == 0 and a.confidence == pytest.approx(0.4 / 1.6)


def test_source_weights_scale_votes():
    cfg = AggregationConfig(min_confidence=0.3, source_weights={"volarb": 3.0})
    (a,) = aggregate([sig("A", 1, 0.9), sig("A", -1, 0.8, "volarb")], cfg)
    assert a.direction == -1
    assert a.confidence == pytest.approx((2.4 - 0.9) / 3.3 * 0.8)


def test_one_result_per_instrument_sorted():
    out = aggregate([sig("B", 1, 0.9), sig("A", -1, 0.9), sig("B", 1, 0.8)])
    assert [(a.instrument, a.direction) for a in out] == [("A", -1), ("B", 1)]


signals = st.lists(
    st.builds(Signal, st.sampled_from(["A", "B", "C"]), st.sampled_from([-1, 0, 1]),
              st.floats(0.0, 1.0), st.sampled_from(["pairs", "volarb", "term"]), st.floats(-5, 5),
              st.just(0), st.one_of(st.none(), st.floats(-0.1, 0.1))),
    max_size=25)


@settings(max_examples=200, deadline=None)
@given(signals, st.randoms(use_true_random=False), st.floats(0.0, 1.0))
def test_aggregation_is_order_independent(sigs, rnd, floor):
    shuffled = list(sigs)
    rnd.shuffle(shuffled)
    cfg = AggregationConfig(min_confidence=floor)
    assert aggregate(shuffled, cfg) == aggregate(sigs, cfg)


@settings(max_examples=200, deadline=None)
@given(signals)
def test_results_respect_the_floor_and_the_majority(sigs):
    for a in aggregate(sigs):
        assert 0.6 <= a.confidence <= 1.0
        votes = {d: sum(s.confidence for s in sigs if s.instrument == a.instrument and s.direction == d
                        and s.confidence >= 0.6) for d in (-1, 0, 1)}
        assert votes[a.direction] > max(v for d, v in votes.items() if d != a.direction)
