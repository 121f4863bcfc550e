"""cocotb module that replays a pcap through the gateware core and writes what came out as JSON.

Used by :func:`sim.replay.replay_gateware` (``calarb demo``): the frames of
``CALARB_PCAP`` go into ``rx`` back to back, and the messages, gap events,
every counter and the per-frame latency in cycles go to ``CALARB_OUT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb

from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols.events import GapEvent, MessageEvent, decode_event
from protocols.pcap import read_pcap
from protocols.registers import REGISTER_MAP
from sim.cocotb_streams import start_core


@cocotb.test()
async def replay(dut):
    """Push every frame of the pcap, wait until the pipeline is idle, dump outputs and registers."""
    frames = [rec.data for rec in read_pcap(os.environ["CALARB_PCAP"])]
    settings = json.loads(os.environ.get("CALARB_REGS", "{}"))
    bench, bus = await start_core(dut, REGISTER_MAP, settings.items())
    frame_beats = [packet_to_beats(f) for f in frames]
    src = bench.source("rx", Beat, [b for fb in frame_beats for b in fb])
    events = bench.sink("events", Beat)

    def idle() -> bool:
        # Done once the input is drained and nothing has come out for 64 cycles.
        last = events.cycles[-1] if events.cycles else 0
        return bench.cycle - max(last, src.cycles[-1] if src.cycles else 0) > 64

    start = bench.cycle
    await bench.run(until=idle)
    regs = await bus.read_all()
    ends, k = [], 0
    for fb in frame_beats:
        k += len(fb)
        ends.append(src.cycles[k - 1])
    messages, gaps = [], []
    last_cycles = [c for c, b in zip(events.cycles, events.items) if b["last"]]
    for (data, last), cycle in zip(beats_to_packets(events.items), last_cycles):
        event = decode_event(data, bool(last["abort"]))
        if isinstance(event, MessageEvent):
            messages.append({"seq": event.seq, "hex": event.data.hex(), "aborted": event.aborted, "cycle": cycle})
        elif isinstance(event, GapEvent):
            gaps.append({"expected": event.expected, "seq": event.seq, "cycle": cycle})
    Path(os.environ["CALARB_OUT"]).write_text(json.dumps({
        "frames": len(frames), "frame_end_cycles": ends, "cycles": bench.cycle - start,
        "messages": messages, "gaps": gaps,
        "registers": regs,
    }))
