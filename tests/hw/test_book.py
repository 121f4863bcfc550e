"""The book stage (hw/book.py) on amaranth.sim against its golden model (host/bookrx.py) and hand-checked cases."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from host.book import BookSet
from host.bookrx import GatewareBook
from hw.book import Book, TobRecord
from hw.ordertable import BookParams, fold, fold_int
from protocols import itch
from protocols.events import LevelEvent, LostEvent, TobEvent
from protocols.registers import BOOK
from sim.itchfeed import generate_itch

SMALL = BookParams(order_bits=8, window_bits=5, slots=4)
NARROW = BookParams(order_bits=8, window_bits=3, slots=4)   # 8-tick windows: orders leave them


def rec(code, seq, **fields):
    """A decoded record (what hw/itch.py emits) of an ITCH message built from fields."""
    r = itch.decoded_record(itch.encode(itch.message(code, **fields)))
    r["seq"] = seq
    return r


def run_book(params, records, slots, *, stall=0.0, gap=0.0, seed=1, windows=()):
    """Drive the Book with ``records``; returns (events by kind, counter totals, accept/tob cycles)."""
    dut = Book(params)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = {"tob": [], "lost": [], "level": []}
    counters = dict.fromkeys([r.name for r in BOOK.counters], 0)
    cycles = {"accept": [], "tob": [], "end": 0}
    rng = random.Random(seed)
    done = [False]

    async def setup_and_feed(ctx):
        for slot, locate in slots.items():
            ctx.set(dut.csr.slot, locate | slot << 16 | 1 << 24)
            ctx.set(dut.csr.slot_w, 1)
            await ctx.tick()
        ctx.set(dut.csr.slot_w, 0)
        for value in windows:
            ctx.set(dut.csr.window, value)
            ctx.set(dut.csr.window_w, 1)
            await ctx.tick()
        ctx.set(dut.csr.window_w, 0)
        cycle = 0
        for r in records:
            while gap and rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, r)
            while True:
                ready = ctx.get(dut.i.ready)
                await ctx.tick()
                if ready:
                    break
            ctx.set(dut.i.valid, 0)
        for _ in range(40):
            await ctx.tick()
        done[0] = True

    async def monitor(ctx):
        cycle = 0
        async for clk_edge, rst, *vals in ctx.tick().sample(
                dut.i.valid, dut.i.ready, *(getattr(dut, k).valid for k in got),
                *(getattr(dut, k).payload for k in got),
                *(getattr(dut.csr, c) for c in counters)):
            iv, ir = vals[0], vals[1]
            valids = vals[2:5]
            payloads = vals[5:8]
            incs = vals[8:]
            if iv and ir:
                cycles["accept"].append(cycle)
            for (k, v, pl) in zip(got, valids, payloads):
                if v and ctx.get(getattr(dut, k).ready):
                    got[k].append({n: int(getattr(pl, n)) for n, _ in pl.shape()})
                    if k == "tob":
                        cycles["tob"].append(cycle)
            for c, inc in zip(counters, incs):
                counters[c] += int(inc)
            ready = rng.random() >= stall
            for k in got:
                ctx.set(getattr(dut, k).ready, ready)
            cycle += 1
            if done[0]:
                cycles["end"] = cycle
                return

    sim.add_testbench(setup_and_feed)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got, counters, cycles


def model_events(params, records, slots, windows=()):
    model = GatewareBook(params.order_bits, params.window_bits, params.slots)
    for slot, locate in slots.items():
        model.write_slot(locate | slot << 16 | 1 << 24)
    for value in windows:
        model.write_window(value)
    out = {"tob": [], "lost": [], "level": []}
    for r in records:
        for ev in model.apply(r, r["seq"]):
            if isinstance(ev, TobEvent):
                out["tob"].append(dict(instrument=ev.instrument, timestamp=ev.timestamp, bid_price=ev.bid_price,
                                       ask_price=ev.ask_price, bid_size=ev.bid_size, ask_size=ev.ask_size,
                                       seq=ev.seq))
            elif isinstance(ev, LostEvent):
                out["lost"].append(dict(order_ref=ev.order_ref, instrument=ev.instrument, reason=ev.reason,
                                        side=ord(ev.side), price=ev.price, seq=ev.seq))
            elif isinstance(ev, LevelEvent):
                out["level"].append(dict(price=ev.price, instrument=ev.instrument, orders=ev.orders,
                                         shares=ev.shares, side=ord(ev.side), seq=ev.seq))
    return out, model


def feed_records(n, instruments, seed):
    return [dict(itch.decoded_record(m), seq=i) for i, m in enumerate(generate_itch(n, instruments, seed), 1)]


def test_fold_matches_the_host_copy():
    from amaranth.sim import Simulator as S
    from amaranth import Signal
    for bits in (8, 11, 14):
        rng = random.Random(bits)
        for _ in range(50):
            ref = rng.getrandbits(64)
            from amaranth.hdl import Const
            assert fold_int(ref, bits) == __import__("host.bookrx", fromlist=["fold"]).fold(ref, bits)
    # Sequential references land on distinct indices.
    assert len({fold_int(r, 8) for r in range(1000, 1256)}) == 256


@pytest.mark.parametrize("stall,gap", [(0.0, 0.0), (0.3, 0.2)])
def test_generated_feed_matches_the_golden_model_with_collisions_and_windows(stall, gap):
    records = feed_records(2500, 6, seed=3)
    slots = {0: 1, 1: 2, 2: 3, 3: 5}                  # locates 4 and 6 are not slotted
    got, counters, _ = run_book(NARROW, records, slots, stall=stall, gap=gap)
    want, model = model_events(NARROW, records, slots)
    for kind in ("lost", "level", "tob"):
        assert got[kind] == want[kind], kind
    assert counters == dict(model.counters)
    assert model.counters["lost_collision"] > 20 and model.counters["lost_window"] > 5
    assert model.counters["unknown"] > 20 and model.counters["adds"] > 300 and model.counters["recentred"] > 0


def hand_feed():
    """Prices in price4 (100_0000 = $100.00). Back-to-back operations on one order, level and instrument; best empties and the next moves up."""
    A = lambda seq, ref, side, price, shares, loc=7: rec("A", seq, stock_locate=loc, order_ref=ref, side=side,
                                                         price=price, shares=shares, timestamp=seq)
    return [
        A(1, 10, "B", 100_0000, 100),                    # bid 100.00 x 100
        A(2, 11, "B", 100_0000, 50),                     # same level: 150
        A(3, 12, "B", 99_9000, 70),                      # below: no TOB
        A(4, 13, "S", 100_1000, 30),                     # ask
        rec("E", 5, stock_locate=7, order_ref=10, shares=40, timestamp=5),   # 110
        rec("X", 6, stock_locate=7, order_ref=10, shares=60, timestamp=6),   # order 10 gone: 50
        rec("D", 7, stock_locate=7, order_ref=11, timestamp=7),              # best empties: 99.90 x 70 moves up
        rec("U", 8, stock_locate=7, order_ref=12, new_order_ref=14, price=100_0500, shares=20, timestamp=8),
        rec("U", 9, stock_locate=7, order_ref=14, new_order_ref=15, price=100_0500, shares=20, timestamp=9),  # no change
        rec("D", 10, stock_locate=7, order_ref=99, timestamp=10),            # unknown
        rec("C", 11, stock_locate=7, order_ref=13, shares=31, price=100_1000, match_number=1, timestamp=11),  # overfill
    ]


def test_hand_checked_back_to_back_against_the_reference_book():
    records = hand_feed()
    got, counters, cycles = run_book(SMALL, records, {2: 7})
    ref = BookSet()
    want = [ev.as_json() for r in records for ev in ref.apply(r, r["seq"]) if type(ev).__name__ == "TopOfBook"]
    assert [dict(event="tob", **{k: t[k] for k in ("instrument", "bid_price", "bid_size", "ask_price", "ask_size",
                                                  "timestamp", "seq")}) for t in got["tob"]] == want
    assert [(t["bid_price"], t["bid_size"], t["ask_price"], t["ask_size"]) for t in got["tob"]] == [
        (100_0000, 100, 0, 0), (100_0000, 150, 0, 0), (100_0000, 150, 100_1000, 30), (100_0000, 110, 100_1000, 30),
        (100_0000, 50, 100_1000, 30), (99_9000, 70, 100_1000, 30), (100_0500, 20, 100_1000, 30), (100_0500, 20, 0, 0)]
    assert counters["unknown"] == 1 and counters["overfill"] == 1 and counters["adds"] == 6


def test_one_message_per_cycle_and_latency():
    """Back-to-back adds, executes and deletes on one instrument: one record per cycle; TOB out 5 cycles later."""
    records = []
    seq = 0
    for k in range(60):
        seq += 1
        records.append(rec("A", seq, stock_locate=3, order_ref=100 + k, side="B", price=50_00 + 100 * (k % 5),
                           shares=10 + k, timestamp=seq))
        seq += 1
        records.append(rec("E", seq, stock_locate=3, order_ref=100 + k, shares=1, timestamp=seq))
        if k % 3 == 0:
            seq += 1
            records.append(rec("D", seq, stock_locate=3, order_ref=100 + k, timestamp=seq))
    got, counters, cycles = run_book(SMALL, records, {0: 3})
    acc = cycles["accept"]
    assert acc == list(range(acc[0], acc[0] + len(records)))     # one per cycle, no bubble
    seq_cycle = {r["seq"]: c for r, c in zip(records, acc)}
    lat = {tc - seq_cycle[t["seq"]] for t, tc in zip(got["tob"], cycles["tob"])}
    assert lat == {5}, lat       # 4 pipeline stages and the output FIFO
    want, _ = model_events(SMALL, records, {0: 3})
    assert got["tob"] == want["tob"] and got["level"] == want["level"]


def test_window_write_and_recentre():
    # The host puts book side (slot 1, bid) at tick 1000 (10.00, 32 ticks wide): 10.20 is kept, 10.40 is outside a
    # non-empty side and 10.01 is off the tick grid: both lost and reported.
    records = [
        rec("A", 1, stock_locate=9, order_ref=1, side="B", price=10_20, shares=5, timestamp=1),
        rec("A", 2, stock_locate=9, order_ref=2, side="B", price=10_40, shares=5, timestamp=2),
        rec("A", 3, stock_locate=9, order_ref=3, side="B", price=10_01, shares=5, timestamp=3),  # off grid
    ]
    windows = [1000 | 2 << 32]
    got, counters, _ = run_book(SMALL, records, {1: 9}, windows=windows)
    want, model = model_events(SMALL, records, {1: 9}, windows=windows)
    assert got == want
    assert counters["lost_window"] == 2 and counters["recentred"] == 0 and counters["adds"] == 1
    assert [(e["order_ref"], e["reason"]) for e in got["lost"]] == [(2, 2), (3, 2)]
