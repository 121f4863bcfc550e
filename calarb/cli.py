"""The ``calarb`` command line: the front door to every part of the system.

This package is the one place that wires ``host/`` to its implementations in
``sim/`` and ``hw/`` (the host itself never imports them).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import click

from protocols.moldudp64 import MoldError, iter_messages_lenient
from protocols.net import NetError, ip_to_int, parse_udp_frame
from protocols.pcap import PcapError, read_pcap


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """calarb: calibration arbitrage on FPGA gateware and a Python host."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", type=int, default=None, help="Only UDP datagrams to this destination port.")
def decode(file: Path, port: int | None) -> None:
    """Print every MoldUDP64 message in a pcap as a JSON line (session, sequence number, hex).

    Frames that are not UDP, and datagrams that are not MoldUDP64, are skipped and
    counted; a summary goes to standard error.
    """
    stats = Counter()
    out = sys.stdout
    try:
        for rec in read_pcap(file):
            stats["frames"] += 1
            try:
                dgram = parse_udp_frame(rec.data, verify_udp_checksum=False)
            except NetError as e:
                stats[f"skipped_{e.reason}"] += 1
                continue
            if port is not None and dgram.dst_port != port:
                stats["skipped_port"] += 1
                continue
            try:
                packet = iter_messages_lenient(dgram.payload)
            except MoldError as e:
                stats[f"skipped_mold_{e.reason}"] += 1
                continue
            session = packet.session.decode("ascii", "replace")
            for index, message in packet:
                out.write(json.dumps({"session": session, "seq": packet.seq + index, "hex": message.hex()}) + "\n")
                stats["messages"] += 1
            if packet.error:
                stats[f"mold_{packet.error}"] += 1
    except PcapError as e:
        raise click.ClickException(f"{file}: {e}") from None
    except BrokenPipeError:
        return
    click.echo(json.dumps({"summary": dict(stats)}), err=True)


@main.group()
def feed() -> None:
    """Generate market data feeds."""


@feed.command("generate")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", default=1000, show_default=True, help="MoldUDP64 packets to generate.")
@click.option("--seed", default=1, show_default=True)
@click.option("--fault-rate", default=0.0, show_default=True, help="Share of frames made malformed on purpose.")
@click.option("--max-messages", default=12, show_default=True, help="Most messages per packet.")
def feed_generate(out: Path, frames: int, seed: int, fault_rate: float, max_messages: int) -> None:
    """Write a pcap of MoldUDP64 packets with random messages (and injected faults if asked)."""
    from protocols.pcap import write_pcap
    from sim import moldfeed

    if not 0 <= fault_rate <= 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--fault-rate")
    generated = moldfeed.generate(frames, seed=seed, fault_rate=fault_rate, max_messages=max_messages)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(out, ((i * 1000, f) for i, f in enumerate(generated.frames)))
    click.echo(json.dumps({"out": str(out), "frames": len(generated.frames), "messages": len(generated.messages),
                           "faults": dict(generated.faults)}))


def open_nic(gateware: bool, trace: Path | None = None):
    """The NIC the host should use: the Verilated gateware or the software path."""
    if gateware:
        from sim.gatewarenic import GatewareNic
        return GatewareNic(trace=str(trace) if trace else None)
    if trace:
        raise click.UsageError("--trace needs --gateware (the software path has no waveforms)")
    from host.softnic import SoftwareNic
    return SoftwareNic()


def message_seq_to_frame(frames: list[bytes]) -> dict[int, int]:
    """For each MoldUDP64 sequence number, the first frame that carries it (for latency per frame)."""
    owner: dict[int, int] = {}
    for index, frame in enumerate(frames):
        if len(frame) < 62:
            continue
        seq = int.from_bytes(frame[52:60], "big")
        count = int.from_bytes(frame[60:62], "big")
        if count != 0xFFFF:
            for s in range(seq, seq + count):
                owner.setdefault(s, index)
    return owner


def frame_latencies(frames: list[bytes], ingress: list[int], events) -> list[int]:
    """Cycles from each frame's last beat in to the last beat of its last message's event out.

    The event leaves two header beats and then one beat per 8 message bytes
    after its timestamp (the NIC's event sink is always ready).
    """
    from protocols.events import MessageEvent

    owner = message_seq_to_frame(frames)
    done: dict[int, int] = {}
    for ev in events:
        if isinstance(ev, MessageEvent) and ev.seq in owner:
            done[owner[ev.seq]] = ev.cycle + 1 + max(1, -(-len(ev.data) // 8))
    return [end - ingress[f] for f, end in sorted(done.items()) if f < len(ingress)]


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gateware", is_flag=True, help="Use the Verilated gateware (the simulated NIC) instead of "
              "the software path.")
@click.option("--trace", type=click.Path(dir_okay=False, path_type=Path), help="Write an FST waveform (with --gateware).")
@click.option("--ip", "ip_dst", default=None, help="Accept only this IPv4 destination.")
@click.option("--port", type=int, default=None, help="Accept only this UDP destination port.")
@click.option("--batch", default=4096, show_default=True, help="Frames per batch.")
def replay(file: Path, gateware: bool, trace: Path | None, ip_dst: str | None, port: int | None,
           batch: int) -> None:
    """Push a pcap or NASDAQ binary file through a NIC and print its events as JSON lines.

    The summary (frames, messages, counters, cycles, wall time, latency) goes to
    standard error, so the event lines of the gateware and the software path can
    be compared with diff.
    """
    from host.feeds import FeedError, frames_from_file
    from host.nic import NicError
    from protocols.registers import RegisterError

    try:
        frames = list(frames_from_file(file))
    except (PcapError, FeedError) as e:
        raise click.ClickException(str(e)) from None
    nic = open_nic(gateware, trace)
    t0 = time.perf_counter()
    events_seen = []
    kinds = Counter()
    try:
        with nic:
            nic.write("events.control", 1)
            filt = 0
            if ip_dst is not None:
                nic.write("eth.ip_dst", ip_to_int(ip_dst))
                filt |= 1
            if port is not None:
                nic.write("eth.udp_port", port)
                filt |= 2
            nic.write("eth.filter", filt)
            out = sys.stdout
            with click.progressbar(length=len(frames), label="replay", file=sys.stderr) as bar:
                for start in range(0, len(frames), batch):
                    chunk = frames[start:start + batch]
                    nic.deliver(chunk)
                    for ev in nic.poll():
                        out.write(json.dumps(ev.as_json()) + "\n")
                        kinds[type(ev).__name__] += 1
                        if gateware:
                            events_seen.append(ev)
                    bar.update(len(chunk))
            counters = {k: v for k, v in nic.counters("eth", "mold", "events").items() if v}
            summary = {"path": "gateware" if gateware else "software", "frames": len(frames),
                       "events": dict(kinds), "counters": counters,
                       "wall_seconds": round(time.perf_counter() - t0, 3)}
            if gateware:
                summary["cycles"] = nic.cycle
                lat = frame_latencies(frames, nic.ingress, events_seen)
                if lat:
                    summary["latency_cycles"] = {
                        "min": min(lat), "median": statistics.median(lat), "max": max(lat),
                        "histogram": {str(v): c for v, c in sorted(Counter(lat).items())}}
    except (NicError, RegisterError) as e:
        raise click.ClickException(str(e)) from None
    except BrokenPipeError:
        return
    click.echo(json.dumps({"summary": summary}), err=True)


@main.command()
@click.option("--port", default=26400, show_default=True, help="UDP port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--gateware", is_flag=True, help="Use the simulated NIC (Verilated gateware).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--messages/--no-messages", default=True, show_default=True,
              help="Report every MoldUDP64 message as an event (events.control bit 0).")
def listen(port: int, host: str, gateware: bool, duration: float | None, messages: bool) -> None:
    """Receive a live MoldUDP64 feed on a UDP port, as a NIC on the feed's network would, and print events."""
    from host.feeds import LoopbackFeed

    nic = open_nic(gateware)
    deadline = None if duration is None else time.monotonic() + duration
    stats = Counter()
    try:
        with nic, LoopbackFeed(port=port, host=host) as feed:
            nic.write("events.control", int(messages))
            click.echo(json.dumps({"listening": f"{host}:{feed.port}",
                                   "nic": "gateware" if gateware else "software"}), err=True)
            while deadline is None or time.monotonic() < deadline:
                frames = feed.poll(timeout=0.05)
                if not frames:
                    continue
                stats["frames"] += len(frames)
                nic.deliver(frames)
                for ev in nic.poll():
                    sys.stdout.write(json.dumps(ev.as_json()) + "\n")
                    stats["events"] += 1
                sys.stdout.flush()
            counters = {k: v for k, v in nic.counters("eth", "mold").items() if v}
    except KeyboardInterrupt:
        counters = {}
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}") from None
    click.echo(json.dumps({"summary": dict(stats, counters=counters)}), err=True)


@main.command()
@click.option("--frames", default=2000, show_default=True, help="MoldUDP64 packets in the demo feed.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", "out_dir", default="build/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def demo(frames: int, seed: int, out_dir: Path) -> None:
    """Generate a feed, run it through the Verilated gateware and the software path, and compare."""
    from host.rxpath import EthRxConfig
    from protocols.pcap import write_pcap
    from sim import moldfeed
    from sim.replay import frame_latencies, replay_gateware, replay_software

    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / "feed.pcap"
    generated = moldfeed.generate(frames, seed=seed, fault_rate=0.03)
    write_pcap(pcap, ((i * 1000, f) for i, f in enumerate(generated.frames)))
    click.echo(f"feed: {pcap} ({len(generated.frames)} frames, {len(generated.messages)} messages, "
               f"injected faults {dict(generated.faults)})")
    cfg = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)
    soft = replay_software(pcap, cfg)
    click.echo("gateware: building (cached after the first run) and simulating hw/top.py on Verilator ...")
    t0 = time.perf_counter()
    hw = replay_gateware(pcap, cfg)
    wall = time.perf_counter() - t0
    click.echo("first messages out of the gateware:")
    for m in hw["messages"][:5]:
        click.echo("  " + json.dumps({"seq": m["seq"], "hex": m["hex"], "cycle": m["cycle"]}))
    same = ([(m["seq"], m["hex"], m["aborted"]) for m in hw["messages"]] ==
            [(m["seq"], m["hex"], m["aborted"]) for m in soft["messages"]])
    click.echo(f"messages: {len(hw['messages'])} from the gateware, {len(soft['messages'])} from the software "
               f"path: {'identical' if same else 'DIFFERENT'}")
    click.echo(f"gap events: {len(hw['gaps'])} (software path {len(soft['gaps'])})")
    click.echo("counters (gateware / software):")
    for name in sorted(set(hw["counters"]) | set(soft["counters"])):
        click.echo(f"  {name:24} {hw['counters'].get(name, 0):>8} / {soft['counters'].get(name, 0)}")
    lat = frame_latencies(hw, soft["per_frame"])
    if lat:
        click.echo(f"latency, last beat of a frame in -> last beat of its last message out: min {min(lat)}, "
                   f"median {statistics.median(lat)}, max {max(lat)} cycles")
    click.echo(f"simulated {hw['cycles']} cycles in {wall:.1f} s wall time (including build and start-up)")
    (out_dir / "summary.json").write_text(json.dumps({
        "frames": len(generated.frames), "messages": len(hw["messages"]), "identical": same,
        "counters": hw["counters"], "latency_cycles": lat and {"min": min(lat), "median": statistics.median(lat),
                                                               "max": max(lat)},
        "cycles": hw["cycles"]}, indent=1))
    click.echo(f"summary: {out_dir / 'summary.json'}")
    if not same:
        raise click.ClickException("the gateware and the software path disagree")


if __name__ == "__main__":
    main()
