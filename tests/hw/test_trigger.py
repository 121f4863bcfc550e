"""The trigger stage (through the whole path, hw/tick2trade.py): model-linked thresholds rounded exactly as
host.arming.effective_thresholds, threshold boundaries, minimum displayed size, no mid yet, quantity."""

import pytest

from host.arming import ArmedThreshold, effective_thresholds
from host.ordermodel import BUY, SELL, Entry, Link, TradeModel
from tests.hw.test_tick2trade import PRICE, expected, outcome, run_records, simple_model, tob

UNDER_MID = PRICE + 1234          # underlying's mid: (bid + ask) >> 1 of the first record below


def linked_model(delta_q16, ref):
    model = simple_model()
    model.links[0] = Link(True, 1, delta_q16, ref)
    model.entries[0, BUY] = Entry(price=PRICE, max_qty=100, tif="3", armed=True)
    model.entries[0, SELL] = Entry(price=PRICE + 500, max_qty=100, tif="3", armed=True)
    return model


@pytest.mark.parametrize("delta_q16,ref", [(-98765, PRICE - 77), (40000, PRICE + 3), (1 << 16, PRICE), (-1, PRICE + 9)])
def test_linked_thresholds_match_arming_and_fire_at_the_boundary(delta_q16, ref):
    model = linked_model(delta_q16, ref)
    model.mid[1], model.mid_valid[1] = UNDER_MID, True
    buy, sell = model.thresholds(0)
    armed = ArmedThreshold("X", PRICE, PRICE + 500, 100, delta_q16, ref)
    assert (buy, sell) == effective_thresholds(armed, UNDER_MID)
    under = tob(1, UNDER_MID - 100, UNDER_MID + 100 + (UNDER_MID * 2 + 0) % 1, 5, 5, 1)
    assert (under["tob"]["bid_price"] + under["tob"]["ask_price"]) >> 1 == UNDER_MID
    for ask, fires in ((buy, True), (buy + 1, False)):
        recs = [under, tob(0, 1, ask, 5, 50, 2)]
        got = run_records(linked_model(delta_q16, ref), recs)
        assert outcome(got[1]) == ("order" if fires else None), (ask, buy)
        assert got[1] == [] or got[1][0][2]["price"] == ask
    for bid, fires in ((sell, True), (sell - 1, False)):
        recs = [under, tob(0, bid, 0, 50, 0, 2)]
        got = run_records(linked_model(delta_q16, ref), recs)
        assert outcome(got[1]) == ("order" if fires else None), (bid, sell)


def test_linked_slot_waits_for_the_underlying_mid():
    recs = [tob(0, 1, PRICE - 5000, 5, 50, 1), tob(1, PRICE - 100, PRICE + 100, 5, 5, 2),
            tob(0, 1, PRICE - 5000, 5, 50, 3)]
    model = linked_model(0, PRICE)
    got = run_records(linked_model(0, PRICE), recs)
    assert [outcome(g) for g in got] == [None, None, "order"]
    assert [outcome([("order",)] if hasattr(r, "raw") else []) for r in expected(model, recs)] == [None, None, "order"]


def test_minimum_displayed_size_and_quantity():
    def model():
        m = simple_model()
        m.entries[0, BUY] = Entry(price=PRICE, max_qty=70, min_size=40, tif="4", armed=True)
        return m
    got = run_records(model(), [tob(0, 1, PRICE, 5, 39, 1), tob(0, 1, PRICE, 5, 40, 2)])
    assert [outcome(g) for g in got] == [None, "order"]
    assert got[1][0][2]["qty"] == 40 and got[1][0][1].count(b"\x0159=4\x01") == 1
    got = run_records(model(), [tob(0, 1, PRICE, 5, 500, 1)])
    assert got[0][0][2]["qty"] == 70
