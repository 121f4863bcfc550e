"""cocotb tests of the receive pipeline (Ethernet/UDP -> MoldUDP64) in ``hw/top.py`` on Verilator.

Run from pytest by ``tests/hw/test_rx_verilator.py``. The feed size, seed and
report path come from environment variables so the pytest side controls them.
"""

from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path

import cocotb

from host.rxpath import EthRx, EthRxConfig, Gap, Message, MoldRx
from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols.events import GapEvent, MessageEvent, decode_event
from protocols import moldudp64 as mold
from protocols.net import ip_to_int
from protocols.registers import REGISTER_MAP
from sim import moldfeed
from sim.cocotb_streams import start_core

FRAMES = int(os.environ.get("CALARB_FRAMES", "10000"))
SEED = int(os.environ.get("CALARB_SEED", "2026"))
REPORT = Path(os.environ.get("CALARB_REPORT", "build/latency/rx.json"))
FILTER = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)


def reference(frames):
    """The software receive path's messages, gaps and counters for ``frames``, plus messages per frame."""
    eth, mold = EthRx(FILTER), MoldRx()
    outputs, per_frame = [], []
    for frame in frames:
        payload = eth.receive(frame)
        out = mold.receive(payload) if payload is not None else []
        outputs += out
        per_frame.append(sum(isinstance(o, Message) for o in out))
    counters = {f"eth.{k}": v for k, v in eth.counters.items()}
    counters.update({f"mold.{k}": v for k, v in mold.counters.items()})
    return outputs, counters, per_frame


def as_records(outputs):
    msgs = [(o.seq, None if o.aborted else o.data, o.aborted) for o in outputs if isinstance(o, Message)]
    gaps = [(o.expected, o.seq) for o in outputs if isinstance(o, Gap)]
    return msgs, gaps


SETTINGS = (("eth.ip_dst", FILTER.ip_dst), ("eth.udp_port", FILTER.udp_port), ("eth.filter", FILTER.filter),
            ("events.control", 1))


def rtl_events(sink):
    """Decode the event packets a sink collected, with the cycle each one's last beat left."""
    ends = [c for c, b in zip(sink.cycles, sink.items) if b["last"]]
    return [(decode_event(data, bool(last["abort"])), end)
            for (data, last), end in zip(beats_to_packets(sink.items), ends)]


def rtl_records(sink):
    events = [e for e, _ in rtl_events(sink)]
    msgs = [(e.seq, None if e.aborted else e.data, e.aborted) for e in events if isinstance(e, MessageEvent)]
    gaps = [(e.expected, e.seq) for e in events if isinstance(e, GapEvent)]
    return msgs, gaps


@cocotb.test()
async def differential_with_faults(dut):
    """10,000+ generated frames with faults, random gaps and backpressure, against the software path."""
    feed = moldfeed.generate(FRAMES, seed=SEED, fault_rate=0.05)
    outputs, ref_counters, _ = reference(feed.frames)
    ref_msgs, ref_gaps = as_records(outputs)

    bench, bus = await start_core(dut, REGISTER_MAP, SETTINGS)
    beats = [b for f in feed.frames for b in packet_to_beats(f)]
    bench.source("rx", Beat, beats, seed=SEED, gap=0.2)
    events = bench.sink("events", Beat, seed=SEED + 1, stall=0.2)
    n_msgs = len(ref_msgs)
    await bench.run(until=lambda: events.packets >= n_msgs + len(ref_gaps), idle=50)
    got_msgs, got_gaps = rtl_records(events)
    assert len(got_msgs) == n_msgs, f"{len(got_msgs)} messages out, {n_msgs} expected"
    for i, (want, got) in enumerate(zip(ref_msgs, got_msgs)):
        assert want == got, f"message {i}: expected {want}, got {got}"
    assert got_gaps == ref_gaps

    regs = await bus.read_all()
    for name, value in sorted(feed.expected.items()):
        assert regs[name] == value, f"{name}: gateware {regs[name]}, injected faults imply {value}"
    for name, value in ref_counters.items():
        assert regs[name] == value, f"{name}: gateware {regs[name]}, software path {value}"
    for m in REGISTER_MAP.counters():
        if m.block in ("eth", "mold") and m.name not in ref_counters:
            assert regs[m.name] == 0, f"{m.name} = {regs[m.name]} but nothing should have counted there"
    dut._log.info("%d frames (%s faults), %d messages, %d gaps, %d cycles", len(feed.frames),
                  sum(feed.faults.values()), n_msgs, len(ref_gaps), bench.cycle)


@cocotb.test()
async def no_bubbles_on_minimum_frames(dut):
    """Back-to-back minimum-size frames (60-byte frames, heartbeats, one short message): rx never stalls."""
    rng = random.Random(SEED)
    frames, seq = [], 1
    for _ in range(3000):
        kind = rng.randrange(3)
        if kind == 0:      # a 60-byte frame whose 18-byte payload is too short for MoldUDP64
            frames.append(moldfeed._frame(rng.randbytes(18)))
        else:
            msgs = (rng.randbytes(rng.randint(1, 8)),) if kind == 2 else ()
            frames.append(moldfeed._frame(mold.encode_packet(mold.MoldPacket(moldfeed.SESSION, seq, msgs))))
            seq += len(msgs)
    outputs, counters, per_frame = reference(frames)
    bench, _ = await start_core(dut, REGISTER_MAP, SETTINGS)
    src = bench.source("rx", Beat, [b for f in frames for b in packet_to_beats(f)])
    events = bench.sink("events", Beat)
    await bench.run(until=lambda: events.packets >= sum(per_frame), idle=20)
    accepted = src.cycles
    bubbles = sum(1 for a, b in zip(accepted, accepted[1:]) if b != a + 1)
    assert bubbles == 0, f"rx input stalled {bubbles} times on back-to-back minimum-size frames"
    assert counters["mold.drop_short"] > 0 and counters["mold.messages"] > 0
    got, _ = rtl_records(events)
    assert got == as_records(outputs)[0]


@cocotb.test()
async def latency(dut):
    """Back-to-back frames of ITCH-sized messages, no gaps or backpressure: latency per frame in cycles."""
    feed = moldfeed.generate(2000, seed=SEED + 7, max_messages=4, min_len=6, max_len=40)
    outputs, _, per_frame = reference(feed.frames)
    bench, _ = await start_core(dut, REGISTER_MAP, SETTINGS)
    frame_beats = [packet_to_beats(f) for f in feed.frames]
    src = bench.source("rx", Beat, [b for fb in frame_beats for b in fb])
    events = bench.sink("events", Beat)
    n_msgs = sum(per_frame)
    await bench.run(until=lambda: events.packets >= n_msgs, idle=20)

    accepted = src.cycles
    bubbles = sum(1 for a, b in zip(accepted, accepted[1:]) if b != a + 1)
    # Cycle each frame's last beat went in, and each message's last beat came out.
    last_in, k = [], 0
    for fb in frame_beats:
        k += len(fb)
        last_in.append(accepted[k - 1])
    msg_out = [end for e, end in rtl_events(events) if isinstance(e, MessageEvent)]
    latencies, j = [], 0
    for frame, count in enumerate(per_frame):
        if count:
            j += count
            latencies.append(msg_out[j - 1] - last_in[frame])
    report = {
        "stage": "rx pipeline (EthRx + MoldUdp64 + event stream), hw/top.py",
        "measure": "cycles from the last beat of a frame in to the last beat of the MESSAGE event of its last message",
        "frames": len(feed.frames), "messages": n_msgs,
        "input_cycles_stalled": bubbles, "input_beats": len(accepted),
        "latency_cycles": {"min": min(latencies), "median": statistics.median(latencies),
                           "p99": sorted(latencies)[int(0.99 * len(latencies))], "max": max(latencies)},
        "histogram": {str(v): latencies.count(v) for v in sorted(set(latencies))},
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    dut._log.info("latency report: %s", json.dumps(report))
    assert len(msg_out) == n_msgs
