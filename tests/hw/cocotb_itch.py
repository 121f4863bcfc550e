"""cocotb tests of the ITCH decoder inside the core (``hw/top.py``) on Verilator.

Run from pytest by ``tests/hw/test_itch_verilator.py``.
"""

from __future__ import annotations

import os
import random

import cocotb

from host.softnic import SoftwareNic
from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols import itch
from protocols import moldudp64 as mold
from protocols.events import ItchEvent, decode_event
from protocols.registers import REGISTER_MAP
from sim import moldfeed
from sim.cocotb_streams import start_core
from sim.itchfeed import generate_itch

MESSAGES = int(os.environ.get("CALARB_ITCH_MESSAGES", "100000"))
SEED = int(os.environ.get("CALARB_SEED", "2026"))
INSTRUMENTS = 24
TRACKED = list(range(1, 21))          # locates 21..24 are untracked


def settings() -> list[tuple[str, int]]:
    return ([("events.control", 2), ("itch.control", 1)] +
            [("itch.track", (1 << 16) | locate) for locate in TRACKED])


def frames_for(messages: list[bytes]) -> list[bytes]:
    packets = mold.packetise(messages, session=moldfeed.SESSION, max_payload=1400)
    return [moldfeed._frame(mold.encode_packet(p)) for p in packets]


def reference(frames):
    nic = SoftwareNic()
    for name, value in settings():
        nic.write(name, value)
    nic.deliver(frames)
    records = [(e.seq, e.record) for e in nic.poll() if isinstance(e, ItchEvent)]
    return records, nic.counters("itch")


async def run_core(dut, frames, *, gap, stall, seed):
    bench, bus = await start_core(dut, REGISTER_MAP, settings())
    bench.source("rx", Beat, [b for f in frames for b in packet_to_beats(f)], seed=seed, gap=gap)
    events = bench.sink("events", Beat, seed=seed + 1, stall=stall)
    quiet = [0]

    def idle():
        quiet[0] = quiet[0] + 1 if not events.cycles or events.cycles[-1] < bench.cycle - 1 else 0
        return quiet[0] > 64

    await bench.run(until=idle)
    records = []
    for data, last in beats_to_packets(events.items):
        event = decode_event(data, bool(last["abort"]))
        if isinstance(event, ItchEvent):
            records.append((event.seq, event.record))
    regs = {name: await bus.read(name) for name in (m.name for m in REGISTER_MAP.counters() if m.block == "itch")}
    return records, regs


@cocotb.test()
async def decodes_a_generated_feed(dut):
    """Generated ITCH messages (10,000 in make test) over 24 instruments, 20 tracked, random gaps and backpressure."""
    messages = generate_itch(MESSAGES, INSTRUMENTS, SEED)
    frames = frames_for(messages)
    want, want_counters = reference(frames)
    # The reference's records agree with the codec's own decoding, field by field.
    by_seq = dict(enumerate(messages, start=1))
    for seq, record in want[::97]:
        decoded = itch.decode(by_seq[seq])
        for name in itch.DECODED_FIELDS:
            if hasattr(decoded, name):
                value = getattr(decoded, name)
                assert record[name] == (int.from_bytes(value, "big") if isinstance(value, bytes) else value)
    got, counters = await run_core(dut, frames, gap=0.2, stall=0.2, seed=SEED)
    assert len(got) == len(want) and len(want) > 0.5 * MESSAGES
    for i, (w, g) in enumerate(zip(want, got)):
        assert w == g, f"record {i}: expected {w}, got {g}"
    assert counters == want_counters
    assert counters["itch.untracked"] > 0
    dut._log.info("%d messages, %d records, counters %s", len(messages), len(got), counters)


@cocotb.test()
async def fuzzed_messages_never_hang(dut):
    """Random bytes, wrong lengths and unknown types mixed into a feed: counted, and the rest decodes."""
    rng = random.Random(SEED)
    good = generate_itch(5000, 8, SEED + 1)
    messages = []
    for m in good:
        messages.append(m)
        roll = rng.random()
        if roll < 0.1:
            messages.append(rng.randbytes(rng.randint(1, 60)))                      # random bytes
        elif roll < 0.15:
            messages.append(m[:rng.randint(1, len(m) - 1)])                           # too short
        elif roll < 0.2:
            messages.append(m + rng.randbytes(rng.randint(1, 9)))                     # too long
        elif roll < 0.25:
            messages.append(bytes([rng.choice(b"abcGMTZ0")]) + m[1:])                # unknown type
    frames = frames_for(messages)
    want, want_counters = reference(frames)
    got, counters = await run_core(dut, frames, gap=0.1, stall=0.3, seed=SEED + 5)
    assert got == want
    assert counters == want_counters
    assert counters["itch.unknown_type"] > 0 and counters["itch.bad_length"] > 0
