"""The live view of ``calarb run``: a Rich screen on a terminal, plain log lines otherwise.

What
    :func:`snapshot` reads a running :class:`calarb.run.RunContext` into one JSON-ready dict: per
    instrument the consolidated top of book, the model's fair value and the armed thresholds, the
    position and target; signals by source; P&L; orders by path (host or gateware) and state;
    tick-to-trade latency percentiles (host path in ns; gateware path in cycles and ns once the
    trigger fires); NIC counters (gaps, drops, lost book orders) and rejects by reason.
    :class:`LiveView` renders it with ``rich.live.Live`` when the console is a terminal, and
    otherwise prints one compact JSON line every ``log_interval_s``.

Why
    Issue 11: a person watching the run sees what the loop does; a CI log gets the same facts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import numpy as np

__all__ = ["LiveView", "snapshot"]

_STATE = {None: "open", "2": "filled", "4": "cancelled", "8": "rejected", "C": "expired", "3": "done"}


def _px(v) -> str:
    return "-" if v is None or v == 0 else f"{v / 10_000:.2f}"


def snapshot(ctx) -> dict:
    """The state of the run, JSON-ready (see the module doc)."""
    e = ctx.engine
    out = {"elapsed_s": round(ctx.elapsed, 1), "nic": ctx.nic_kind, "ready": bool(e.ready), "instruments": {},
           "restarts": ctx.restarts}
    fair = {}
    for pm in e.pairs:
        fv = e.fair_values(pm)
        if fv:
            fair.update(fv)
    gw = next(iter(e.gateways.values()), None)
    for k in e.instruments:
        cons = e.consolidated(k)
        th = gw.armed.get(k) if gw is not None else None
        out["instruments"][k] = {
            "bid": cons.bid_price if cons else None, "ask": cons.ask_price if cons else None,
            "fair": fair.get(k), "buy_below": th.buy_below if th else None, "sell_above": th.sell_above if th else None,
            "position": e.position(k), "target": e.targets.get(k, 0)}
    orders = Counter()
    for o in e.reconciler.orders.values():
        state = "open" if o.open else ("filled" if o.cum_qty >= o.quantity else _STATE.get(o.final, o.final))
        orders[f"{o.origin}:{state}"] += 1
    out["orders"] = dict(sorted(orders.items()))
    s = e.stats
    out["signals"] = {"pairs": s.get("signals", 0), "volarb": s.get("volarb_signals", 0)}
    out["volarb_live"] = dict(e._volarb_state)
    out["pairs"] = [{"pair": f"{p.config.y}/{p.config.x}", "z": None if p.signal is None or np.isnan(p.signal.last_z)
                     else round(float(p.signal.last_z), 2), "position": p.signal.position if p.signal else 0}
                    for p in e.pairs]
    out["pnl"] = {k: round(v, 2) for k, v in e.reconciler.pnl().items()}
    t2o = e.latency.samples("tick_to_order")
    out["tick_to_trade"] = {"host_ns": _pct(t2o), "gateware_cycles": _pct(np.asarray(e.gateware_cycles))}
    out["calibrations"] = {"accepted": s.get("option_calibrations_accepted", 0),
                           "refused": s.get("option_calibrations_refused", 0)}
    counters = Counter()
    for venue, feed in e.feeds.items():
        try:
            c = feed.nic.counters()
        except Exception:  # noqa: BLE001 - a closed NIC during a restart
            continue
        for name, v in c.items():
            if v and any(w in name for w in ("gap", "drop", "lost", "error", "reject", "refused", "bad")):
                counters[name] += v
        counters["re-requests"] += feed.stats.get("requests", 0)
    out["counters"] = dict(sorted(counters.items()))
    rejects = {k[len("refused_"):]: v for k, v in s.items() if k.startswith("refused_")}
    rejects["venue"] = orders.get("host:rejected", 0) + orders.get("gateware:rejected", 0)
    out["rejects"] = rejects
    out["fills"] = s.get("fills", 0)
    return out


def _pct(samples) -> dict | None:
    if len(samples) == 0:
        return None
    p50, p99 = np.percentile(samples, [50, 99])
    return {"n": int(len(samples)), "p50": int(p50), "p99": int(p99), "max": int(np.max(samples))}


class LiveView:
    """Render :func:`snapshot` every call: Rich on a terminal, a JSON log line every ``log_interval_s`` else."""

    def __init__(self, log_interval_s: float = 5.0, *, file=None, force_terminal: bool | None = None):
        from rich.console import Console

        self.console = Console(file=file or sys.stdout, force_terminal=force_terminal)
        self.tty = self.console.is_terminal
        self.log_interval_s = log_interval_s
        self._live = None
        self._last_log = -1e9

    def __call__(self, ctx) -> None:
        snap = snapshot(ctx)
        if not self.tty:
            now = time.monotonic()
            if now - self._last_log >= self.log_interval_s:
                self._last_log = now
                print(json.dumps({"event": "status", **_compact(snap)}, separators=(",", ":")), flush=True)
            return
        if self._live is None:
            from rich.live import Live
            self._live = Live(self.render(snap), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        else:
            self._live.update(self.render(snap))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @staticmethod
    def render(snap: dict):
        from rich.console import Group
        from rich.table import Table

        head = (f"calarb run   t={snap['elapsed_s']:.0f}s   nic={snap['nic']}   "
                f"{'READY' if snap['ready'] else 'catching up'}   restarts={snap['restarts']}")
        t = Table(title=head, expand=False)
        for col in ("instrument", "bid", "ask", "fair", "buy below", "sell above", "position", "target"):
            t.add_column(col, justify="right")
        for k, r in snap["instruments"].items():
            t.add_row(k, _px(r["bid"]), _px(r["ask"]), "-" if r["fair"] is None else f"{r['fair']:.2f}",
                      _px(r["buy_below"]), _px(r["sell_above"]), str(r["position"]), str(r["target"]))
        info = Table(show_header=False, box=None)
        info.add_column(style="bold")
        info.add_column()
        pnl = snap["pnl"]
        info.add_row("P&L", f"total {pnl.get('total', 0):.2f}  realised {pnl.get('realised', 0):.2f}  "
                            f"unrealised {pnl.get('unrealised', 0):.2f}")
        info.add_row("pairs", "  ".join(f"{p['pair']} z={p['z']} pos={p['position']}" for p in snap["pairs"]))
        info.add_row("signals", f"pairs {snap['signals']['pairs']}  vol-arb {snap['signals']['volarb']}  "
                                f"live vol-arb {snap['volarb_live'] or '-'}")
        info.add_row("calibrations", f"accepted {snap['calibrations']['accepted']}  "
                                     f"refused {snap['calibrations']['refused']}")
        info.add_row("orders", "  ".join(f"{k} {v}" for k, v in snap["orders"].items()) or "-")
        h = snap["tick_to_trade"]["host_ns"]
        info.add_row("tick-to-trade", ("host path " + (f"p50 {h['p50'] / 1e3:.0f} us  p99 {h['p99'] / 1e3:.0f} us "
                                                       f"(n={h['n']})" if h else "-")
                                       + ("   gateware " + (f"p50 {g['p50']} cycles  p99 {g['p99']} cycles (n={g['n']})"
                                                             if (g := snap["tick_to_trade"]["gateware_cycles"])
                                                             else "- (no gateware fires yet)"))))
        info.add_row("NIC counters", "  ".join(f"{k} {v}" for k, v in snap["counters"].items()) or "-")
        info.add_row("rejects", "  ".join(f"{k} {v}" for k, v in snap["rejects"].items()) or "-")
        return Group(t, info)


def _compact(snap: dict) -> dict:
    out = {k: snap[k] for k in ("elapsed_s", "nic", "ready", "pnl", "orders", "signals", "fills", "calibrations",
                                "counters")}
    out["pairs"] = snap["pairs"]
    h = snap["tick_to_trade"]["host_ns"]
    out["t2o_host_us"] = None if h is None else {"p50": round(h["p50"] / 1e3, 1), "p99": round(h["p99"] / 1e3, 1)}
    out["mid"] = {k: None if not (r["bid"] and r["ask"]) else round((r["bid"] + r["ask"]) / 20_000, 2)
                  for k, r in snap["instruments"].items()}
    return out
