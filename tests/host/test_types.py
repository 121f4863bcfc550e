"""Records between the stages (host/types.py): per-tick validation, positions."""

import pytest

from host.types import OrderIntent, Side, Signal, TopOfBook, check_tob, e4_to_price, price_to_e4


def top(bid=1_000_000, bsz=100, ask=1_000_100, asz=100, t=10, seq=5, instrument="A"):
    return TopOfBook(instrument, bid, bsz, ask, asz, t, seq)


def test_valid_tick_has_no_problems():
    assert check_tob(top(), top(t=9, seq=4)) == []
    assert top().mid == pytest.approx(100.005)


@pytest.mark.parametrize("tick,prev,fragment", [
    (top(bid=-1), None, "bid: negative"),
    (top(ask=0), None, "ask: price 0 with size 100"),
    (top(bid=1_000_200), None, "crossed"),
    (top(seq=5), top(seq=5), "seq 5 not after 5"),
    (top(t=1), top(t=2, seq=1), "timestamp 1 before 2"),
    (top(bid=1_200_000, ask=1_200_100), top(seq=1), "mid jumped +20.0%"),
    (top(), top(seq=1, instrument="B"), "previous is B"),
])
def test_each_problem_is_named(tick, prev, fragment):
    problems = check_tob(tick, prev)
    assert len(problems) == 1 and fragment in problems[0]


def test_records_refuse_impossible_values():
    with pytest.raises(ValueError, match="direction"):
        Signal("A", 2, 0.5, "pairs")
    with pytest.raises(ValueError, match="confidence"):
        Signal("A", 1, 1.5, "pairs")
    with pytest.raises(ValueError, match="quantity"):
        OrderIntent("A", Side.BUY, 0, 1)
    assert price_to_e4(100.005) == 1_000_050 and e4_to_price(1_000_050) == 100.005
    assert Side.SELL.fix == "2"
