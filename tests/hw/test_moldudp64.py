"""Corner cases of the MoldUDP64 stage (hw/moldudp64.py) against the model (host.rxpath.MoldRx).

Every case is a list of steps (UDP payloads, and register writes between them)
run through the gateware (the stage plus a register bank holding the ``mold``
block) and through the model. They must agree on the delivered messages, the
gap events, every ``mold`` counter and the status registers; each case also
asserts the values worked out by hand from how its packets were built.
"""

import functools
import random
from dataclasses import dataclass, field

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from host.rxpath import Gap, Message, MoldRx
from hw.csr import BusSignature, CsrBank
from hw.moldudp64 import GapEvent, MessageBeat, MoldUdp64
from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols import moldudp64 as mold
from protocols.registers import MOLD, RegisterMap
from sim.streams import SimBench as Bench
from sim.streams import bus_read as sim_bus_read
from sim.streams import bus_write as sim_bus_write

MOLD_MAP = RegisterMap((MOLD,))
COUNTERS = tuple(r.name for r in MOLD.counters)
LEARN, HOLD = 0b01, 0b10

S = b"CALARB0001"
T = b"OTHERSESS1"


class MoldHarness(wiring.Component):
    """The stage with its ``mold`` register bank: payloads in, messages and gaps out, registers on the bus."""

    i: In(stream.Signature(Beat))
    o: Out(stream.Signature(MessageBeat))
    gap: Out(stream.Signature(GapEvent))
    bus: In(BusSignature())

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = CsrBank(MOLD_MAP)
        m.submodules.mold = dut = MoldUdp64()
        connect(m, wiring.flipped(self.bus), csr.bus)
        connect(m, csr.mold, dut.csr)
        connect(m, wiring.flipped(self.i), dut.i)
        connect(m, dut.o, wiring.flipped(self.o))
        connect(m, dut.gap, wiring.flipped(self.gap))
        return m


# --------------------------------------------------------------------------- #
# Steps, the model and the gateware
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class Write:
    """A host write to ``mold.<name>`` between packets."""

    name: str
    value: int


def session_writes(session: bytes) -> list[Write]:
    value = int.from_bytes(session, "big")
    return [Write("session_hi", value >> 64), Write("session_lo", value & ((1 << 64) - 1))]


@dataclass(frozen=True)
class Flow:
    """Handshake pressure: idle input cycles, stalled message and gap sinks."""

    gap: float = 0.0
    stall: float = 0.0
    gap_stall: float = 0.0
    seed: int = 0


IDEAL = Flow()
RANDOM = Flow(0.3, 0.4, 0.5, seed=3)
FLOWS = [pytest.param(IDEAL, id="ideal"), pytest.param(RANDOM, id="random")]


@dataclass
class Result:
    messages: list[Message]          # aborted ones with data b"" (their bytes are unspecified)
    gaps: list[Gap]
    counters: dict[str, int]
    regs: dict[str, int]
    in_stalls: int = 0               # cycles a beat was offered and ready was low
    in_cycles: list[int] = field(default_factory=list)    # cycle of each accepted input beat
    msg_cycles: list[int] = field(default_factory=list)   # cycle of each message's last beat


def normalise(m: Message) -> Message:
    return Message(m.seq, b"", True) if m.aborted else m


def ref_mold(steps, control: int = LEARN) -> Result:
    """The model on ``steps``; ``regs`` holds the status registers it implies."""
    model = MoldRx(learn=bool(control & LEARN), hold=bool(control & HOLD), session=bytes(10))
    written = {"session_hi": 0, "session_lo": 0}
    out = []
    for step in steps:
        if isinstance(step, Write):
            if step.name == "next_seq":
                model.resync(step.value)
            elif step.name == "control":
                model.learn, model.hold = bool(step.value & LEARN), bool(step.value & HOLD)
            else:
                written[step.name] = step.value
            value = (written["session_hi"] << 64) | written["session_lo"]
            model.written_session = value.to_bytes(10, "big")
        else:
            out += model.receive(step)
    session = int.from_bytes(model.session_in_force, "big")
    regs = {
        "expected": model.expected,
        "status": int(model.learned) | int(model.eos_seen) << 1,
        "session_seen_hi": session >> 64,
        "session_seen_lo": session & ((1 << 64) - 1),
    }
    return Result([normalise(o) for o in out if isinstance(o, Message)],
                  [o for o in out if isinstance(o, Gap)],
                  {name: model.counters[name] for name in COUNTERS}, regs)


@functools.cache
def mold_bench() -> Bench:
    return Bench(MoldHarness())


def rtl_mold(steps, control: int = LEARN, flow: Flow = IDEAL, idle_cycles: int = 24) -> Result:
    """The gateware on ``steps``: one testbench drives, sinks and programs, cycle by cycle."""
    bench = mold_bench()
    dut = bench.dut
    rng = random.Random(flow.seed)
    res = Result([], [], {}, {})
    msg_beats = []
    cycle = 0

    async def bus_write(ctx, name, value):
        await sim_bus_write(ctx, dut.bus, MOLD_MAP[f"mold.{name}"].address, value)

    async def bus_read(ctx, name):
        return await sim_bus_read(ctx, dut.bus, MOLD_MAP[f"mold.{name}"].address)

    def draw(p):
        return bool(p) and rng.random() < p

    async def run_beats(ctx, beats):
        """Offer ``beats``, take outputs, until the beats are in and the outputs idle."""
        nonlocal cycle
        k, offering, idle = 0, False, 0
        while k < len(beats) or idle < idle_cycles:
            if not offering and k < len(beats):
                offering = not draw(flow.gap)
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, beats[k])
            o_ready, g_ready = not draw(flow.stall), not draw(flow.gap_stall)
            ctx.set(dut.o.ready, o_ready)
            ctx.set(dut.gap.ready, g_ready)
            _, _, i_ready, o_valid, o_payload, g_valid, g_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload, dut.gap.valid, dut.gap.payload)
            idle = 0 if o_valid or g_valid else idle + 1
            if offering:
                if i_ready:
                    k += 1
                    offering = False
                    res.in_cycles.append(cycle)
                    idle = 0
                else:
                    res.in_stalls += 1
            if o_valid and o_ready:
                beat = {name: int(getattr(o_payload, name)) for name, _ in MessageBeat}
                msg_beats.append(beat)
                if beat["last"]:
                    res.msg_cycles.append(cycle)
            if g_valid and g_ready:
                res.gaps.append(Gap(int(g_payload.expected), int(g_payload.seq)))
            cycle += 1
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.gap.ready, 0)

    async def tb(ctx):
        if control != MOLD["control"].reset:
            await bus_write(ctx, "control", control)
        beats = []
        for step in steps:
            if isinstance(step, Write):
                await run_beats(ctx, beats)
                beats = []
                await bus_write(ctx, step.name, step.value)
            else:
                beats += packet_to_beats(step)
        await run_beats(ctx, beats)
        for name in COUNTERS:
            res.counters[name] = await bus_read(ctx, name)
        for name in ("expected", "status", "session_seen_hi", "session_seen_lo"):
            res.regs[name] = await bus_read(ctx, name)

    bench.run(tb)
    # Every beat of a message carries its sequence number.
    start = 0
    for k, beat in enumerate(msg_beats):
        assert beat["seq"] == msg_beats[start]["seq"], f"beat {k}: seq changes inside a message"
        if beat["last"]:
            start = k + 1
    for data, last in beats_to_packets(msg_beats):
        res.messages.append(normalise(Message(last["seq"], data, bool(last["abort"]))))
    return res


def check(steps, control: int = LEARN, flow: Flow = IDEAL, *, messages=None, gaps=(), counters=None,
          regs=None) -> Result:
    """Gateware == model on everything; both equal the hand-worked values that are given.

    ``messages`` are ``(seq, data)`` pairs (``data`` None for an aborted message);
    ``gaps`` ``(expected, seq)`` pairs (None: not checked by hand);
    ``counters`` lists the non-zero counters (every other counter must be 0);
    ``regs`` a subset of the status registers.
    """
    got, ref = rtl_mold(steps, control, flow), ref_mold(steps, control)
    assert got.messages == ref.messages
    assert got.gaps == ref.gaps
    assert got.counters == ref.counters
    learned_nothing = control & LEARN and not ref.regs["status"] & 1
    for name, value in ref.regs.items():
        if not (learned_nothing and name.startswith("session_seen")):
            assert got.regs[name] == value, name
    if messages is not None:
        assert [(m.seq, None if m.aborted else m.data) for m in ref.messages] == list(messages)
    if gaps is not None:
        assert ref.gaps == [Gap(e, s) for e, s in gaps]
    if counters is not None:
        assert ref.counters == {name: counters.get(name, 0) for name in COUNTERS}
    for name, value in (regs or {}).items():
        assert ref.regs[name] == value, name
    return got


# --------------------------------------------------------------------------- #
# Packet builders
# --------------------------------------------------------------------------- #

def msg(n: int, salt: int = 0) -> bytes:
    """``n`` recognisable message bytes."""
    return bytes((salt * 31 + k * 11 + 1) % 251 + 1 for k in range(n))


def pkt(seq: int, msgs, session: bytes = S) -> bytes:
    return mold.encode_packet(mold.MoldPacket(session, seq, tuple(msgs)))


def hb(seq: int, session: bytes = S) -> bytes:
    return mold.encode_packet(mold.heartbeat(session, seq))


def eos(seq: int, session: bytes = S) -> bytes:
    return mold.encode_packet(mold.end_of_session(session, seq))


def blocks(msgs) -> int:
    """Bytes of the message blocks (length prefixes included)."""
    return sum(2 + len(m) for m in msgs)


def delivered(seq: int, msgs):
    return [(seq + k, m) for k, m in enumerate(msgs)]


# --------------------------------------------------------------------------- #
# Message splitting
# --------------------------------------------------------------------------- #

LENGTHS = (0, 1, 7, 8, 9, 16, 17)


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_message_lengths(flow):
    """Lengths 0, 1, 7, 8, 9, 16, 17 in one packet, then each alone in its own packet."""
    together = [msg(n, salt=n) for n in LENGTHS]
    alone = [msg(n, salt=100 + n) for n in LENGTHS]
    steps = [pkt(1, together)] + [pkt(8 + k, [m]) for k, m in enumerate(alone)]
    check(steps, flow=flow, messages=delivered(1, together + alone),
          counters={"packets": 8, "messages": 14}, regs={"expected": 15, "status": 1})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_every_length_at_every_alignment(flow):
    """Lengths 0..40 in an order that puts each message start on many lanes."""
    rng = random.Random(5)
    lengths = list(range(41)) * 2
    rng.shuffle(lengths)
    msgs = [msg(n, salt=k) for k, n in enumerate(lengths)]
    steps = [pkt(1, msgs[:41]), pkt(42, msgs[41:])]
    check(steps, flow=flow, messages=delivered(1, msgs),
          counters={"packets": 2, "messages": 82}, regs={"expected": 83})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_many_tiny_messages_in_one_beat(flow):
    """40 one-byte messages (three per beat) and 40 empty ones (four per beat)."""
    ones = [bytes([k + 1]) for k in range(40)]
    empties = [b""] * 40
    steps = [pkt(1, ones), pkt(41, empties)]
    check(steps, flow=flow, messages=delivered(1, ones + empties),
          counters={"packets": 2, "messages": 80}, regs={"expected": 81})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_message_and_length_prefix_straddle_beats(flow):
    """Message 1 is bytes 22, its successor's prefix bytes 23-24 cross the beat 2/3 boundary."""
    msgs = [b"A", msg(30), msg(3), msg(13)]
    payload = pkt(1, msgs)
    assert payload[23:25] == (30).to_bytes(2, "big")     # lane 7 of beat 2, lane 0 of beat 3
    check([payload], flow=flow, messages=delivered(1, msgs), counters={"packets": 1, "messages": 4})


# --------------------------------------------------------------------------- #
# Heartbeats, end of session, short packets
# --------------------------------------------------------------------------- #

@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_heartbeat(flow):
    """A heartbeat at the expected number changes nothing; one beyond it opens a gap and skips."""
    steps = [pkt(1, [msg(3)] * 3), hb(4), hb(4), hb(6), pkt(6, [msg(2)])]
    check(steps, flow=flow, messages=delivered(1, [msg(3)] * 3) + [(6, msg(2))], gaps=[(4, 6)],
          counters={"packets": 5, "messages": 4, "heartbeats": 3, "gaps": 1, "gap_messages": 2},
          regs={"expected": 7, "status": 1})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_end_of_session(flow):
    """End of session sets status bit 1, opens no gap even when beyond, and keeps the expected number."""
    steps = [pkt(1, [msg(5)] * 2), eos(3), eos(10), pkt(3, [msg(4)])]
    check(steps, flow=flow, messages=delivered(1, [msg(5)] * 2) + [(3, msg(4))],
          counters={"packets": 4, "messages": 3, "end_of_session": 2},
          regs={"expected": 4, "status": 0b11})


@pytest.mark.sim
def test_mold_end_of_session_cleared_by_resync():
    steps = [pkt(1, [msg(5)]), eos(2), Write("next_seq", 7), pkt(7, [msg(1)], session=T)]
    check(steps, messages=[(1, msg(5)), (7, msg(1))],
          counters={"packets": 3, "messages": 2, "end_of_session": 1},
          regs={"expected": 8, "status": 0b01})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_short_packets_dropped(flow):
    good = pkt(1, [msg(9)])
    shorts = [b"", good[:1], good[:8], good[:9], good[:16], good[:19]]
    steps = shorts + [good]
    check(steps, flow=flow, messages=[(1, msg(9))],
          counters={"packets": 7, "messages": 1, "drop_short": 6,
                    "dropped_bytes": sum(len(s) for s in shorts)},
          regs={"expected": 2, "status": 1})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_short_packets_after_a_packet(flow):
    """Short packets right behind packets whose header was taken count only their own bytes."""
    first, nxt = pkt(1, [msg(4)]), pkt(2, [msg(4)])
    shorts = [nxt[:8], nxt[:12], nxt[:19]]
    steps = [first, shorts[0], hb(2), shorts[1], first, shorts[2], nxt]
    check(steps, flow=flow, messages=[(1, msg(4)), (2, msg(4))],
          counters={"packets": 7, "messages": 2, "heartbeats": 1, "dup_packets": 1, "dup_messages": 1,
                    "drop_short": 3, "dropped_bytes": 8 + 12 + 19 + len(first)},
          regs={"expected": 3, "status": 1})


@pytest.mark.sim
@pytest.mark.parametrize("short", [b"", b"CALAR"], ids=["0_bytes", "5_bytes"])
def test_mold_short_packet_under_8_bytes_after_a_packet(short):
    """A packet under 8 bytes right behind a good one: ``dropped_bytes`` grows by its length only."""
    steps = [pkt(1, [msg(4)]), short]
    check(steps, messages=[(1, msg(4))],
          counters={"packets": 2, "messages": 1, "drop_short": 1, "dropped_bytes": len(short)},
          regs={"expected": 2})


# --------------------------------------------------------------------------- #
# Sessions
# --------------------------------------------------------------------------- #

@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_learns_session_from_first_packet(flow):
    first, other = pkt(100, [msg(4), msg(6)], session=T), pkt(102, [msg(7)])
    steps = [first, other, pkt(102, [msg(8)], session=T)]
    t = int.from_bytes(T, "big")
    check(steps, flow=flow, messages=[(100, msg(4)), (101, msg(6)), (102, msg(8))],
          counters={"packets": 3, "messages": 3, "drop_session": 1, "dropped_bytes": len(other)},
          regs={"expected": 103, "status": 1, "session_seen_hi": t >> 64,
                "session_seen_lo": t & ((1 << 64) - 1)})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_written_session_and_mismatch(flow):
    """Learning off (control bit 0 cleared): only the written session passes, from next_seq's reset value 1."""
    wrong = [pkt(1, [msg(4)], session=T), pkt(1, [msg(4)], session=S[:9] + b"2"),
             pkt(1, [msg(4)], session=b"D" + S[1:])]
    steps = session_writes(S) + wrong + [pkt(1, [msg(4), msg(5)]), pkt(3, [msg(1)])]
    s = int.from_bytes(S, "big")
    check(steps, control=0, flow=flow, messages=[(1, msg(4)), (2, msg(5)), (3, msg(1))],
          counters={"packets": 5, "messages": 3, "drop_session": 3,
                    "dropped_bytes": sum(len(w) for w in wrong)},
          regs={"expected": 4, "status": 0, "session_seen_hi": s >> 64,
                "session_seen_lo": s & ((1 << 64) - 1)})


@pytest.mark.sim
def test_mold_written_session_gap_from_reset_expected():
    """Learning off: the first packet is compared with next_seq's reset value 1, so seq 5 is a gap."""
    steps = session_writes(S) + [pkt(5, [msg(2)])]
    check(steps, control=0, messages=[(5, msg(2))], gaps=[(1, 5)],
          counters={"packets": 1, "messages": 1, "gaps": 1, "gap_messages": 4}, regs={"expected": 6})


# --------------------------------------------------------------------------- #
# Gaps, duplicates, retransmission
# --------------------------------------------------------------------------- #

M4 = [msg(6, salt=k) for k in range(4)]
M3 = [msg(10, salt=10 + k) for k in range(3)]
M2 = [msg(3, salt=20 + k) for k in range(2)]


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_gap_skip_policy(flow):
    """Skip: seq 9 after 1..4 raises gap (5, 9) and is delivered; the late 5..8 are duplicates."""
    late = pkt(5, M4)
    steps = [pkt(1, M4), pkt(9, M3), late, pkt(12, M2)]
    check(steps, flow=flow, messages=delivered(1, M4) + delivered(9, M3) + delivered(12, M2),
          gaps=[(5, 9)],
          counters={"packets": 4, "messages": 9, "gaps": 1, "gap_messages": 4, "dup_packets": 1,
                    "dup_messages": 4, "dropped_bytes": len(late)},
          regs={"expected": 14})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_gap_hold_policy_filled_by_retransmission(flow):
    """Hold: packets beyond the gap are dropped (and report it again) until 5..8 are re-sent."""
    held = [pkt(9, M3), pkt(12, M2)]
    steps = [pkt(1, M4), *held, hb(14), pkt(5, M4), *held, hb(14)]
    check(steps, control=LEARN | HOLD, flow=flow,
          messages=delivered(1, M4) + delivered(5, M4) + delivered(9, M3) + delivered(12, M2),
          gaps=[(5, 9), (5, 12), (5, 14)],
          counters={"packets": 8, "messages": 13, "heartbeats": 2, "gaps": 3, "gap_messages": 4 + 7 + 9,
                    "held_packets": 2, "dropped_bytes": sum(len(h) for h in held)},
          regs={"expected": 14})


@pytest.mark.sim
def test_mold_hold_policy_set_by_register_write():
    """Control bit 1 written mid-stream switches from skip to hold."""
    steps = [pkt(1, M4), Write("control", LEARN | HOLD), pkt(9, M3), pkt(5, M4), pkt(9, M3)]
    check(steps, messages=delivered(1, M4) + delivered(5, M4) + delivered(9, M3), gaps=[(5, 9)],
          counters={"packets": 4, "messages": 11, "gaps": 1, "gap_messages": 4, "held_packets": 1,
                    "dropped_bytes": len(pkt(9, M3))},
          regs={"expected": 12})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_partial_duplicate(flow):
    """Seq 3..6 after 1..4: 3 and 4 are dropped as duplicates, 5 and 6 delivered."""
    msgs = [msg(5 + k, salt=k) for k in range(6)]
    steps = [pkt(1, msgs[:4]), pkt(3, msgs[2:6]), pkt(1, msgs[:6]), pkt(7, [msg(1)])]
    check(steps, flow=flow, messages=delivered(1, msgs) + [(7, msg(1))],
          counters={"packets": 4, "messages": 7, "dup_packets": 1, "dup_messages": 2 + 6,
                    "dropped_bytes": blocks(msgs[2:4]) + len(pkt(1, msgs[:6]))},
          regs={"expected": 8})


# --------------------------------------------------------------------------- #
# Damaged packets
# --------------------------------------------------------------------------- #

@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_truncated_inside_message_leaves_aborted(flow):
    """Cut 10 bytes into message 2 of 3: message 2 leaves aborted, 2 and 3 are lost, 2 is expected next."""
    msgs = [msg(5), msg(20), msg(4)]
    full = pkt(1, msgs)
    cut = full[:20 + 7 + 2 + 10]
    steps = [cut, pkt(4, [msg(2)])]
    check(steps, flow=flow, messages=[(1, msg(5)), (2, None), (4, msg(2))], gaps=[(2, 4)],
          counters={"packets": 2, "messages": 2, "truncated": 1, "lost_messages": 2,
                    "dropped_bytes": 2 + 10, "gaps": 1, "gap_messages": 2},
          regs={"expected": 5})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("keep", [0, 1, 2, 3, 8, 9], ids=lambda k: f"keep{k}")
def test_mold_truncated_at_message_start(flow, keep):
    """Cut ``keep`` bytes into message 2's block: no message, or (from 2 bytes on) an aborted one."""
    msgs = [msg(6), msg(12)]
    cut = pkt(1, msgs)[:20 + 8 + keep]
    aborted = [(2, None)] if keep >= 2 else []
    check([cut], flow=flow, messages=[(1, msg(6))] + aborted,
          counters={"packets": 1, "messages": 1, "truncated": 1, "lost_messages": 1, "dropped_bytes": keep},
          regs={"expected": 2})


@pytest.mark.sim
def test_mold_truncated_header_only_and_while_skipping():
    """A header announcing 3 messages and nothing else; then a partial duplicate cut inside a skipped message."""
    msgs = [msg(9, salt=k) for k in range(4)]
    header_only = pkt(1, msgs[:3])[:20]
    dup_cut = pkt(1, msgs)[:20 + 11 + 5]            # ends inside message 2, which is a duplicate
    steps = [pkt(1, msgs[:2]), header_only, dup_cut, pkt(3, msgs[2:])]
    # Header only (seq 1, count 3, 3 expected): 1-2 are duplicates, 1-3 lost, nothing dropped, 3 expected.
    # Cut duplicate (seq 1, count 4): 1-2 duplicates; 1 skipped whole (11 bytes), the packet ends 5 bytes
    # into 2, so 2-4 are lost and 3 stays expected.
    check(steps, messages=delivered(1, msgs),
          counters={"packets": 4, "messages": 4, "dup_messages": 2 + 2, "truncated": 2,
                    "lost_messages": 3 + 3, "dropped_bytes": 11 + 5},
          regs={"expected": 5})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_mold_trailing_bytes(flow):
    """Bytes after the last message, after a heartbeat and after end of session are dropped and counted."""
    steps = [pkt(1, [msg(4)]) + b"xyz", hb(2) + msg(11), pkt(2, [msg(8)]) + b"\0", eos(3) + b"!"]
    check(steps, flow=flow, messages=[(1, msg(4)), (2, msg(8))],
          counters={"packets": 4, "messages": 2, "heartbeats": 1, "end_of_session": 1, "trailing": 4,
                    "dropped_bytes": 3 + 11 + 1 + 1},
          regs={"expected": 3, "status": 0b11})


# --------------------------------------------------------------------------- #
# Re-synchronisation
# --------------------------------------------------------------------------- #

@pytest.mark.sim
def test_mold_resync_by_writing_next_seq():
    """Learning off: a write to next_seq moves the expected number; packets are judged against it."""
    steps = session_writes(S) + [
        pkt(1, M2), Write("next_seq", 100), pkt(100, M3), Write("next_seq", 50), pkt(60, M2), pkt(3, M2),
    ]
    check(steps, control=0, messages=delivered(1, M2) + delivered(100, M3) + delivered(60, M2),
          gaps=[(50, 60)],
          counters={"packets": 4, "messages": 7, "gaps": 1, "gap_messages": 10, "dup_packets": 1,
                    "dup_messages": 2, "dropped_bytes": len(pkt(3, M2))},
          regs={"expected": 62, "status": 0})


@pytest.mark.sim
def test_mold_resync_rearms_learning():
    """Learning on: a write to next_seq re-arms it, so the next packet's session and number are taken."""
    t = int.from_bytes(T, "big")
    steps = [pkt(1, M2), Write("next_seq", 1), pkt(500, M3, session=T), pkt(3, M2)]
    check(steps, messages=delivered(1, M2) + delivered(500, M3),
          counters={"packets": 3, "messages": 5, "drop_session": 1, "dropped_bytes": len(pkt(3, M2))},
          regs={"expected": 503, "status": 1, "session_seen_hi": t >> 64, "session_seen_lo": t & ((1 << 64) - 1)})


# --------------------------------------------------------------------------- #
# Random mix and throughput
# --------------------------------------------------------------------------- #

@pytest.mark.sim
@pytest.mark.parametrize("control, flow", [
    pytest.param(LEARN, IDEAL, id="skip-ideal"),
    pytest.param(LEARN, Flow(0.3, 0.4, 0.5, seed=1), id="skip-random"),
    pytest.param(LEARN | HOLD, Flow(0.3, 0.4, 0.5, seed=3), id="hold-random"),
])
def test_mold_random_mix(control, flow):
    """A seeded mix of good, repeated, reordered, cut and padded packets, back to back or under random handshakes."""
    rng = random.Random(control)
    msgs = [rng.randbytes(rng.choice([0, 1, 6, 8, 9, rng.randint(0, 60)])) for _ in range(120)]
    packets = [mold.encode_packet(p) for p in mold.packetise(msgs, session=S, max_payload=200)]
    steps = [packets[0]]
    for _ in range(70):
        p = rng.choice(packets[:len(steps) // 2 + 2])
        roll = rng.random()
        if roll < 0.15:
            p = p[:rng.randint(0, len(p) - 1)]
        elif roll < 0.25:
            p = p + rng.randbytes(rng.randint(1, 9))
        elif roll < 0.3:
            p = hb(rng.randint(1, 130))
        steps.append(p)
    got = check(steps, control=control, flow=flow, gaps=None)
    assert got.counters["messages"] > 30


@pytest.mark.sim
def test_mold_back_to_back_heartbeats_no_bubbles():
    """Heartbeats (3 beats each) with valid and ready held high: ready never drops."""
    steps = [hb(1)] * 50
    got = check(steps, counters={"packets": 50, "heartbeats": 50}, regs={"expected": 1})
    print(f"\nheartbeats: {got.in_stalls} stall cycles over {len(got.in_cycles)} beats")
    assert got.in_stalls == 0


def input_stalls(length: int) -> int:
    """Input stall cycles while one ~400-byte packet of ``length``-byte messages streams in back to back."""
    msgs = [msg(length, salt=k) for k in range((400 - 20) // (length + 2))]
    return check([pkt(1, msgs)], messages=delivered(1, msgs),
                 counters={"packets": 1, "messages": len(msgs)}).in_stalls


@pytest.mark.sim
@pytest.mark.parametrize("length", [6, 7, 8, 14, 38])
def test_mold_keeps_pace_with_input(length):
    """Message lengths 6, 7 or 0 mod 8 take no more cycles (ceil(L / 8)) than their L + 2 bytes take to arrive."""
    assert input_stalls(length) == 0


@pytest.mark.sim
@pytest.mark.parametrize("length", [9, 20, 36])
def test_mold_backpressures_by_the_output_format(length):
    """Other lengths stall the input by exactly what ceil(L / 8) cycles per message cost over (L + 2) / 8 beats."""
    count = (400 - 20) // (length + 2)
    cycles_needed = 3 + count * -(-length // 8)            # header steps + one output beat per 8 message bytes
    beats_in = -(-(20 + count * (length + 2)) // 8)
    stalls = input_stalls(length)
    assert 0 < stalls <= cycles_needed - beats_in + 2


@functools.cache
def run_36_byte_messages() -> tuple[Result, float, float]:
    """Six full packets of 38 ITCH add-order sized messages (36 bytes, 38 with the prefix), back to back.

    Returns the run, cycles per message end to end (first input beat to last
    message beat) and cycles per message inside a packet (packet 2's first to last message).
    """
    rng = random.Random(36)
    msgs = [rng.randbytes(36) for _ in range(38 * 6)]
    split = mold.packetise(msgs, session=S, max_payload=1472)
    assert [len(p.messages) for p in split] == [38] * 6
    packets = [mold.encode_packet(p) for p in split]
    got = check(packets, messages=delivered(1, msgs), counters={"packets": 6, "messages": len(msgs)})
    total = got.msg_cycles[-1] - got.in_cycles[0] + 1
    inner = (got.msg_cycles[2 * 38 - 1] - got.msg_cycles[38]) / 37
    print(f"\n36-byte messages: {total / len(msgs):.3f} cycles/message end to end "
          f"({total} cycles, {len(msgs)} messages, {len(got.in_cycles)} input beats, "
          f"{got.in_stalls} input stall cycles); {inner:.3f} cycles/message inside a packet")
    return got, total / len(msgs), inner


@pytest.mark.sim
def test_mold_throughput_36_byte_messages_inside_a_packet():
    """Inside a packet a 36-byte message takes ceil(36 / 8) = 5 cycles, as the module promises."""
    _, _, inner = run_36_byte_messages()
    assert inner <= 5


@pytest.mark.sim
def test_mold_throughput_36_byte_messages():
    """Back-to-back packets of 38 36-byte messages: 5 cycles per message plus the 3 header cycles per packet."""
    _, per_msg, _ = run_36_byte_messages()
    assert per_msg <= 5 + 3 / 38 + 0.01
