"""Tests for host/fastbook.py: differential against the reference book (host/book.py) on generated
days (clean, with bad references injected, filtered, from a pcap), on hypothesis-built feeds of
arbitrary messages, and on books deep enough to make every table grow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.book import BookError, BookSet, TopOfBook, Trade
from host.fastbook import TOB_DTYPE, rebuild
from protocols import itch
from protocols.itch_reader import read_itch_file, read_itch_pcap
from sim.itchfeed import generate_feed, write_itch_pcap


def reference(table, *, strict=False, instruments=None, messages=None):
    """BookSet over the table's messages in feed order; seq as fastbook numbers them."""
    idx = np.sort(np.concatenate([t["index"] for t in table.tables.values()]))
    seqs = table.seq[idx] if table.seq is not None else idx + 1
    books = BookSet(strict=strict, instruments=instruments)
    tobs, trades = [], []
    for seq, m in zip(seqs.tolist(), messages or table.to_messages()):
        for ev in books.apply(m, seq):
            (tobs if isinstance(ev, TopOfBook) else trades).append(ev)
    return books, tobs, trades


def assert_same(table, books, tobs, trades, fast, depth=10):
    assert fast.counters == books.counters
    assert fast.tob_events() == tobs
    assert fast.trade_events() == trades
    assert fast.live_orders == len(books.orders)
    instruments = {o.instrument for o in books.orders.values()} | set(fast.depth)
    for inst in instruments:
        for side in "BS":
            assert fast.levels(inst, side) == books.levels(inst, side, depth), (inst, side)


def _feed(messages, instruments, seed):
    return read_itch_file(generate_feed(messages, instruments, seed).nasdaq())


@pytest.fixture(scope="module")
def day():
    table = _feed(200_000, 32, 7)
    return table, table.to_messages()


def test_generated_day_matches_reference(day):
    day, messages = day
    books, tobs, trades = reference(day, strict=True, messages=messages)
    fast = rebuild(day, strict=True)
    assert len(tobs) > 50_000 and len(trades) > 5_000        # the day exercises the book
    assert fast.tob.dtype == TOB_DTYPE and len(fast.tob) == len(tobs)
    assert_same(day, books, tobs, trades, fast)


def test_instrument_filter_matches_reference(day):
    day, messages = day
    keep = [1, 5, 17, 32]
    assert_same(day, *reference(day, instruments=keep, messages=messages), rebuild(day, instruments=keep))


def inject_bad_references(table, seed):
    """Damage a generated day in place: unknown references, overfills, duplicate adds, adds of no
    shares or a bad side, and executes naming the wrong instrument."""
    rng = np.random.default_rng(seed)

    def some(code, frac):
        t = table[code]
        return t, rng.choice(len(t), max(1, int(frac * len(t))), replace=False)

    for code in "ECXDU":
        t, i = some(code, 0.01)
        t["order_ref"][i] = rng.integers(1 << 40, 1 << 41, len(i))        # never issued
    for code in "EX":
        t, i = some(code, 0.02)
        t["shares"][i] = t["shares"][i] + rng.integers(1, 500, len(i))   # more than is open
    t, i = some("A", 0.01)
    adds = table["A"]["order_ref"]
    t["order_ref"][i] = adds[np.maximum(i - rng.integers(1, 20, len(i)), 0)]   # a recent, maybe live, ref
    t, i = some("A", 0.003)
    t["shares"][i] = 0
    t, i = some("F", 0.01)
    t["side"][i] = b"Z"
    t, i = some("D", 0.01)
    t["stock_locate"][i] = t["stock_locate"][i] % 8 + 1                   # another instrument's book
    t, i = some("U", 0.01)
    t["new_order_ref"][i] = adds[rng.choice(len(adds), len(i))]          # maybe a live ref


def test_bad_references_counted_like_reference():
    table = _feed(60_000, 8, 3)
    inject_bad_references(table, 1)
    books, tobs, trades = reference(table)
    for k in ("unknown_order", "overfill", "duplicate_order", "zero_shares", "bad_side"):
        assert books.counters[k] > 0, k            # every kind of bad input is exercised
    assert_same(table, books, tobs, trades, rebuild(table))


def test_bad_references_raise_like_reference_in_strict_mode():
    table = _feed(20_000, 4, 5)
    inject_bad_references(table, 2)
    with pytest.raises(BookError) as want:
        reference(table, strict=True)
    with pytest.raises(BookError) as got:
        rebuild(table, strict=True)
    w, g = want.value, got.value
    assert (g.reason, g.code, g.order_ref, g.seq) == (w.reason, w.code, w.order_ref, w.seq)
    assert str(g).startswith(f"ITCH {w.code!r} order_ref {w.order_ref} at seq {w.seq}: {w.reason}")


def test_pcap_messages_carry_their_mold_sequence_numbers(tmp_path):
    feed = generate_feed(5_000, 4, 9)
    write_itch_pcap(tmp_path / "day.pcap", feed)
    table = read_itch_pcap(tmp_path / "day.pcap")
    fast = rebuild(table)
    assert_same(table, *reference(table), fast)
    assert fast.tob["seq"][0] > 0 and (np.diff(fast.tob["seq"].astype(np.int64)) > 0).all()


def test_deep_books_grow_every_table():
    """Thousands of levels on a side and tens of thousands of live orders: level sides move to
    bigger slots, the level pool, the order table and the hash table all grow."""
    rng = np.random.default_rng(4)
    msgs, ref = [], 1
    for _ in range(30_000):
        inst = int(rng.integers(1, 4))
        side = "B" if rng.random() < 0.5 else "S"
        price = int(rng.integers(1, 5_000)) * 100 + (0 if side == "S" else 500_000_000)
        msgs.append(itch.message("A", stock_locate=inst, order_ref=ref, side=side,
                                 shares=int(rng.integers(1, 1000)), price=price))
        ref += int(rng.integers(1, 1 << 30))          # sparse 64-bit references
    refs = [m.order_ref for m in msgs]
    for j in rng.permutation(len(refs))[:20_000].tolist():
        m = msgs[j]
        msgs.append(itch.message("D", stock_locate=m.stock_locate, order_ref=refs[j]))
    raw = b"".join(len(e).to_bytes(2, "big") + e for e in map(itch.encode, msgs))
    table = read_itch_file(raw)
    books, tobs, trades = reference(table, strict=True)
    fast = rebuild(table, strict=True, depth=None)
    assert max(len(books.levels(i, s)) for i in (1, 2, 3) for s in "BS") > 1_000
    assert_same(table, books, tobs, trades, fast, depth=None)


# --------------------------------------------------------------------------- #
# arbitrary feeds (hypothesis): few references, so collisions and bad references are common
# --------------------------------------------------------------------------- #

_refs = st.integers(1, 12) | st.just(2**64 - 1)
_prices = st.integers(1, 8) | st.integers(0, 2**32 - 1)


@st.composite
def feeds(draw):
    out = []
    for _ in range(draw(st.integers(1, 80))):
        code = draw(st.sampled_from("AAAFECXDUPS"))
        f = {"stock_locate": draw(st.integers(1, 3)), "timestamp": draw(st.integers(0, 2**48 - 1))}
        if code == "S":
            out.append(itch.message("S", event_code="Q", **f))
            continue
        f["order_ref"] = draw(_refs)
        if code in "AFP":
            f["side"] = draw(st.sampled_from(["B", "S", "B", "S", "Z"]))
            f["stock"] = "ACME"
        if code in "AFECXUP":
            f["shares"] = draw(st.integers(0, 300) | st.integers(0, 2**32 - 1))
        if code in "AFCUP":
            f["price"] = draw(_prices)
        if code in "ECP":
            f["match_number"] = draw(st.integers(0, 2**64 - 1))
        if code == "U":
            f["new_order_ref"] = draw(_refs)
        out.append(itch.message(code, **f))
    return out


def _table(msgs):
    return read_itch_file(b"".join(len(e).to_bytes(2, "big") + e for e in map(itch.encode, msgs)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=feeds(), instruments=st.none() | st.sets(st.integers(1, 3)))
def test_arbitrary_feeds_match_reference(msgs, instruments):
    table = _table(msgs)
    assert_same(table, *reference(table, instruments=instruments), rebuild(table, instruments=instruments))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=feeds())
def test_arbitrary_feeds_strict_mode_matches_reference(msgs):
    table = _table(msgs)
    try:
        want = reference(table, strict=True)
    except BookError as e:
        with pytest.raises(BookError) as got:
            rebuild(table, strict=True)
        assert (got.value.reason, got.value.code, got.value.order_ref, got.value.seq) == \
            (e.reason, e.code, e.order_ref, e.seq)
    else:
        assert_same(table, *want, rebuild(table, strict=True))


def test_trade_and_tob_arrays_by_hand():
    """A two-order feed worked by hand: the columns hold the values, with seq = position + first_seq."""
    msgs = [itch.message("A", stock_locate=3, timestamp=10, order_ref=5, side="B", shares=100, price=2500),
            itch.message("S", timestamp=11, event_code="Q"),
            itch.message("E", stock_locate=3, timestamp=12, order_ref=5, shares=40, match_number=77)]
    fast = rebuild(_table(msgs), first_seq=100)
    assert fast.tob.tolist() == [(3, 2500, 100, 0, 0, 10, 100), (3, 2500, 60, 0, 0, 12, 102)]
    assert fast.trade_events() == [Trade(3, "B", 2500, 40, 5, 77, 12, 102, "E")]
    assert fast.levels(3, "B") == [(2500, 60, 1)] and fast.levels(3, "S") == [] and fast.levels(4, "B") == []
    assert fast.counters["messages"] == 3 and fast.live_orders == 1


def test_event_table_grows_when_every_message_moves_the_top():
    """3000 bids, each one tick above the last: 3000 events, more than the first guess of room."""
    n = 3_000
    fast = rebuild(_table([itch.message("A", stock_locate=1, order_ref=j + 1, side="B", shares=1 + j % 7,
                                        price=100 + j) for j in range(n)]), first_seq=0)
    assert len(fast.tob) == n
    assert fast.tob["bid_price"].tolist() == list(range(100, 100 + n))
    assert fast.tob["bid_size"].tolist() == [1 + j % 7 for j in range(n)]
    assert fast.tob["seq"].tolist() == list(range(n)) and not fast.tob["ask_size"].any()
    assert fast.levels(1, "B", 2) == [(100 + n - 1, 1 + (n - 1) % 7, 1), (100 + n - 2, 1 + (n - 2) % 7, 1)]
