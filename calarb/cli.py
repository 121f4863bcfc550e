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

from host.rxpath import EthRxConfig
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


def message_frames(frames: list[bytes], cfg) -> dict[int, int]:
    """For each delivered MoldUDP64 sequence number, the index of the frame that delivered it.

    Worked out with the software receive path, which delivers exactly what the
    gateware does (the differential tests hold it to that).
    """
    from host.rxpath import EthRx, Message, MoldRx

    eth, mold = EthRx(cfg), MoldRx()
    owner = {}
    for index, frame in enumerate(frames):
        payload = eth.receive(frame)
        for out in mold.receive(payload) if payload is not None else []:
            if isinstance(out, Message):
                owner[out.seq] = index
    return owner


def frame_latencies(frames: list[bytes], ingress: list[int], events, cfg) -> list[int]:
    """Cycles from each frame's last beat in to the last beat of its last message's event out.

    The event leaves two header beats and then one beat per 8 message bytes
    after its timestamp (the NIC's event sink is always ready).
    """
    from protocols.events import MessageEvent

    owner = message_frames(frames, cfg)
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
@click.option("--decoded", is_flag=True, help="Print the ITCH decoder's records (ITCH events) instead of the "
              "raw MoldUDP64 messages.")
def replay(file: Path, gateware: bool, trace: Path | None, ip_dst: str | None, port: int | None,
           batch: int, decoded: bool) -> None:
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
            nic.write("events.control", 2 if decoded else 1)
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
            counters = {k: v for k, v in nic.counters("eth", "mold", "itch", "events").items() if v}
            summary = {"path": "gateware" if gateware else "software", "frames": len(frames),
                       "events": dict(kinds), "counters": counters,
                       "wall_seconds": round(time.perf_counter() - t0, 3)}
            if gateware:
                summary["cycles"] = nic.cycle
                cfg = EthRxConfig(filter=filt, ip_dst=ip_to_int(ip_dst) if ip_dst else 0, udp_port=port or 0)
                lat = frame_latencies(frames, nic.ingress, events_seen, cfg)
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
@click.option("--frames", default=20000, show_default=True, help="MoldUDP64 packets in the demo feed.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", "out_dir", default="build/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def demo(frames: int, seed: int, out_dir: Path) -> None:
    """Generate a feed, replay it through the simulated NIC and the software NIC, and compare."""
    from protocols.events import GapEvent, MessageEvent
    from protocols.pcap import write_pcap
    from sim import moldfeed

    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / "feed.pcap"
    generated = moldfeed.generate(frames, seed=seed, fault_rate=0.01)
    write_pcap(pcap, ((i * 1000, f) for i, f in enumerate(generated.frames)))
    click.echo(f"feed: {pcap} ({len(generated.frames)} frames, {len(generated.messages)} messages, "
               f"injected faults {dict(generated.faults)})")
    results = {}
    for gateware in (True, False):
        label = "gateware" if gateware else "software"
        if gateware:
            click.echo("simulated NIC: building the Verilated core (cached after the first run) ...")
        t0 = time.perf_counter()
        with open_nic(gateware) as nic:
            nic.write("eth.ip_dst", ip_to_int(moldfeed.FEED_IP))
            nic.write("eth.udp_port", moldfeed.FEED_PORT)
            nic.write("eth.filter", 3)
            nic.write("events.control", 1)
            t1 = time.perf_counter()
            nic.deliver(generated.frames)
            events = nic.poll()
            wall = time.perf_counter() - t1
            results[label] = {
                "events": events, "wall": wall, "setup": t1 - t0,
                "counters": {k: v for k, v in nic.counters("eth", "mold").items() if v},
                "cycles": getattr(nic, "cycle", None), "ingress": getattr(nic, "ingress", None)}
    hw, sw = results["gateware"], results["software"]
    click.echo("first messages out of the gateware (seq, cycle stamped in the design, bytes):")
    for ev in [e for e in hw["events"] if isinstance(e, MessageEvent)][:5]:
        click.echo(f"  {ev.seq:>6} {ev.cycle:>8} {ev.data.hex()[:48]}")
    same = [e.as_json() for e in hw["events"]] == [e.as_json() for e in sw["events"]]
    n_msgs = sum(isinstance(e, MessageEvent) for e in hw["events"])
    n_gaps = sum(isinstance(e, GapEvent) for e in hw["events"])
    click.echo(f"events: {n_msgs} messages and {n_gaps} gaps from the gateware; the software NIC's events are "
               f"{'identical' if same else 'DIFFERENT'}")
    click.echo("counters (gateware / software):")
    for name in sorted(set(hw["counters"]) | set(sw["counters"])):
        click.echo(f"  {name:24} {hw['counters'].get(name, 0):>8} / {sw['counters'].get(name, 0)}")
    cfg = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)
    lat = frame_latencies(generated.frames, hw["ingress"], hw["events"], cfg)
    if lat:
        click.echo(f"latency, last beat of a frame in -> its last message's event out: min {min(lat)}, "
                   f"median {statistics.median(lat)}, max {max(lat)} cycles")
    click.echo(f"simulated NIC: {hw['cycles']} cycles in {hw['wall']:.2f} s "
               f"({hw['cycles'] / hw['wall'] / 1e6:.2f} M cycles/s; set-up {hw['setup']:.1f} s); "
               f"software NIC: {sw['wall']:.2f} s")
    summary = {"frames": len(generated.frames), "messages": n_msgs, "gaps": n_gaps, "identical": same,
               "counters": hw["counters"], "cycles": hw["cycles"], "gateware_seconds": hw["wall"],
               "software_seconds": sw["wall"],
               "latency_cycles": lat and {"min": min(lat), "median": statistics.median(lat), "max": max(lat)}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    click.echo(f"summary: {out_dir / 'summary.json'}")
    if not same:
        raise click.ClickException("the gateware and the software path disagree")


if __name__ == "__main__":
    main()
