"""The soak: ``calarb run`` for minutes under load with injected faults, then end checks.

What
    :func:`soak` runs :func:`calarb.run.run` on the example config with the background flow at
    ``rate`` requests per second per venue and, while it runs, injects faults on a fixed schedule
    (a fraction of each period): live market data datagrams dropped at the venues (recovered by
    MoldUDP64 re-requests), FIX sessions cut by the venues (the engine reconnects, the sessions
    resend), one host restart (the engine stopped and started again on the same run directory: it
    recovers from the FIX stores and the journal and replays the feeds), and option calibration
    failures (refused; the last accepted parameters stay). Then it quiesces (no more flow, the
    feeds caught up, nothing open) and checks:

    * books: for every venue and tracked instrument, the NIC's last top of book equals a reference
      book - the software golden model (``host.softnic.SoftwareNic``) fed the venue's whole
      published feed, gap-free, from its retransmission store - and, where the gateware book lost
      no order, the venue matching engine's own best bid and ask;
    * orders: every ClOrdID the engine sent reached the venue exactly once, every venue report
      for us was journaled exactly once (by ExecID), the fills agree, nothing is open, the
      reconciler raised no mismatch and every position balances with its fills;
    * files: the journal parses line by line, DuckDB opens and every table scans, every FIX
      store loads and its messages decode, the JSON files parse and the PNGs load.

    ``python -m calarb.soak --minutes 10`` is ``make soak``; a 1.5-minute version runs in the tests.

Why
    Issue 11: reliability under load and faults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from calarb.run import EXAMPLE_CONFIG, RunContext, load_run_config, run

__all__ = ["check_books", "check_files", "check_orders", "soak"]


def _with_rate(cfg, rate: float, minutes: float):
    """The config with every venue's flow at ``rate`` and the shocks spread over the run."""
    venues = tuple(replace(v, flow=replace(v.flow, rate=rate)) if v.flow else v for v in cfg.exchange.venues)
    span = minutes * 60.0
    market = replace(cfg.market, shocks=tuple(replace(s, at_s=span * 0.3, for_s=span * 0.2) for s in cfg.market.shocks))
    chain = replace(cfg.chain, shocks=tuple(replace(s, at_s=span * 0.4, for_s=span * 0.2) for s in cfg.chain.shocks))
    return replace(cfg, exchange=replace(cfg.exchange, venues=venues), market=market, chain=chain,
                   duration_s=span + 120.0)


async def _until(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"soak: gave up waiting for {what}")
        await asyncio.sleep(0.05)


class Faults:
    """The fault schedule over ``span`` seconds and what was injected."""

    def __init__(self, span: float, drop_rate: float, seed: int = 11):
        self.span = span
        self.drop_rate = drop_rate
        self.rng = random.Random(seed)
        self.dropping = False
        self.injected: Counter = Counter()

    def drop(self, payload: bytes) -> bool:
        if self.dropping and self.rng.random() < self.drop_rate:
            self.injected["md_datagrams_dropped"] += 1
            return True
        return False

    async def run(self, ctx: RunContext) -> None:
        for v in ctx.exchange.venues:
            v.publisher.drop = self.drop
        await _until(lambda: ctx.engine.was_ready, 180, "engine ready (feeds caught up, FIX logged on)")
        s = self.span
        plan = [(0.10, "drops_on"), (0.20, "fix_disconnect"), (0.25, "calibration_failure"), (0.35, "drops_off"),
                (0.45, "host_restart"), (0.60, "fix_disconnect"), (0.65, "drops_on"), (0.70, "calibration_failure"),
                (0.75, "drops_off")]
        t0 = time.monotonic()
        for at, what in plan:
            await asyncio.sleep(max(0.0, t0 + at * s - time.monotonic()))
            if what == "drops_on":
                self.dropping = True
            elif what == "drops_off":
                self.dropping = False
            elif what == "fix_disconnect":
                for v in ctx.exchange.venues:
                    sess = v.order_entry.session("CALARB") if v.order_entry else None
                    if sess is not None and sess.connected_now:
                        sess.disconnect("soak: injected disconnect")
                        self.injected["fix_disconnects"] += 1
            elif what == "calibration_failure":
                ctx.engine.inject_calibration_failure()
                self.injected["calibration_failures"] += 1
            elif what == "host_restart":
                await ctx.restart_engine()
                self.injected["host_restarts"] += 1
        await asyncio.sleep(max(0.0, t0 + s - time.monotonic()))
        await self.quiesce(ctx)
        ctx.checks = {"books": check_books(ctx)}
        ctx.stop.set()

    async def quiesce(self, ctx: RunContext) -> None:
        """Stop the flow and the drivers, then wait for the feeds, the FIX sessions and the orders to settle."""
        self.dropping = False
        for t in ctx.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        for v in ctx.exchange.venues:
            for t in list(v._tasks):
                if t.get_coro().__name__ == "_flow_loop":
                    t.cancel()
        e = ctx.engine

        def settled():
            return (e.ready and all(e.feeds[v.name].expected >= v.publisher.next_seq for v in ctx.exchange.venues)
                    and not e.open_orders())

        await _until(settled, 120, "feeds caught up and no open order")
        await asyncio.sleep(0.5)
        await _until(settled, 60, "feeds caught up and no open order (again)")


def _reference_tops(venue, feed) -> dict:
    """Last TOB per symbol of the golden-model NIC fed ``venue``'s whole feed, gap-free, and the symbols
    whose book lost an order (BOOK_LOST: that book is short of the venue's by design)."""
    from host.marketdata import FeedHandler
    from host.softnic import SoftwareNic
    from protocols.events import LostEvent, TobEvent
    from protocols.moldudp64 import MoldPacket, encode_packet

    from host.bookrx import GatewareBook

    nic = SoftwareNic()
    c = feed.nic.read("book.config")   # the golden model with the NIC's own book parameters
    nic._book = GatewareBook(c & 0xFF, (c >> 24 & 0xFF) or 1, c >> 8 & 0xFF, c >> 16 & 0xFF)
    ref = FeedHandler(venue.name, nic, feed.locates, session=venue.cfg.session, md_port=feed.md_port)
    tops, lost = {}, set()
    seq, end = 1, venue.publisher.next_seq
    while seq < end:
        msgs = venue.publisher.lookup(seq, 40)
        ref.datagram(encode_packet(MoldPacket(venue.cfg.session, seq, tuple(msgs))))
        for ev in ref.poll():
            if isinstance(ev, TobEvent) and ev.instrument in ref.symbols:
                tops[ref.symbols[ev.instrument]] = (ev.bid_price, ev.bid_size, ev.ask_price, ev.ask_size)
            elif isinstance(ev, LostEvent):
                lost.add(ev.instrument)
        seq += len(msgs)
    return tops, {ref.symbols.get(i, i) for i in lost}


def check_books(ctx: RunContext) -> dict:
    """NIC books against the golden model on the gap-free feed, and against the venues' matching engines."""
    e = ctx.engine
    out = {"compared": 0, "differ": [], "exchange_compared": 0, "exchange_differ": [], "lost": {}}
    for v in ctx.exchange.venues:
        feed = e.feeds[v.name]
        ref, lost_syms = _reference_tops(v, feed)
        out["lost"][v.name] = sorted(map(str, lost_syms))
        for sym in feed.locates:
            last = e._last_top.get((v.name, sym))
            got = None if last is None else (last.bid_price, last.bid_size, last.ask_price, last.ask_size)
            want = ref.get(sym)
            out["compared"] += 1
            if got != want:
                out["differ"].append({"venue": v.name, "symbol": sym, "nic": got, "reference": want})
            bid, ask = v.engine.books[sym].top()
            if got is not None and sym not in lost_syms:
                out["exchange_compared"] += 1
                if (got[0] or None, got[2] or None) != (bid, ask):
                    out["exchange_differ"].append({"venue": v.name, "symbol": sym, "nic": got[::2],
                                                   "venue_top": [bid, ask]})
    out["ok"] = not out["differ"] and not out["exchange_differ"]
    return out


def check_orders(run_dir: Path, summary: dict, venue_reports: list) -> dict:
    """Every order at the venue once, every venue report journaled once, fills equal, all balanced."""
    from host.engine import Journal

    rec = summary["reconciliation"]
    journal = Journal.read(Path(run_dir) / "journal.jsonl")
    jexec = Counter(r["exec_id"] for r in journal if r.get("k") == "exec")
    venue_ids = Counter(f"{r['venue']}:{r['exec_id']}" for r in venue_reports)
    out = {"orders": rec["orders_sent"], "reports": len(venue_ids),
           "sent_twice": rec["sent_twice"], "acked_twice": rec["acked_twice"], "not_at_venue": rec["not_at_venue"],
           "unknown_at_venue": rec["unknown_at_venue"], "fill_differences": rec["fill_differences"],
           "journaled_twice": sorted(k for k, n in jexec.items() if n > 1),
           "reports_not_journaled": sorted(set(venue_ids) - set(jexec))[:20],
           "journaled_not_reported": sorted(set(jexec) - set(venue_ids))[:20],
           "open_orders": summary.get("open_orders", []), "mismatches": summary.get("mismatches", []),
           "unbalanced": summary.get("unbalanced", {})}
    out["ok"] = not any(out[k] for k in ("sent_twice", "acked_twice", "not_at_venue", "unknown_at_venue",
                                         "fill_differences", "journaled_twice", "reports_not_journaled",
                                         "journaled_not_reported", "open_orders", "mismatches", "unbalanced"))
    return out


def check_files(run_dir: Path) -> dict:
    """Every file of the run directory readable: journal, DuckDB tables, FIX stores, JSON, PNG."""
    import duckdb
    import matplotlib.image as mpimg

    from host.fix import FileStore
    from host.storage import TABLES
    from protocols import fix

    run_dir = Path(run_dir)
    problems, counts = [], Counter()
    text = (run_dir / "journal.jsonl").read_bytes()
    if text and not text.endswith(b"\n"):
        problems.append("journal.jsonl: torn last line")
    for i, line in enumerate(text.decode().splitlines()):
        try:
            json.loads(line)
            counts["journal_lines"] += 1
        except ValueError:
            problems.append(f"journal.jsonl line {i + 1} does not parse")
    con = duckdb.connect(str(run_dir / "history.duckdb"), read_only=True)
    try:
        for t in TABLES:
            counts[f"rows_{t}"] = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    finally:
        con.close()
    for store in sorted((run_dir / "fix").glob("*.store")):
        fs = FileStore(store, "never")
        try:
            for _, raw in sorted(fs.messages.items()):
                fix.decode(raw)
                counts["fix_messages"] += 1
        except Exception as exc:  # noqa: BLE001 - reported as a problem
            problems.append(f"{store.name}: {type(exc).__name__}: {exc}")
        finally:
            fs.close()
    for name in ("summary.json", "latency.json", "engine.json", "exchange.json"):
        try:
            json.loads((run_dir / name).read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    for png in sorted(run_dir.glob("*.png")):
        try:
            mpimg.imread(png)
            counts["png"] += 1
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{png.name}: {exc}")
    leftovers = [p.name for p in run_dir.rglob(".*.tmp*")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    return {"ok": not problems, "problems": problems, "counts": dict(counts)}


async def soak(minutes: float, run_dir, *, nic: str = "sim", rate: float = 400.0, drop_rate: float = 0.02,
               config=EXAMPLE_CONFIG) -> dict:
    """Run the soak (see the module doc); returns ``{"checks": ..., "faults": ..., "summary": ...}``."""
    cfg = _with_rate(load_run_config(config), rate, minutes)
    faults = Faults(minutes * 60.0, drop_rate)
    holder = {}

    async def on_start(ctx):
        holder["ctx"] = ctx
        await faults.run(ctx)

    async def capture(ctx):
        await on_start(ctx)

    ctx = await run(cfg, None, nic, run_dir, on_start=capture, report=False)
    engine = ctx.engine
    checks = dict(getattr(ctx, "checks", {}) or {})
    rec = engine.reconciliation()
    from calarb.report import write_report
    from calarb.run import run_info

    summary = write_report(ctx.run_dir, run_info(ctx))
    summary["open_orders"] = engine.open_orders()
    summary["mismatches"] = rec["mismatches"]
    summary["unbalanced"] = {k: r for k, r in rec["instruments"].items() if r["balance"] or r["pnl_check"]}
    checks["orders"] = check_orders(ctx.run_dir, summary, ctx.venue_reports)
    checks["files"] = check_files(ctx.run_dir)
    result = {"minutes": minutes, "nic": nic, "rate_per_venue": rate, "faults": dict(faults.injected),
              "checks": checks, "ok": all(c.get("ok") for c in checks.values()) and "books" in checks,
              "orders": summary["orders"], "calibrations": summary["calibrations"],
              "feeds": summary["feeds"], "run_dir": str(ctx.run_dir)}
    from calarb.run import _write_json
    _write_json(Path(ctx.run_dir) / "soak.json", result)
    return result


def main(argv=None) -> int:
    """``python -m calarb.soak --minutes 10 [--nic sim|software] [--rate R] [--run-dir DIR]``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--nic", choices=("sim", "software"), default="sim")
    p.add_argument("--rate", type=float, default=400.0, help="background flow requests per second per venue")
    p.add_argument("--drop-rate", type=float, default=0.02, help="share of datagrams dropped while dropping")
    p.add_argument("--run-dir", default="build/soak")
    a = p.parse_args(argv)
    result = asyncio.run(soak(a.minutes, a.run_dir, nic=a.nic, rate=a.rate, drop_rate=a.drop_rate))
    print(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
