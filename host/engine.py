"""The host trading engine: the stages wired into one single-threaded event loop.

What
    :class:`Engine` owns the in-memory state - per venue the NIC's top of
    book, the consolidated book (best bid/ask over venues), positions and
    open orders (the :class:`~host.reconcile.Reconciler`), targets, the pairs
    models and their last accepted parameters - and changes it only from
    three handlers, all called on the asyncio loop's thread:

    * :meth:`Engine.on_datagram` - a venue's MoldUDP64 datagram goes through
      :class:`~host.marketdata.FeedHandler` into that venue's NIC; each TOB
      event is validated (:func:`~host.types.check_tob`), cached, written to
      history, and when an instrument's consolidated mid changes, the pairs
      signals of that instrument take one observation; their signals are
      aggregated (:func:`~host.aggregate.aggregate`), sized per pair
      (:func:`~host.sizing.size_legs`) into targets, and the difference to
      position + open orders becomes orders: risk-checked
      (:class:`~host.risk.RiskManager`), routed across venues
      (:func:`~host.routing.route`) and sent as FIX NewOrderSingles;
    * :meth:`Engine.on_fix` - an ExecutionReport is journaled (storage,
      flushed before anything else happens), reconciled per ClOrdID, and
      updates positions, P&L, risk and the slippage statistics that can ask
      for recalibration;
    * :meth:`Engine.on_timer` - re-requests of market data gaps, the
      acknowledgement timeout check, batched history inserts (with retries),
      recalibration, trading again towards targets that IOC orders missed
      (every ``rebalance_interval_s``), metrics and the status file.

    The edges are asyncio: UDP sockets for the feeds and their re-request
    servers, one FIX :class:`~host.fix.Initiator` per venue (its message
    store under ``<run_dir>/fix/``), the metrics endpoint, the timer.

Gateware arming
    After every accepted recalibration, after a gateware order-sent report
    (a fire) and when the engine becomes ready, each pair leg's fair value
    (``mean spread + h x`` for ``y``, ``(y - mean spread) / h`` for ``x``)
    becomes trigger thresholds (:func:`host.arming.arm`) written through each
    venue NIC's :class:`~host.gateway.Gateway`; risk limits at start, the
    kill switch when risk trips it.

Restart
    Orders and their fills are durable before they matter: a NewOrderSingle
    is in the FIX store (fsynced) before it is written to the socket; each
    target is written to ``<run_dir>/journal.jsonl`` (:class:`Journal`: one
    ``write`` per record, fsynced with ``fix_fsync = "always"``) before its
    orders are sent; each ExecutionReport is journaled (with its FIX
    MsgSeqNum) when it arrives. History (DuckDB/Parquet) is written in
    batches off the hot path. On start the engine rebuilds its orders from
    the FIX stores, and positions, P&L and targets from the journal; it winds each
    FIX store's inbound sequence number back to just after the last
    journaled report, so the venue resends anything that arrived but was
    not journaled (duplicates are recognised by ExecID). Market data is
    replayed from sequence 1 through the venues' re-request servers; while
    it catches up the signals learn but nothing is sent. Orders are only
    ever the difference between a target and position + open orders, so
    nothing already sent is sent again.

Why
    Issue 10's host engine; DESIGN.md's host conventions (single-threaded
    loop over in-memory state, asyncio at the edges, one TOML config).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal as signal_mod
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host.aggregate import aggregate
from host.arming import arm
from host.calibration import Calibrator, Chain, ValidationConfig, _jsonable, prepare
from host.config import EngineConfig, PairConfig, load_config
from host.fix import Application, FileStore, Initiator, SessionConfig, new_order_single
from host.gateway import Gateway, GatewayLimits
from host.latency import LatencyRecorder
from host.marketdata import FeedHandler, FeedProtocol, RequestProtocol
from host.metrics import EngineMetrics
from host.nic import Nic
from host.reconcile import Reconciler
from host.retry import RetryError, aretry
from host.risk import RiskManager
from host.routing import RoutingError, route
from host.signals import OptionQuotes, PairsSignal, SignalEngine, VolArbSignal, heston_model_iv, sabr_model_iv
from host.sizing import SizingError, size_legs
from host.softnic import SoftwareNic
from host.storage import Storage
from host.types import Execution, OrderIntent, Side, TopOfBook, check_tob
from models.heston import HestonParams
from models.pairs import engle_granger
from models.sabr import SABRParams
from protocols import fix
from protocols.events import LostEvent, TobEvent

__all__ = ["Engine", "EngineError", "PairModel", "main", "run"]

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine cannot start or continue (a store it cannot read, ...)."""


def _write_json(path: Path, data) -> None:
    """Write JSON atomically (temp file + ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Journal:
    """Append-only JSON lines: one ``os.write`` per record (a killed process loses nothing written),
    ``fsync`` after each when asked (a power loss then loses nothing either).

    A torn last line (a write cut short) is cut off when the file is opened again.
    """

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                os.truncate(self.path, data.rfind(b"\n") + 1)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
        if os.write(self._fd, data) != len(data):
            raise EngineError(f"{self.path}: short write")
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    def read(path: Path) -> list[dict]:
        if not Path(path).exists():
            return []
        out = []
        for line in Path(path).read_text().split("\n"):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line (the process was killed mid-write)
                    break
        return out


RCVBUF_BYTES = 8 << 20
"""Receive buffer asked for each feed socket: a burst the loop cannot take at once waits in the kernel
instead of being dropped (and re-requested); the kernel caps it at ``net.core.rmem_max``."""


def _large_receive_buffer(transport) -> None:
    import socket

    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF_BYTES)
            return
        except OSError:  # SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped, never refused
            continue


def _model_params(model: str, params: dict):
    """Calibration parameters as stored (JSON) back to the model's parameter objects."""
    if model == "heston":
        return HestonParams(**{k: float(params[k]) for k in ("v0", "kappa", "theta", "sigma", "rho")})
    return {int(d): SABRParams(float(p["alpha"]), float(p["beta"]), float(p["rho"]), float(p["nu"]))
            for d, p in params.items()}


def _params_json(params) -> dict:
    if isinstance(params, HestonParams):
        return {k: float(getattr(params, k)) for k in ("v0", "kappa", "theta", "sigma", "rho")}
    return {str(d): {"alpha": p.alpha, "beta": p.beta, "rho": p.rho, "nu": p.nu} for d, p in params.items()}


def _finite_list(a) -> list:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, dtype=float)]


@dataclass
class PairModel:
    """One traded pair: its signal (None until a hedge ratio is accepted) and its recent observations."""

    config: PairConfig
    signal: PairsSignal | None = None
    hedge_ratio: float | None = None
    pvalue: float = 0.0
    history: deque = field(default_factory=deque)
    observations: int = 0
    failures: int = 0
    calibrations: int = 0

    @property
    def legs(self) -> tuple[str, str]:
        return self.config.y, self.config.x


class _FixApp(Application):
    def __init__(self, engine: "Engine", venue: str):
        self.engine, self.venue = engine, venue

    def on_logon(self, session) -> None:
        self.engine.audit("fix_logon", {"venue": self.venue})

    def on_logout(self, session) -> None:
        self.engine.audit("fix_logout", {"venue": self.venue, "reason": session.logout_reason})

    def on_message(self, session, msg) -> None:
        self.engine.on_fix(self.venue, msg)


class Engine:
    """The trading engine (see the module docstring). ``nics`` gives a NIC per venue (default: software NICs)."""

    def __init__(self, config: EngineConfig, run_dir=None, *, nics: dict[str, Nic] | None = None):
        self.config = cfg = config
        self.run_dir = Path(run_dir if run_dir is not None else cfg.storage.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = EngineMetrics()
        self.latency = LatencyRecorder(cfg.latency, observer=self.metrics.observe_latency)
        self.storage = Storage(self.run_dir, cfg.storage)
        self.journal_path = self.run_dir / "journal.jsonl"
        self._journal_records = Journal.read(self.journal_path)
        self.journal = Journal(self.journal_path, fsync=cfg.engine.fix_fsync == "always")
        self.instruments = {i.name: i for i in cfg.instruments}
        self.venues = {v.name: v for v in cfg.routing.venues}
        nics = dict(nics or {})
        self.feeds: dict[str, FeedHandler] = {}
        self.gateways: dict[str, Gateway] = {}
        for v in cfg.routing.venues:
            locates = dict(v.locates) or {name: i + 1 for i, name in enumerate(self.instruments)}
            nic = nics.get(v.name) or SoftwareNic()
            feed = FeedHandler(v.name, nic, locates, session=v.session or None,
                               retry_s=cfg.engine.retransmit_retry_s, md_port=v.md_port)
            self.feeds[v.name] = feed
            self.gateways[v.name] = Gateway(nic, feed.slots)
        self.metrics.watch_nic(self._nic_counters)
        self.quotes: dict[str, dict[str, TopOfBook]] = {k: {} for k in self.instruments}
        self._last_top: dict[tuple[str, str], TopOfBook] = {}
        self.mids: dict[str, float] = {}
        self.risk = RiskManager(cfg.risk, cfg.sectors, on_kill=self._on_kill, on_breach=self.metrics.breach)
        self.reconciler = Reconciler(cfg.reconcile, on_mismatch=self._on_mismatch, on_fill=self._on_fill,
                                     on_recalibrate=self._on_recalibrate_request)
        self.signal_engine = SignalEngine(cfg.signals.disable_after, on_alert=self._on_signal_alert)
        self.pairs: list[PairModel] = [PairModel(p, history=deque(maxlen=cfg.engine.recal_window))
                                       for p in cfg.pairs]
        for pm in self.pairs:
            if pm.config.hedge_ratio is not None:
                self._set_hedge(pm, pm.config.hedge_ratio, 0.0)
        self.targets: dict[str, int] = {}
        self._marks_history: deque = deque(maxlen=cfg.engine.recal_window + 1)
        self.order_venue: dict[str, str] = {}
        self.sessions: dict[str, Initiator] = {}
        self.stats: Counter = Counter()
        self.ready = False
        self.was_ready = False
        self.started_ns = time.time_ns()
        self._clordid = 1
        self._exec_seen: set[str] = set()
        self._recal_pending: set[int] = set()
        self._last_time_ns = 0
        self._md_transports: dict[str, object] = {}
        self._rq_transports: dict[str, object] = {}
        self._md_ports: dict[str, int] = {}
        self._timer: asyncio.Task | None = None
        self._last_flush = self._last_status = self._last_rebalance = 0.0
        self._orders_this_tick = 0
        self._flush_now = False
        self._closed = False
        ocfg = cfg.options
        self.calibrator: Calibrator | None = None
        if ocfg.enabled:
            self.calibrator = Calibrator(ocfg.model, alert_after=ocfg.alert_after,
                                         validation=ValidationConfig(max_rmse_iv=ocfg.max_rmse_iv,
                                                                     max_rel_change=ocfg.max_rel_change))
        self.volarb = VolArbSignal(cfg.signals.volarb)
        self.chain: OptionQuotes | None = None
        self.model_iv: np.ndarray | None = None
        self._volarb_state: dict[str, int] = {}
        self._calibration_task: asyncio.Task | None = None
        self._last_calibration = -math.inf
        self._fail_calibrations = 0
        self.gateware_cycles: deque = deque(maxlen=65536)

    # ================================================================= helpers

    def _now_ns(self) -> int:
        """Wall-clock ns, strictly increasing (storage orders rows by it)."""
        t = max(time.time_ns(), self._last_time_ns + 1)
        self._last_time_ns = t
        return t

    def audit(self, kind: str, detail: dict) -> None:
        self.storage.audit(kind, detail, self._now_ns())

    def _nic_counters(self) -> dict[str, int]:
        out = {}
        for venue, feed in self.feeds.items():
            for k, v in feed.nic.counters().items():
                out[f"{venue}_{k}"] = v
        return out

    def consolidated(self, instrument: str) -> TopOfBook | None:
        """Best bid and ask over venues (sizes at the best price summed); None without any quote."""
        tops = self.quotes.get(instrument)
        if not tops:
            return None
        bids = [(t.bid_price, t.bid_size) for t in tops.values() if t.bid_size > 0 and t.bid_price > 0]
        asks = [(t.ask_price, t.ask_size) for t in tops.values() if t.ask_size > 0 and t.ask_price > 0]
        bp = max((p for p, _ in bids), default=0)
        ap = min((p for p, _ in asks), default=0)
        bs = sum(s for p, s in bids if p == bp) if bp else 0
        as_ = sum(s for p, s in asks if p == ap) if ap else 0
        ts = max(t.timestamp for t in tops.values())
        seq = max(t.seq for t in tops.values())
        return TopOfBook(instrument, bp, bs, ap, as_, ts, seq)

    def pending(self, instrument: str) -> int:
        """Signed shares of open orders (sent, not filled, not final)."""
        return sum(int(o.side) * (o.quantity - o.cum_qty) for o in self.reconciler.orders.values()
                   if o.instrument == instrument and o.open)

    def position(self, instrument: str) -> int:
        return self.reconciler.position(instrument)

    def open_orders(self) -> list[str]:
        return [c for c, o in self.reconciler.orders.items() if o.open]

    @property
    def equity(self) -> float:
        return self.config.engine.capital + self.reconciler.pnl()["total"]

    # ================================================================= recovery

    def _store_path(self, venue: str) -> Path:
        return self.run_dir / "fix" / f"{venue}.store"

    def recover(self) -> dict:
        """Rebuild orders, fills, positions and targets from the FIX stores and storage (see the module doc)."""
        report = {"orders": 0, "executions": 0, "targets": 0, "rewound": {}}
        prefix = self.config.engine.clordid_prefix
        pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
        journaled_seq: dict[str, int] = {}
        for rec in self._journal_records:
            if "seq" in rec and rec.get("venue"):
                journaled_seq[rec["venue"]] = max(journaled_seq.get(rec["venue"], 0), int(rec["seq"] or 0))
        for venue in self.venues:
            path = self._store_path(venue)
            if not path.exists():
                continue
            store = FileStore(path, "always")
            try:
                for seq, raw in sorted(store.messages.items()):
                    msg = fix.decode(raw)
                    if msg.msg_type != "D":
                        continue
                    cl = msg.cl_ord_id
                    sent = msg.get_time(52)
                    self.reconciler.on_sent(cl, msg.symbol, Side.BUY if msg.side == "1" else Side.SELL,
                                            msg.order_qty, msg.price_e4 or 0, origin="host",
                                            timestamp=int(sent * 1e9) if sent else 0)
                    self.order_venue[cl] = venue
                    m = pattern.match(cl)
                    if m:
                        self._clordid = max(self._clordid, int(m.group(1)) + 1)
                    report["orders"] += 1
                want = journaled_seq.get(venue, 0) + 1
                if store.next_target_seq > want:
                    report["rewound"][venue] = (store.next_target_seq, want)
                    store.set_next_target(want)
            finally:
                store.close()
        for rec in self._journal_records:
            if rec["k"] == "exec":
                er = Execution(rec["clordid"], rec["exec_id"], rec["exec_type"], rec["instrument"], Side(rec["side"]),
                               rec["last_qty"], rec["last_price"], rec["cum_qty"], rec["leaves_qty"], rec["time_ns"],
                               rec["venue"])
                self._exec_seen.add(er.exec_id)
                self.reconciler.on_execution(er)
                report["executions"] += 1
            elif rec["k"] == "target":
                self.targets[rec["instrument"]] = int(rec["target"])
        report["targets"] = len(self.targets)
        for row in self.storage.scan("calibrations", "model = 'pairs' AND accepted").to_pylist():
            p = json.loads(row["params"])
            for pm in self.pairs:
                if (pm.config.y, pm.config.x) == (p["y"], p["x"]):
                    self._set_hedge(pm, p["hedge_ratio"], p["pvalue"])
        if self.calibrator is not None:
            model = self.calibrator.model
            rows = self.storage.scan("calibrations", f"model = '{model}' AND accepted").to_pylist()
            if rows:
                self.calibrator.params = _model_params(model, json.loads(rows[-1]["params"]))
                report["options_calibration"] = True
        self._journal_records = []
        self.audit("recovered", report)
        self.stats["recovered_orders"] = report["orders"]
        self.stats["recovered_executions"] = report["executions"]
        return report

    # ================================================================= market data

    def on_datagram(self, venue: str, data: bytes, retransmitted: bool = False) -> None:
        """One MoldUDP64 datagram of ``venue``: NIC, TOB events, signals, orders."""
        t0 = time.perf_counter_ns()
        self._orders_this_tick = 0
        feed = self.feeds[venue]
        with self.latency.measure("nic"):
            feed.datagram(data, retransmitted=retransmitted)
            events = feed.poll()
        self.metrics.messages.labels("datagram").inc()
        for ev in events:
            if isinstance(ev, TobEvent):
                self._on_tob(venue, feed, ev)
            elif isinstance(ev, LostEvent):   # the gateware book dropped an order: that instrument's TOB is off
                self.stats["book_lost"] += 1
                self.audit("book_lost", {"venue": venue, **ev.as_json()})
        self._check_ready()
        if self._orders_this_tick:
            self.latency.record("tick_to_order", time.perf_counter_ns() - t0)

    def _on_tob(self, venue: str, feed: FeedHandler, ev: TobEvent) -> None:
        sym = feed.symbols.get(ev.instrument)
        if sym is None:
            return
        self.stats["tob"] += 1
        self.metrics.messages.labels("tob").inc()
        top = TopOfBook(sym, ev.bid_price, ev.bid_size, ev.ask_price, ev.ask_size, ev.timestamp, ev.seq)
        key = (venue, sym)
        with self.latency.measure("validation"):
            problems = check_tob(top, self._last_top.get(key))
        self._last_top[key] = top
        if problems:
            self.stats["tob_flagged"] += 1
            self.audit("tob_invalid", {"venue": venue, "instrument": sym, "seq": ev.seq, "problems": problems})
            if any(not p.startswith("mid jumped") for p in problems):
                return
        with self.latency.measure("cache_update"):
            self.quotes[sym][venue] = top
            cons = self.consolidated(sym)
            mid = cons.mid
            changed = not math.isnan(mid) and mid != self.mids.get(sym)
            if not math.isnan(mid):
                self.mids[sym] = mid
                self.risk.mark(sym, mid)
                self.reconciler.mark(sym, mid)
        self.storage.append("tob", {"time_ns": self._now_ns(), "instrument": f"{sym}@{venue}",
                                    "bid_price": top.bid_price, "bid_size": top.bid_size,
                                    "ask_price": top.ask_price, "ask_size": top.ask_size, "seq": top.seq})
        if changed:
            self._observe(sym, cons.timestamp)

    # ================================================================= signals and decisions

    def _update_returns(self) -> None:
        """Risk's return histories: per observation, every instrument's mid return over the common history."""
        names = list(self.instruments)
        self._marks_history.append([self.mids.get(k, math.nan) for k in names])
        m = np.asarray(self._marks_history, dtype=float)
        marked = [j for j, k in enumerate(names) if k in self.mids]
        ok = np.all(np.isfinite(m[:, marked]), axis=1)
        start = len(ok) - (np.argmin(ok[::-1]) if not ok.all() else len(ok))
        r = m[start:, :]
        self.risk.returns = {}  # replaced together: every history has the same length
        if r.shape[0] >= 2:
            rets = r[1:, marked] / r[:-1, marked] - 1.0
            for col, j in enumerate(marked):
                self.risk.set_returns(names[j], rets[:, col])

    def _observe(self, instrument: str, timestamp: int) -> None:
        self._update_returns()
        signals = []
        for i, pm in enumerate(self.pairs):
            if instrument not in pm.legs:
                continue
            y, x = (self.mids.get(k) for k in pm.legs)
            if y is None or x is None:
                continue
            pm.history.append((y, x))
            pm.observations += 1
            self.stats["observations"] += 1
            every = self.config.engine.recalibrate_every
            if pm.signal is None or (every and pm.observations % every == 0):
                if pm.signal is None and len(pm.history) < pm.history.maxlen:
                    continue
                self.recalibrate(i)
                if pm.signal is None:
                    continue
            if not self.config.signals.pairs.enabled:
                continue
            full = pm.signal._n >= pm.signal.config.window
            with self.latency.measure("signals"):
                new = self.signal_engine.run("pairs", pm.signal.update, y, x, timestamp)
            if new or (not full and pm.signal._n >= pm.signal.config.window):
                self.rearm(pm)  # the model's state changed: its first full window, an entry or an exit
            self._record_spread(pm, y, x)
            signals += new
        if not signals:
            return
        self.metrics.count_signals(signals)
        self.stats["signals"] += len(signals)
        t = self._now_ns()
        for s in signals:
            self.storage.append("signals", {"time_ns": t, "instrument": s.instrument, "source": s.source,
                                            "direction": s.direction, "confidence": s.confidence,
                                            "strength": s.strength, "grp": s.group,
                                            "expected_return": s.expected_return, "ratio": s.ratio})
        if self.ready:
            self.decide(signals)

    def decide(self, signals) -> None:
        """Aggregate ``signals``, size each trade's legs into targets, and trade towards them."""
        with self.latency.measure("signals"):
            agg = aggregate(signals, self.config.aggregation)
        by_group: dict[str, list] = {}
        for a in agg:
            by_group.setdefault(a.group, []).append(a)
        expected = Counter(s.group for s in signals)
        changed = []
        for group, legs in sorted(by_group.items()):
            if len(legs) != expected[group]:  # aggregation dropped a leg: never trade half a pair
                self.audit("group_incomplete", {"group": group, "legs": [a.instrument for a in legs]})
                continue
            if all(a.direction == 0 for a in legs):
                targets = {a.instrument: 0 for a in legs}
            else:
                try:
                    qty = size_legs([{"direction": a.direction, "confidence": a.confidence,
                                      "price": self.mids[a.instrument], "ratio": a.ratio,
                                      "lot": self.instruments[a.instrument].lot} for a in legs],
                                    self.equity, self.config.sizing)
                except (SizingError, KeyError) as exc:
                    self.audit("sizing_failed", {"group": group, "error": str(exc)})
                    continue
                targets = {a.instrument: q for a, q in zip(legs, qty)}
            self.set_targets(targets, group)
            changed += list(targets)
        if changed:
            self.rebalance(changed)

    def set_targets(self, targets: dict[str, int], group: str = "") -> None:
        """New target positions, durable (journaled) before any order towards them is sent."""
        with self.latency.measure("journal"):
            for k, q in targets.items():
                self.targets[k] = int(q)
                self.journal.write({"k": "target", "instrument": k, "target": int(q), "group": group})
                self.audit("target", {"instrument": k, "target": int(q), "group": group})

    def rebalance(self, instruments) -> list[str]:
        """Orders moving each instrument's position + open orders to its target; returns their ClOrdIDs."""
        if not (self.ready and self.config.engine.trade):
            return []
        intents = []
        for k in instruments:
            delta = self.targets.get(k, 0) - self.position(k) - self.pending(k)
            if delta == 0:
                continue
            cons = self.consolidated(k)
            if cons is None:
                continue
            side = Side.BUY if delta > 0 else Side.SELL
            limit = cons.ask_price if side is Side.BUY else cons.bid_price
            if limit <= 0:
                self.audit("no_liquidity", {"instrument": k, "side": side.name})
                continue
            intents.append(OrderIntent(k, side, abs(delta), limit, "pairs", self._now_ns()))
        sent = []
        with self.latency.measure("risk"):
            decisions = [self.risk.check(i) for i in intents]
        refused = [(i, d) for i, d in zip(intents, decisions) if not d.accepted]
        for i, d in refused:
            self.stats["refused"] += 1
            for b in d.breaches:
                self.stats[f"refused_{b}"] += 1
            self.audit("risk_refused", {"instrument": i.instrument, "side": i.side.name, "qty": i.quantity,
                                        "breaches": list(d.breaches), "reasons": list(d.reasons)})
        if refused and any(not d.reducing for _, d in refused):
            intents = [i for i, d in zip(intents, decisions) if d.accepted and d.reducing]  # no half a new trade
        else:
            intents = [i for i, d in zip(intents, decisions) if d.accepted]
        for intent in intents:
            with self.latency.measure("order_submission"):
                sent += self._submit(intent)
        return sent

    def _submit(self, intent: OrderIntent) -> list[str]:
        quotes = {v: q for v, q in self.quotes[intent.instrument].items() if self._can_send(v)}
        try:
            children = route(intent, quotes, self.config.routing)
        except RoutingError as exc:
            self.audit("routing_failed", {"instrument": intent.instrument, "error": str(exc)})
            return []
        tif = "3" if self.config.engine.order_tif == "ioc" else "0"
        out = []
        mid = self.mids.get(intent.instrument)
        for child in children:
            if not self._can_send(child.venue):
                continue
            cl = f"{self.config.engine.clordid_prefix}{self._clordid:08d}"
            self._clordid += 1
            now = self._now_ns()
            self.reconciler.on_sent(cl, child.instrument, child.side, child.quantity, child.limit_price,
                                    origin="host", timestamp=now, decision_price=mid)
            self.order_venue[cl] = child.venue
            self.storage.append("orders", {"time_ns": now, "clordid": cl, "instrument": child.instrument,
                                           "side": int(child.side), "quantity": child.quantity,
                                           "limit_price": child.limit_price, "venue": child.venue,
                                           "origin": "host"})
            self.sessions[child.venue].send(new_order_single(cl, child.instrument, child.side.fix, child.quantity,
                                                             child.limit_price, time_in_force=tif))
            self.stats["orders_sent"] += 1
            self._orders_this_tick += 1
            self.metrics.messages.labels("order").inc()
            out.append(cl)
        return out

    def _can_send(self, venue: str) -> bool:
        return venue in self.sessions

    # ================================================================= executions

    def on_fix(self, venue: str, msg) -> None:
        """An inbound application message from ``venue``'s FIX session."""
        self.metrics.messages.labels("fix").inc()
        seq = msg.get_int(34)
        if msg.msg_type != "8":
            self.journal.write({"k": "fix_in", "venue": venue, "seq": seq, "msg_type": msg.msg_type})
            self.audit("fix_in", {"venue": venue, "seq": seq, "msg_type": msg.msg_type, "text": msg.get(58)})
            return
        exec_id = f"{venue}:{msg.exec_id}"
        if exec_id in self._exec_seen:
            self.stats["duplicate_reports"] += 1
            self.journal.write({"k": "fix_in", "venue": venue, "seq": seq, "exec_id": exec_id})
            return
        self._exec_seen.add(exec_id)
        er = Execution(msg.cl_ord_id or "", exec_id, msg.exec_type or "", msg.symbol or "",
                       Side.BUY if msg.side == "1" else Side.SELL, msg.last_qty or 0, msg.last_px_e4 or 0,
                       msg.cum_qty or 0, msg.leaves_qty or 0, self._now_ns(), venue)
        with self.latency.measure("journal"):
            self.journal.write({"k": "exec", "seq": seq, "clordid": er.clordid, "exec_id": exec_id,
                                "exec_type": er.exec_type, "instrument": er.instrument, "side": int(er.side),
                                "last_qty": er.last_qty, "last_price": er.last_price, "cum_qty": er.cum_qty,
                                "leaves_qty": er.leaves_qty, "time_ns": er.timestamp, "venue": venue})
        self.stats["executions"] += 1
        with self.latency.measure("reconcile"):
            self.reconciler.on_execution(er)
        self.storage.append("executions", er)
        self.metrics.set_pnl(self.reconciler.pnl())

    def _on_fill(self, er: Execution, pos) -> None:
        self.stats["fills"] += 1
        self.risk.apply_fill(er.instrument, int(er.side) * er.last_qty)
        self.risk.update_equity(self.equity)

    def _on_mismatch(self, m) -> None:
        self.metrics.mismatch(m)
        self.stats["mismatches"] += 1
        self.audit("mismatch", {"kind": m.kind, "clordid": m.clordid, "detail": m.detail})

    def on_gateware_order(self, venue: str, clordid: str, instrument: str, side: Side, quantity: int,
                          limit_price: int, tick_to_trade_cycles: int | None = None) -> None:
        """A gateware order-sent report (a trigger fired): reconcile it, then re-arm the instrument's pairs.

        ``tick_to_trade_cycles`` (the report's cycle stamp minus the triggering frame's ingress cycle) goes to
        ``latency.json`` (``gateware.tick_to_trade_cycles``), which the run report plots in cycles and ns.
        """
        if tick_to_trade_cycles is not None:
            self.gateware_cycles.append(int(tick_to_trade_cycles))
        self.reconciler.on_sent(clordid, instrument, side, quantity, limit_price, origin="gateware",
                                timestamp=self._now_ns(), decision_price=self.mids.get(instrument))
        self.order_venue[clordid] = venue
        self.stats["gateware_orders"] += 1
        for pm in self.pairs:
            if instrument in pm.legs:
                self.rearm(pm)

    def _on_kill(self, reason: str) -> None:
        self.metrics.killed(reason)
        for gw in self.gateways.values():
            gw.kill(reason)
        self.audit("kill", {"reason": reason})

    def _on_signal_alert(self, kind: str, exc: BaseException) -> None:
        self.metrics.disabled_signals.labels(kind).set(1)
        self.audit("signal_disabled", {"kind": kind, "error": f"{type(exc).__name__}: {exc}"})

    def _on_recalibrate_request(self, instrument: str) -> None:
        for i, pm in enumerate(self.pairs):
            if instrument in pm.legs:
                self._recal_pending.add(i)

    # ================================================================= models and arming

    def _set_hedge(self, pm: PairModel, hedge_ratio: float, pvalue: float) -> None:
        """A new hedge ratio: the signal restarts on the recent spreads recomputed with it, keeping its position."""
        old = pm.signal
        spread = None
        if pm.history:
            h = np.asarray(pm.history, dtype=float)
            spread = h[:, 0] - hedge_ratio * h[:, 1]
        if self.config.signals.pairs.bands == "ou" and (spread is None or spread.size < 20):
            pm.signal = None  # Bertram's bands need a fitted OU process: wait for history
        else:
            pm.signal = PairsSignal(pm.config.y, pm.config.x, hedge_ratio, self.config.signals.pairs,
                                    pvalue=pvalue, spread_history=spread)
            if old is not None:
                pm.signal.position = old.position
        pm.hedge_ratio, pm.pvalue = float(hedge_ratio), float(pvalue)

    def recalibrate(self, index: int) -> bool:
        """Engle-Granger on the pair's recent observations; accepted or refused (the last accepted stays)."""
        pm = self.pairs[index]
        cfg = self.config.engine
        reasons, params, metrics = [], {}, {}
        try:
            h = np.asarray(pm.history, dtype=float)
            if h.shape[0] < 20:
                raise ValueError(f"{h.shape[0]} observations, need 20")
            eg = engle_granger(h[:, 0], h[:, 1])
            params = {"y": pm.config.y, "x": pm.config.x, "hedge_ratio": float(eg.hedge_ratio),
                      "pvalue": float(eg.pvalue)}
            metrics = {"n": int(h.shape[0]), "adf_stat": float(eg.adf_stat)}
            if not (math.isfinite(eg.hedge_ratio) and eg.hedge_ratio > 0):
                reasons.append(f"hedge ratio {eg.hedge_ratio} is not positive and finite")
            if not eg.pvalue <= cfg.recal_max_pvalue:
                reasons.append(f"p-value {eg.pvalue:.3g} above {cfg.recal_max_pvalue}")
            if pm.hedge_ratio and abs(eg.hedge_ratio / pm.hedge_ratio - 1) > cfg.recal_max_change:
                reasons.append(f"hedge ratio {eg.hedge_ratio:.4g} moved more than {cfg.recal_max_change:.0%} "
                               f"from {pm.hedge_ratio:.4g}")
        except Exception as exc:  # noqa: BLE001 - a failing calibration keeps the last accepted parameters
            reasons.append(f"calibration failed: {type(exc).__name__}: {exc}")
        accepted = not reasons
        self.storage.append("calibrations", {"time_ns": self._now_ns(), "model": "pairs", "accepted": accepted,
                                             "fingerprint": f"{pm.config.y}/{pm.config.x}:{pm.observations}",
                                             "params": params, "metrics": {**metrics, "reasons": reasons}})
        if accepted:
            pm.failures = 0
            pm.calibrations += 1
            self._set_hedge(pm, params["hedge_ratio"], params["pvalue"])
            self.stats["calibrations_accepted"] += 1
            self.rearm(pm)
        else:
            pm.failures += 1
            self.stats["calibrations_refused"] += 1
            if pm.failures >= cfg.recal_alert_after:
                self.audit("calibration_alert", {"pair": f"{pm.config.y}/{pm.config.x}", "failures": pm.failures,
                                                 "reasons": reasons})
        return accepted

    def fair_values(self, pm: PairModel) -> dict[str, float] | None:
        """Each leg's model price (currency units) from the other leg's mid and the spread's mean."""
        sig = pm.signal
        y, x = (self.mids.get(k) for k in pm.legs)
        if sig is None or y is None or x is None or sig._n < sig.config.window:
            return None
        mean = float(sig._window.mean())
        h = sig.hedge_ratio
        return {pm.config.y: mean + h * x, pm.config.x: (y - mean) / h if h else float("nan")}

    def rearm(self, pm: PairModel) -> int:
        """Arm every venue's trigger for both legs around their fair values; returns thresholds written."""
        fair = self.fair_values(pm)
        if fair is None:
            return 0
        n = 0
        for k, value in fair.items():
            if not (value > 0 and math.isfinite(value)):
                continue
            th = arm(k, value * 10_000, self.instruments[k].tick, self.config.arming)
            for gw in self.gateways.values():
                if k in gw.slots:
                    gw.arm(th)
                    n += 1
        self.stats["arms"] += n
        return n


    # ================================================================= options: calibration and vol arb

    def _record_spread(self, pm: PairModel, y: float, x: float) -> None:
        """One pair observation for the run report: spread, its rolling mean and std, z, position."""
        sig = pm.signal
        if sig is None or sig._n < sig.config.window:
            return
        w = sig._window
        self.storage.append("audit", {"time_ns": self._now_ns(), "kind": "spread", "detail": json.dumps({
            "pair": f"{pm.config.y}/{pm.config.x}", "spread": y - sig.hedge_ratio * x, "mean": float(w.mean()),
            "std": float(w.std()), "z": None if math.isnan(sig.last_z) else float(sig.last_z),
            "position": sig.position, "hedge_ratio": sig.hedge_ratio,
            "entry_z": sig.config.entry_z, "exit_z": sig.config.exit_z})})

    def on_option_quotes(self, quotes: OptionQuotes) -> list:
        """The chain's latest quotes: kept for the next calibration; vol-arb signals against the last accepted
        model (recorded when an option's direction changes; no venue lists options, so nothing is sent)."""
        self.chain = quotes
        self.stats["chain_updates"] += 1
        if self.calibrator is None or self.calibrator.params is None or not self.config.signals.volarb.enabled:
            return []
        with self.latency.measure("volarb"):
            self.model_iv = self._model_iv(self.calibrator.params, quotes)
            rmse = self._last_rmse_iv
            signals = self.signal_engine.run("volarb", self.volarb.evaluate, quotes, self.model_iv, rmse,
                                             self._now_ns())
        new = {s.instrument: s for s in signals}
        changed = []
        for k in sorted(set(new) | set(self._volarb_state)):
            d = new[k].direction if k in new else 0
            if d != self._volarb_state.get(k, 0):
                changed.append((k, d, new.get(k)))
                if d:
                    self._volarb_state[k] = d
                else:
                    self._volarb_state.pop(k, None)
        t = self._now_ns()
        for k, d, sig in changed:
            self.stats["volarb_signals"] += 1
            self.storage.append("signals", {"time_ns": t, "instrument": k, "source": "volarb", "direction": d,
                                            "confidence": sig.confidence if sig else 1.0,
                                            "strength": sig.strength if sig else 0.0, "grp": f"volarb:{k}",
                                            "expected_return": sig.expected_return if sig else 0.0,
                                            "ratio": 1.0})
        return signals

    _last_rmse_iv = 0.0

    @staticmethod
    def _model_iv(params, quotes: OptionQuotes) -> np.ndarray:
        if isinstance(params, HestonParams):
            return np.asarray(heston_model_iv(params, quotes), dtype=float)
        return sabr_model_iv(params, quotes)

    def inject_calibration_failure(self, count: int = 1) -> None:
        """Fault injection (soak): the next ``count`` option calibrations get no quotes and are refused."""
        self._fail_calibrations += count

    def _chain_for_calibration(self) -> Chain:
        q = self.chain
        n = 0 if self._fail_calibrations > 0 else len(q.instrument)
        sel = slice(0, n)
        return Chain(spot=float(q.spot), rate=float(q.rate), dividend=float(q.dividend),
                     expiry=np.asarray(q.expiry, float)[sel], strike=np.asarray(q.strike, float)[sel],
                     is_call=np.asarray(q.is_call, bool)[sel], bid=np.asarray(q.bid, float)[sel],
                     ask=np.asarray(q.ask, float)[sel], line=np.arange(n))

    async def calibrate_options(self) -> bool:
        """Calibrate the model on the latest chain off the event loop; accepted or refused (the last stays)."""
        if self.calibrator is None or self.chain is None:
            return False
        injected = self._fail_calibrations > 0
        chain, quotes = self._chain_for_calibration(), self.chain
        if injected:
            self._fail_calibrations -= 1
        t0 = time.perf_counter_ns()
        outcome = await asyncio.to_thread(lambda: self.calibrator.calibrate(prepare(chain)))
        self.latency.record("calibration", time.perf_counter_ns() - t0)
        metrics = {"reasons": outcome.reasons, "injected_failure": injected,
                   "consecutive_failures": outcome.consecutive_failures}
        if outcome.fit is not None:
            metrics.update(outcome.fit.metrics())
        if outcome.accepted:
            self.stats["option_calibrations_accepted"] += 1
            rmse = getattr(outcome.fit, "rmse_iv", None)
            if rmse is None and hasattr(outcome.fit, "fits"):
                rmse = float(np.sqrt(np.mean([f.rmse ** 2 for f in outcome.fit.fits]))) if outcome.fit.fits else 0.0
            self._last_rmse_iv = float(rmse or 0.0)
            _, _, market_iv = quotes.implied_vols()
            model_iv = self._model_iv(outcome.params, quotes)
            metrics["surface"] = {"expiry_days": _finite_list(quotes.expiry * 365.0),
                                  "strike": _finite_list(quotes.strike), "is_call": [bool(c) for c in quotes.is_call],
                                  "market_iv": _finite_list(market_iv), "model_iv": _finite_list(model_iv),
                                  "spot": float(quotes.spot)}
            metrics["rmse_iv"] = self._last_rmse_iv
        else:
            self.stats["option_calibrations_refused"] += 1
            if outcome.alert:
                self.audit("calibration_alert", {"model": self.calibrator.model, "reasons": outcome.reasons,
                                                 "failures": outcome.consecutive_failures})
        self.storage.append("calibrations", {
            "time_ns": self._now_ns(), "model": self.calibrator.model, "accepted": outcome.accepted,
            "fingerprint": outcome.fingerprint,
            "params": json.dumps(_params_json(outcome.params) if outcome.accepted else {}),
            "metrics": json.dumps(_jsonable(metrics), allow_nan=False)})
        return outcome.accepted

    def _maybe_calibrate(self, now: float) -> None:
        if (self.calibrator is None or self.chain is None or now - self._last_calibration
                < self.config.options.calibrate_every_s):
            return
        if self._calibration_task is not None and not self._calibration_task.done():
            return
        self._last_calibration = now
        self._calibration_task = asyncio.create_task(self.calibrate_options())

    # ================================================================= readiness and timer

    def _check_ready(self) -> None:
        feeds_ok = all(f.caught_up for f in self.feeds.values())
        fix_ok = all(s.session.logged_on for s in self.sessions.values())
        ready = feeds_ok and fix_ok
        if ready and not self.ready:
            self.ready = True
            first = not self.was_ready
            self.was_ready = True
            self.audit("ready", {"first": first})
            if first:
                self._on_first_ready()
        elif not ready and self.ready:
            self.ready = False
            self.audit("not_ready", {"feeds": feeds_ok, "fix": fix_ok})

    def _on_first_ready(self) -> None:
        """Caught up after start: the signals' positions follow the recovered targets, then trade to them."""
        for pm in self.pairs:
            if pm.signal is not None:
                ty = self.targets.get(pm.config.y, 0)
                pm.signal.position = (ty > 0) - (ty < 0)
            self.rearm(pm)
        self.rebalance(sorted(self.targets))

    def on_timer(self) -> None:
        """Periodic work: gap re-requests, readiness, ack timeouts, recalibration, metrics."""
        for f in self.feeds.values():
            f.recover()
        self._check_ready()
        self.reconciler.overdue(time.time_ns())
        for i in sorted(self._recal_pending):
            self.recalibrate(i)
        self._recal_pending.clear()
        self.risk.update_equity(self.equity)   # drawdown at the current marks (a breach trips the kill switch)
        self.metrics.set_pnl(self.reconciler.pnl())

    def _flush(self) -> None:
        with self.latency.measure("history_insert"):
            self.storage.flush()

    async def _timer_loop(self) -> None:
        cfg = self.config.engine
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(cfg.timer_s)
            try:
                self.on_timer()
                now = loop.time()
                if now - self._last_flush >= cfg.flush_interval_s:
                    self._last_flush = now
                    try:
                        await aretry(self._aflush, self.config.retry, name="history insert")
                    except RetryError as exc:
                        self.audit("storage_failed", {"error": str(exc)})
                if cfg.rebalance_interval_s and now - self._last_rebalance >= cfg.rebalance_interval_s:
                    self._last_rebalance = now
                    missed = [k for k, t in sorted(self.targets.items())
                              if t != self.position(k) + self.pending(k)]
                    if missed and self.ready:
                        self.stats["rebalances"] += 1
                        self.rebalance(missed)
                self._maybe_calibrate(now)
                if now - self._last_status >= cfg.status_interval_s:
                    self._last_status = now
                    self.audit("pnl", {**self.reconciler.pnl(), "equity": self.equity,
                                       "positions": {k: p.quantity for k, p in self.reconciler.positions.items()}})
                    self.write_status()
            except Exception:  # noqa: BLE001 - the timer must keep running; the failure is logged
                log.exception("engine timer")

    async def _aflush(self):
        self._flush()

    # ================================================================= reports

    def reconciliation(self) -> dict:
        """Per instrument: fills summed from the reports against the position, open orders, cash, P&L.

        ``balance`` (position minus the signed sum of fills) and ``pnl_check``
        (realised + unrealised minus cash flow + position at the mark) are 0
        when everything balances; ``mismatches`` counts the reconciler's flags.
        """
        out = {}
        for k in sorted(set(self.instruments) | set(self.reconciler.positions)):
            fills = [f for o in self.reconciler.orders.values() if o.instrument == k for f in o.fills]
            net = sum(int(f.side) * f.last_qty for f in fills)
            cash = -sum(int(f.side) * f.last_qty * f.last_price for f in fills) / 10_000
            pos = self.reconciler.positions.get(k)
            q = pos.quantity if pos else 0
            mark = self.mids.get(k, 0.0)
            realised = pos.realised_pnl if pos else 0.0
            unreal = pos.unrealised(mark) if pos else 0.0
            out[k] = {"position": q, "net_fills": net, "balance": q - net, "open_orders": sum(
                1 for o in self.reconciler.orders.values() if o.instrument == k and o.open),
                "target": self.targets.get(k, 0), "cash": cash, "realised": realised, "unrealised": unreal,
                "pnl_check": round(realised + unreal - (cash + q * mark), 6)}
        return {"instruments": out, "mismatches": [m.kind for m in self.reconciler.mismatches],
                "pnl": self.reconciler.pnl()}

    def status(self) -> dict:
        return {"pid": os.getpid(), "ready": self.ready, "closed": self._closed, "md_ports": self._md_ports,
                "stats": dict(self.stats), "targets": self.targets,
                "positions": {k: p.quantity for k, p in self.reconciler.positions.items()},
                "open_orders": self.open_orders(), "pnl": self.reconciler.pnl(),
                "feeds": {v: {"expected": f.expected, "high": f.high, **f.stats} for v, f in self.feeds.items()},
                "gateway": {v: {"armed": len(g.armed), "arms": g.arm_count, "killed": g.killed,
                                "bound": {a: g.bound(a) for a in g.registers}} for v, g in self.gateways.items()},
                "pairs": [{"y": p.config.y, "x": p.config.x, "hedge_ratio": p.hedge_ratio,
                           "position": p.signal.position if p.signal else 0,
                           "z": p.signal.last_z if p.signal else None, "observations": p.observations}
                          for p in self.pairs],
                "signals_disabled": self.signal_engine.disabled}

    def write_status(self) -> None:
        _write_json(self.run_dir / "engine.json", self.status())

    def latency_report(self) -> dict:
        """Per-stage figures, plus the host path's tick-to-order samples (ns) for the run report's histogram."""
        return {"stages": self.latency.report(), "stats": dict(self.stats), "started_ns": self.started_ns,
                "written_ns": time.time_ns(),
                "samples_ns": {"tick_to_order": self.latency.samples("tick_to_order").tolist()},
                "gateware": {"tick_to_trade_cycles": list(self.gateware_cycles)}}

    # ================================================================= life

    async def start(self) -> "Engine":
        """Recover, bind the feeds, connect to the venues, start the timer."""
        loop = asyncio.get_running_loop()
        self.recover()
        limits = GatewayLimits.from_risk(self.config.risk)
        for gw in self.gateways.values():
            gw.set_limits(limits)
        for name, v in self.venues.items():
            feed = self.feeds[name]
            tr, _ = await loop.create_datagram_endpoint(
                lambda n=name: FeedProtocol(lambda d, n=n: self.on_datagram(n, d)), local_addr=(v.md_host, v.md_port))
            self._md_transports[name] = tr
            _large_receive_buffer(tr)
            self._md_ports[name] = tr.get_extra_info("sockname")[1]
            feed.md_port = self._md_ports[name]
            if v.retransmit_port:
                rtr, proto = await loop.create_datagram_endpoint(
                    lambda n=name, v=v: RequestProtocol(lambda d, n=n: self.on_datagram(n, d, True),
                                                        (v.retransmit_host, v.retransmit_port)),
                    local_addr=(v.md_host, 0))
                self._rq_transports[name] = rtr
                feed.send_request = proto.send
            if v.fix_port:
                sc = SessionConfig(self.config.engine.comp_id, v.target_comp_id, heartbeat_s=v.fix_heartbeat_s,
                                   store=self._store_path(name), fsync=self.config.engine.fix_fsync)
                init = Initiator(sc, v.fix_host, v.fix_port, _FixApp(self, name), backoff_s=0.1, backoff_max_s=2.0)
                self.sessions[name] = init
                await init.start()
        if self.config.metrics.enabled:
            try:
                port = self.metrics.serve(self.config.metrics.port, self.config.metrics.address)
                self.audit("metrics", {"port": port})
            except OSError as exc:
                self.audit("metrics_failed", {"error": str(exc)})
        self._timer = asyncio.create_task(self._timer_loop())
        self.write_status()
        return self

    async def stop(self) -> None:
        """Stop trading, log out, flush history, write the latency report and the status file."""
        if self._closed:
            return
        self.ready = False
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass
        if self._calibration_task is not None and not self._calibration_task.done():
            try:
                await self._calibration_task
            except Exception:  # noqa: BLE001 - a failing calibration must not stop the shutdown
                log.exception("calibration at stop")
        for init in self.sessions.values():
            try:
                await init.stop(logout_timeout_s=1.0)
            except Exception:  # noqa: BLE001 - close the rest regardless
                log.exception("FIX stop")
        for tr in (*self._md_transports.values(), *self._rq_transports.values()):
            tr.close()
        await asyncio.sleep(0)  # the transports close on the next loop pass: the ports are free for a restart
        self.audit("stopped", {"stats": dict(self.stats)})
        self._closed = True
        self.storage.flush()
        _write_json(self.run_dir / "latency.json", self.latency_report())
        self.write_status()
        self.storage.close()
        self.journal.close()
        self.metrics.close()
        for f in self.feeds.values():
            f.nic.close()


async def run(config: EngineConfig, run_dir=None, *, stop: asyncio.Event | None = None,
              nics: dict[str, Nic] | None = None) -> Engine:
    """Run an engine until ``stop`` is set (forever without one); returns it, stopped."""
    engine = Engine(config, run_dir, nics=nics)
    await engine.start()
    try:
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await engine.stop()
    return engine


def main(argv=None) -> int:
    """``python -m host.engine --config engine.toml [--run-dir DIR]``: run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(args.config)

    async def _main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal_mod.SIGINT, signal_mod.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(config, args.run_dir, stop=stop)

    asyncio.run(_main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
