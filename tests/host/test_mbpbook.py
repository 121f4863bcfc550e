"""Tests of host/mbpbook.py, the reference market-by-price book: the level rules by example, and the
book over a generated feed against a plain replay of the feed's own (security, side, level) map."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from host.mbpbook import MbpBook, tob_records
from protocols.fast import levels as lv
from protocols.fast import parse_templates
from sim import fastfeed


def upd(action, side, level, price=0, size=0, sid=5, seq=1):
    return lv.normalise({"security_id": sid, "action": action, "side": side, "level": level, "price4": price,
                         "price_mantissa": 0, "price_exponent": 0, "size": size, "rpt_seq": 0, "msg_seq": seq,
                         "sending_time": 123, "price_null": 0, "size_null": 0, "price_bad": 0, "side_bad": 0})


def test_new_shifts_down_delete_shifts_up_and_the_last_level_falls_off():
    b = MbpBook(depth=3)
    for p in (100, 90, 80):
        b.apply(upd(lv.NEW, 0, 3 if p == 80 else (2 if p == 90 else 1), p, 1))
    assert b.levels(5, 0) == [(100, 1), (90, 1), (80, 1)]
    b.apply(upd(lv.NEW, 0, 1, 110, 2))
    assert b.levels(5, 0) == [(110, 2), (100, 1), (90, 1)]          # 80 fell off the end
    b.apply(upd(lv.DELETE, 0, 2))
    assert b.levels(5, 0) == [(110, 2), (90, 1), None]
    b.apply(upd(lv.CHANGE, 0, 2, 95, 4))
    assert b.levels(5, 0) == [(110, 2), (95, 4), None]
    assert b.apply(upd(lv.NEW, 0, 4, 1, 1)) is None and b.counters["ignored"] == 1
    assert b.apply(upd(3, 0, 1, 1, 1)) is None and b.counters["ignored"] == 2


def test_tob_only_when_the_best_level_changes():
    b = MbpBook()
    t = b.apply(upd(lv.NEW, 1, 1, 500, 7, seq=9))
    assert t is not None and (t.ask_price, t.ask_size, t.bid_price, t.bid_size, t.seq) == (500, 7, 0, 0, 9)
    assert b.apply(upd(lv.NEW, 1, 2, 510, 3)) is None                  # below the best: no TOB
    t = b.apply(upd(lv.DELETE, 1, 1))
    assert (t.ask_price, t.ask_size) == (510, 3)


def test_slots_fill_in_order_of_appearance():
    b = MbpBook(slots=2)
    for sid in (1, 2, 3, 1):
        b.apply(upd(lv.NEW, 0, 1, 10, 1, sid=sid))
    assert b.counters["untracked"] == 1 and set(b.books) == {1, 2}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 1), st.integers(1, 4),
                          st.integers(1, 10**6), st.integers(1, 10**4)), max_size=60))
def test_best_is_level_one_and_tob_tracks_it(ops):
    b = MbpBook(depth=4)
    for a, side, level, p, s in ops:
        before = b.best(5)
        t = b.apply(upd(a, side, level, p, s))
        best = b.best(5)
        assert (t is None) == (best == before)
        if t is not None:
            assert (t.bid_price, t.bid_size, t.ask_price, t.ask_size) == best
        for sd in (0, 1):
            top = b.levels(5, sd)[0]
            assert (best[0:2] if sd == 0 else best[2:4]) == (top if top else (0, 0))


def test_book_over_a_generated_feed_equals_the_feed_replay():
    feed = fastfeed.generate_fast_feed(300, 9, expiries_days=(30,), strikes_per_expiry=5, levels=3)
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    updates, _, counters = lv.reference_updates([p for _, p, _ in feed.datagrams], ts)
    assert counters["updates"] == len(updates) > 0
    _, book = tob_records(updates, depth=3)
    replay = {}
    for _, name, fields in feed.messages:
        for e in fields.get("MDEntries") or []:
            key = (e["SecurityID"], int(e["MDEntryType"]), e["MDPriceLevel"])
            if e["MDUpdateAction"] == lv.DELETE:
                del replay[key]
            else:
                replay[key] = (e["MDEntryPx"].mantissa * 100, e["MDEntrySize"])
    for s in feed.series:
        for side in (0, 1):
            want = [replay.get((s.security_id, side, k)) for k in (1, 2, 3)]
            assert book.levels(s.security_id, side) == want
