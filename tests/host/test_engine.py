"""The host engine (host/engine.py) end to end against the exchange simulator, through software NICs.

Two venues (SIMA, SIMB) list AAA and BBB. A market maker's quotes are moved
directly in SIMA's matching engine (``venue.submit``) so that the spread
``AAA - 2 BBB`` wanders, jumps (the pair diverges) and comes back. The venues
publish ITCH over MoldUDP64 on loopback; the engine wraps each datagram in an
Ethernet frame for its software NIC, whose book emits the top-of-book events
the signals run on. The orders, fills, positions and P&L expected are derived
here from the script alone: the mids after each step, the rolling z-score
(population std over ``WINDOW`` observations), the entry/exit thresholds, the
sizing bound that binds (``max_position_notional``), the routing rule (touch,
then lower latency) and the resting quotes the orders take.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.config import config_from_dict
from host.engine import Engine
from host.gateway import GatewayLimits
from sim.exchange.config import SymbolConfig, VenueConfig
from sim.exchange.matching import BUY, SELL, ExecReport, NewOrder, ReplaceRequest
from sim.exchange.venue import Venue

ROOT = Path(__file__).resolve().parents[2]
Y, X, HEDGE = "AAA", "BBB", 2.0
WINDOW, ENTRY_Z, EXIT_Z = 10, 2.0, 0.5
MAX_POSITION_NOTIONAL = 3000.0
LATENCY_US = {"SIMA": 40.0, "SIMB": 60.0}
MM = "MM"

# SIMA's AAA quote moves, one side per step (side, new price in dollars)
WARMUP = [("ask", 20.02), ("bid", 20.00), ("bid", 19.99), ("ask", 20.01)] * 3
DIVERGE = [("ask", 20.03), ("bid", 20.02), ("ask", 20.10), ("bid", 20.09)]
CONVERGE = [("bid", 20.00), ("ask", 20.02), ("bid", 19.98), ("ask", 20.00)]
SCRIPT = WARMUP + DIVERGE + CONVERGE
BBB_BID, BBB_ASK = 9.99, 10.01
SIMA_BBB_SIZE, SIMB_BBB_SIZE, AAA_SIZE = 100, 1000, 1000


def e4(price: float) -> int:
    return int(round(price * 10_000))


# ----------------------------------------------------------------------------- expectations, from the script alone


def zscores(mids_y, mid_x):
    """Rolling z-score of ``y - HEDGE x`` over WINDOW observations (t included, population std)."""
    spread = [m - HEDGE * mid_x for m in mids_y]
    out = []
    for t in range(len(spread)):
        if t + 1 < WINDOW:
            out.append(math.nan)
            continue
        w = spread[t + 1 - WINDOW:t + 1]
        mean = sum(w) / WINDOW
        std = math.sqrt(sum((v - mean) ** 2 for v in w) / WINDOW)
        out.append((w[-1] - mean) / std)
    return out


def expected_trades():
    """Walk the script: quotes after each step, z-score per observation, entries/exits with their prices."""
    bid, ask = 19.99, 20.01
    quotes = [(bid, ask)]                     # observation 0: the opening book
    for side, price in SCRIPT:
        bid, ask = (price, ask) if side == "bid" else (bid, price)
        quotes.append((bid, ask))
    mids = [(b + a) / 2 for b, a in quotes]
    mid_x = (BBB_BID + BBB_ASK) / 2
    z = zscores(mids, mid_x)
    position, events = 0, []
    for t, zt in enumerate(z):
        if math.isnan(zt):
            continue
        # the script keeps z away from every threshold, so the decision is not a rounding question
        for level in (ENTRY_Z, -ENTRY_Z, EXIT_Z, -EXIT_Z):
            assert abs(zt - level) > 0.05, (t, zt)
        if position == 0 and abs(zt) > ENTRY_Z:
            position = -1 if zt > 0 else 1
            events.append(("entry", t, position))
        elif position == -1 and zt <= EXIT_Z:
            assert zt > -ENTRY_Z  # exits flat, no entry the other way in the same step
            position = 0
            events.append(("exit", t, 0))
    assert [e[0] for e in events] == ["entry", "exit"]
    (_, t_in, direction), (_, t_out, _) = events
    # sizing: max_position_notional binds (equity 1e6 makes vol target and Kelly far larger)
    units = min(MAX_POSITION_NOTIONAL / mids[t_in], MAX_POSITION_NOTIONAL / (mid_x * HEDGE))
    qty_y, qty_x = math.floor(units), math.floor(units * HEDGE)
    assert direction == -1  # the spread went up: sell AAA, buy BBB
    entry_y_px, exit_y_px = quotes[t_in][0], quotes[t_out][1]
    # BBB at the touch: SIMA (faster) takes its displayed size, SIMB the rest
    orders = [("SIMA", Y, SELL, qty_y, e4(entry_y_px)),
              ("SIMA", X, BUY, SIMA_BBB_SIZE, e4(BBB_ASK)), ("SIMB", X, BUY, qty_x - SIMA_BBB_SIZE, e4(BBB_ASK)),
              ("SIMA", Y, BUY, qty_y, e4(exit_y_px)),
              ("SIMA", X, SELL, SIMA_BBB_SIZE, e4(BBB_BID)), ("SIMB", X, SELL, qty_x - SIMA_BBB_SIZE, e4(BBB_BID))]
    pnl = qty_y * (entry_y_px - exit_y_px) + qty_x * (BBB_BID - BBB_ASK)
    return {"t_in": t_in, "t_out": t_out, "qty_y": qty_y, "qty_x": qty_x, "orders": orders, "pnl": pnl,
            "observations": len(mids)}


# ----------------------------------------------------------------------------- the market


class Market:
    """Two venues on loopback, a market maker's quotes, and a record of what CALARB sent and got."""

    def __init__(self, heartbeat_s=0.05):
        symbols = (SymbolConfig(Y, 1, e4(20.00)), SymbolConfig(X, 2, e4(10.00)))
        self.venues = {name: Venue(VenueConfig(name, symbols, fix_port=0, md_port=0, retransmit_port=0, flow=None,
                                               heartbeat_s=heartbeat_s), flow_timer=False)
                       for name in ("SIMA", "SIMB")}
        self.received: list[tuple] = []        # (venue, ClOrdID, symbol, side, qty, price) per NewOrder acked
        self.fills: list[tuple] = []           # (venue, ClOrdID, symbol, side, qty, price)
        self.rejects: list[ExecReport] = []
        self.mm_ids = iter(range(1, 10**6))
        self.quote_ids: dict[tuple[str, str, str], str] = {}

    async def start(self):
        for name, v in self.venues.items():
            await v.start()
            v.listen("CALARB", lambda ev, n=name: self._on_report(n, ev))
        self.quote("SIMA", X, BUY, BBB_BID, SIMA_BBB_SIZE)
        self.quote("SIMA", X, SELL, BBB_ASK, SIMA_BBB_SIZE)
        self.quote("SIMA", Y, BUY, 19.99, AAA_SIZE)
        self.quote("SIMA", Y, SELL, 20.01, AAA_SIZE)
        self.quote("SIMB", X, BUY, BBB_BID, SIMB_BBB_SIZE)
        self.quote("SIMB", X, SELL, BBB_ASK, SIMB_BBB_SIZE)
        return self

    async def stop(self):
        for v in self.venues.values():
            await v.stop()

    def _on_report(self, venue, ev):
        if not isinstance(ev, ExecReport):
            return
        if ev.exec_type == "0":
            self.received.append((venue, ev.cl_ord_id, ev.symbol, ev.side, ev.order_qty, ev.price))
        elif ev.exec_type == "F":
            self.fills.append((venue, ev.cl_ord_id, ev.symbol, ev.side, ev.last_qty, ev.last_px))
        elif ev.exec_type == "8":
            self.rejects.append(ev)

    def quote(self, venue, symbol, side, price, qty):
        cl = f"m{next(self.mm_ids)}"
        self.venues[venue].submit(NewOrder(MM, cl, symbol, side, qty, e4(price)))
        self.quote_ids[(venue, symbol, side)] = cl

    def move(self, side, price):
        """Move SIMA's AAA bid or ask (a replace: one ITCH U, one top-of-book change)."""
        key = ("SIMA", Y, BUY if side == "bid" else SELL)
        cl = f"m{next(self.mm_ids)}"
        events = self.venues["SIMA"].submit(ReplaceRequest(MM, cl, self.quote_ids[key], AAA_SIZE, e4(price)))
        assert any(isinstance(e, ExecReport) and e.exec_type == "5" for e in events), events
        self.quote_ids[key] = cl

    def subscribe(self, ports: dict[str, int]):
        for name, port in ports.items():
            self.venues[name].subscribe(("127.0.0.1", port))

    def published(self) -> dict[str, int]:
        return {n: v.publisher.next_seq for n, v in self.venues.items()}

    def engine_config(self, run_dir, md_ports=None, **engine):
        return {
            "engine": {"timer_s": 0.01, "flush_interval_s": 0.2, "status_interval_s": 0.05, **engine},
            "instruments": [{"name": Y}, {"name": X}],
            "pairs": [{"y": Y, "x": X, "hedge_ratio": HEDGE}],
            "signals": {"pairs": {"window": WINDOW, "entry_z": ENTRY_Z, "exit_z": EXIT_Z, "stop_z": False}},
            "sizing": {"max_position_notional": MAX_POSITION_NOTIONAL},
            "reconcile": {"slippage_alert_bps": 1000.0},  # the hedge ratio stays fixed (recalibration: below)
            "routing": {"venues": [
                {"name": n, "latency_us": LATENCY_US[n], "fix_port": v.fix_port, "md_port": (md_ports or {}).get(n, 0),
                 "retransmit_port": v.retransmit_port, "locates": {Y: 1, X: 2}}
                for n, v in self.venues.items()]},
            "storage": {"run_dir": str(run_dir)},
            "metrics": {"enabled": False},
        }


async def until(cond, timeout_s=20.0, what="condition"):
    """Wait for ``cond()`` (a deadline against hangs, not a timed assertion)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


def check_orders(market, want):
    got = [(v, s, side, q, p) for v, _, s, side, q, p in market.received]
    assert got == want["orders"]
    assert len({cl for _, cl, *_ in market.received}) == len(market.received)  # no ClOrdID twice
    assert not market.rejects
    # every IOC order filled in full at its limit (the resting quote's price)
    filled = {}
    for v, cl, s, side, q, p in market.fills:
        filled.setdefault(cl, []).append((q, p))
    for v, cl, s, side, q, p in market.received:
        assert sum(fq for fq, _ in filled[cl]) == q and {fp for _, fp in filled[cl]} == {p}, cl


# ----------------------------------------------------------------------------- in process


def test_pair_diverges_and_converges_entry_exit_fills_positions_pnl(tmp_path):
    want = expected_trades()

    async def scenario(tmp):
        market = await Market().start()
        engine = Engine(config_from_dict(market.engine_config(tmp)), tmp)
        await engine.start()
        try:
            market.subscribe(engine._md_ports)
            await until(lambda: engine.ready, what="engine ready (feeds caught up, FIX logged on)")

            def idle():
                pub = market.published()
                return (all(engine.feeds[n].expected >= pub[n] for n in pub) and not engine.open_orders())

            await until(idle, what="engine idle")
            for side, price in SCRIPT:
                market.move(side, price)
                await until(idle, what=f"engine idle after {side} {price}")
            pairs = engine.status()["pairs"][0]
            rec = engine.reconciliation()
            gw = engine.gateways["SIMA"]
        finally:
            await engine.stop()
            await market.stop()
        return market, engine, pairs, rec, gw

    market, engine, pairs, rec, gw = asyncio.run(scenario(tmp_path))
    latency = json.loads((tmp_path / "latency.json").read_text())

    check_orders(market, want)
    assert pairs["observations"] == want["observations"]
    assert engine.targets == {Y: 0, X: 0}
    # reconciliation balances: positions are the sum of the venues' fills, flat, nothing open, no mismatch
    for k in (Y, X):
        r = rec["instruments"][k]
        assert (r["position"], r["balance"], r["open_orders"], r["net_fills"]) == (0, 0, 0, 0)
        assert r["pnl_check"] == 0
    assert rec["mismatches"] == []
    assert rec["pnl"]["realised"] == pytest.approx(want["pnl"], abs=1e-9)
    assert rec["pnl"]["unrealised"] == 0
    venue_cash = -sum((1 if side == BUY else -1) * q * p for _, _, _, side, q, p in market.fills) / 10_000
    assert venue_cash == pytest.approx(want["pnl"], abs=1e-9)
    # the gateware was given limits and armed around both legs' fair values (intents: no trigger registers yet)
    assert gw.limits == GatewayLimits.from_risk(engine.config.risk)
    assert {Y, X} <= set(gw.armed) and gw.arm_count >= 2
    th = gw.armed[Y]
    assert th.buy_below < th.sell_above and th.sell_above - th.buy_below >= 2 * engine.config.arming.edge_e4
    # per-stage latency recorded and reported
    stages = latency["stages"]
    for stage in ("nic", "validation", "cache_update", "signals", "risk", "order_submission", "reconcile",
                  "history_insert", "tick_to_order"):
        assert stages[stage]["count"] > 0, stage
    assert stages["tick_to_order"]["count"] == 2  # one datagram caused the entry, one the exit


# ----------------------------------------------------------------------------- kill and restart


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_killed_engine_restarts_from_journal_and_fix_store_without_sending_twice(tmp_path):
    want = expected_trades()
    t_in = want["t_in"]
    run_dir = tmp_path / "run"
    status_path = run_dir / "engine.json"

    def status():
        try:
            return json.loads(status_path.read_text())
        except (OSError, ValueError):
            return {}

    def spawn(cfg_path):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        return subprocess.Popen([sys.executable, "-m", "host.engine", "--config", str(cfg_path)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "engine.log", "ab"))

    async def scenario():
        market = await Market().start()
        procs = []
        try:
            ports = {n: free_udp_port() for n in market.venues}
            market.subscribe(ports)
            cfg_path = tmp_path / "engine.toml"
            cfg_path.write_text(to_toml(market.engine_config(run_dir, ports)))

            async def start_engine(pid_before=None):
                proc = spawn(cfg_path)
                procs.append(proc)
                await until(lambda: status().get("pid") == proc.pid and status().get("ready"), 60,
                            "engine subprocess ready")
                return proc

            def idle():
                s, pub = status(), market.published()
                feeds = s.get("feeds", {})
                return (s.get("ready") and all(feeds.get(n, {}).get("expected", 0) >= pub[n] for n in pub)
                        and not s.get("open_orders"))

            proc = await start_engine()
            # up to the entry: SCRIPT[t_in - 1] is the move whose observation crosses the entry threshold
            for side, price in SCRIPT[:t_in]:
                market.move(side, price)
                await until(idle, what=f"idle after {side} {price}")
            await until(lambda: len(market.fills) >= 3, what="entry filled")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # the market moves while the engine is down (the restart must replay it from the venues)
            side, price = SCRIPT[t_in]
            market.move(side, price)
            proc = await start_engine()
            recovered = status()["stats"]
            for side, price in SCRIPT[t_in + 1:]:
                market.move(side, price)
                await until(idle, what=f"idle after {side} {price} (restarted)")
            final = status()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            return market, recovered, final
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            await market.stop()

    market, recovered, final = asyncio.run(scenario())
    check_orders(market, want)           # every order once: the entry was not sent again after the restart
    assert recovered["recovered_orders"] == 3 and recovered["recovered_executions"] >= 6
    assert final["positions"] == {Y: 0, X: 0} and final["open_orders"] == []
    assert final["stats"].get("mismatches", 0) == 0
    assert final["pnl"]["realised"] == pytest.approx(want["pnl"], abs=1e-9)
    report = json.loads((run_dir / "latency.json").read_text())
    assert report["stats"]["orders_sent"] == 3  # the restarted engine sent only the exit (3 child orders)


def to_toml(d: dict, prefix: str = "") -> str:
    """A small TOML writer for the engine config used here (tables, arrays of tables, inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + to_toml(v, name + ".")
        else:
            for item in v:
                out += f"\n[[{name}]]\n" + to_toml(item, name + ".")
    return out
