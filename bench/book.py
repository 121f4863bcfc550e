"""Book rebuild throughput: the numba book (host/fastbook.py) against a plain dict-of-orders book.

Reuses (or generates) the 10-million-message NASDAQ binary day of
``bench/itch_codec.py`` under ``build/bench/`` (``sim/itchfeed.py``, 100
instruments, seed 1), reads it with ``protocols.itch_reader.read_itch_file``,
then in the same run rebuilds every instrument's book with

* ``host.fastbook.rebuild`` on the whole day (numba compile kept off the clock);
* a straightforward Python peer written here: a dict of live orders, a dict of
  price levels per instrument and side, the best price cached and found again
  with ``max``/``min`` when its level empties; same rules, same top-of-book
  events. Python runs it on a prefix (``--peer-messages``, 1 million by default)
  from per-message tuples prepared off the clock;
* ``host.book.BookSet`` (the readable reference) on a shorter prefix, for scale.

Both peers' top-of-book streams are checked against fastbook's on their prefix.
Prints a summary and writes ``build/bench/book.json`` (messages per second for
each, wall and per CPU second, as shared machines steal time; messages counted;
machine). Run as ``python -m bench.book [--messages N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from bench.itch_codec import ensure_feed
from host.book import BookSet, TopOfBook
from host.fastbook import TYPES, rebuild
from protocols.itch_reader import ItchTable, read_itch_file

OUT = Path("build/bench/book.json")
MESSAGES_DEFAULT = 10_000_000
PEER_MESSAGES = 1_000_000
REFERENCE_MESSAGES = 200_000
RUNS = 3


# --------------------------------------------------------------------------- #
# the peer
# --------------------------------------------------------------------------- #


def prefix(table: ItchTable, n: int) -> ItchTable:
    """The table of the first ``n`` messages of ``table``."""
    return ItchTable.from_arrays({c: t[t["index"] < n] for c, t in table.tables.items()}, min(n, table.n_messages))


def peer_rows(table: ItchTable) -> list[tuple]:
    """Per book message in feed order: ``(code, locate, timestamp, ref, new_ref, side, shares, price,
    match, seq)`` with ``code`` and ``side`` as one-letter strings (as a decoder loop would give them)."""
    n = table.n_messages
    cols = {name: np.zeros(n, np.int64) for name in ("locate", "ts", "shares", "price")}
    cols |= {name: np.zeros(n, np.uint64) for name in ("ref", "new_ref", "match")}
    code = np.full(n, b" ", "S1")
    side = np.full(n, b" ", "S1")
    for c in TYPES:
        t = table[c]
        i = t["index"]
        code[i] = c.encode()
        cols["locate"][i], cols["ts"][i], cols["ref"][i] = t["stock_locate"], t["timestamp"], t["order_ref"]
        for name, f in (("new_ref", "new_order_ref"), ("shares", "shares"), ("price", "price"),
                        ("match", "match_number"), ("side", "side")):
            if f in t.dtype.names:
                (side if name == "side" else cols[name])[i] = t[f]
    keep = np.flatnonzero(code != b" ")
    return list(zip(code[keep].astype("U1").tolist(), cols["locate"][keep].tolist(), cols["ts"][keep].tolist(),
                    cols["ref"][keep].tolist(), cols["new_ref"][keep].tolist(), side[keep].astype("U1").tolist(),
                    cols["shares"][keep].tolist(), cols["price"][keep].tolist(), cols["match"][keep].tolist(),
                    (keep + 1).tolist()))


def dict_book(rows: list[tuple]) -> tuple[list[tuple], int]:
    """The straightforward book (lenient rules of :class:`host.book.BookSet`); returns the
    top-of-book events as tuples and the number of trades."""
    orders: dict[int, list] = {}            # ref -> [locate, side, price, shares]
    levels: dict[tuple, dict] = {}          # (locate, side) -> {price: [shares, orders]}
    best: dict[tuple, int | None] = {}      # (locate, side) -> best price (None: empty)
    tobs, trades = [], 0

    def quote(loc):
        out = []
        for sd in "BS":
            p = best.get((loc, sd))
            out += (0, 0) if p is None else (p, levels[(loc, sd)][p][0])
        return tuple(out)

    def add(ref, loc, sd, price, shares):
        if ref in orders or shares == 0 or sd not in "BS":
            return
        orders[ref] = [loc, sd, price, shares]
        lv = levels.setdefault((loc, sd), {})
        level = lv.get(price)
        if level is None:
            lv[price] = [shares, 1]
            b = best.get((loc, sd))
            if b is None or (price > b if sd == "B" else price < b):
                best[(loc, sd)] = price
        else:
            level[0] += shares
            level[1] += 1

    def take(ref, o, shares):
        loc, sd, price, open_ = o
        lv = levels[(loc, sd)]
        level = lv[price]
        if shares >= open_:
            del orders[ref]
            level[0] -= open_
            level[1] -= 1
            if level[1] == 0:
                del lv[price]
                if best[(loc, sd)] == price:
                    best[(loc, sd)] = (max(lv) if sd == "B" else min(lv)) if lv else None
        else:
            o[3] -= shares
            level[0] -= shares

    for code, loc, ts, ref, new_ref, sd, shares, price, match, seq in rows:
        if code == "P":
            trades += 1
            continue
        before = quote(loc)
        if code == "A" or code == "F":
            add(ref, loc, sd, price, shares)
        else:
            o = orders.get(ref)
            if o is None or o[0] != loc:
                continue
            if code == "D":
                take(ref, o, o[3])
            elif code == "U":
                side = o[1]
                take(ref, o, o[3])
                add(new_ref, loc, side, price, shares)
            else:
                if code != "X":
                    trades += 1
                take(ref, o, shares)
        after = quote(loc)
        if after != before:
            tobs.append((loc, *after, ts, seq))
    return tobs, trades


# --------------------------------------------------------------------------- #
# the run
# --------------------------------------------------------------------------- #


def _timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def _write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=MESSAGES_DEFAULT)
    ap.add_argument("--peer-messages", type=int, default=PEER_MESSAGES,
                    help="prefix the Python dict-of-orders peer rebuilds (0: the whole day)")
    ap.add_argument("--reference-messages", type=int, default=REFERENCE_MESSAGES,
                    help="prefix host.book.BookSet rebuilds (0: skip)")
    args = ap.parse_args(argv)

    path, feed = ensure_feed(args.messages)
    print(f"feed: {path} ({feed['messages']:,} messages, {feed['bytes']:,} bytes"
          + (", reused)" if feed["reused"] else f", generated in {feed['generate_seconds']:.1f} s)"), flush=True)
    table, read_s, _ = _timed(read_itch_file, path)
    n = table.n_messages
    assert not table.errors
    print(f"read: {read_s:.2f} s", flush=True)

    rebuild(prefix(table, 10_000))                          # numba compile (or cache load) off the clock
    runs = []
    for _ in range(RUNS):
        fast, wall, cpu = _timed(rebuild, table)
        runs.append((wall, cpu))
        print(f"fastbook: {n:,} messages in {wall:.2f} s ({n / wall / 1e6:.2f} M msg/s, cpu {cpu:.2f} s)",
              flush=True)
    best_wall = min(w for w, _ in runs)
    best_cpu = min(c for _, c in runs)

    peer_n = min(args.peer_messages or n, n)
    head = prefix(table, peer_n)
    fast_head = rebuild(head)
    rows = peer_rows(head)
    (peer_tobs, peer_trades), peer_wall, peer_cpu = _timed(dict_book, rows)
    del rows
    assert peer_tobs == [tuple(r) for r in fast_head.tob.tolist()], "the dict peer disagrees with fastbook"
    assert peer_trades == fast_head.counters["trades"]
    print(f"dict-of-orders peer: {peer_n:,} messages in {peer_wall:.2f} s "
          f"({peer_n / peer_wall / 1e6:.3f} M msg/s), same {len(peer_tobs):,} top-of-book events", flush=True)

    reference = None
    if args.reference_messages:
        ref_n = min(args.reference_messages, n)
        small = prefix(table, ref_n)
        msgs = small.to_messages()

        def run_reference():
            books = BookSet()
            return [ev for i, m in enumerate(msgs, 1) for ev in books.apply(m, i) if isinstance(ev, TopOfBook)]

        ref_tobs, ref_wall, ref_cpu = _timed(run_reference)
        assert [(*e.__dict__.values(),) for e in ref_tobs] == [tuple(r) for r in rebuild(small).tob.tolist()]
        reference = {"messages": ref_n, "seconds": ref_wall, "cpu_seconds": ref_cpu,
                     "messages_per_s": ref_n / ref_wall,
                     "note": "host.book.BookSet (readable reference) on decoded dataclasses, prefix of the day"}
        print(f"host.book reference: {ref_n:,} messages in {ref_wall:.2f} s ({ref_n / ref_wall / 1e6:.3f} M msg/s)",
              flush=True)

    fast_rate, peer_rate = n / best_wall, peer_n / peer_wall
    report = {
        "feed": {k: feed[k] for k in ("messages", "instruments", "seed", "bytes", "reused")},
        "read_seconds": read_s,
        "book_messages": {c: len(table[c]) for c in TYPES},
        "fastbook": {"messages": n, "seconds": best_wall, "cpu_seconds": best_cpu, "messages_per_s": fast_rate,
                     "messages_per_cpu_s": n / best_cpu, "runs": [{"seconds": w, "cpu_seconds": c} for w, c in runs],
                     "tob_events": int(len(fast.tob)), "trades": int(len(fast.trades)),
                     "counters": fast.counters, "live_orders_at_end": fast.live_orders,
                     "note": f"best of {RUNS} runs over the whole day, from the ItchTable (read not included)"},
        "dict_peer": {"messages": peer_n, "seconds": peer_wall, "cpu_seconds": peer_cpu,
                      "messages_per_s": peer_rate, "messages_per_cpu_s": peer_n / peer_cpu,
                      "tob_events": len(peer_tobs),
                      "note": ("pure Python dict-of-orders + dict-of-levels on a prefix of the day"
                               if peer_n < n else "pure Python dict-of-orders + dict-of-levels on the whole day")
                              + ", from per-message tuples prepared off the clock; its top-of-book events "
                                "equal fastbook's on the same prefix"},
        "reference_bookset": reference,
        "speedup_vs_dict_peer": fast_rate / peer_rate,
        "speedup_vs_dict_peer_cpu": (n / best_cpu) / (peer_n / peer_cpu),
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    _write(OUT, report)
    print(json.dumps(report, indent=1))
    print(f"fastbook {fast_rate / 1e6:.2f} M msg/s ({n / best_cpu / 1e6:.2f} M per cpu-s) vs dict peer "
          f"{peer_rate / 1e6:.3f} M msg/s ({peer_n / peer_cpu / 1e6:.3f} M per cpu-s): {fast_rate / peer_rate:.0f}x; "
          f"wrote {OUT}")


if __name__ == "__main__":
    main()
