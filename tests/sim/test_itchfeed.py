"""Tests for sim/itchfeed.py: reproducibility, the shape of the day, and the
referential rules of the order flow, checked by replaying the messages through a
small dict-of-orders book written here (independent of the generator)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pytest

from protocols import itch
from protocols import moldudp64 as mold
from protocols.net import ip_to_int, parse_udp_frame
from protocols.pcap import read_pcap
from sim import itchfeed, moldfeed
from sim.itchfeed import (
    MARKET_CLOSE_NS,
    MARKET_OPEN_NS,
    MIX,
    TICK,
    generate_feed,
    generate_itch,
    write_itch_file,
    write_itch_pcap,
)


@pytest.fixture(scope="module")
def day():
    """A mid-sized day, decoded with the per-message codec."""
    raw = generate_itch(60_000, 12, seed=3, halt_rate=3e-4, mean_halt_messages=500)
    return raw, [itch.decode(m) for m in raw]


@dataclass
class Book:
    """What a book builder keeps: live orders by reference and price levels per instrument and side."""

    orders: dict = field(default_factory=dict)     # ref -> [locate, side, price, shares]
    levels: dict = field(default_factory=lambda: defaultdict(Counter))   # (locate, side) -> price -> orders
    last_ref: int = 0
    problems: list = field(default_factory=list)

    def best(self, locate, side):
        lv = self.levels[(locate, side)]
        if not lv:
            return None
        return max(lv) if side == b"B" else min(lv)

    def _add(self, i, ref, locate, side, price, shares):
        if ref in self.orders:
            self.problems.append((i, "duplicate ref", ref))
        if ref <= self.last_ref:
            self.problems.append((i, "ref not increasing", ref))
        self.last_ref = max(self.last_ref, ref)
        if shares <= 0:
            self.problems.append((i, "add of no shares", ref))
        other = self.best(locate, b"S" if side == b"B" else b"B")
        if other is not None and (price >= other if side == b"B" else price <= other):
            self.problems.append((i, "add crosses the opposite best", ref, price, other))
        self.orders[ref] = [locate, side, price, shares]
        self.levels[(locate, side)][price] += 1

    def _live(self, i, ref, locate):
        o = self.orders.get(ref)
        if o is None:
            self.problems.append((i, "unknown ref", ref))
        elif o[0] != locate:
            self.problems.append((i, "ref of another stock", ref))
        return o

    def _reduce(self, i, ref, shares):
        o = self.orders[ref]
        if not 0 < shares <= o[3]:
            self.problems.append((i, "reduces by more than the open shares", ref, shares, o[3]))
        o[3] -= shares
        if o[3] <= 0:
            self._remove(ref)

    def _remove(self, ref):
        locate, side, price, _ = self.orders.pop(ref)
        lv = self.levels[(locate, side)]
        lv[price] -= 1
        if not lv[price]:
            del lv[price]

    def apply(self, i, m):
        c = m.code
        if c in "AF":
            self._add(i, m.order_ref, m.stock_locate, m.side, m.price, m.shares)
        elif c == "D":
            if self._live(i, m.order_ref, m.stock_locate):
                self._remove(m.order_ref)
        elif c in "XEC":
            if self._live(i, m.order_ref, m.stock_locate):
                self._reduce(i, m.order_ref, m.shares)
        elif c == "U":
            o = self._live(i, m.order_ref, m.stock_locate)
            if o:
                side = o[1]
                self._remove(m.order_ref)
                self._add(i, m.new_order_ref, m.stock_locate, side, m.price, m.shares)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = generate_itch(5000, 5, seed=9)
    assert a == generate_itch(5000, 5, seed=9)
    assert a != generate_itch(5000, 5, seed=10)
    assert len(a) == 5000


def test_day_has_the_start_and_end_of_day_sequence(day):
    raw, msgs = day
    k = 12
    assert [(m.code, m.event_code) for m in msgs[:2]] == [("S", b"O"), ("S", b"S")]
    directory = msgs[2:2 + k]
    assert [m.code for m in directory] == ["R"] * k
    assert [m.stock_locate for m in directory] == list(range(1, k + 1))
    symbols = [m.stock.rstrip() for m in directory]
    assert len(set(symbols)) == k and symbols[0] == b"AAPL"
    assert all(s.isalpha() and s.isupper() for s in symbols)
    trading = msgs[2 + k:2 + 2 * k]
    assert [(m.code, m.trading_state, m.stock_locate) for m in trading] == [("H", b"T", i) for i in range(1, k + 1)]
    assert [m.stock for m in trading] == [m.stock for m in directory]
    assert (msgs[2 + 2 * k].code, msgs[2 + 2 * k].event_code, msgs[2 + 2 * k].timestamp) == ("S", b"Q", MARKET_OPEN_NS)
    assert [(m.code, m.event_code) for m in msgs[-3:]] == [("S", b"M"), ("S", b"E"), ("S", b"C")]
    assert msgs[-3].timestamp == MARKET_CLOSE_NS
    flow = msgs[3 + 2 * k:-3]
    assert all(MARKET_OPEN_NS < m.timestamp < MARKET_CLOSE_NS for m in flow)
    assert {m.code for m in flow} <= set("AFDXECUPH")


def test_timestamps_increase(day):
    _, msgs = day
    ts = [m.timestamp for m in msgs]
    assert all(a < b for a, b in zip(ts, ts[1:]))


def test_order_flow_keeps_the_referential_rules_and_never_crosses(day):
    _, msgs = day
    book = Book()
    halted = set()
    for i, m in enumerate(msgs):
        if m.code == "H":
            (halted.add if m.trading_state == b"H" else halted.discard)(m.stock_locate)
        elif m.code in "ECP" and m.stock_locate in halted:
            book.problems.append((i, "trade while halted", m.code))
        book.apply(i, m)
    assert book.problems == []
    # the book is never crossed (adds respect the opposite best; executions take the best)
    for locate in range(1, 13):
        bid, ask = book.best(locate, b"B"), book.best(locate, b"S")
        assert bid is None or ask is None or bid < ask


def test_executions_take_the_best_price(day):
    _, msgs = day
    book = Book()
    for i, m in enumerate(msgs):
        if m.code in "EC":
            locate, side, price, _ = book.orders[m.order_ref]
            assert price == book.best(locate, side), (i, m)
        book.apply(i, m)


def test_stock_fields_match_the_directory_and_prices_are_on_the_tick_grid(day):
    _, msgs = day
    names = {m.stock_locate: m.stock for m in msgs if m.code == "R"}
    for m in msgs:
        if m.code in "AFPH":
            assert m.stock == names[m.stock_locate]
        if m.code in "AFUCP":
            assert m.price > 0 and m.price % TICK == 0
        if m.code == "F":
            assert m.attribution.decode() in itchfeed.MPIDS


def test_halts_resume_and_trades_are_matched(day):
    _, msgs = day
    actions = [(m.stock_locate, m.trading_state) for m in msgs[27:] if m.code == "H"]
    assert any(s == b"H" for _, s in actions), "no halt in the test day"
    state = {}
    for locate, s in actions:
        assert state.get(locate, b"T") != s       # H then T then H ...
        state[locate] = s
    matches = [m.match_number for m in msgs if m.code in "ECP"]
    assert matches == sorted(set(matches))


def test_message_mix_is_close_to_a_real_day(day):
    _, msgs = day
    flow = Counter(m.code for m in msgs[27:-3] if m.code != "H")
    n = sum(flow.values())
    share = {c: flow[c] / n for c in MIX}
    adds = share["A"] + share["F"]
    assert 0.40 <= adds <= 0.50
    assert 0.07 <= share["F"] / adds <= 0.13
    assert 0.30 <= share["D"] <= 0.40
    for code in "XEU":
        assert abs(share[code] - MIX[code]) <= 0.3 * MIX[code], (code, share[code])
    for code in "CP":
        assert abs(share[code] - MIX[code]) <= 0.5 * MIX[code], (code, share[code])


def test_generated_bytes_equal_the_codec(day):
    raw, msgs = day
    assert [itch.encode(m) for m in msgs] == raw


def test_books_stay_bounded_on_a_long_day():
    feed = generate_feed(200_000, 3, seed=5, book_capacity=64)
    book = Book()
    for i, m in enumerate(itch.decode(b) for b in feed.messages()):
        book.apply(i, m)
        assert len(book.orders) <= 3 * 64
    assert book.problems == []


def test_too_few_messages_for_the_day_is_refused():
    with pytest.raises(ValueError, match="start- and end-of-day"):
        generate_itch(10, 5, seed=1)


def test_write_itch_file_is_nasdaq_binary(tmp_path):
    raw = generate_itch(3000, 4, seed=2)
    path = tmp_path / "day.itch"
    n = write_itch_file(path, raw)
    data = path.read_bytes()
    assert n == len(data) == sum(2 + len(m) for m in raw)
    pos, back = 0, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 2], "big")
        back.append(data[pos + 2:pos + 2 + length])
        pos += 2 + length
    assert back == raw
    assert [p.name for p in tmp_path.iterdir()] == ["day.itch"]      # no temporary left behind
    feed_path = tmp_path / "feed.itch"
    write_itch_file(feed_path, generate_feed(3000, 4, seed=2))
    assert feed_path.read_bytes() == data


def test_write_itch_pcap_carries_every_message_in_order(tmp_path):
    raw = generate_itch(4000, 6, seed=7)
    path = tmp_path / "day.pcap"
    frames = write_itch_pcap(path, raw, max_payload=600, session="TESTSESS01")
    records = list(read_pcap(path))
    assert len(records) == frames
    got, seq, last_ts = [], 1, 0
    for rec in records:
        d = parse_udp_frame(rec.data)
        assert (d.dst_port, d.dst_ip) == (moldfeed.FEED_PORT, ip_to_int(moldfeed.FEED_IP))
        assert len(d.payload) <= 600
        p = mold.decode_packet(d.payload)
        assert p.session == b"TESTSESS01" and p.seq == seq
        seq += len(p.messages)
        got += p.messages
        stamp = itch.decode(p.messages[-1]).timestamp
        assert rec.ts_ns == itchfeed.SESSION_MIDNIGHT_NS + stamp
        assert rec.ts_ns >= last_ts
        last_ts = rec.ts_ns
    assert got == raw


def test_feed_object_views_agree(day):
    feed = generate_feed(60_000, 12, seed=3, halt_rate=3e-4, mean_halt_messages=500)
    raw, msgs = day
    assert feed.messages() == raw
    assert feed.timestamps().tolist() == [m.timestamp for m in msgs]
    assert np.array_equal(feed.lengths, [len(m) for m in raw])
