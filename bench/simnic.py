"""Simulated NIC throughput: the ctypes bridge (``sim/simnic.py``) against the cocotb path, same core.

Replays a generated MoldUDP64 feed of at least a million ITCH-sized messages (12 to 50 bytes)
through :class:`sim.simnic.SimNic` in batches, with message events on, and reports simulated
cycles and messages per second of wall time (pushing, running and popping; generating the feed
and decoding the events afterwards are not timed). The peer is the cocotb testbench path
(:func:`sim.replay.replay_gateware`) on the feed's first 20,000 frames in the same run; its wall
time covers the whole simulator run (Verilator start-up included, the cached build not).
Writes ``build/bench/simnic.json``. Run as ``python -m bench.simnic``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from host.rxpath import EthRxConfig
from protocols.events import MessageEvent, decode_event
from protocols.net import ip_to_int
from protocols.pcap import write_pcap
from sim import moldfeed

OUT = Path("build/bench/simnic.json")
SEED = 2026
CFG = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)
MESSAGES_PER_FRAME = 5.85
"""Mean messages per generated frame with ``max_messages=12`` (10 % heartbeats, 1..12 otherwise)."""


def configure(nic) -> None:
    nic.write("eth.ip_dst", CFG.ip_dst)
    nic.write("eth.udp_port", CFG.udp_port)
    nic.write("eth.filter", CFG.filter)
    nic.write("events.control", 1)


def replay_simnic(library, frames: list[bytes], batch: int) -> dict:
    """Push ``frames`` in batches, run each until idle, pop everything; returns counts, times, packets."""
    from sim.simnic import SimNic

    with SimNic(library) as nic:
        configure(nic)
        packets, ingress, cycles = [], [], 0
        push_s = run_s = pop_s = 0.0
        clock = time.perf_counter
        t0 = clock()
        for i in range(0, len(frames), batch):
            t1 = clock()
            nic.push_frames(frames[i:i + batch])
            t2 = clock()
            cycles += nic.run()
            t3 = clock()
            packets += nic.pop_events()
            ingress += nic.pop_ingress()
            t4 = clock()
            push_s, run_s, pop_s = push_s + t2 - t1, run_s + t3 - t2, pop_s + t4 - t3
        wall = clock() - t0
    return {"cycles": cycles, "wall": wall, "push_s": push_s, "run_s": run_s, "pop_s": pop_s,
            "packets": packets, "ingress": ingress}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the feed (at least)")
    parser.add_argument("--batch", type=int, default=16384, help="frames per push")
    parser.add_argument("--cocotb-frames", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cold", action="store_true", help="rebuild the library first and time it")
    args = parser.parse_args(argv)

    from sim import simnic

    simnic.build_library(force=args.cold)
    build = dict(simnic.LAST_BUILD)
    t0 = time.perf_counter()
    simnic.build_library()
    warm_build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_frames = int(args.messages / MESSAGES_PER_FRAME * 1.02) + 1
    feed = moldfeed.generate(n_frames, seed=SEED, max_messages=12, min_len=12, max_len=50)
    while len(feed.messages) < args.messages:      # top up (rarely needed)
        n_frames += n_frames // 50 + 1
        feed = moldfeed.generate(n_frames, seed=SEED, max_messages=12, min_len=12, max_len=50)
    gen_s = time.perf_counter() - t0
    frames = feed.frames
    n_bytes = sum(map(len, frames))
    print(f"feed: {len(frames)} frames, {len(feed.messages)} messages, {n_bytes} bytes (generated in {gen_s:.1f} s)")

    sim = replay_simnic(build["path"], frames, args.batch)
    events = [decode_event(data, aborted) for data, aborted in sim["packets"]]
    got = [(e.seq, e.data) for e in events if isinstance(e, MessageEvent)]
    if got != feed.messages:
        raise SystemExit(f"SimNic delivered {len(got)} messages, the feed has {len(feed.messages)}; they differ")
    n_msgs = len(got)
    print(f"SimNic: {sim['cycles']} cycles in {sim['wall']:.2f} s: {sim['cycles'] / sim['wall'] / 1e6:.2f} M cycles/s, "
          f"{n_msgs / sim['wall'] / 1e6:.2f} M messages/s")

    # The cocotb peer on the first frames, after its (cached) build.
    from hw.top import build_top
    from sim import runner
    from sim.replay import replay_gateware

    sub = frames[:args.cocotb_frames]
    pcap = args.out.parent / "simnic_feed.pcap"
    pcap.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(pcap, ((i * 1000, f) for i, f in enumerate(sub)))
    runner.build(build_top(), "calarb_top")
    t0 = time.perf_counter()
    cocotb = replay_gateware(pcap, CFG)
    cocotb_s = time.perf_counter() - t0
    same = replay_simnic(build["path"], sub, args.batch)
    same_msgs = [(e.seq, e.data.hex()) for e in map(lambda p: decode_event(*p), same["packets"])
                 if isinstance(e, MessageEvent)]
    agree = same_msgs == [(m["seq"], m["hex"]) for m in cocotb["messages"]]
    print(f"cocotb: {cocotb['cycles']} cycles in {cocotb_s:.2f} s: {cocotb['cycles'] / cocotb_s / 1e3:.1f} k cycles/s")

    simnic_cps = sim["cycles"] / sim["wall"]
    cocotb_cps = cocotb["cycles"] / cocotb_s
    report = {
        "feed": {"frames": len(frames), "messages": n_msgs, "bytes": n_bytes, "seed": SEED,
                 "message_bytes": [12, 50], "batch_frames": args.batch},
        "simnic": {
            "cycles": sim["cycles"], "wall_seconds": sim["wall"],
            "cycles_per_s": simnic_cps, "messages_per_s": n_msgs / sim["wall"],
            "seconds": {"push": sim["push_s"], "run": sim["run_s"], "pop": sim["pop_s"]},
            "run_only_cycles_per_s": sim["cycles"] / sim["run_s"],
            "frames_per_s": len(frames) / sim["wall"], "bytes_per_cycle": n_bytes / sim["cycles"],
            "timed": "push_frames + run + pop_events + pop_ingress",
            "library": str(build["path"]),
            "build_seconds_this_run": build["seconds"], "built_this_run": build["built"],
            "build_seconds_cached": warm_build_s,
        },
        "cocotb": {
            "frames": len(sub), "cycles": cocotb["cycles"], "wall_seconds": cocotb_s, "cycles_per_s": cocotb_cps,
            "messages_per_s": len(cocotb["messages"]) / cocotb_s,
            "timed": "replay_gateware: simulator start-up, pcap read, run, register dump (build cached)",
            "simnic_cycles_same_frames": same["cycles"], "simnic_seconds_same_frames": same["wall"],
            "same_messages_as_simnic": agree,
        },
        "ratio_cycles_per_s": simnic_cps / cocotb_cps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
