"""Tests for the exchange's market data (sim/exchange/marketdata.py, retransmit.py): the ITCH it
publishes decodes with protocols.itch and rebuilds (host/book.py BookSet) to the matching engine's own
book, and datagrams dropped at random are recovered from the re-request server over loopback UDP so
the rebuilt book equals the one built without loss."""

from __future__ import annotations

import asyncio
import random

import pytest

from host.book import BookSet
from protocols import itch
from protocols import moldudp64 as mold
from sim.exchange.config import FlowConfig, SymbolConfig, VenueConfig
from sim.exchange.marketdata import ItchWriter, MoldPublisher
from sim.exchange.retransmit import MoldReceiver, RetransmitServer
from sim.exchange.venue import Venue

SYMBOLS = (SymbolConfig("AAPL", 1, 1_900_000), SymbolConfig("MSFT", 2, 4_100_000), SymbolConfig("TQQQ", 7, 500_000))


def venue_cfg(seed=5, **kw):
    return VenueConfig("TEST", SYMBOLS, fix_port=0, md_port=0, retransmit_port=0, session="TEST000001",
                       flow=FlowConfig(seed=seed, max_orders=60), **kw)


class Clock:
    """A deterministic exchange clock: each reading is 1 us after the last."""

    def __init__(self, t=9 * 3600 * 10**9):
        self.t = t

    def __call__(self):
        self.t += 1000
        return self.t


def rebuild(messages, first_seq=1):
    books = BookSet(strict=True)
    for i, m in enumerate(messages):
        books.apply(itch.decode(m), first_seq + i)
    return books


def assert_same_book(books: BookSet, venue: Venue):
    for s in venue.cfg.symbols:
        bids, asks = venue.engine.depth(s.symbol)
        assert books.levels(s.locate, "B") == bids, s.symbol
        assert books.levels(s.locate, "S") == asks, s.symbol
        for ref, (side, price, leaves) in venue.engine.resting(s.symbol).items():
            assert books.order(ref) == (s.locate, side, price, leaves)


def test_published_itch_rebuilds_the_engines_book():
    """Every datagram decodes strictly; the book built from the feed equals the engine's book at many
    points of a long seeded flow (adds, executions, partial cancels, deletes, replaces)."""
    v = Venue(venue_cfg(), clock=Clock(), order_entry=None)
    datagrams = []
    v.publisher.sink = datagrams.append
    v.publisher.publish(v.writer.start_of_day())
    for req in v.flow.opening():
        v.handle(req)
    books, seq = BookSet(strict=True), 1
    kinds = set()

    def drain():
        nonlocal seq
        for d in datagrams:
            pkt = mold.decode_packet(d)
            assert pkt.session == b"TEST000001" and pkt.seq == seq
            for m in pkt.messages:
                msg = itch.decode(m)
                kinds.add(msg.code)
                books.apply(msg, seq)
                seq += 1
        datagrams.clear()

    for _ in range(40):
        v.step_flow(100)
        drain()
        assert_same_book(books, v)
    assert {"S", "R", "H", "A", "E", "X", "D", "U"} <= kinds
    assert seq == v.publisher.next_seq
    stock = {s.locate: s.symbol for s in SYMBOLS}
    dirs = [itch.decode(m) for m in v.publisher.messages if m[:1] == b"R"]
    assert {d.stock_locate: d.stock.decode().strip() for d in dirs} == stock


def test_itch_timestamps_come_from_the_injected_clock():
    clock = Clock(t=1000)
    w = ItchWriter({"AAPL": 1}, clock)
    msgs = [itch.decode(m) for m in w.start_of_day()]
    assert [m.timestamp for m in msgs] == [2000] * len(msgs)


def test_retransmit_server_answers():
    pub = MoldPublisher("S1", max_payload=200)
    msgs = [bytes([65 + i % 26]) * (10 + i) for i in range(40)]
    pub.publish(msgs)
    srv = RetransmitServer("S1", pub.lookup, lambda: pub.next_seq, max_payload=200)
    reply = mold.decode_packet(srv.answer(mold.encode_request(mold.MoldRequest("S1", 5, 3))))
    assert (reply.seq, reply.messages) == (5, tuple(msgs[4:7]))
    big = mold.decode_packet(srv.answer(mold.encode_request(mold.MoldRequest("S1", 1, 40))))
    assert big.seq == 1 and 0 < len(big.messages) < 40 and big.messages == tuple(msgs[:len(big.messages)])
    assert len(mold.encode_packet(big)) <= 200
    beyond = mold.decode_packet(srv.answer(mold.encode_request(mold.MoldRequest("S1", 41, 1))))
    assert beyond.is_heartbeat and beyond.seq == 41
    assert srv.answer(mold.encode_request(mold.MoldRequest("OTHER", 1, 1))) is None
    assert srv.answer(b"short") is None
    assert srv.stats["wrong_session"] == 1 and srv.stats["bad_short_header"] == 1


def test_receiver_orders_and_deduplicates():
    got = []
    rx = MoldReceiver(lambda s, m: got.append((s, m)))
    p = [mold.encode_packet(mold.MoldPacket("S", s, (bytes([s]),))) for s in range(1, 6)]
    for d in (p[0], p[2], p[1], p[1], p[4], p[3]):
        rx.feed(d)
    assert got == [(s, bytes([s])) for s in range(1, 6)]
    assert rx.stats["duplicates"] == 1 and rx.gap == 0


async def _lossy_run(drop_rate: float, seed: int):
    rng = random.Random(seed)
    v = Venue(venue_cfg(seed=seed), clock=Clock(), order_entry=None, flow_timer=False, heartbeat_timer=False,
              drop=lambda payload: rng.random() < drop_rate)
    loop = asyncio.get_running_loop()
    got = []
    rx_transport, rx = await loop.create_datagram_endpoint(
        lambda: MoldReceiver(lambda s, m: got.append(m), None), local_addr=("127.0.0.1", 0))
    v.subscribe(rx_transport.get_extra_info("sockname"))
    await v.start()
    rx.request_addr = v.retransmit_addr
    try:
        for _ in range(60):
            v.step_flow(50)
            await asyncio.sleep(0.001)
        v.publisher.heartbeat()          # shows a gap at the tail, if the last packets were lost
        await asyncio.wait_for(rx.wait_caught_up(v.publisher.next_seq), 20)
    finally:
        rx_transport.close()
        await v.stop(end_session=False)
    return v, rx, got


def test_dropped_datagrams_are_recovered_from_the_retransmission_server():
    v, rx, got = asyncio.run(_lossy_run(0.2, seed=11))
    assert v.publisher.stats["dropped"] > 20
    assert rx.stats["requests"] > 0 and v.retransmit.stats["messages"] > 0
    assert got == v.publisher.messages                       # every message, once, in order
    lossy = rebuild(got)
    lossless = rebuild(v.publisher.messages)
    for s in SYMBOLS:
        for side in "BS":
            assert lossy.levels(s.locate, side) == lossless.levels(s.locate, side)
    assert lossy.orders.keys() == lossless.orders.keys()
    assert_same_book(lossy, v)
