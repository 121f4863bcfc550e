"""The ``calarb`` command line: the front door to every part of the system.

This package is the one place that wires ``host/`` to its implementations in
``sim/`` and ``hw/`` (the host itself never imports them).
"""

from __future__ import annotations

import json
import statistics
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import click

from host.rxpath import EthRxConfig
from protocols.moldudp64 import MoldError, iter_messages_lenient
from protocols.net import ip_to_int
from protocols.pcap import MAGIC_NS, MAGIC_US, PcapError, read_pcap, udp_payloads


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """calarb: calibration arbitrage on FPGA gateware and a Python host."""


PCAP_MAGICS = frozenset(struct.pack(e + "I", m) for e in "<>" for m in (MAGIC_US, MAGIC_NS))
"""The first four bytes of a pcap file (either byte order, micro- or nanosecond)."""
DETECT_ITCH = 16
"""How many of a pcap's first messages must decode as ITCH for it to be printed as ITCH."""


def _pcap_messages(file: Path, port: int | None, stats: Counter):
    """``(session, seq, message)`` for every MoldUDP64 message in a pcap; what is
    skipped is counted in ``stats``."""
    for _, dgram in udp_payloads(file, port, stats):
        try:
            packet = iter_messages_lenient(dgram.payload)
        except MoldError as e:
            stats[f"skipped_mold_{e.reason}"] += 1
            continue
        session = packet.session.decode("ascii", "replace")
        for index, message in packet:
            yield session, packet.seq + index, message
        if packet.error:
            stats[f"mold_{packet.error}"] += 1


def _itch_file_messages(data: bytes):
    """``(None, seq, message_or_error)`` for the messages of a NASDAQ binary file,
    ``seq`` counting from 1; a cut-short tail yields an :class:`ItchError` with its offset."""
    from protocols.itch import ItchError

    pos, seq = 0, 1
    while pos < len(data):
        if pos + 2 > len(data):
            yield None, seq, ItchError("truncated", pos, None, "a length prefix needs 2 bytes"), data[pos:]
            return
        length = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + length > len(data):
            code = chr(data[pos + 2]) if pos + 2 < len(data) else None
            yield None, seq, ItchError("truncated", pos, code,
                                       f"length prefix says {length} bytes, {len(data) - pos - 2} left"), data[pos + 2:]
            return
        yield None, seq, None, data[pos + 2:pos + 2 + length]
        pos += 2 + length
        seq += 1


def _looks_like_itch_file(head: bytes) -> bool:
    """A NASDAQ binary file starts with a length prefix that matches its first message's type."""
    from protocols.itch import MESSAGES

    mt = MESSAGES.get(chr(head[2])) if len(head) >= 3 else None
    return mt is not None and int.from_bytes(head[:2], "big") == mt.length


def parse_locates(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of stock locates",
                                 param_hint="--instruments") from None


def book_locates(frames: list[bytes], limit: int = 32) -> list[int]:
    """The stock locates of the first ``limit`` instruments that get an add order (A/F), in order of appearance."""
    from host.rxpath import EthRx, Message, MoldRx

    eth, mold = EthRx(), MoldRx()
    seen: dict[int, None] = {}
    for frame in frames:
        payload = eth.receive(frame)
        for out in mold.receive(payload) if payload is not None else []:
            if isinstance(out, Message) and out.data[:1] in (b"A", b"F") and len(out.data) > 3:
                seen.setdefault(int.from_bytes(out.data[1:3], "big"))
                if len(seen) == limit:
                    return list(seen)
    return list(seen)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", type=int, default=None, help="Only UDP datagrams to this destination port.")
@click.option("--raw", is_flag=True, help="Print messages as hex instead of decoding them as ITCH.")
@click.option("--templates", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Decode UDP payloads as FAST 1.1 with this template XML (dictionaries reset per datagram).")
def decode(file: Path, port: int | None, raw: bool, templates: Path | None) -> None:
    """Print the messages of a pcap (MoldUDP64) or NASDAQ binary ITCH file as JSON lines.

    ITCH messages print their fields by name (plus session and sequence number); a
    message that does not decode prints as {"error", "seq", "hex"} and is counted.
    A pcap whose first messages are not ITCH, or --raw, prints session, sequence
    number and hex. The file kind is told by the pcap magic number. Frames that are
    not UDP, and datagrams that are not MoldUDP64, are skipped and counted; a
    summary goes to standard error. With --templates, the pcap's UDP payloads are
    decoded as FAST 1.1 messages with those templates instead.
    """
    import itertools

    if templates is not None:
        _decode_fast(file, templates, port)
        return

    from protocols import itch

    stats = Counter()
    out = sys.stdout
    with open(file, "rb") as f:
        head = f.read(4)
    try:
        if head in PCAP_MAGICS or not _looks_like_itch_file(head):
            if head not in PCAP_MAGICS:
                read_pcap(file)               # raises the pcap reader's bad_magic / truncated_header
            messages = ((s, q, None, m) for s, q, m in _pcap_messages(file, port, stats))
            first = list(itertools.islice(messages, DETECT_ITCH))
            as_itch = not raw and all(_decodes(m) for _, _, _, m in first)
            messages = itertools.chain(first, messages)
            kind = "pcap"
        else:
            messages = _itch_file_messages(file.read_bytes())
            as_itch = not raw
            kind = "itch"
        for session, seq, error, message in messages:
            base = {"session": session, "seq": seq} if session is not None else {"seq": seq}
            if error is None and not as_itch:
                line = dict(base, hex=message.hex())
                stats["messages"] += 1
            else:
                try:
                    if error is not None:
                        raise error
                    line = dict(base, **itch.as_json(itch.decode(message)))
                    stats["messages"] += 1
                except itch.ItchError as e:
                    line = {"error": str(e), **base, "hex": message.hex()}
                    stats["itch_errors"] += 1
                    stats[f"itch_{e.reason}"] += 1
            out.write(json.dumps(line) + "\n")
    except PcapError as e:
        if head not in PCAP_MAGICS and e.reason == "bad_magic":
            raise click.ClickException(f"{file}: neither a pcap ({e}) nor a NASDAQ binary ITCH file") from None
        raise click.ClickException(f"{file}: {e}") from None
    except BrokenPipeError:
        return
    click.echo(json.dumps({"summary": dict(stats, file=kind, decoded="itch" if as_itch else "hex")}), err=True)


def _decode_fast(file: Path, templates: Path, port: int | None) -> None:
    """``decode --templates``: FAST 1.1 messages of a pcap as JSON lines, a summary on standard error."""
    from calarb.fast_cmd import decode_fast_pcap
    from protocols.fast import FastTemplateError

    stats = Counter()
    try:
        for line in decode_fast_pcap(file, templates, port=port, stats=stats):
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    except (PcapError, FastTemplateError) as e:
        raise click.ClickException(f"{file}: {e}") from None
    except BrokenPipeError:
        return
    click.echo(json.dumps({"summary": dict(stats, file="pcap", decoded="fast")}), err=True)


def _decodes(message: bytes) -> bool:
    from protocols import itch

    try:
        itch.decode(message)
    except itch.ItchError:
        return False
    return True


@main.group()
def feed() -> None:
    """Generate market data feeds."""


@feed.command("generate")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["pcap", "itch", "mold", "fast"]), default=None,
              help="pcap: a realistic ITCH day in MoldUDP64 frames (the default); itch: the same as a NASDAQ "
                   "binary file; mold: random MoldUDP64 messages (the default when --frames, --fault-rate or "
                   "--max-messages is given); fast: an options quote feed, FAST 1.1 over UDP.")
@click.option("--messages", type=int, default=None, help="ITCH messages in the day (pcap, itch).  [default: 100000]")
@click.option("--instruments", type=int, default=None, help="Stocks in the day (pcap, itch).  [default: 20]")
@click.option("--seed", default=1, show_default=True)
@click.option("--frames", type=int, default=None, help="MoldUDP64 packets to generate (mold).  [default: 1000]")
@click.option("--fault-rate", type=float, default=None,
              help="Share of frames made malformed on purpose (mold).  [default: 0.0]")
@click.option("--max-messages", type=int, default=None, help="Most messages per packet (mold).  [default: 12]")
@click.option("--updates", type=int, default=None, help="Quote updates (fast).  [default: 5000]")
def feed_generate(out: Path, fmt: str | None, messages: int | None, instruments: int | None, seed: int,
                  frames: int | None, fault_rate: float | None, max_messages: int | None,
                  updates: int | None) -> None:
    """Write a market data feed: a realistic ITCH 5.0 day (as a pcap of MoldUDP64 frames or a NASDAQ
    binary file), or a pcap of MoldUDP64 packets with random messages (and injected faults if asked)."""
    mold_options = {"--frames": frames, "--fault-rate": fault_rate, "--max-messages": max_messages}
    itch_options = {"--messages": messages, "--instruments": instruments}
    fast_options = {"--updates": updates}
    if fmt is None:
        fmt = "mold" if any(v is not None for v in mold_options.values()) else "pcap"
    applies = {"mold": mold_options, "fast": fast_options}.get(fmt, itch_options)
    stray = [name for name, v in {**mold_options, **itch_options, **fast_options}.items()
             if v is not None and name not in applies]
    if stray:
        raise click.UsageError(f"{', '.join(stray)} does not apply to --format {fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "fast":
        from calarb.fast_cmd import generate_fast_feed

        click.echo(json.dumps(generate_fast_feed(out, seed, updates=5000 if updates is None else updates)))
        return
    if fmt == "mold":
        from protocols.pcap import write_pcap
        from sim import moldfeed

        fault_rate = 0.0 if fault_rate is None else fault_rate
        if not 0 <= fault_rate <= 1:
            raise click.BadParameter("must be between 0 and 1", param_hint="--fault-rate")
        generated = moldfeed.generate(1000 if frames is None else frames, seed=seed, fault_rate=fault_rate,
                                      max_messages=12 if max_messages is None else max_messages)
        write_pcap(out, ((i * 1000, f) for i, f in enumerate(generated.frames)))
        click.echo(json.dumps({"out": str(out), "format": fmt, "frames": len(generated.frames),
                               "messages": len(generated.messages), "faults": dict(generated.faults)}))
        return
    from sim import itchfeed

    messages = 100_000 if messages is None else messages
    instruments = 20 if instruments is None else instruments
    try:
        day = itchfeed.generate_feed(messages, instruments, seed)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    summary = {"out": str(out), "format": fmt, "messages": len(day), "instruments": instruments, "seed": seed}
    if fmt == "itch":
        summary["bytes"] = itchfeed.write_itch_file(out, day)
    else:
        summary["frames"] = itchfeed.write_itch_pcap(out, day)
    click.echo(json.dumps(summary))


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
@click.option("--book", is_flag=True, help="Print the book's top-of-book events (TOB JSON lines, the fields of "
              "host.book.TopOfBook) instead of messages.")
@click.option("--instruments", default=None, help="With --book: comma-separated stock locates for the book's "
              "slots (at most 32). Default: the first 32 instruments with orders in the file.")
def replay(file: Path, gateware: bool, trace: Path | None, ip_dst: str | None, port: int | None,
           batch: int, decoded: bool, book: bool = False, instruments: str | None = None) -> None:
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
    locates = []
    if book:
        locates = parse_locates(instruments) if instruments else book_locates(frames)
        if len(locates) > 32:
            raise click.BadParameter(f"{len(locates)} instruments, the book has 32 slots", param_hint="--instruments")
    nic = open_nic(gateware, trace)
    t0 = time.perf_counter()
    events_seen = []
    kinds = Counter()
    try:
        with nic:
            nic.write("events.control", 4 if book else 2 if decoded else 1)
            for slot, locate in enumerate(locates):
                nic.write("book.slot", locate | slot << 16 | 1 << 24)
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
            counters = {k: v for k, v in nic.counters("eth", "mold", "itch", "book", "events").items() if v}
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


@main.command()
@click.argument("model", type=click.Choice(["heston", "sabr"]))
@click.argument("chain", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--spot", type=float, default=None, help="Underlying price (overrides the chain's spot column).")
@click.option("--rate", type=float, default=None, help="Rate per year, continuous (overrides the rate column).")
@click.option("--dividend", type=float, default=None, help="Dividend yield per year (overrides the column).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save market vs model implied vols, one panel per expiry, to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def calibrate(model: str, chain: Path, spot: float | None, rate: float | None, dividend: float | None,
              plot: Path | None, as_json: bool) -> None:
    """Calibrate Heston (whole surface) or SABR (per expiry) to an options chain CSV.

    CHAIN columns: expiry_days (or expiry in years), strike, type (C/P), bid,
    ask, and spot, rate, dividend unless given as options (see host/calibration.py).
    """
    import numpy as np

    from host.calibration import ChainError, Calibrator, load_chain_csv, prepare
    from models import black_scholes as bs
    from models import heston as heston_model
    from models import sabr as sabr_model

    try:
        quotes = prepare(load_chain_csv(chain, spot=spot, rate=rate, dividend=dividend))
    except ChainError as e:
        raise click.ClickException(str(e)) from None
    if len(quotes) == 0:
        raise click.ClickException(f"{chain}: no quotes left after preparation (dropped {quotes.dropped})")
    outcome = Calibrator(model).calibrate(quotes)
    if outcome.fit is None:
        raise click.ClickException("; ".join(outcome.reasons))
    fit = outcome.fit
    summary = {"model": model, "chain": str(chain), "quotes": len(quotes), "dropped": quotes.dropped,
               "accepted": outcome.accepted, "reasons": outcome.reasons, "fingerprint": outcome.fingerprint,
               **fit.metrics()}
    if as_json:
        click.echo(json.dumps(summary, default=float))
    elif model == "heston":
        for name, value in summary.pop("params").items():
            click.echo(f"{name:>8} {value:12.6f}")
        for key in ("rmse_iv", "rmse_price", "r2", "max_residual_iv", "max_residual_strike", "max_residual_expiry",
                    "feller_ratio", "feller_satisfied", "quotes", "nfev", "seconds", "accepted", "reasons"):
            click.echo(f"{key:>20} {summary[key]}")
    else:
        click.echo(f"{'days':>6} {'alpha':>9} {'beta':>5} {'rho':>8} {'nu':>8} {'rmse_iv':>9} {'arb-free':>8} "
                   f"{'quotes':>6}")
        for s in summary["smiles"]:
            click.echo(f"{s['expiry_days']:6.0f} {s['alpha']:9.5f} {s['beta']:5.2f} {s['rho']:8.4f} {s['nu']:8.4f} "
                       f"{s['rmse_iv']:9.2e} {str(s['arbitrage_free']):>8} {s['n_quotes']:6d}")
        click.echo(f"accepted {outcome.accepted} {'; '.join(outcome.reasons)}")
    if plot is None:
        return
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expiries = quotes.expiries()
    cols = min(3, expiries.size)
    rows = -(-expiries.size // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, t in zip(axes.ravel(), expiries):
        sel = quotes.expiry == t
        K = quotes.strike[sel]
        grid = np.linspace(K.min(), K.max(), 101)
        if model == "heston":
            is_call = grid >= quotes.forward[sel][0]
            prices = heston_model.price(quotes.spot, grid, t, quotes.rate, quotes.dividend, fit.params, is_call)
            model_iv = bs.implied_vol(prices, quotes.spot, grid, t, quotes.rate, quotes.dividend, is_call)
        else:
            days = int(round(t * 365))
            p = fit.params.get(days)
            if p is None:
                continue
            model_iv = sabr_model.lognormal_vol(grid, quotes.forward[sel][0], t, p.alpha, p.beta, p.rho, p.nu)
        ax.errorbar(K, quotes.iv[sel], yerr=0.5 * quotes.spread[sel] / np.maximum(
            bs.vega(quotes.spot, K, t, quotes.rate, quotes.dividend, quotes.iv[sel]), 1e-12),
            fmt="o", ms=3, label="market (mid, half-spread)")
        ax.plot(grid, model_iv, "-", label=model)
        ax.set_title(f"{t * 365:.0f} days")
        ax.set_xlabel("strike")
        ax.set_ylabel("implied vol")
    for ax in axes.ravel()[expiries.size:]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize="small")
    figure.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    tmp = plot.with_name(plot.name + ".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, plot)
    click.echo(f"plot: {plot}", err=True)


def _register_commands() -> None:
    """Commands that live in their own modules."""
    from calarb.exchange_cmd import exchange
    from calarb.run_cmd import run, run_demo

    main.add_command(exchange)
    main.add_command(run)
    main.add_command(run_demo)


_register_commands()

if __name__ == "__main__":
    main()
