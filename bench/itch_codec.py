"""ITCH decoding throughput: the vectorised reader against a plain ``struct`` loop.

Generates (or reuses) a NASDAQ binary file of at least 10 million messages from
``sim/itchfeed.py`` under ``build/bench/``, then reads it in the same run with

* ``protocols.itch_reader.read_itch_file`` (numba scan, per-type fancy-index
  gather into structured arrays), and
* a per-message ``struct.unpack_from`` loop: read the length, unpack the
  header, unpack the body with a per-type precompiled ``Struct`` built from
  :data:`protocols.itch.MESSAGES`, keep a tuple per message by type.

Prints and writes ``build/bench/itch_codec.json`` (messages per second for both
and their ratio). Run as ``python -m bench.itch_codec [--messages N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import time
from pathlib import Path

import numpy as np

from protocols.itch import HEADER, MESSAGES
from protocols.itch_reader import read_itch_file
from sim.itchfeed import generate_feed, write_itch_file

OUT = Path("build/bench/itch_codec.json")
MESSAGES_DEFAULT = 10_000_000
INSTRUMENTS = 100
SEED = 1

_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def struct_format(fields) -> tuple[str, list[int]]:
    """A big-endian ``struct`` format for consecutive fields, and the positions of
    values that are the high half of a 6-byte field split into ``H`` + ``I``."""
    fmt, wide, pos = ">", [], 0
    for f in fields:
        if f.kind == "alpha":
            fmt += f"{f.width}s"
        elif f.width in _INT_FORMATS:
            fmt += _INT_FORMATS[f.width]
        elif f.width == 6:
            fmt += "HI"
            wide.append(pos)
            pos += 1
        else:
            raise ValueError(f"no struct format for {f.name} ({f.width} bytes)")
        pos += 1
    return fmt, wide


def struct_reader():
    """The baseline: a function decoding a NASDAQ file's bytes message by message."""
    n_header = len(HEADER)
    header_fmt, header_wide = struct_format(MESSAGES["S"].fields[:n_header])
    assert header_wide == [2], "the loop below combines the 6-byte timestamp by hand"
    header = struct.Struct(">c" + header_fmt[1:])
    bodies = {ord(code): struct.Struct(struct_format(mt.fields[n_header:])[0])
              for code, mt in MESSAGES.items()}
    assert not any(struct_format(mt.fields[n_header:])[1] for mt in MESSAGES.values())
    length_of = struct.Struct(">H").unpack_from

    def read(data: bytes) -> dict[int, list[tuple]]:
        unpack_header = header.unpack_from
        unpack_body = {c: s.unpack_from for c, s in bodies.items()}
        out = {c: [] for c in bodies}
        appenders = {c: out[c].append for c in bodies}
        pos, end, hsize = 0, len(data), header.size
        while pos < end:
            (length,) = length_of(data, pos)
            _, locate, tracking, ts_hi, ts_lo = unpack_header(data, pos + 2)
            code = data[pos + 2]
            appenders[code]((locate, tracking, ts_hi << 32 | ts_lo) + unpack_body[code](data, pos + 2 + hsize))
            pos += 2 + length
        return out

    return read


def feed_path(messages: int) -> Path:
    return Path(f"build/bench/itch_{messages}_{INSTRUMENTS}_{SEED}.itch")


def ensure_feed(messages: int) -> tuple[Path, dict]:
    """Reuse the bench file if its sidecar matches, else generate and time it."""
    path = feed_path(messages)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return path, dict(meta, reused=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    feed = generate_feed(messages, INSTRUMENTS, SEED)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = write_itch_file(path, feed)
    write_s = time.perf_counter() - t0
    meta = {"messages": messages, "instruments": INSTRUMENTS, "seed": SEED, "bytes": size,
            "generate_seconds": gen_s, "generate_messages_per_s": messages / gen_s, "write_seconds": write_s}
    meta_path.write_text(json.dumps(meta, indent=1))
    return path, dict(meta, reused=False)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=MESSAGES_DEFAULT)
    args = ap.parse_args(argv)

    read_itch_file(b"")                                   # numba compile (or cache load) off the clock
    path, feed = ensure_feed(args.messages)
    print(f"feed: {path} ({feed['messages']:,} messages, {feed['bytes']:,} bytes"
          + (", reused)" if feed["reused"] else f", generated in {feed['generate_seconds']:.1f} s)"), flush=True)

    t0 = time.perf_counter()
    table = read_itch_file(path)
    reader_s = time.perf_counter() - t0
    counts = table.counts()
    assert table.n_messages == feed["messages"] and not table.errors
    print(f"vectorised reader: {reader_s:.2f} s", flush=True)

    data = path.read_bytes()
    read = struct_reader()
    t0 = time.perf_counter()
    baseline = read(data)
    struct_s = time.perf_counter() - t0
    print(f"struct loop: {struct_s:.2f} s", flush=True)
    assert {chr(c): len(v) for c, v in baseline.items() if v} == counts
    for code, rows in baseline.items():             # spot check: both readers agree on first and last rows
        if rows:
            t = table[chr(code)]
            for k in (0, -1):
                assert tuple(t[k].tolist()[1:]) == rows[k], (chr(code), k)
    del baseline

    n = table.n_messages
    report = {
        "feed": {k: feed[k] for k in ("messages", "instruments", "seed", "bytes", "reused")}
                | ({"generate_seconds": feed["generate_seconds"],
                    "generate_messages_per_s": feed["generate_messages_per_s"]} if "generate_seconds" in feed else {}),
        "counts": counts,
        "vectorised_reader": {"seconds": reader_s, "messages_per_s": n / reader_s,
                              "mbytes_per_s": feed["bytes"] / reader_s / 1e6},
        "struct_loop": {"seconds": struct_s, "messages_per_s": n / struct_s,
                        "mbytes_per_s": feed["bytes"] / struct_s / 1e6},
        "speedup": struct_s / reader_s,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
