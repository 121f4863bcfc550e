"""The run report: ``summary.json`` and PNG plots, from what a run directory recorded.

What
    :func:`write_report` reads the run directory - the history (DuckDB/Parquet through
    :class:`host.storage.Storage`: orders, executions, signals, calibrations, audit rows of kind
    ``pnl`` and ``spread``), ``latency.json``, ``engine.json``, ``exchange.json`` (the venues' own
    record of our orders and fills) - and writes, each atomically (temp file + ``os.replace``):

    * ``summary.json``: the run, orders by path and state, fills, P&L, positions, reconciliation
      against the venues' reports, signals by source, calibrations, latency per stage, NIC
      counters, and how this NIC kind differs from the other;
    * ``pnl.png``: P&L (total, realised, unrealised) over time;
    * ``latency.png``: the tick-to-trade histogram. Until the trigger gateware fires orders, this
      is the host path (datagram in to NewOrderSingle written, ns) and is labelled so;
      ``latency.json`` key ``gateware.tick_to_trade_cycles`` (a list of cycle counts) adds the
      gateware panel in cycles and in ns at the synthesised fmax (``build/synth/*.json``);
    * ``calibration.png``: the latest accepted calibration, market against model implied vol
      per expiry;
    * ``spread.png``: the pair's spread with its rolling mean, the entry and exit bands
      (mean +- z x std) and the orders on it.

Why
    Issue 11: a run leaves everything recorded, a summary and the plots people look at.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["PLOTS", "fmax_mhz", "write_report"]

PLOTS = ("pnl.png", "latency.png", "calibration.png", "spread.png")
ROOT = Path(__file__).resolve().parents[1]

NIC_KINDS = {
    "sim": "the Verilated gateware core (sim/gatewarenic.py), one per venue: Ethernet/IPv4/UDP, MoldUDP64 "
           "sequencing, ITCH decoding and the order book in RTL, events stamped in clock cycles",
    "software": "the software receive path (host/softnic.py over host/rxpath.py and host/bookrx.py): the "
                "gateware's golden models in Python, the same events for the same frames, no clock (event "
                "timestamps count frames), and no gateware trigger to fire orders",
}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def fmax_mhz(pattern: str | None = None) -> tuple[float, str] | None:
    """The core's synthesised fmax (MHz) and its file, from ``build/synth/*.json`` (lowest device), if any."""
    best = None
    for f in sorted(glob.glob(pattern or str(ROOT / "build" / "synth" / "*.json"))):
        d = _read_json(Path(f), {})
        fm = d.get("fmax_mhz") if isinstance(d, dict) else None
        if isinstance(fm, dict) and fm:
            v = min(float(x) for x in fm.values())
            if best is None or v < best[0]:
                best = (v, f)
    return best


def _rows(storage, table: str, where: str = "") -> list[dict]:
    return storage.scan(table, where).to_pylist()


def _audit(storage, kind: str) -> list[tuple[int, dict]]:
    return [(r["time_ns"], json.loads(r["detail"])) for r in _rows(storage, "audit", f"kind = '{kind}'")]


def write_report(run_dir, run: dict | None = None) -> dict:
    """Write ``summary.json`` and the plots under ``run_dir``; returns the summary."""
    import matplotlib

    matplotlib.use("Agg")
    from host.config import StorageConfig
    from host.storage import Storage

    run_dir = Path(run_dir)
    run = dict(run or {})
    latency = _read_json(run_dir / "latency.json", {})
    engine = _read_json(run_dir / "engine.json", {})
    exchange = _read_json(run_dir / "exchange.json", {"venues": [], "reports": []})
    storage = Storage(run_dir, StorageConfig(run_dir=str(run_dir)))
    try:
        orders = _rows(storage, "orders")
        execs = _rows(storage, "executions")
        signals = _rows(storage, "signals")
        cals = _rows(storage, "calibrations")
        pnl = _audit(storage, "pnl")
        spread = _audit(storage, "spread")
        audit_kinds = Counter(r["kind"] for r in _rows(storage, "audit"))
    finally:
        storage.close()
    t0 = min([t for t, _ in pnl] + [o["time_ns"] for o in orders] or [0])

    summary = {"run": run, "run_dir": str(run_dir)}
    summary["orders"] = _order_summary(orders, execs)
    summary["reconciliation"] = _reconcile(orders, execs, exchange.get("reports", []))
    summary["pnl"] = engine.get("pnl", {})
    summary["positions"] = engine.get("positions", {})
    summary["signals"] = dict(Counter(f"{s['source']}:{'+-0'[(s['direction'] < 0) + 2 * (s['direction'] == 0)]}"
                                      for s in signals))
    summary["volarb_signals"] = [{"instrument": s["instrument"], "direction": s["direction"],
                                  "strength": round(s["strength"], 4), "t_s": round((s["time_ns"] - t0) / 1e9, 2)}
                                 for s in signals if s["source"] == "volarb"][:50]
    summary["calibrations"] = {"accepted": sum(1 for c in cals if c["accepted"]),
                               "refused": sum(1 for c in cals if not c["accepted"]),
                               "by_model": dict(Counter(f"{c['model']}:{'accepted' if c['accepted'] else 'refused'}"
                                                        for c in cals))}
    stages = latency.get("stages", {})
    summary["latency_ns"] = {k: {x: v.get(x) for x in ("count", "p50_ns", "p99_ns", "max_ns", "within_budget")}
                             for k, v in stages.items() if v.get("count")}
    summary["engine_stats"] = engine.get("stats", {})
    summary["feeds"] = engine.get("feeds", {})
    summary["venues"] = exchange.get("venues", [])
    summary["audit"] = dict(audit_kinds)
    kind = run.get("nic")
    nic_stage = stages.get("nic", {})
    summary["nic"] = {"kind": kind, "path": NIC_KINDS.get(kind),
                      "nic_stage_p50_ns": nic_stage.get("p50_ns"), "nic_stage_p99_ns": nic_stage.get("p99_ns"),
                      "differs_from_other": _difference(kind)}
    gw = latency.get("gateware", {})
    fm = fmax_mhz()
    summary["tick_to_trade"] = {
        "host_path_ns": {x: stages.get("tick_to_order", {}).get(x) for x in ("count", "p50_ns", "p99_ns", "max_ns")},
        "gateware_cycles": _stats(gw.get("tick_to_trade_cycles", [])),
        "fmax_mhz": fm[0] if fm else None, "fmax_source": fm[1] if fm else None,
        "note": "gateware fires are not integrated yet; the host path is datagram in -> NewOrderSingle written, "
                "including the fsyncs that make each target and order durable before it is sent"
        if not gw.get("tick_to_trade_cycles") else ""}

    plots = {}
    plots["pnl.png"] = _plot_pnl(run_dir / "pnl.png", pnl, t0)
    plots["latency.png"] = _plot_latency(run_dir / "latency.png", latency, fm)
    plots["calibration.png"] = _plot_calibration(run_dir / "calibration.png", cals)
    plots["spread.png"] = _plot_spread(run_dir / "spread.png", spread, orders, t0, run.get("pairs") or [])
    summary["plots"] = {k: str(run_dir / k) for k, ok in plots.items() if ok}
    text = json.dumps(summary, indent=1, sort_keys=True, default=str) + "\n"
    _write_atomic(run_dir / "summary.json", text.encode())
    return summary


def _difference(kind) -> str:
    if kind == "sim":
        return ("this run decoded market data in the Verilated gateware; `--nic software` runs the same loop "
                "through the Python golden models, which produce the same TOB events for the same frames, "
                "but without cycle timestamps and (once the trigger is integrated) without gateware fires; "
                "compare nic_stage_p50_ns (the host's cost of a datagram through the NIC) between the two")
    if kind == "software":
        return ("this run decoded market data in Python (the gateware's golden models); `--nic sim` runs the "
                "same loop through the Verilated gateware, with the same TOB events, cycle timestamps and, "
                "once integrated, gateware trigger fires")
    return ""


def _stats(a) -> dict | None:
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return None
    p50, p99 = np.percentile(a, [50, 99])
    return {"count": int(a.size), "p50": float(p50), "p99": float(p99), "max": float(a.max())}


def _order_summary(orders, execs) -> dict:
    by_path = Counter(o["origin"] for o in orders)
    fills = [e for e in execs if e["exec_type"] in ("F", "1", "2") and e["last_qty"] > 0]
    final = {}
    for e in execs:
        if e["exec_type"] in ("4", "8", "C", "3"):
            final[e["clordid"]] = {"4": "cancelled", "8": "rejected", "C": "expired", "3": "done"}[e["exec_type"]]
    filled_qty = Counter()
    for f in fills:
        filled_qty[f["clordid"]] += f["last_qty"]
    states = Counter()
    for o in orders:
        q = filled_qty.get(o["clordid"], 0)
        if q >= o["quantity"]:
            s = "filled"
        elif o["clordid"] in final:
            s = final[o["clordid"]] + ("_partial" if q else "")
        else:
            s = "open"
        states[f"{o['origin']}:{s}"] += 1
    return {"sent": len(orders), "by_path": dict(by_path), "by_state": dict(sorted(states.items())),
            "fills": len(fills), "filled_shares": int(sum(f["last_qty"] for f in fills))}


def _reconcile(orders, execs, venue_reports) -> dict:
    """Our orders and fills against the venues' own reports: every order once, the same fills."""
    ours = Counter(o["clordid"] for o in orders)
    acked = Counter(r["clordid"] for r in venue_reports if r["exec_type"] == "0")
    venue_fill = Counter()
    for r in venue_reports:
        if r["exec_type"] == "F":
            venue_fill[r["clordid"]] += r["last_qty"]
    our_fill = Counter()
    for e in execs:
        if e["exec_type"] == "F":
            our_fill[e["clordid"]] += e["last_qty"]
    return {"orders_sent": len(ours), "orders_at_venue": len(acked),
            "sent_twice": sorted(k for k, n in ours.items() if n > 1),
            "acked_twice": sorted(k for k, n in acked.items() if n > 1),
            "not_at_venue": sorted(set(ours) - set(acked)), "unknown_at_venue": sorted(set(acked) - set(ours)),
            "fill_differences": {k: [our_fill.get(k, 0), venue_fill.get(k, 0)]
                                 for k in sorted(set(our_fill) | set(venue_fill))
                                 if our_fill.get(k, 0) != venue_fill.get(k, 0)},
            "filled_shares": int(sum(our_fill.values()))}


# ----------------------------------------------------------------------------- plots


def _fig(*a, **kw):
    import matplotlib.pyplot as plt

    return plt.subplots(*a, **kw)


def _plot_pnl(path, pnl, t0) -> bool:
    fig, ax = _fig(figsize=(8, 3.6))
    if pnl:
        t = np.array([(tt - t0) / 1e9 for tt, _ in pnl])
        for key, style in (("total", "-"), ("realised", "--"), ("unrealised", ":")):
            ax.plot(t, [d.get(key, 0.0) for _, d in pnl], style, label=key)
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no P&L recorded", ha="center", transform=ax.transAxes)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="seconds since start", ylabel="P&L (currency units)", title="P&L over the run")
    fig.tight_layout()
    _savefig(fig, path)
    return True


def _plot_latency(path, latency, fm) -> bool:
    host = np.asarray(latency.get("samples_ns", {}).get("tick_to_order", []), dtype=float)
    gw = np.asarray(latency.get("gateware", {}).get("tick_to_trade_cycles", []), dtype=float)
    n = 2 if gw.size else 1
    fig, axes = _fig(1, n, figsize=(8 if n == 1 else 11, 3.6), squeeze=False)
    ax = axes[0][0]
    if host.size:
        us = host / 1e3
        ax.hist(us, bins=min(50, max(5, host.size // 2)), color="tab:blue")
        p50, p99 = np.percentile(us, [50, 99])
        ax.axvline(p50, color="k", ls="--", lw=0.8, label=f"p50 {p50:.0f} us")
        ax.axvline(p99, color="r", ls=":", lw=0.8, label=f"p99 {p99:.0f} us")
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no host-path orders", ha="center", transform=ax.transAxes)
    ax.set(xlabel="microseconds (includes the fsyncs of journal and FIX store before sending)", ylabel="orders",
           title="Host path tick-to-order (datagram in -> FIX NewOrderSingle written)")
    if gw.size:
        ax2 = axes[0][1]
        ax2.hist(gw, bins=min(50, max(5, gw.size // 2)), color="tab:green")
        title = "Gateware tick-to-trade (cycles)"
        if fm:
            title += f"; at {fm[0]:.0f} MHz: p50 {np.percentile(gw, 50) * 1e3 / fm[0]:.0f} ns"
        ax2.set(xlabel="cycles", ylabel="orders", title=title)
    fig.tight_layout()
    _savefig(fig, path)
    return True


def _plot_calibration(path, cals) -> bool:
    fig, ax = _fig(figsize=(8, 4.2))
    latest = None
    for c in reversed(cals):
        if c["accepted"]:
            m = json.loads(c["metrics"])
            if "surface" in m:
                latest = (c, m)
                break
    if latest is None:
        ax.text(0.5, 0.5, "no accepted option calibration", ha="center", transform=ax.transAxes)
    else:
        c, m = latest
        s = m["surface"]
        days = np.array(s["expiry_days"], dtype=float)
        K = np.array(s["strike"], dtype=float)
        mk = np.array([np.nan if v is None else v for v in s["market_iv"]], dtype=float)
        md = np.array([np.nan if v is None else v for v in s["model_iv"]], dtype=float)
        calls = np.array(s["is_call"], dtype=bool)
        F = s.get("spot", 1.0)
        for i, d in enumerate(np.unique(np.round(days))):
            sel = (np.round(days) == d)
            otm = sel & np.where(calls, K >= F, K < F)
            color = f"C{i}"
            order = np.argsort(K[otm])
            ax.plot(K[otm][order], md[otm][order], "-", color=color, label=f"{d:.0f} d model")
            ax.plot(K[sel], mk[sel], "o", color=color, ms=3, alpha=0.7)
        rmse = m.get("rmse_iv")
        ax.set(xlabel="strike", ylabel="implied vol",
               title=f"Latest {c['model']} calibration: market (dots) vs model (lines)"
                     + (f", RMSE {rmse * 100:.2f} vol pts" if rmse is not None else ""))
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)
    return True


def _plot_spread(path, spread, orders, t0, pairs) -> bool:
    fig, ax = _fig(figsize=(9, 4.2))
    if not spread:
        ax.text(0.5, 0.5, "no spread observations (window not full)", ha="center", transform=ax.transAxes)
    else:
        name = spread[0][1]["pair"]
        rows = [(t, d) for t, d in spread if d["pair"] == name]
        t = np.array([(tt - t0) / 1e9 for tt, _ in rows])
        s = np.array([d["spread"] for _, d in rows])
        mean = np.array([d["mean"] for _, d in rows])
        std = np.array([d["std"] for _, d in rows])
        entry, exit_ = rows[0][1]["entry_z"], rows[0][1]["exit_z"]
        ax.plot(t, s, lw=0.8, color="k", label="spread")
        ax.plot(t, mean, lw=0.8, color="tab:blue", label="rolling mean")
        ax.fill_between(t, mean - entry * std, mean + entry * std, color="tab:blue", alpha=0.12,
                        label=f"entry band (|z| < {entry:g})")
        ax.fill_between(t, mean - exit_ * std, mean + exit_ * std, color="tab:green", alpha=0.18,
                        label=f"exit band (|z| < {exit_:g})")
        y = name.split("/")[0]
        for side, marker, color, label in ((1, "^", "tab:green", f"buy {y}"), (-1, "v", "tab:red", f"sell {y}")):
            ot = [(o["time_ns"] - t0) / 1e9 for o in orders if o["instrument"] == y and o["side"] == side]
            if ot:
                ax.plot(ot, np.interp(ot, t, s), marker, color=color, ms=8, ls="none", label=label)
        ax.set(xlabel="seconds since start", ylabel="spread (currency units)",
               title=f"{name}: spread, z-score bands and trades")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)
    return True
