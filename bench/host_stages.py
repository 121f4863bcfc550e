"""Per-stage latency of the host's trading stages against DESIGN.md's budgets.

Each stage is timed alone, per call, with :class:`host.latency.LatencyRecorder`
(``perf_counter_ns``), on synthetic but realistically sized inputs (fixed seeds):

* ``validation``: :func:`host.types.check_tob` on one tick;
* ``cache_update``: a tick into the in-memory state (risk and reconciler marks);
* ``signals``: all signals of one evaluation - 10 pairs updated by a tick
  each, volatility arbitrage over a 120-option chain (implied vols of bid, ask
  and mid) with a Heston model surface computed beforehand (as after a
  calibration), the ATM term structure and its calendar signals;
* ``aggregation``: :func:`host.aggregate.aggregate` of those signals;
* ``risk``: :meth:`host.risk.RiskManager.check` of one order against a 20-instrument
  portfolio with 250 days of returns (historical and parametric VaR, exposures);
* ``order_submission``: the host's part of sending one order - sizing,
  routing across the configured venues (two by default), arming the gateware threshold, recording the
  order (the FIX encoding is the FIX engine's, measured in its own bench);
* ``reconcile``: one ExecutionReport matched, position and P&L updated;
* ``history_insert``: :meth:`host.storage.Storage.flush` of a 1000-row
  top-of-book batch into DuckDB.

The reference is the budget table (upper bounds); no other peer implements
these stages. Prints a table and writes ``build/bench/host_stages.json``.
Run as ``python -m bench.host_stages``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from host.aggregate import aggregate
from host.arming import arm
from host.config import EngineConfig, LatencyConfig, RiskLimits
from host.latency import LatencyRecorder
from host.reconcile import Reconciler
from host.risk import RiskManager
from host.routing import route
from host.signals import (OptionQuotes, PairsSignal, TermStructureSignal, VolArbSignal, atm_term_structure,
                          heston_model_iv)
from host.sizing import size_order
from host.storage import Storage
from host.types import Execution, OrderIntent, Side, TopOfBook, check_tob
from models import black_scholes as bs
from models.heston import HestonParams

OUT = Path("build/bench/host_stages.json")
N = 2000
N_SLOW = 200


def chain(rng):
    strikes = np.linspace(80, 120, 20)
    expiries = np.array([30, 60, 91, 182, 273, 365]) / 365.0
    K, T = np.meshgrid(strikes, expiries)
    K, T = K.ravel(), T.ravel()
    vol = 0.2 + 0.1 * (K / 100 - 1) ** 2 - 0.02 * T + rng.normal(0, 0.003, K.size)
    is_call = K >= 100
    mid = bs.price(100.0, K, T, 0.02, 0.0, vol, is_call)
    half = np.maximum(0.01, 0.01 * mid)
    return OptionQuotes(tuple(f"OPT{i}" for i in range(K.size)), K, T, is_call, mid - half, mid + half,
                        rng.integers(1, 100, K.size), rng.integers(1, 100, K.size), 100.0, 0.02, 0.0)


def main() -> dict:
    rng = np.random.default_rng(11)
    cfg = EngineConfig()
    rec = LatencyRecorder(LatencyConfig(), capacity=N)
    names = [f"S{i:02d}" for i in range(20)]
    mids = {k: 50 + 10 * i for i, k in enumerate(names)}

    # --- inputs ---------------------------------------------------------------------------------
    ticks = []
    for i in range(N):
        k = names[i % len(names)]
        bid = int(mids[k] * 10_000) + int(rng.integers(-50, 50)) * 100
        ticks.append(TopOfBook(k, bid, int(rng.integers(1, 500)), bid + 100, int(rng.integers(1, 500)), i * 1000, i))
    risk = RiskManager(RiskLimits(), {k: f"sec{i % 4}" for i, k in enumerate(names)})
    returns = rng.normal(0, 0.015, (250, len(names)))
    for i, k in enumerate(names):
        risk.mark(k, mids[k])
        risk.set_returns(k, returns[:, i])
        risk.apply_fill(k, int(rng.integers(-500, 500)))
    recon = Reconciler()
    pairs = []
    for p in range(10):
        x = 100 + np.cumsum(rng.normal(0, 0.5, 300))
        y = 1.3 * x + rng.normal(0, 0.4, 300)
        pairs.append(PairsSignal.fit(f"Y{p}", f"X{p}", y, x))
    quotes = chain(rng)
    model_iv = heston_model_iv(HestonParams(0.04, 2.0, 0.04, 0.5, -0.6), quotes)
    volarb, term = VolArbSignal(), TermStructureSignal()

    # --- stages ---------------------------------------------------------------------------------
    prev = {}
    for t in ticks:
        with rec.measure("validation"):
            check_tob(t, prev.get(t.instrument))
        prev[t.instrument] = t
        with rec.measure("cache_update"):
            risk.mark(t.instrument, t.mid)
            recon.mark(t.instrument, t.mid)

    all_signals = []
    for i in range(N_SLOW):
        with rec.measure("signals"):
            sigs = []
            for p in pairs:
                y0 = 1.3 * (100 + rng.normal()) + rng.normal(0, 1.0)
                sigs += p.update(y0, 100.0, i)
            sigs += volarb.evaluate(quotes, model_iv, rmse_iv=0.002, timestamp=i)
            exps, mkt, insts, idx = atm_term_structure(quotes)
            sigs += term.evaluate(exps, mkt, model_iv[idx], insts, rmse_iv=0.002, timestamp=i)
        all_signals = sigs or all_signals
    for _ in range(N_SLOW):
        with rec.measure("aggregation"):
            agg = aggregate(all_signals, cfg.aggregation)

    orders = [OrderIntent(names[i % len(names)], Side.BUY if i % 2 else Side.SELL, int(rng.integers(1, 300)),
                          int(mids[names[i % len(names)]] * 10_000)) for i in range(N)]
    for o in orders:
        with rec.measure("risk"):
            risk.check(o)

    venues = [v.name for v in cfg.routing.venues]
    with tempfile.TemporaryDirectory() as tmp:
        store = Storage(tmp)
        for i in range(N):
            k = names[i % len(names)]
            price = mids[k]
            books = {v: TopOfBook(k, int(price * 10_000) - 100, 200, int(price * 10_000) + 100 * (j + 1), 150, 0, i)
                     for j, v in enumerate(venues)}
            with rec.measure("order_submission"):
                intent = size_order(k, 1 if i % 2 else -1, 0.8, price, 0.3, 1e6, 0, 0.0, cfg.sizing,
                                    limit_price_e4=int(price * 10_000) + 500)
                kids = route(intent, books, cfg.routing)
                arm(k, price * 10_000, 100, cfg.arming)
                for j, c in enumerate(kids):
                    store.append("orders", {"time_ns": i, "clordid": f"{i}-{j}", "instrument": k, "side": int(c.side),
                                            "quantity": c.quantity, "limit_price": c.limit_price, "venue": c.venue,
                                            "origin": "host"})
            recon.on_sent(str(i), k, intent.side, intent.quantity, intent.limit_price, timestamp=i,
                          decision_price=price)
            recon.on_execution(Execution(str(i), f"a{i}", "0", k, intent.side, 0, 0, 0, intent.quantity, i))
            er = Execution(str(i), f"f{i}", "F", k, intent.side, intent.quantity, intent.limit_price, intent.quantity,
                           0, i + 1)
            with rec.measure("reconcile"):
                recon.on_execution(er)
        store.flush()
        for b in range(50):
            for i in range(1000):
                t = ticks[(b * 1000 + i) % len(ticks)]
                store.append("tob", {"time_ns": b * 1000 + i, "instrument": t.instrument, "bid_price": t.bid_price,
                                     "bid_size": t.bid_size, "ask_price": t.ask_price, "ask_size": t.ask_size,
                                     "seq": t.seq})
            with rec.measure("history_insert"):
                store.flush()
        store.close()

    report = rec.report()
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "inputs": {"pairs": len(pairs), "options": len(quotes.instrument), "portfolio": len(names),
                   "var_history_days": returns.shape[0], "venues": len(venues), "history_batch_rows": 1000,
                   "signals_last_evaluation": len(all_signals), "aggregated": len(agg)},
        "stages": report,
        "reference": "DESIGN.md host latency budgets (upper bounds)",
    }
    print(f"{'stage':18} {'count':>6} {'p50 us':>10} {'p99 us':>10} {'max us':>10} {'budget ms':>10}  within")
    for stage, r in report.items():
        if r["count"]:
            budget = "" if r["budget_ns"] is None else f"{r['budget_ns'] / 1e6:g}"
            print(f"{stage:18} {r['count']:6d} {r['p50_ns'] / 1e3:10.1f} {r['p99_ns'] / 1e3:10.1f} "
                  f"{r['max_ns'] / 1e3:10.1f} {budget:>10}  {r.get('within_budget')}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")
    return result


if __name__ == "__main__":
    main()
