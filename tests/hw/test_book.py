"""The book stage (hw/book.py) on amaranth.sim against its golden model (host/bookrx.py), the plain
reference book (host/book.py) on the orders it kept, and hand-checked cases.

:func:`check_kept` is the check "the book reports exactly the orders it could not keep and is exact
for everything it kept", independent of the golden model: it removes the reported orders from the
message stream and holds the book's TOB events and top levels to the plain reference book's on
what is left (``tests/sim/test_book_nic.py`` uses it on Verilator too).
"""

import heapq
import random
from collections import defaultdict

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from host.book import BookSet
from host.bookrx import GatewareBook
from hw.book import Book, TobRecord, clear_cycles
from hw.ordertable import BookParams, fold, fold_int
from protocols import itch
from protocols.events import LevelEvent, LostEvent, TobEvent
from protocols.registers import BOOK
from sim.itchfeed import generate_itch

SMALL = BookParams(set_bits=5, ways=4, window_bits=5, slots=4)
NARROW = BookParams(set_bits=4, ways=4, window_bits=3, slots=4)   # 64 orders, 8-tick windows: both overflow


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
        await ctx.tick().repeat(clear_cycles(params))     # the memories are swept after reset
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


TOP_N = 8


def _side(side) -> str:
    return chr(side) if isinstance(side, int) else side


def kept_stream(records, lost):
    """The records as the book kept them, given its BOOK_LOST events (``order_ref`` and ``seq``).

    A lost add is dropped and its reference is dead: every later message of a dead reference is
    dropped (the book counts it in ``unknown``); a ``U`` of a dead reference kills its new reference
    too, and a ``U`` whose new reference was lost becomes a ``D`` of the original (the book retired
    it). Returns the kept records and the number of dropped non-add messages.
    """
    lost_at = {(e["order_ref"], e["seq"]) for e in lost}
    dead: set[int] = set()
    kept, unknown = [], 0
    for r in records:
        code = chr(r["type"]) if isinstance(r["type"], int) else r["type"]
        if code in "AF" and (r["order_ref"], r["seq"]) in lost_at:
            dead.add(r["order_ref"])
            continue
        if code in "ECXDU" and r["order_ref"] in dead:
            if code == "U":
                dead.add(r["new_order_ref"])
            unknown += 1
            continue
        if code == "U" and (r["new_order_ref"], r["seq"]) in lost_at:
            dead.add(r["new_order_ref"])
            r = {**r, "type": ord("D")}
        kept.append(r)
    assert len(lost_at) == len(lost), "an order was reported lost twice"
    return kept, unknown


def top_levels(levels: dict, side: str, n: int = TOP_N):
    """``(price, shares, orders)`` best first from ``price -> (shares, orders)``."""
    pick = heapq.nlargest if side == "B" else heapq.nsmallest
    return [(p, *levels[p]) for p in pick(n, levels)]


def check_kept(records, locates, tob, level, lost, counters):
    """The book's events against the plain reference book on the records it kept (see the module doc).

    ``records`` are decoded records with ``seq``; ``tob``, ``level`` and ``lost`` the book's events as
    dicts (``side`` ASCII code or letter); ``counters`` its ``book`` counters by name (without the
    block prefix). Asserts that every TOB event, and the top :data:`TOP_N` levels of every instrument and
    side after every message (rebuilt from the LEVEL events), equal the reference book's, that the reference book (strict) accepts every kept record, and that the lost orders and the
    dropped messages are what the book counted. Returns the number of kept records.
    """
    kept, unknown = kept_stream(records, lost)
    assert len(lost) == counters["lost_collision"] + counters["lost_window"]
    assert unknown == counters["unknown"], (unknown, counters["unknown"])
    ref = BookSet(strict=True, instruments=locates)
    want_tob = []
    level_by_seq = defaultdict(list)
    for e in level:
        level_by_seq[e["seq"]].append(e)
    mirror = defaultdict(dict)                 # (instrument, side) -> price -> (shares, orders)
    for r in kept:
        # The book sides this message changed, in the reference book or in the book under test: every other
        # side is as it was after the previous message, so checking these is checking every side.
        touched = set()
        code = chr(r["type"]) if isinstance(r["type"], int) else r["type"]
        if code in "AF":
            touched.add((r["stock_locate"], _side(r["side"])))
        elif code in "ECXDU" and (order := ref.order(r["order_ref"])) is not None:
            touched.add(order[:2])
        for ev in ref.apply(r, r["seq"]):
            if type(ev).__name__ == "TopOfBook":
                want_tob.append((ev.instrument, ev.bid_price, ev.bid_size, ev.ask_price, ev.ask_size,
                                 ev.timestamp, ev.seq))
        for e in level_by_seq.pop(r["seq"], ()):
            key = e["instrument"], _side(e["side"])
            touched.add(key)
            if e["orders"]:
                mirror[key][e["price"]] = (e["shares"], e["orders"])
            else:
                mirror[key].pop(e["price"], None)
        for loc, side in touched:
            if loc in locates and side in ("B", "S"):
                assert top_levels(mirror[loc, side], side) == ref.levels(loc, side, TOP_N), (r["seq"], loc, side)
    assert not level_by_seq, f"LEVEL events of messages the book should not have changed: {sorted(level_by_seq)[:5]}"
    got_tob = [(t["instrument"], t["bid_price"], t["bid_size"], t["ask_price"], t["ask_size"], t["timestamp"],
                t["seq"]) for t in tob]
    assert got_tob == want_tob
    return len(kept)


def model_events(params, records, slots, windows=()):
    model = GatewareBook.from_params(params)
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
    records = feed_records(1500, 6, seed=3)
    slots = {0: 1, 1: 2, 2: 3, 3: 5}                  # locates 4 and 6 are not slotted
    got, counters, _ = run_book(NARROW, records, slots, stall=stall, gap=gap)
    want, model = model_events(NARROW, records, slots)
    for kind in ("lost", "level", "tob"):
        assert got[kind] == want[kind], kind       # the lost orders are the ones the policy predicts
    assert counters == dict(model.counters)
    assert model.counters["lost_collision"] > 20 and model.counters["lost_window"] > 5
    assert model.counters["unknown"] > 20 and model.counters["adds"] > 300 and model.counters["recentred"] > 0
    # Exact for everything it kept, checked without the golden model.
    check_kept(records, set(slots.values()), got["tob"], got["level"], got["lost"], counters)


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
    """Back-to-back adds, executes and deletes on one instrument: one record per cycle; TOB out 6 cycles later."""
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
    assert lat == {6}, lat       # 5 pipeline stages (p0 c0 r1 r2 r3) and the output FIFO
    want, _ = model_events(SMALL, records, {0: 3})
    assert got["tob"] == want["tob"] and got["level"] == want["level"]


def test_window_write_and_recentre():
    # The host puts book side (slot 1, bid) at tick 1000 (10.00, 32 ticks wide): 10.20 is kept, 10.40 is outside a
    # non-empty side and 10.015 is off the tick grid: both lost and reported.
    records = [
        rec("A", 1, stock_locate=9, order_ref=1, side="B", price=10_2000, shares=5, timestamp=1),
        rec("A", 2, stock_locate=9, order_ref=2, side="B", price=10_4000, shares=5, timestamp=2),
        rec("A", 3, stock_locate=9, order_ref=3, side="B", price=10_0150, shares=5, timestamp=3),  # off grid
    ]
    windows = [1000 | 2 << 32]
    got, counters, _ = run_book(SMALL, records, {1: 9}, windows=windows)
    want, model = model_events(SMALL, records, {1: 9}, windows=windows)
    assert got == want
    assert counters["lost_window"] == 2 and counters["recentred"] == 0 and counters["adds"] == 1
    assert [(e["order_ref"], e["reason"]) for e in got["lost"]] == [(2, 2), (3, 2)]


def test_the_software_model_defaults_are_the_default_build():
    """The software NIC's book (``GatewareBook()``) reports the default build's ``book.config``."""
    assert BookParams().capacity == 16_384 and BookParams().window == 128 and BookParams().slots == 32
    assert GatewareBook().config == BookParams().config
    assert GatewareBook.from_params(NARROW).config == NARROW.config != BookParams().config


def test_check_kept_fails_on_a_book_that_is_wrong():
    """The independent check rejects an unreported loss, a wrong level and a missing TOB (the golden model's
    events for a feed that overflows the table and leaves the windows pass it)."""
    from host.book import BookError

    records = feed_records(1500, 4, seed=4)
    slots = {0: 1, 1: 2, 2: 3}
    want, model = model_events(NARROW, records, slots)
    counters = dict(model.counters)
    args = (records, set(slots.values()))
    assert model.counters["lost_collision"] > 5 and model.counters["lost_window"] > 5
    assert check_kept(*args, want["tob"], want["level"], want["lost"], counters) < len(records)
    reason = "lost_window" if want["lost"][0]["reason"] == 2 else "lost_collision"
    with pytest.raises((AssertionError, BookError)):       # a loss not reported
        check_kept(*args, want["tob"], want["level"], want["lost"][1:], dict(counters, **{reason: counters[reason] - 1}))
    level = [dict(e) for e in want["level"]]
    next(e for e in level[len(level) // 2:] if e["orders"])["shares"] += 1
    with pytest.raises(AssertionError):
        check_kept(*args, want["tob"], level, want["lost"], counters)
    with pytest.raises(AssertionError):
        check_kept(*args, want["tob"][:-1], want["level"], want["lost"], counters)


def test_synth_builds_the_small_book_for_the_25f_only(monkeypatch, tmp_path):
    """``python -m hw.synth`` synthesises the default book for the 85F and ``SMALL_BOOK`` for the 25F, in either order."""
    from hw import synth
    from hw.top import SMALL_BOOK

    seen = {}

    def fake(component, *, device, **kw):
        seen[device] = component.book_params
        raise synth.SynthError("not run")

    monkeypatch.setattr(synth, "synthesize", fake)
    for order in (["LFE5U-25F", "LFE5UM5G-85F"], ["LFE5UM5G-85F", "LFE5U-25F"]):
        seen.clear()
        argv = ["--out", str(tmp_path)] + [a for d in order for a in ("--device", d)]
        assert synth.main(argv) == 1
        assert seen == {"LFE5U-25F": SMALL_BOOK, "LFE5UM5G-85F": BookParams()}


@pytest.mark.parametrize("n", [1, 3, 8, 32, 128])
def test_lowest_set_is_the_lowest_set_bit(n):
    """``hw.book.lowest_set`` (the log-depth priority encoder of the slot lookup and the best level)."""
    from amaranth import Signal
    from hw.book import lowest_set

    bits = Signal(n)
    found, index = lowest_set(bits)
    m = Module()
    got_found, got_index = Signal(), Signal(max(1, (n - 1).bit_length()))
    m.d.comb += [got_found.eq(found), got_index.eq(index)]
    sim = Simulator(m)

    async def bench(ctx):
        rng = random.Random(n)
        for v in [0, 1, (1 << n) - 1, 1 << (n - 1)] + [rng.getrandbits(n) for _ in range(100)]:
            ctx.set(bits, v)
            assert ctx.get(got_found) == (v != 0), v
            if v:
                assert ctx.get(got_index) == (v & -v).bit_length() - 1, v

    sim.add_testbench(bench)
    sim.run()
