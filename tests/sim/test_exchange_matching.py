"""Tests for sim/exchange/matching.py: hand-checked cases (priority, partial fills,
IOC and market remainders, cancel/replace priority rules, rejects) and hypothesis
invariants over random order streams (no crossed book, conservation of shares,
consistent ExecutionReport sequences, book events that replay to the engine's book)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.exchange.matching import (
    BUY, DAY, EXEC_CANCELED, EXEC_NEW, EXEC_REJECTED, EXEC_REPLACED, EXEC_TRADE, IOC, SELL, STATUS_CANCELED,
    STATUS_FILLED, STATUS_NEW, STATUS_PARTIAL, BookAdd, BookCancel, BookDelete, BookExecute, BookReplace,
    CancelReject, CancelRequest, ExecReport, MatchingEngine, NewOrder, ReplaceRequest,
)

P = 100  # one cent in price4


def eng():
    return MatchingEngine(["AAPL", "MSFT"], tick=P)


def reports(events, owner=None):
    return [e for e in events if isinstance(e, ExecReport) and (owner is None or e.owner == owner)]


def book(events):
    return [e for e in events if isinstance(e, (BookAdd, BookExecute, BookCancel, BookDelete, BookReplace))]


def new(owner, cl, side, qty, price, tif=DAY, sym="AAPL"):
    return NewOrder(owner, cl, sym, side, qty, None if price is None else price * P, tif)


# --------------------------------------------------------------------------- #
# hand-checked cases
# --------------------------------------------------------------------------- #


def test_resting_order_is_added_and_acknowledged():
    e = eng()
    ev = e.submit(new("a", "1", BUY, 100, 50))
    assert [type(x) for x in ev] == [ExecReport, BookAdd]
    ack = ev[0]
    assert (ack.exec_type, ack.ord_status, ack.cum_qty, ack.leaves_qty) == (EXEC_NEW, STATUS_NEW, 0, 100)
    assert ev[1] == BookAdd("AAPL", 1, BUY, 100, 5000)
    assert e.depth("AAPL") == ([(5000, 100, 1)], [])


def test_price_then_time_priority():
    e = eng()
    e.submit(new("s", "s1", SELL, 100, 101))   # ref 1
    e.submit(new("s", "s2", SELL, 100, 101))   # ref 2, behind s1
    e.submit(new("s", "s3", SELL, 100, 100))   # ref 3, better price
    ev = e.submit(new("b", "b1", BUY, 250, 101))
    execs = [x for x in book(ev) if isinstance(x, BookExecute)]
    assert [(x.ref, x.shares, x.price) for x in execs] == [(3, 100, 10000), (1, 100, 10100), (2, 50, 10100)]
    assert [x.match for x in execs] == [1, 2, 3]
    mine = reports(ev, "b")
    assert [(r.last_qty, r.last_px, r.cum_qty, r.leaves_qty) for r in mine[1:]] == [
        (100, 10000, 100, 150), (100, 10100, 200, 50), (50, 10100, 250, 0)]
    assert mine[-1].ord_status == STATUS_FILLED
    assert mine[-1].avg_px == pytest.approx((100 * 10000 + 150 * 10100) / 250)
    # s2 is left with 50 at the front of the 101 level
    assert e.depth("AAPL") == ([], [(10100, 50, 1)])
    s2 = reports(ev, "s")[-1]
    assert (s2.cl_ord_id, s2.ord_status, s2.cum_qty, s2.leaves_qty) == ("s2", STATUS_PARTIAL, 50, 50)


def test_partial_fill_rests_the_remainder():
    e = eng()
    e.submit(new("s", "s1", SELL, 30, 100))
    ev = e.submit(new("b", "b1", BUY, 100, 100))
    assert book(ev) == [BookExecute("AAPL", 1, 30, 1, 10000), BookAdd("AAPL", 2, BUY, 70, 10000)]
    last = reports(ev, "b")[-1]
    assert (last.ord_status, last.cum_qty, last.leaves_qty) == (STATUS_PARTIAL, 30, 70)
    assert [o.ref for o in e.live_orders("b")] == [2]
    assert e.depth("AAPL") == ([(10000, 70, 1)], [])


def test_ioc_remainder_is_canceled_and_never_shown():
    e = eng()
    e.submit(new("s", "s1", SELL, 30, 100))
    ev = e.submit(new("b", "b1", BUY, 100, 101, IOC))
    assert book(ev) == [BookExecute("AAPL", 1, 30, 1, 10000)]
    last = reports(ev, "b")[-1]
    assert (last.exec_type, last.ord_status, last.cum_qty, last.leaves_qty) == (EXEC_CANCELED, STATUS_CANCELED, 30, 0)
    assert e.depth("AAPL") == ([], [])


def test_market_order_with_no_liquidity_is_canceled():
    e = eng()
    e.submit(new("b", "x", BUY, 100, 99))       # liquidity on the wrong side only
    ev = e.submit(new("m", "m1", SELL, 100, None, sym="MSFT"))
    assert book(ev) == []
    assert [(r.exec_type, r.leaves_qty, r.text) for r in ev] == [(EXEC_NEW, 100, ""),
                                                                 (EXEC_CANCELED, 0, "no liquidity")]


def test_market_order_walks_the_book_whatever_the_price():
    e = eng()
    e.submit(new("s", "s1", SELL, 100, 100))
    e.submit(new("s", "s2", SELL, 100, 150))
    ev = e.submit(new("m", "m1", BUY, 300, None))
    assert [(x.ref, x.shares) for x in book(ev)] == [(1, 100), (2, 100)]
    last = reports(ev, "m")[-1]
    assert (last.ord_status, last.cum_qty, last.leaves_qty) == (STATUS_CANCELED, 200, 0)


def test_replace_to_smaller_size_keeps_priority():
    e = eng()
    e.submit(new("a", "a1", SELL, 100, 100))
    e.submit(new("b", "b1", SELL, 100, 100))
    ev = e.replace(ReplaceRequest("a", "a2", "a1", 60, 100 * P))
    assert book(ev) == [BookCancel("AAPL", 1, 40)]
    r = reports(ev)[0]
    assert (r.exec_type, r.cl_ord_id, r.orig_cl_ord_id, r.order_qty, r.leaves_qty, r.ref) == (
        EXEC_REPLACED, "a2", "a1", 60, 60, 1)
    ev = e.submit(new("c", "c1", BUY, 60, 100))
    assert [x.ref for x in book(ev)] == [1]          # a is still first


@pytest.mark.parametrize("qty,price", [(150, 100), (100, 101)], ids=["bigger", "new_price"])
def test_replace_that_grows_or_moves_loses_priority(qty, price):
    e = eng()
    e.submit(new("a", "a1", SELL, 100, 100))          # ref 1
    e.submit(new("b", "b1", SELL, 100, 100))          # ref 2
    e.submit(new("b", "b2", SELL, 100, 101))          # ref 3
    ev = e.replace(ReplaceRequest("a", "a2", "a1", qty, price * P))
    assert book(ev) == [BookReplace("AAPL", 1, 4, qty, price * P)]
    assert reports(ev)[0].ref == 4
    ev = e.submit(new("c", "c1", BUY, 400, 101, IOC))
    assert [x.ref for x in book(ev)] == [2, 4, 3] if price == 100 else [2, 3, 4]


def test_replace_to_a_crossing_price_deletes_then_trades():
    e = eng()
    e.submit(new("s", "s1", SELL, 50, 101))           # ref 1
    e.submit(new("b", "b1", BUY, 100, 99))            # ref 2
    ev = e.replace(ReplaceRequest("b", "b2", "b1", 100, 101 * P))
    assert book(ev) == [BookDelete("AAPL", 2), BookExecute("AAPL", 1, 50, 1, 10100),
                        BookAdd("AAPL", 3, BUY, 50, 10100)]
    mine = reports(ev, "b")
    assert [(r.exec_type, r.cum_qty, r.leaves_qty) for r in mine] == [(EXEC_REPLACED, 0, 100),
                                                                       (EXEC_TRADE, 50, 50)]


def test_replace_below_filled_quantity_is_refused():
    e = eng()
    e.submit(new("s", "s1", SELL, 100, 100))
    e.submit(new("b", "b1", BUY, 60, 100))
    ev = e.replace(ReplaceRequest("s", "s2", "s1", 60, 100 * P))
    assert len(ev) == 1 and isinstance(ev[0], CancelReject) and ev[0].response_to == "2"
    assert e.depth("AAPL") == ([], [(10000, 40, 1)])


def test_cancel_deletes_and_cancel_after_done_is_too_late():
    e = eng()
    e.submit(new("a", "a1", BUY, 100, 99))
    ev = e.cancel(CancelRequest("a", "a2", "a1"))
    assert book(ev) == [BookDelete("AAPL", 1)]
    r = reports(ev)[0]
    assert (r.exec_type, r.ord_status, r.cl_ord_id, r.orig_cl_ord_id, r.leaves_qty) == (
        EXEC_CANCELED, STATUS_CANCELED, "a2", "a1", 0)
    again = e.cancel(CancelRequest("a", "a3", "a1"))
    assert isinstance(again[0], CancelReject) and again[0].reason == 0
    unknown = e.cancel(CancelRequest("a", "a4", "nope"))
    assert isinstance(unknown[0], CancelReject) and unknown[0].reason == 1
    other_owner = e.cancel(CancelRequest("z", "z1", "a1"))
    assert isinstance(other_owner[0], CancelReject) and other_owner[0].reason == 1


@pytest.mark.parametrize("order,why", [
    (NewOrder("a", "1", "ZZZZ", BUY, 100, 100 * P), "unknown symbol"),
    (NewOrder("a", "1", "AAPL", "X", 100, 100 * P), "side"),
    (NewOrder("a", "1", "AAPL", BUY, 0, 100 * P), "quantity"),
    (NewOrder("a", "1", "AAPL", BUY, 100, 100 * P + 1), "tick"),
    (NewOrder("a", "1", "AAPL", BUY, 100, -100), "price"),
    (NewOrder("a", "1", "AAPL", BUY, 100, 100 * P, "GTC"), "time in force"),
])
def test_bad_orders_are_rejected_naming_the_field(order, why):
    ev = MatchingEngine(["AAPL"]).submit(order)
    assert len(ev) == 1 and ev[0].exec_type == EXEC_REJECTED and why in ev[0].text and ev[0].leaves_qty == 0


def test_duplicate_cl_ord_id_is_rejected():
    e = eng()
    e.submit(new("a", "1", BUY, 100, 99))
    ev = e.submit(new("a", "1", BUY, 100, 99))
    assert ev[0].exec_type == EXEC_REJECTED and "duplicate" in ev[0].text
    assert e.submit(new("b", "1", BUY, 100, 99))[0].exec_type == EXEC_NEW   # per owner


# --------------------------------------------------------------------------- #
# invariants
# --------------------------------------------------------------------------- #

OWNERS = ("a", "b", "c")


@st.composite
def streams(draw):
    ops = []
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["new", "new", "new", "cancel", "replace"]))
        owner = draw(st.sampled_from(OWNERS))
        if kind == "new":
            ops.append(("new", owner, draw(st.sampled_from(["AAPL", "MSFT"])), draw(st.sampled_from([BUY, SELL])),
                        draw(st.integers(1, 500)), draw(st.one_of(st.none(), st.integers(95, 105))),
                        draw(st.sampled_from([DAY, DAY, IOC]))))
        else:
            ops.append((kind, owner, draw(st.integers(0, 40)), draw(st.integers(1, 600)), draw(st.integers(95, 105))))
    return ops


def run_stream(ops):
    e = eng()
    all_events, n = [], 0
    for op in ops:
        n += 1
        if op[0] == "new":
            _, owner, sym, side, qty, px, tif = op
            ev = e.submit(NewOrder(owner, f"{owner}{n}", sym, side, qty, None if px is None else px * P, tif))
        else:
            kind, owner, pick, qty, px = op
            live = sorted(e.live_orders(owner), key=lambda o: o.order_id)
            orig = live[pick % len(live)].cl_ord_id if live else "missing"
            if kind == "cancel":
                ev = e.cancel(CancelRequest(owner, f"{owner}{n}", orig))
            else:
                ev = e.replace(ReplaceRequest(owner, f"{owner}{n}", orig, qty, px * P))
        for sym in ("AAPL", "MSFT"):
            assert not e.books[sym].crossed(), (op, e.depth(sym))
        all_events.extend(ev)
    return e, all_events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_invariants_hold_over_random_streams(ops):
    e, events = run_stream(ops)
    # every order's reports: cum + leaves = qty while live, last fill sums, nothing after done
    by_order = defaultdict(list)
    for r in reports(events):
        by_order[r.order_id].append(r)
    bought, sold = defaultdict(int), defaultdict(int)
    for oid, rs in by_order.items():
        cum = 0
        for i, r in enumerate(rs):
            assert r.cum_qty == cum + r.last_qty
            cum = r.cum_qty
            if r.done:
                assert r.leaves_qty == 0 and i == len(rs) - 1, rs
            else:
                assert r.cum_qty + r.leaves_qty == r.order_qty, r
            if r.exec_type == EXEC_TRADE:
                (bought if r.side == BUY else sold)[r.symbol] += r.last_qty
        if rs[-1].ord_status == STATUS_FILLED:
            assert rs[-1].cum_qty == rs[-1].order_qty
    assert bought == sold                                   # conservation of shares
    # the book events, replayed into a plain dict of orders, give the engine's book
    live: dict[int, list] = {}
    for ev in book(events):
        if isinstance(ev, BookAdd):
            assert ev.ref not in live
            live[ev.ref] = [ev.symbol, ev.side, ev.price, ev.shares]
        elif isinstance(ev, BookReplace):
            old = live.pop(ev.ref)
            live[ev.new_ref] = [old[0], old[1], ev.price, ev.shares]
        elif isinstance(ev, BookDelete):
            del live[ev.ref]
        else:
            live[ev.ref][3] -= ev.shares
            assert live[ev.ref][3] >= 0
            if live[ev.ref][3] == 0:
                del live[ev.ref]
    for sym in ("AAPL", "MSFT"):
        want = {ref: (side, px, sh) for ref, (s, side, px, sh) in live.items() if s == sym}
        assert e.resting(sym) == want
    # every live order's last report matches the book
    for o in e.live_orders():
        assert by_order[o.order_id][-1].leaves_qty == o.leaves
