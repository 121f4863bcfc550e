"""The ITCH decoder stage in amaranth.sim: every message type, errors and the tracked filter."""

import random

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.csr import BusSignature, CsrBank
from hw.itch import ItchDecoder, ItchRecord
from hw.moldudp64 import MessageBeat
from hw.stream import packet_to_beats
from protocols import itch
from protocols.registers import ITCH, RegisterMap
from sim.streams import bus_read, bus_write, const_to_dict

MAP = RegisterMap((ITCH,))


class Dut(wiring.Component):
    """The decoder with a register bank of its own block."""

    i: In(stream.Signature(MessageBeat))
    o: Out(stream.Signature(ItchRecord))
    bus: In(BusSignature())

    def __init__(self):
        self.dec = ItchDecoder()
        self.bank = CsrBank(MAP)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dec, m.submodules.bank = self.dec, self.bank
        wiring.connect(m, self.bank.itch, self.dec.csr)
        wiring.connect(m, wiring.flipped(self.i), self.dec.i)
        wiring.connect(m, self.dec.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        return m


def random_message(rng: random.Random, code: str) -> bytes:
    mt = itch.MESSAGES[code]
    values = {}
    for f in mt.fields:
        if f.kind == "alpha":
            values[f.name] = bytes(rng.randrange(32, 127) for _ in range(f.width))
        else:
            values[f.name] = rng.randrange(1 << (8 * f.width))
    return itch.encode(itch.CLASSES[code](**values))


def run(messages, writes=(), seed=1, stall=0.3):
    """Push (seq, bytes, abort) messages through; returns the records out and the counters."""
    dut = Dut()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out, regs = [], {}
    rng = random.Random(seed)
    timing = {"waits": 0, "last_in": [], "out": []}
    cycle = [0]

    async def clock(ctx):
        while True:
            await ctx.tick()
            cycle[0] += 1

    async def bus(ctx, name, value=None):
        if value is None:
            return await bus_read(ctx, dut.bus, MAP[name].address)
        await bus_write(ctx, dut.bus, MAP[name].address, value)

    async def source(ctx):
        for name, value in writes:
            await bus(ctx, name, value)
        for seq, data, abort in messages:
            beats = packet_to_beats(data, seq=seq)
            beats[-1]["abort"] = int(abort)
            for b in beats:
                while rng.random() < stall:
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, b)
                while True:
                    *_, ready = await ctx.tick().sample(dut.i.ready)
                    if ready:
                        break
                    timing["waits"] += 1
                if b["last"]:
                    timing["last_in"].append(cycle[0])
                ctx.set(dut.i.valid, 0)
        for _ in range(20):
            await ctx.tick()
        for m in MAP:
            regs[m.register.name] = await bus(ctx, m.name)

    async def sink(ctx):
        idle = 0
        while idle < 400:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, int(ready))
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                out.append(const_to_dict(payload))
                timing["out"].append(cycle[0])
                idle = 0
            else:
                idle += 1

    sim.add_testbench(clock, background=True)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    run.timing = timing
    return out, regs


def expected(seq, data):
    return dict(itch.decoded_record(data), seq=seq)


@pytest.mark.sim
def test_every_type_decodes_like_the_table_says():
    rng = random.Random(4)
    msgs = [(k + 1, random_message(rng, code), False) for k, code in enumerate(list(itch.MESSAGES) * 3)]
    out, regs = run(msgs)
    assert out == [expected(seq, data) for seq, data, _ in msgs]
    assert regs["decoded"] == len(msgs)


@pytest.mark.sim
def test_bad_messages_are_counted_and_skipped():
    rng = random.Random(5)
    good = [random_message(rng, c) for c in "AEXDUPF"]
    bad = [
        (b"Z" + bytes(20), "unknown_type"),
        (good[0][:-1], "bad_length"),
        (good[1] + b"\x00", "bad_length"),
        (good[2], "aborted"),
    ]
    msgs, want, counts = [], [], {"unknown_type": 0, "bad_length": 0, "aborted": 0}
    seq = 1
    for g, (b, reason) in zip(good, bad):
        msgs.append((seq, g, False)); want.append(expected(seq, g)); seq += 1
        msgs.append((seq, b, reason == "aborted")); counts[reason] += 1; seq += 1
    msgs.append((seq, good[-1], False)); want.append(expected(seq, good[-1]))
    out, regs = run(msgs)
    assert out == want
    for reason, n in counts.items():
        assert regs[reason] == n, reason
    assert regs["decoded"] == len(want)


@pytest.mark.sim
def test_tracked_filter_drops_untracked_locates_but_not_system_messages():
    rng = random.Random(6)
    msgs, want = [], []
    tracked = {3, 700, 65535}
    for seq in range(1, 200):
        code = rng.choice("AEXDSRHP")
        m = bytearray(random_message(rng, code))
        locate = rng.choice([3, 4, 700, 701, 65535, 0])
        m[1:3] = locate.to_bytes(2, "big")
        msgs.append((seq, bytes(m), False))
        if locate in tracked or code in "SRH":
            want.append(expected(seq, bytes(m)))
    writes = [("itch.track", (1 << 16) | t) for t in sorted(tracked)] + [("itch.track", (1 << 16) | 9),
                                                                       ("itch.track", 9), ("itch.control", 1)]
    out, regs = run(msgs, writes)
    assert out == want
    assert regs["untracked"] == len(msgs) - len(want)


@pytest.mark.sim
def test_one_message_per_cycle_for_back_to_back_two_beat_messages():
    """D (19 bytes, 3 beats) and S (12 bytes, 2 beats) back to back with no stalls: no input bubbles."""
    rng = random.Random(7)
    msgs = [(k, random_message(rng, "SD"[k % 2]), False) for k in range(100)]
    out, regs = run(msgs, stall=0.0)
    assert out == [expected(seq, data) for seq, data, _ in msgs]
    timing = run.timing
    assert timing["waits"] == 0
    latency = {o - i for i, o in zip(timing["last_in"], timing["out"])}
    print(f"\nITCH decoder latency, last beat in -> record out: {sorted(latency)} cycles")
    assert latency == {1}
