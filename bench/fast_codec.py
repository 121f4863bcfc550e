"""FAST 1.1 codec throughput on the generated options quote feed.

Generates a seeded feed with ``sim/fastfeed.py`` and, in the same run,
decodes every datagram with :class:`protocols.fast.Decoder` (dictionaries
reset per datagram, as the feed prescribes) and re-encodes every message with
:class:`protocols.fast.Encoder`. Prints and writes
``build/bench/fast_codec.json``: messages/s, MD entries/s and MB/s.

No peer: no FAST 1.1 decoder for Python installs from PyPI (the ``pyfast``
distribution is the FAST medical-imaging framework, not FIX/FAST), so the
figures stand alone. Run as ``python -m bench.fast_codec [--updates N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from protocols.fast import Decoder, Encoder, parse_templates
from sim import fastfeed

OUT = Path("build/bench/fast_codec.json")


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    feed = fastfeed.generate_fast_feed(args.updates, args.seed)
    gen_s = time.perf_counter() - t0
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    payloads = [p for _, p, _ in feed.datagrams]
    n_msgs = len(feed.messages)
    n_entries = sum(len(f["MDEntries"]) for _, name, f in feed.messages if name == "MDIncRefresh")
    n_bytes = sum(map(len, payloads))

    def decode_all():
        dec = Decoder(ts)
        n = 0
        for p in payloads:
            dec.reset()
            n += len(dec.decode_all(p))
        assert n == n_msgs

    batches = []
    i = 0
    for _, _, count in feed.datagrams:
        batches.append([(name, fields) for _, name, fields in feed.messages[i:i + count]])
        i += count

    def encode_all():
        enc = Encoder(ts)
        for b in batches:
            enc.reset()
            for name, fields in b:
                enc.encode(name, fields)

    dec_s = best_of(decode_all, args.repeat)
    enc_s = best_of(encode_all, args.repeat)
    result = {
        "feed": {"updates": args.updates, "seed": args.seed, "messages": n_msgs, "md_entries": n_entries,
                 "datagrams": len(payloads), "bytes": n_bytes, "series": len(feed.series),
                 "generate_seconds": round(gen_s, 3)},
        "decode": {"seconds": round(dec_s, 4), "messages_per_s": round(n_msgs / dec_s),
                   "entries_per_s": round(n_entries / dec_s), "mb_per_s": round(n_bytes / dec_s / 1e6, 3)},
        "encode": {"seconds": round(enc_s, 4), "messages_per_s": round(n_msgs / enc_s),
                   "entries_per_s": round(n_entries / enc_s)},
        "peer": None,
        "peer_note": "no FAST 1.1 codec for Python installs from PyPI (pyfast is a medical-imaging framework)",
        "python": platform.python_version(), "machine": platform.machine(),
    }
    print(json.dumps(result, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, OUT)
    return result


if __name__ == "__main__":
    main()
