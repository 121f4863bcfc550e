"""Tests for host/book.py: hand-worked cases for every message type, strict against lenient
handling of bad references, hypothesis invariants (a stateful machine checked against a plain
model of the orders), and clean replays of generated days."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from host.book import BookError, BookSet, TopOfBook, Trade, tob_events
from protocols import itch
from sim.itchfeed import generate_itch

INST = 7
T0 = 34_200_000_000_000     # 9:30 in ns since midnight


def msg(code, **fields):
    """An ITCH message of ``code`` (instrument :data:`INST` unless given); fields the type
    does not carry are dropped, so one call shape serves E, C, X, D and U."""
    fields.setdefault("stock_locate", INST)
    names = {f.name for f in itch.MESSAGES[code].fields}
    return itch.message(code, **{k: v for k, v in fields.items() if k in names})


def add(ref, side, shares, price, code="A", **kw):
    return msg(code, order_ref=ref, side=side, shares=shares, price=price, stock="ACME", **kw)


def trades(events):
    return [e for e in events if isinstance(e, Trade)]


def tobs(events):
    return [e for e in events if isinstance(e, TopOfBook)]


# --------------------------------------------------------------------------- #
# every message type, worked by hand
# --------------------------------------------------------------------------- #


def test_every_message_type_by_hand():
    b = BookSet(strict=True)
    ts = iter(range(T0, T0 + 100))

    # 1: first bid 100 @ 10.0000
    ev = b.apply(add(1, "B", 100, 100_000, timestamp=next(ts)), 1)
    assert ev == [TopOfBook(INST, 100_000, 100, 0, 0, T0, 1)]
    # 2: first ask 200 @ 10.0500
    ev = b.apply(add(2, "S", 200, 100_500, timestamp=next(ts)), 2)
    assert ev == [TopOfBook(INST, 100_000, 100, 100_500, 200, T0 + 1, 2)]
    # 3: F joins the best bid: 100 + 50 = 150 shares, 2 orders
    ev = b.apply(add(3, "B", 50, 100_000, code="F", attribution="GSCO", timestamp=next(ts)), 3)
    assert ev == [TopOfBook(INST, 100_000, 150, 100_500, 200, T0 + 2, 3)]
    assert b.levels(INST, "B") == [(100_000, 150, 2)]
    # 4: a bid behind the best changes no top
    assert b.apply(add(4, "B", 10, 99_900, timestamp=next(ts)), 4) == []
    assert b.levels(INST, "B") == [(100_000, 150, 2), (99_900, 10, 1)]
    # 5: E 30 of order 1 trades at its resting price; best bid 150 - 30 = 120
    ev = b.apply(msg("E", order_ref=1, shares=30, match_number=9, timestamp=next(ts)), 5)
    assert ev == [Trade(INST, "B", 100_000, 30, 1, 9, T0 + 4, 5, "E"),
                  TopOfBook(INST, 100_000, 120, 100_500, 200, T0 + 4, 5)]
    assert b.order(1) == (INST, "B", 100_000, 70)
    # 6: C 50 of order 2 at 10.0400 (the execution price); the ask level stays at 10.0500, 150 left
    ev = b.apply(msg("C", order_ref=2, shares=50, match_number=10, printable="Y", price=100_400,
                     timestamp=next(ts)), 6)
    assert ev == [Trade(INST, "S", 100_400, 50, 2, 10, T0 + 5, 6, "C"),
                  TopOfBook(INST, 100_000, 120, 100_500, 150, T0 + 5, 6)]
    # 7: X 20 of order 3: 50 -> 30, level 120 -> 100
    ev = b.apply(msg("X", order_ref=3, shares=20, timestamp=next(ts)), 7)
    assert ev == [TopOfBook(INST, 100_000, 100, 100_500, 150, T0 + 6, 7)]
    assert b.order(3) == (INST, "B", 100_000, 30)
    # 8: D order 1 (70 open): the level keeps order 3's 30 shares
    ev = b.apply(msg("D", order_ref=1, timestamp=next(ts)), 8)
    assert ev == [TopOfBook(INST, 100_000, 30, 100_500, 150, T0 + 7, 8)]
    assert b.order(1) is None
    assert b.levels(INST, "B") == [(100_000, 30, 1), (99_900, 10, 1)]
    # 9: U order 3 -> order 5, 40 @ 10.0100, still a bid: the old level empties, a new best appears
    ev = b.apply(msg("U", order_ref=3, new_order_ref=5, shares=40, price=100_100, timestamp=next(ts)), 9)
    assert ev == [TopOfBook(INST, 100_100, 40, 100_500, 150, T0 + 8, 9)]
    assert b.order(3) is None and b.order(5) == (INST, "B", 100_100, 40)
    assert b.levels(INST, "B") == [(100_100, 40, 1), (99_900, 10, 1)]
    # 10: P reports a trade and changes no book
    ev = b.apply(msg("P", order_ref=0, side="S", shares=300, stock="ACME", price=100_300, match_number=11,
                     timestamp=next(ts)), 10)
    assert ev == [Trade(INST, "S", 100_300, 300, 0, 11, T0 + 9, 10, "P")]
    # 11: D the best bid: the next level (10 @ 9.9900) becomes best
    ev = b.apply(msg("D", order_ref=5, timestamp=next(ts)), 11)
    assert ev == [TopOfBook(INST, 99_900, 10, 100_500, 150, T0 + 10, 11)]
    # 12: X all of the last bid: the bid side is empty (0, 0)
    ev = b.apply(msg("X", order_ref=4, shares=10, timestamp=next(ts)), 12)
    assert ev == [TopOfBook(INST, 0, 0, 100_500, 150, T0 + 11, 12)]
    assert b.levels(INST, "B") == [] and b.levels(INST, "S") == [(100_500, 150, 1)]
    # 13: a message type that is no book's business
    assert b.apply(msg("S", event_code="M"), 13) == []

    assert b.top(INST) == TopOfBook(INST, 0, 0, 100_500, 150, T0 + 11, 12)
    assert b.top(INST + 1) is None
    assert b.counters["messages"] == 13
    assert b.counters["trades"] == 3
    assert b.counters["tob_events"] == 10
    assert all(b.counters[k] == 0 for k in ("unknown_order", "overfill", "duplicate_order"))


def test_replace_to_the_same_price_reports_net_change_only():
    b = BookSet(strict=True)
    b.apply(add(1, "S", 100, 200_000), 1)
    # same price and shares under a new reference: the top is unchanged, so no event
    assert b.apply(msg("U", order_ref=1, new_order_ref=2, shares=100, price=200_000), 2) == []
    assert b.levels(INST, "S") == [(200_000, 100, 1)]
    # same price, more shares: one event with the net size
    assert tobs(b.apply(msg("U", order_ref=2, new_order_ref=3, shares=250, price=200_000), 3)) == [
        TopOfBook(INST, 0, 0, 200_000, 250, 0, 3)]


def test_asks_sort_ascending_and_bids_descending():
    b = BookSet(strict=True)
    for ref, (side, price) in enumerate([("S", 105), ("S", 103), ("S", 104), ("B", 99), ("B", 101),
                                         ("B", 100), ("S", 103)], 1):
        b.apply(add(ref, side, 10 * ref, price), ref)
    assert b.levels(INST, "S") == [(103, 20 + 70, 2), (104, 30, 1), (105, 10, 1)]
    assert b.levels(INST, "B") == [(101, 50, 1), (100, 60, 1), (99, 40, 1)]
    assert b.levels(INST, "B", 2) == [(101, 50, 1), (100, 60, 1)]
    snap = b.snapshot(INST, 1)
    assert snap["bids"] == [[101, 50, 1]] and snap["asks"] == [[103, 90, 2]] and snap["seq"] == 7


def test_dict_inputs_give_the_same_events():
    flow = [add(1, "B", 100, 500), add(2, "S", 100, 600), msg("E", order_ref=2, shares=40, match_number=1),
            msg("U", order_ref=1, new_order_ref=3, shares=5, price=550), msg("D", order_ref=3)]
    b0, b1, b2 = BookSet(strict=True), BookSet(strict=True), BookSet(strict=True)
    for i, m in enumerate(flow):
        want = b0.apply(m, i)
        assert b1.apply(itch.as_json(m), i) == want
        assert b2.apply(itch.decoded_record(itch.encode(m)), i) == want


def test_instrument_filter_and_global_references():
    b = BookSet(strict=True, instruments=[INST])
    assert b.apply(add(1, "B", 100, 500, stock_locate=INST + 1), 1) == []
    # the order of the untracked instrument is not kept; its execute is ignored, not an error
    assert b.apply(msg("E", stock_locate=INST + 1, order_ref=1, shares=10), 2) == []
    assert b.order(1) is None
    assert b.counters["untracked"] == 2 and b.counters["unknown_order"] == 0
    assert len(b.apply(add(2, "B", 100, 500), 3)) == 1


# --------------------------------------------------------------------------- #
# bad references: strict raises, lenient counts
# --------------------------------------------------------------------------- #


def _two_orders(strict):
    b = BookSet(strict=strict)
    b.apply(add(1, "B", 100, 500), 1)
    b.apply(add(2, "S", 100, 600), 2)
    return b


BAD = [
    ("unknown_order", msg("E", order_ref=99, shares=1, match_number=1)),
    ("unknown_order", msg("C", order_ref=99, shares=1, price=5)),
    ("unknown_order", msg("X", order_ref=99, shares=1)),
    ("unknown_order", msg("D", order_ref=99)),
    ("unknown_order", msg("U", order_ref=99, new_order_ref=100, shares=1, price=5)),
    ("unknown_order", msg("D", order_ref=1, stock_locate=INST + 1)),     # live, but in another book
    ("duplicate_order", add(1, "S", 5, 700)),
    ("duplicate_order", msg("U", order_ref=1, new_order_ref=2, shares=5, price=400)),
    ("zero_shares", add(3, "B", 0, 500)),
    ("bad_side", add(3, "Z", 10, 500)),
]


@pytest.mark.parametrize("reason,bad", BAD, ids=[f"{r}-{m.code}" for r, m in BAD])
def test_strict_raises_and_leaves_the_book_alone(reason, bad):
    b = _two_orders(True)
    with pytest.raises(BookError) as e:
        b.apply(bad, 3)
    assert e.value.reason == reason and e.value.seq == 3 and e.value.code == bad.code
    assert f"ITCH {bad.code!r}" in str(e.value) and "at seq 3" in str(e.value)
    assert b.levels(INST, "B") == [(500, 100, 1)] and b.levels(INST, "S") == [(600, 100, 1)]
    assert b.order(1) == (INST, "B", 500, 100) and b.order(2) == (INST, "S", 600, 100)


@pytest.mark.parametrize("reason,bad", BAD, ids=[f"{r}-{m.code}" for r, m in BAD])
def test_lenient_counts(reason, bad):
    b = _two_orders(False)
    b.apply(bad, 3)
    assert b.counters[reason] == 1
    assert sum(b.counters[k] for k in ("unknown_order", "duplicate_order", "zero_shares", "bad_side",
                                       "overfill")) == 1
    if bad.code != "U":          # a replace with a bad new order still retires its original
        assert b.order(1) == (INST, "B", 500, 100) and b.order(2) == (INST, "S", 600, 100)


def test_unknown_reference_message_names_it():
    b = BookSet(strict=True)
    with pytest.raises(BookError, match=r"ITCH 'E' order_ref 1234 at seq 17: unknown_order"):
        b.apply(msg("E", order_ref=1234, shares=1), 17)


@pytest.mark.parametrize("code", ["E", "C", "X"])
def test_overfill(code):
    fields = {"order_ref": 1, "shares": 150, "match_number": 4, "price": 490}
    if code == "X":
        del fields["match_number"], fields["price"]
    elif code == "E":
        del fields["price"]
    strict = _two_orders(True)
    with pytest.raises(BookError, match="overfill"):
        strict.apply(msg(code, **fields), 3)
    assert strict.order(1) == (INST, "B", 500, 100)

    lenient = _two_orders(False)
    ev = lenient.apply(msg(code, **fields), 3)
    assert lenient.counters["overfill"] == 1
    assert lenient.order(1) is None and lenient.levels(INST, "B") == []     # clamped: all 100 gone
    assert tobs(ev) == [TopOfBook(INST, 0, 0, 600, 100, 0, 3)]
    if code != "X":     # the execution reports what the exchange printed
        assert [(t.shares, t.price) for t in trades(ev)] == [(150, 500 if code == "E" else 490)]


def test_lenient_delete_of_unknown_then_valid_flow_continues():
    b = _two_orders(False)
    assert b.apply(msg("D", order_ref=42), 3) == []
    assert b.apply(msg("D", order_ref=42), 4) == []
    assert b.counters["unknown_order"] == 2
    assert tobs(b.apply(msg("D", order_ref=1), 5)) == [TopOfBook(INST, 0, 0, 600, 100, 0, 5)]


# --------------------------------------------------------------------------- #
# invariants (hypothesis, stateful): the book against a plain model of its orders
# --------------------------------------------------------------------------- #


class BookMachine(RuleBasedStateMachine):
    """Random order flow on 3 instruments (adds never cross), with bad references mixed in;
    a dict of live orders is the model every level, top and counter is checked against."""

    @initialize(strict=st.booleans())
    def start(self, strict):
        self.strict = strict
        self.book = BookSet(strict=strict)
        self.model: dict[int, list] = {}    # ref -> [instrument, side, price, shares]
        self.next_ref = 1
        self.seq = 0
        self.errors = dict.fromkeys(("unknown_order", "overfill", "duplicate_order"), 0)

    # -- the model --------------------------------------------------------------------------------

    def model_levels(self, inst, side):
        lv: dict[int, list[int]] = {}
        for i, s, p, q in self.model.values():
            if i == inst and s == side:
                e = lv.setdefault(p, [0, 0])
                e[0] += q
                e[1] += 1
        return sorted(((p, q, c) for p, (q, c) in lv.items()), reverse=side == "B")

    def model_quote(self, inst):
        b, a = self.model_levels(inst, "B"), self.model_levels(inst, "S")
        return (b[0][:2] if b else (0, 0)) + (a[0][:2] if a else (0, 0))

    def apply(self, m, inst, error=None):
        """Apply ``m``; check its top-of-book event against the model's quote change."""
        self.seq += 1
        before = self.model_quote(inst)
        if error and self.strict:
            with pytest.raises(BookError):
                self.book.apply(m, self.seq)
            return None
        events = self.book.apply(m, self.seq)
        if error:
            self.errors[error] += 1
        return events, before

    def check_tob(self, result, inst):
        if result is None:
            return
        events, before = result
        after = self.model_quote(inst)
        assert tobs(events) == ([TopOfBook(inst, *after, 0, self.seq)] if after != before else [])

    def live(self, data):
        refs = sorted(self.model)
        return refs[data.draw(st.integers(0, len(refs) - 1))] if refs else None

    # -- rules ------------------------------------------------------------------------------------

    @rule(inst=st.integers(1, 3), side=st.sampled_from("BS"), away=st.integers(0, 20),
          shares=st.integers(1, 1000))
    def add(self, inst, side, away, shares):
        b, a = self.model_quote(inst)[0], self.model_quote(inst)[2]
        if side == "B":
            price = (a - 1 - away) if a else 10_000 - away
        else:
            price = (b + 1 + away) if b else 10_000 + away
        if price <= 0:
            return
        ref, self.next_ref = self.next_ref, self.next_ref + 1
        r = self.apply(add(ref, side, shares, price, stock_locate=inst), inst)
        self.model[ref] = [inst, side, price, shares]
        self.check_tob(r, inst)

    @rule(data=st.data(), code=st.sampled_from("ECX"), frac=st.floats(0, 1))
    def reduce(self, data, code, frac):
        ref = self.live(data)
        if ref is None:
            return
        inst, side, price, open_ = self.model[ref]
        shares = max(1, round(frac * open_))
        r = self.apply(msg(code, stock_locate=inst, order_ref=ref, shares=shares, price=price), inst)
        if shares == open_:
            del self.model[ref]
        else:
            self.model[ref][3] -= shares
        self.check_tob(r, inst)
        if code != "X":
            assert [(t.order_ref, t.shares, t.side) for t in trades(r[0])] == [(ref, shares, side)]

    @rule(data=st.data())
    def delete(self, data):
        ref = self.live(data)
        if ref is None:
            return
        inst = self.model[ref][0]
        n_orders = sum(c for s in "BS" for _, _, c in self.book.levels(inst, s))
        r = self.apply(msg("D", stock_locate=inst, order_ref=ref), inst)
        del self.model[ref]
        self.check_tob(r, inst)
        # the delete removed exactly the order it named
        assert self.book.order(ref) is None
        assert sum(c for s in "BS" for _, _, c in self.book.levels(inst, s)) == n_orders - 1

    @rule(data=st.data(), away=st.integers(0, 10), shares=st.integers(1, 1000))
    def replace(self, data, away, shares):
        ref = self.live(data)
        if ref is None:
            return
        inst, side, _, _ = self.model[ref]
        b, _, a, _ = self.model_quote(inst)        # the new price must not cross the other side
        if side == "B":
            price = (a - 1 - away) if a else 10_000 - away
        else:
            price = (b + 1 + away) if b else 10_000 + away
        if price <= 0:
            return
        new, self.next_ref = self.next_ref, self.next_ref + 1
        r = self.apply(msg("U", stock_locate=inst, order_ref=ref, new_order_ref=new, shares=shares, price=price),
                       inst)
        del self.model[ref]
        self.model[new] = [inst, side, price, shares]
        self.check_tob(r, inst)

    @rule(ref=st.integers(10**6, 10**6 + 5), code=st.sampled_from("ECXDU"))
    def unknown(self, ref, code):
        m = msg(code, stock_locate=1, order_ref=ref, new_order_ref=ref + 100, shares=1, price=5)
        self.check_tob(self.apply(m, 1, "unknown_order"), 1)

    @rule(data=st.data(), extra=st.integers(1, 100), code=st.sampled_from("ECX"))
    def overfill(self, data, extra, code):
        ref = self.live(data)
        if ref is None:
            return
        inst, side, price, open_ = self.model[ref]
        r = self.apply(msg(code, stock_locate=inst, order_ref=ref, shares=open_ + extra, price=price), inst,
                       "overfill")
        if r is not None:
            del self.model[ref]
        self.check_tob(r, inst)

    @rule(data=st.data())
    def duplicate(self, data):
        ref = self.live(data)
        if ref is None:
            return
        inst = self.model[ref][0]
        self.check_tob(self.apply(add(ref, "B", 1, 1, stock_locate=inst), inst, "duplicate_order"), inst)

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def levels_are_the_sum_of_their_orders(self):
        if not hasattr(self, "book"):
            return
        for inst in (1, 2, 3):
            for side in "BS":
                assert self.book.levels(inst, side) == self.model_levels(inst, side)

    @invariant()
    def quantities_positive_and_uncrossed(self):
        if not hasattr(self, "book"):
            return
        for ref, (inst, side, price, shares) in self.model.items():
            assert self.book.order(ref) == (inst, side, price, shares) and shares > 0
        assert len(self.book.orders) == len(self.model)
        for inst in (1, 2, 3):
            for side in "BS":
                assert all(q > 0 and c > 0 for _, q, c in self.book.levels(inst, side))
            b, _, a, _ = self.model_quote(inst)
            assert not (b and a) or b < a

    @invariant()
    def counters_match(self):
        if not hasattr(self, "book"):
            return
        for k, v in self.errors.items():
            assert self.book.counters[k] == v


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=60, stateful_step_count=60, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- #
# generated days
# --------------------------------------------------------------------------- #


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_generated_days_apply_cleanly_and_never_cross(seed):
    """A generated day references only live orders and its adds never cross, so strict
    mode accepts it and every top of book has bid < ask."""
    raw = generate_itch(6_000, 4, seed=seed)
    b = BookSet(strict=True)
    for i, m in enumerate(raw, 1):
        for ev in b.apply(itch.decode(m), i):
            if isinstance(ev, TopOfBook):
                assert ev.bid_size >= 0 and ev.ask_size >= 0
                assert not (ev.bid_size and ev.ask_size) or ev.bid_price < ev.ask_price
    for inst in range(1, 5):
        for side in "BS":
            for price, shares, count in b.levels(inst, side):
                orders = [o for o in b.orders.values() if (o.instrument, o.side, o.price) == (inst, side, price)]
                assert shares == sum(o.shares for o in orders) and count == len(orders)


def test_tob_events_helper_filters_and_keeps_order():
    raw = generate_itch(3_000, 3, seed=11)
    pairs = [(i, itch.decode(m)) for i, m in enumerate(raw, 1)]
    b = BookSet(instruments=[2])
    want = [ev for s, m in pairs for ev in b.apply(m, s) if isinstance(ev, TopOfBook)]
    got = list(tob_events(pairs, instruments=[2]))
    assert got == want and got and all(ev.instrument == 2 for ev in got)
    assert [ev.seq for ev in got] == sorted(ev.seq for ev in got)
    assert got[0].as_json()["event"] == "tob" and set(got[0].as_json()) == {
        "event", "instrument", "bid_price", "bid_size", "ask_price", "ask_size", "timestamp", "seq"}
