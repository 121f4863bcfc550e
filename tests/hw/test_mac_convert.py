"""Byte stream <-> 64-bit beat converters of the MAC (``hw/mac/convert.py``) in amaranth.sim."""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from hw.mac.convert import BeatsToBytes, BytesToBeats
from hw.stream import Beat, beats_to_packets, packet_to_beats, unpack
from sim.streams import SimBench, const_to_dict, stream_put

pytestmark = pytest.mark.sim


class Packer(wiring.Component):
    """BytesToBeats with its always-ready input exposed as plain signals (a Const ready cannot be a port)."""

    valid: In(1)
    data: In(8)
    last: In(1)
    abort: In(1)
    w_data: Out(Beat.size)
    w_en: Out(1)
    w_rdy: In(1)
    dropping: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = BytesToBeats()
        m.d.comb += [dut.i.valid.eq(self.valid), dut.i.payload.data.eq(self.data),
                     dut.i.payload.last.eq(self.last), dut.i.payload.abort.eq(self.abort),
                     self.w_data.eq(dut.w.w_data), self.w_en.eq(dut.w.w_en), dut.w.w_rdy.eq(self.w_rdy),
                     self.dropping.eq(dut.dropping)]
        return m


def run_packer(frames, ready_prob, seed, gap=0.3):
    """Feed (bytes, abort) frames at most one byte per cycle; the FIFO accepts with ``ready_prob``.

    Returns the beats written and, per frame, whether ``dropping`` was seen on its last byte.
    """
    dut = Packer()
    rng = random.Random(seed)
    written, dropped = [], []

    async def bench(ctx):
        for data, abort in frames:
            for k, byte in enumerate(data):
                while rng.random() < gap:
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.w_rdy, rng.random() < ready_prob)
                    if ctx.get(dut.w_en):
                        written.append(unpack(Beat, ctx.get(dut.w_data)))
                    await ctx.tick()
                last = k == len(data) - 1
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, byte)
                ctx.set(dut.last, last)
                ctx.set(dut.abort, abort and last)
                ctx.set(dut.w_rdy, rng.random() < ready_prob)
                if ctx.get(dut.w_en):
                    written.append(unpack(Beat, ctx.get(dut.w_data)))
                if last:
                    dropped.append(bool(ctx.get(dut.dropping)))
                await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(20):
            ctx.set(dut.w_rdy, 1)
            if ctx.get(dut.w_en):
                written.append(unpack(Beat, ctx.get(dut.w_data)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return written, dropped


frames_st = st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.booleans()), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(frames_st, st.integers(0, 2**16))
def test_bytes_to_beats_matches_packet_to_beats(frames, seed):
    """With room in the FIFO, the beats are exactly the packets split by ``packet_to_beats`` (abort on the last)."""
    written, dropped = run_packer(frames, 1.0, seed)
    want = []
    for data, abort in frames:
        beats = packet_to_beats(data)
        beats[-1]["abort"] = int(abort)
        want += beats
    assert written == want
    assert not any(dropped)


@settings(max_examples=25, deadline=None)
@given(frames_st, st.integers(0, 2**16), st.floats(0.0, 0.9))
def test_bytes_to_beats_overflow_drops_or_aborts(frames, seed, ready):
    """A full FIFO drops frames: what is written is well framed; each frame is whole or dropped/aborted."""
    frames = [(bytes([i]) + data, abort) for i, (data, abort) in enumerate(frames)]   # tell them apart
    written, dropped = run_packer(frames, ready, seed)
    packets = beats_to_packets(written)        # raises on broken framing
    it = iter(zip(frames, dropped))
    for data, last in packets:
        for (sent, abort), was_dropped in it:  # frames dropped whole leave no packet
            if not was_dropped:
                assert data == sent and bool(last["abort"]) == abort
                break
            if last["abort"] and sent.startswith(data):
                break
        else:
            raise AssertionError(f"packet {data.hex()} matches no frame in order")


def run_unpacker(packets, seed, stall=0.3):
    dut = BeatsToBytes()
    rng = random.Random(seed)
    out = []
    total = sum(max(1, len(p)) for p, _ in packets)

    async def source(ctx):
        for data, abort in packets:
            beats = packet_to_beats(data)
            beats[-1]["abort"] = int(abort)
            for beat in beats:
                await stream_put(ctx, dut.i, beat)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        while len(out) < len([1 for _ in packets]) and sum(len(o[0]) for o in out) <= total:
            ctx.set(dut.o.ready, rng.random() >= stall)
            *_, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                item = const_to_dict(payload)
                cur.append(item)
                if item["last"]:
                    out.append((bytes(i["data"] for i in cur if not i["abort"]), cur[-1]["abort"]))
                    cur.clear()

    cur = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.booleans()), min_size=1, max_size=10),
       st.integers(0, 2**16))
def test_beats_to_bytes(packets, seed):
    """Every byte of a good packet comes out in order with ``last`` on the final one; an aborted packet ends in
    one abort item (its last beat's bytes dropped)."""
    got = run_unpacker(packets, seed)
    want = []
    for data, abort in packets:
        if abort:
            cut = (len(data) - 1) // 8 * 8        # the bytes of the beats before the aborted last beat
            want.append((data[:cut], 1))
        else:
            want.append((data, 0))
    assert got == want
