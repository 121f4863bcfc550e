"""``calarb run``: the whole loop in one process - exchange simulator, NICs, host engine, options chain.

What
    :func:`run` starts the exchange simulator (:class:`sim.exchange.venue.Exchange`: matching engines,
    ITCH over MoldUDP64 on loopback UDP, re-request servers, FIX 4.4 acceptors, background flow), one
    NIC per venue on that venue's live feed - ``sim``: the Verilated gateware
    (:class:`sim.gatewarenic.GatewareNic`, one Verilated model per venue, each with its own
    ``VerilatedContext``) or ``software``: the receive path in Python (:class:`host.softnic.SoftwareNic`) -
    and the host engine (:class:`host.engine.Engine`). It runs for ``duration`` seconds or until
    :attr:`RunContext.stop` is set (Ctrl-C), then shuts down in order (tasks, engine: FIX Logout,
    stores synced, history flushed; exchange) and writes the run report (:mod:`calarb.report`).

    Two sim-side drivers make the market worth trading:

    * :class:`MarketDriver` moves every symbol's fair value, which the venues' background flow
      follows: independent random walks, except that a pair's ``x`` follows ``(y - mean) / h`` plus
      an Ornstein-Uhlenbeck deviation (a cointegrated pair); ``[[market.shock]]`` displaces a symbol
      for a while (the pair diverges, then converges).
    * :class:`ChainQuoter` quotes an options chain on the underlying: Heston implied vols per series
      (:mod:`sim.optionchain`), priced with Black-Scholes at the underlying's current fair value, a
      vega-scaled spread; ``[[chain.shock]]`` shifts one series' vol (a mispriced option). The
      quotes go to :meth:`host.engine.Engine.on_option_quotes` directly (no FAST-over-UDP path into
      the NIC yet), where calibration and the vol-arb signal run on them.

Config
    One TOML file: ``[run]``, ``[nic]``, ``[market]``, ``[chain]``, ``[exchange]`` with
    ``[[exchange.venue]]`` (the exchange simulator's keys, :mod:`sim.exchange.config`) and ``[host.*]``
    (the engine's keys, :mod:`host.config`; ``host.routing.venues`` and ``host.storage.run_dir``
    are derived here). ``calarb/example_run.toml`` documents every key. A wrong key is refused
    with :class:`RunConfigError` naming it (``exchange.venue[0].symbol[1].price``, ``host.risk.var_limit``,
    ``market.shock[0].symbol``).

Why
    Issue 11's main job: ``calarb run`` and ``make demo``; the soak (:mod:`calarb.soak`) and the
    end-to-end test drive the same :func:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import signal
import socket
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from host.config import ConfigError as HostConfigError
from host.config import EngineConfig, config_from_dict
from host.signals import OptionQuotes
from models import black_scholes as bs
from sim.exchange.config import ConfigError as ExchangeConfigError
from sim.exchange.config import ExchangeConfig, parse as parse_exchange

__all__ = ["ChainQuoter", "MarketDriver", "RunConfig", "RunConfigError", "RunContext", "load_run_config",
           "run", "EXAMPLE_CONFIG"]

log = logging.getLogger(__name__)

EXAMPLE_CONFIG = Path(__file__).resolve().with_name("example_run.toml")
NIC_KINDS = ("sim", "software")


class RunConfigError(ValueError):
    """A run configuration refused; ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Shock:
    """Displace ``symbol``'s fair value by ``ticks`` from ``at_s`` for ``for_s`` seconds."""

    symbol: str
    at_s: float
    ticks: int
    for_s: float


@dataclass(frozen=True)
class PairDrive:
    """``x`` follows ``(y - mean) / hedge_ratio`` plus an OU deviation of ``noise_ticks`` (stationary std)."""

    y: str
    x: str
    hedge_ratio: float
    noise_ticks: float = 1.0
    reversion: float = 0.2


@dataclass(frozen=True)
class MarketConfig:
    seed: int = 7
    step_s: float = 0.05
    vol_bps: float = 1.0
    pairs: tuple[PairDrive, ...] = ()
    shocks: tuple[Shock, ...] = ()


@dataclass(frozen=True)
class VolShock:
    """Quote the series nearest (``expiry_days``, ``strike``, ``type``) at its vol + ``vol_shift``."""

    at_s: float
    for_s: float
    expiry_days: float
    strike: float
    is_call: bool
    vol_shift: float


@dataclass(frozen=True)
class ChainConfig:
    enabled: bool = False
    underlying: str = ""
    expiries_days: tuple[float, ...] = (30.0, 60.0, 91.0, 182.0)
    strikes_per_expiry: int = 11
    quote_interval_s: float = 0.5
    heston: tuple[float, float, float, float, float] = (0.04, 1.5, 0.06, 0.4, -0.65)
    vol_spread: float = 0.002
    wing_spread: float = 0.004
    shocks: tuple[VolShock, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """A parsed run config (see the module doc); ``source`` is the TOML text it came from."""

    exchange: ExchangeConfig
    host: dict
    duration_s: float = 60.0
    nic: str = "sim"
    run_dir: str = "build/run"
    view_interval_s: float = 0.5
    log_interval_s: float = 5.0
    market: MarketConfig = field(default_factory=MarketConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    source: str = ""

    def engine_config(self, run_dir, md_ports: dict[str, int], bound: dict[str, dict]) -> EngineConfig:
        """The engine's config: ``[host]`` plus venues derived from the exchange (ports as bound)."""
        host = json.loads(json.dumps(self.host))
        instruments = [i["name"] for i in host.get("instruments", [])]
        routing = dict(host.get("routing", {}))
        routing["venues"] = [
            {"name": v.name, "latency_us": 20.0 + 1000.0 * v.latency_ms, "fix_host": v.host,
             "fix_port": bound[v.name]["fix_port"], "comp_id": v.comp_id, "md_port": md_ports[v.name],
             "retransmit_host": v.host, "retransmit_port": bound[v.name]["retransmit_port"],
             "session": v.session, "locates": {s.symbol: s.locate for s in v.symbols if s.symbol in instruments}}
            for v in self.exchange.venues]
        host["routing"] = routing
        host.setdefault("storage", {})["run_dir"] = str(run_dir)
        try:
            return config_from_dict(host)
        except HostConfigError as exc:
            raise RunConfigError(f"host.{exc.key}" if exc.key else "host", str(exc).split(": ", 1)[-1]) from None


def _take(t: dict, key: str, where: str, typ, default):
    if key not in t:
        return default
    v = t[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is not bool and isinstance(v, bool)):
        raise RunConfigError(f"{where}.{key}", f"must be {typ.__name__}, got {v!r}")
    return v


def _table(doc: dict, key: str, where: str = "") -> dict:
    path = f"{where}.{key}" if where else key
    v = doc.get(key, {})
    if not isinstance(v, dict):
        raise RunConfigError(path, "must be a table")
    return v


def _only(t: dict, allowed: set, where: str) -> None:
    for k in t:
        if k not in allowed:
            raise RunConfigError(f"{where}.{k}" if where else k, f"unknown key (known: {', '.join(sorted(allowed))})")


def _positive(v, path):
    if not (v > 0 and math.isfinite(v)):
        raise RunConfigError(path, f"must be > 0, got {v!r}")
    return v


def parse_run_config(doc: dict, source: str = "") -> RunConfig:
    """Validate a parsed run config; :class:`RunConfigError` names the offending key."""
    _only(doc, {"run", "nic", "market", "chain", "exchange", "host"}, "")
    r = _table(doc, "run")
    _only(r, {"duration_s", "run_dir", "view_interval_s", "log_interval_s"}, "run")
    n = _table(doc, "nic")
    _only(n, {"kind"}, "nic")
    kind = _take(n, "kind", "nic", str, "sim")
    if kind not in NIC_KINDS:
        raise RunConfigError("nic.kind", f"must be one of {', '.join(NIC_KINDS)}, got {kind!r}")
    ex = _table(doc, "exchange")
    try:
        exchange = parse_exchange({"exchange": {k: v for k, v in ex.items() if k != "venue"},
                                   "venue": ex.get("venue")})
    except ExchangeConfigError as exc:
        raise RunConfigError(f"exchange.{exc.key}", str(exc).split(": ", 1)[-1]) from None
    symbols = {s.symbol: s for v in exchange.venues for s in v.symbols}
    host = _table(doc, "host")
    if "venues" in host.get("routing", {}):
        raise RunConfigError("host.routing.venues", "is derived from [[exchange.venue]]; leave it out")
    if "run_dir" in host.get("storage", {}):
        raise RunConfigError("host.storage.run_dir", "is set by --run-dir / run.run_dir; leave it out")
    for i, inst in enumerate(host.get("instruments", [])):
        name = inst.get("name") if isinstance(inst, dict) else None
        if name not in symbols:
            raise RunConfigError(f"host.instruments[{i}].name", f"{name!r} is not listed by any [[exchange.venue]]")
    market = _market(_table(doc, "market"), symbols)
    chain = _chain(_table(doc, "chain"), symbols)
    cfg = RunConfig(exchange=exchange, host=host, duration_s=_positive(_take(r, "duration_s", "run", float, 60.0),
                                                                         "run.duration_s"),
                    nic=kind, run_dir=_take(r, "run_dir", "run", str, "build/run"),
                    view_interval_s=_positive(_take(r, "view_interval_s", "run", float, 0.5), "run.view_interval_s"),
                    log_interval_s=_positive(_take(r, "log_interval_s", "run", float, 5.0), "run.log_interval_s"),
                    market=market, chain=chain, source=source)
    # the engine part is validated now too (ports are placeholders until the venues are bound)
    cfg.engine_config("run", {v.name: 0 for v in exchange.venues},
                      {v.name: {"fix_port": 0, "retransmit_port": 0} for v in exchange.venues})
    return cfg


def _market(t: dict, symbols) -> MarketConfig:
    _only(t, {"seed", "step_s", "vol_bps", "pair", "shock"}, "market")
    pairs = []
    for i, p in enumerate(t.get("pair", [])):
        w = f"market.pair[{i}]"
        _only(p, {"y", "x", "hedge_ratio", "noise_ticks", "reversion"}, w)
        for leg in ("y", "x"):
            if p.get(leg) not in symbols:
                raise RunConfigError(f"{w}.{leg}", f"{p.get(leg)!r} is not listed by any [[exchange.venue]]")
        rev = _take(p, "reversion", w, float, 0.2)
        if not 0 < rev <= 1:
            raise RunConfigError(f"{w}.reversion", f"must be in (0, 1], got {rev}")
        pairs.append(PairDrive(p["y"], p["x"], _positive(_take(p, "hedge_ratio", w, float, 1.0), f"{w}.hedge_ratio"),
                               _take(p, "noise_ticks", w, float, 1.0), rev))
    shocks = []
    for i, s in enumerate(t.get("shock", [])):
        w = f"market.shock[{i}]"
        _only(s, {"symbol", "at_s", "ticks", "for_s"}, w)
        if s.get("symbol") not in symbols:
            raise RunConfigError(f"{w}.symbol", f"{s.get('symbol')!r} is not listed by any [[exchange.venue]]")
        shocks.append(Shock(s["symbol"], _take(s, "at_s", w, float, 0.0), _take(s, "ticks", w, int, 0),
                            _positive(_take(s, "for_s", w, float, 1e9), f"{w}.for_s")))
    return MarketConfig(_take(t, "seed", "market", int, 7),
                        _positive(_take(t, "step_s", "market", float, 0.05), "market.step_s"),
                        _take(t, "vol_bps", "market", float, 1.0), tuple(pairs), tuple(shocks))


def _chain(t: dict, symbols) -> ChainConfig:
    keys = {"enabled", "underlying", "expiries_days", "strikes_per_expiry", "quote_interval_s", "heston",
            "vol_spread", "wing_spread", "shock"}
    _only(t, keys, "chain")
    enabled = _take(t, "enabled", "chain", bool, bool(t))
    und = _take(t, "underlying", "chain", str, "")
    if enabled and und not in symbols:
        raise RunConfigError("chain.underlying", f"{und!r} is not listed by any [[exchange.venue]]")
    exp = t.get("expiries_days", [30, 60, 91, 182])
    if not (isinstance(exp, list) and exp and all(isinstance(d, (int, float)) and d > 0 for d in exp)):
        raise RunConfigError("chain.expiries_days", f"must be a list of positive days, got {exp!r}")
    hp = t.get("heston", {})
    _only(hp, {"v0", "kappa", "theta", "sigma", "rho"}, "chain.heston")
    d = (0.04, 1.5, 0.06, 0.4, -0.65)
    names = ("v0", "kappa", "theta", "sigma", "rho")
    heston = tuple(_take(hp, k, "chain.heston", float, dv) for k, dv in zip(names, d))
    shocks = []
    for i, s in enumerate(t.get("shock", [])):
        w = f"chain.shock[{i}]"
        _only(s, {"at_s", "for_s", "expiry_days", "strike", "type", "vol_shift"}, w)
        typ = _take(s, "type", w, str, "C")
        if typ not in ("C", "P"):
            raise RunConfigError(f"{w}.type", f"must be 'C' or 'P', got {typ!r}")
        shocks.append(VolShock(_take(s, "at_s", w, float, 0.0),
                               _positive(_take(s, "for_s", w, float, 1e9), f"{w}.for_s"),
                               _positive(_take(s, "expiry_days", w, float, 30.0), f"{w}.expiry_days"),
                               _positive(_take(s, "strike", w, float, 100.0), f"{w}.strike"), typ == "C",
                               _take(s, "vol_shift", w, float, 0.05)))
    spk = _take(t, "strikes_per_expiry", "chain", int, 11)
    if spk < 5:
        raise RunConfigError("chain.strikes_per_expiry", f"must be >= 5, got {spk}")
    return ChainConfig(enabled, und, tuple(float(x) for x in exp), spk,
                       _positive(_take(t, "quote_interval_s", "chain", float, 0.5), "chain.quote_interval_s"),
                       heston, _take(t, "vol_spread", "chain", float, 0.002),
                       _take(t, "wing_spread", "chain", float, 0.004),
                       tuple(shocks))


def load_run_config(path) -> RunConfig:
    """Read and validate a run config file."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except OSError as exc:
        raise RunConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RunConfigError("", f"{path}: not valid TOML: {exc}") from None
    return parse_run_config(doc, text)


# ----------------------------------------------------------------------------- the market


class MarketDriver:
    """Fair values shared by every venue's background flow (see the module doc); prices in dollars."""

    def __init__(self, cfg: MarketConfig, exchange):
        self.cfg = cfg
        self.exchange = exchange
        self.rng = np.random.default_rng(cfg.seed)
        syms = {}
        for v in exchange.venues:
            for s in v.cfg.symbols:
                syms.setdefault(s.symbol, (s.price / 10_000, s.tick / 10_000))
        self.price = {k: p for k, (p, _) in syms.items()}
        self.tick = {k: t for k, (_, t) in syms.items()}
        self.open = dict(self.price)
        self.deviation = {p.x: 0.0 for p in cfg.pairs}
        self.t0 = time.monotonic()
        self.fair: dict[str, float] = dict(self.price)

    def shock_ticks(self, symbol: str, t: float) -> int:
        return sum(s.ticks for s in self.cfg.shocks if s.symbol == symbol and s.at_s <= t < s.at_s + s.for_s)

    def step(self, t: float | None = None) -> dict[str, float]:
        """Advance one step; returns the displayed fair value per symbol (dollars)."""
        t = time.monotonic() - self.t0 if t is None else t
        followers = {p.x: p for p in self.cfg.pairs}
        vol = self.cfg.vol_bps * 1e-4
        for k in self.price:
            if k not in followers:
                self.price[k] *= math.exp(vol * self.rng.standard_normal())
        for x, p in followers.items():
            mean = self.open[p.y] - p.hedge_ratio * self.open[x]
            sd = p.noise_ticks * self.tick[x] * math.sqrt(1 - (1 - p.reversion) ** 2)
            self.deviation[x] = (1 - p.reversion) * self.deviation[x] + sd * self.rng.standard_normal()
            self.price[x] = (self.price[p.y] - mean) / p.hedge_ratio + self.deviation[x]
        for k, v in self.price.items():
            self.fair[k] = max(self.tick[k], v + self.shock_ticks(k, t) * self.tick[k])
        for venue in self.exchange.venues:
            if venue.flow is None:
                continue
            for k in venue.flow.fair:
                venue.flow.fair[k] = max(1, round(self.fair[k] / self.tick[k]))
        return self.fair

    async def run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(self.cfg.step_s)


class ChainQuoter:
    """Quotes of an options chain on ``cfg.underlying`` (see the module doc), as :class:`OptionQuotes`."""

    def __init__(self, cfg: ChainConfig, spot: float, rate: float, dividend: float):
        from models.heston import HestonParams
        from sim.fastfeed import TRADE_DATE, occ_symbol
        from sim.optionchain import generate_chain

        self.cfg, self.rate, self.dividend = cfg, rate, dividend
        chain = generate_chain(HestonParams(*cfg.heston), spot=spot, rate=rate, dividend=dividend,
                               expiries_days=cfg.expiries_days, strikes_per_expiry=cfg.strikes_per_expiry,
                               both_types=True, vol_spread=cfg.vol_spread, wing_spread=cfg.wing_spread)
        self.K, self.days, self.call = chain.strike, chain.expiry_days, chain.is_call
        self.T = self.days / 365.0
        iv = bs.implied_vol(chain.price, spot, self.K, self.T, rate, dividend, self.call)
        self.iv = np.where(np.isfinite(iv), iv, math.sqrt(cfg.heston[2]))
        self.names = tuple(occ_symbol(cfg.underlying, TRADE_DATE + timedelta(days=int(d)), bool(c), float(k))
                           for d, k, c in zip(self.days, self.K, self.call))
        self.shock_index = [int(np.argmin(np.abs(self.days - s.expiry_days) * 1000 + np.abs(self.K - s.strike)
                                          + (self.call != s.is_call) * 1e9)) for s in cfg.shocks]
        self.t0 = time.monotonic()

    def mispriced(self, t: float) -> dict[str, float]:
        """``{series: vol shift}`` in force at ``t`` seconds."""
        out = {}
        for s, i in zip(self.cfg.shocks, self.shock_index):
            if s.at_s <= t < s.at_s + s.for_s:
                out[self.names[i]] = out.get(self.names[i], 0.0) + s.vol_shift
        return out

    def quotes(self, spot: float, t: float | None = None) -> OptionQuotes:
        """Two-sided quotes (cents) at ``spot`` with the shocks in force at ``t`` seconds since start."""
        t = time.monotonic() - self.t0 if t is None else t
        iv = self.iv.copy()
        for s, i in zip(self.cfg.shocks, self.shock_index):
            if s.at_s <= t < s.at_s + s.for_s:
                iv[i] += s.vol_shift
        price = bs.price(spot, self.K, self.T, self.rate, self.dividend, iv, self.call)
        F = spot * np.exp((self.rate - self.dividend) * self.T)
        x = np.abs(np.log(self.K / F)) / np.sqrt(self.T)
        spread = np.maximum(0.01, bs.vega(spot, self.K, self.T, self.rate, self.dividend, iv)
                            * (self.cfg.vol_spread + self.cfg.wing_spread * x))
        bid = np.maximum(np.floor((price - 0.5 * spread) * 100 + 1e-9), 0) / 100
        ask = np.maximum(np.ceil((price + 0.5 * spread) * 100 - 1e-9), bid * 100 + 1) / 100
        size = np.full(self.K.size, 50)
        return OptionQuotes(self.names, self.K, self.T, self.call, bid, ask, size, size, float(spot),
                            self.rate, self.dividend)


# ----------------------------------------------------------------------------- the run


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_nics(kind: str, venues) -> dict:
    """One NIC per venue: ``sim`` the Verilated gateware, ``software`` the Python receive path."""
    if kind == "software":
        from host.softnic import SoftwareNic
        return {v: SoftwareNic() for v in venues}
    if kind == "sim":
        nics = {}
        try:
            for v in venues:
                nics[v] = _gateware_nic()
        except BaseException:
            for n in nics.values():
                n.close()
            raise
        return nics
    raise RunConfigError("nic.kind", f"must be one of {', '.join(NIC_KINDS)}, got {kind!r}")


@functools.lru_cache(maxsize=1)
def _nic_library() -> str:
    """The Verilated core's library, built (or found in the cache) once per process: exporting the
    design to Verilog to find the cached build takes seconds, and every venue's NIC shares it."""
    from sim.simnic import build_library
    return str(build_library())


def _gateware_nic():
    """A :class:`sim.gatewarenic.GatewareNic` on the process's library (one Verilated model, own context)."""
    from sim.gatewarenic import GatewareNic

    return GatewareNic(library=_nic_library())


@dataclass
class RunContext:
    """Everything a run holds; hooks (tests, the soak) get it while it runs."""

    config: RunConfig
    nic_kind: str
    run_dir: Path
    exchange: object = None
    engine: object = None
    driver: MarketDriver | None = None
    quoter: ChainQuoter | None = None
    md_ports: dict = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    venue_reports: list = field(default_factory=list)
    started: float = field(default_factory=time.time)
    restarts: int = 0
    summary: dict | None = None
    tasks: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def engine_config(self) -> EngineConfig:
        bound = {v.name: {"fix_port": v.fix_port, "retransmit_port": v.retransmit_port}
                 for v in self.exchange.venues}
        return self.config.engine_config(self.run_dir, self.md_ports, bound)

    async def start_engine(self):
        """Start (or, after :meth:`stop_engine`, restart) the engine on the run directory with fresh NICs."""
        from host.engine import Engine

        cfg = self.engine_config()
        nics = make_nics(self.nic_kind, [v.name for v in cfg.routing.venues])
        self.engine = Engine(cfg, self.run_dir, nics=nics)
        await self.engine.start()
        return self.engine

    async def stop_engine(self) -> None:
        if self.engine is not None:
            await self.engine.stop()

    async def restart_engine(self):
        """A host restart: stop the engine (as a crash would leave it: stores on disk) and start again."""
        await self.stop_engine()
        self.restarts += 1
        return await self.start_engine()


def _on_venue_report(ctx: RunContext, venue: str, ev) -> None:
    from sim.exchange.matching import ExecReport

    if isinstance(ev, ExecReport):
        ctx.venue_reports.append({"venue": venue, "clordid": ev.cl_ord_id, "exec_type": ev.exec_type,
                                  "symbol": ev.symbol, "side": ev.side, "order_qty": ev.order_qty,
                                  "price": ev.price, "last_qty": ev.last_qty, "last_px": ev.last_px,
                                  "exec_id": getattr(ev, "exec_id", None), "time": time.time()})


async def _quote_loop(ctx: RunContext) -> None:
    und = ctx.config.chain.underlying
    interval = ctx.config.chain.quote_interval_s
    while True:
        spot = ctx.driver.fair[und] if ctx.driver is not None else ctx.engine.mids.get(und)
        if spot and ctx.engine is not None and not ctx.engine._closed:
            try:
                ctx.engine.on_option_quotes(ctx.quoter.quotes(spot))
            except Exception:  # noqa: BLE001 - the quoter must keep going; the failure is logged
                log.exception("option quotes")
        await asyncio.sleep(interval)


async def run(config: RunConfig | str | os.PathLike, duration: float | None = None, nic_kind: str | None = None,
              run_dir=None, *, view=None, on_start: Callable[[RunContext], Awaitable[None]] | None = None,
              report: bool = True, handle_signals: bool = False) -> RunContext:
    """Run the loop (see the module doc); returns the context with ``summary`` set after the report.

    ``view(ctx)`` is called every ``run.view_interval_s`` (the live view); ``on_start(ctx)`` runs as a
    task once everything is up (scripted markets, fault injection); ``handle_signals`` stops on
    SIGINT/SIGTERM (the CLI).
    """
    if not isinstance(config, RunConfig):
        config = load_run_config(config)
    kind = nic_kind or config.nic
    if kind not in NIC_KINDS:
        raise RunConfigError("nic.kind", f"must be one of {', '.join(NIC_KINDS)}, got {kind!r}")
    duration = config.duration_s if duration is None else float(duration)
    run_dir = Path(run_dir if run_dir is not None else config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(config, kind, run_dir)
    _write_text(run_dir / "config.toml", config.source)
    from sim.exchange.venue import Exchange

    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, ctx.stop.set)
    ctx.exchange = Exchange(config.exchange, order_entry="calarb")
    for v in ctx.exchange.venues:
        v.listen(None, lambda ev, v=v: _on_venue_report(ctx, v.name, ev) if ev.owner in v.cfg.clients else None)
    await ctx.exchange.start()
    try:
        ctx.md_ports = {v.name: free_udp_port(v.cfg.md_host) for v in ctx.exchange.venues}
        for v in ctx.exchange.venues:
            v.subscribe((v.cfg.md_host, ctx.md_ports[v.name]))
        ctx.driver = MarketDriver(config.market, ctx.exchange)
        ctx.driver.step(0.0)
        engine_cfg = ctx.engine_config()
        if config.chain.enabled:
            o = engine_cfg.options
            ctx.quoter = ChainQuoter(config.chain, ctx.driver.fair[config.chain.underlying], o.rate, o.dividend)
        await ctx.start_engine()
        ctx.started = time.time()
        ctx.driver.t0 = time.monotonic()  # shocks count from here: building the NICs may take a while
        if ctx.quoter is not None:
            ctx.quoter.t0 = ctx.driver.t0
        ctx.tasks.append(asyncio.create_task(ctx.driver.run()))
        if ctx.quoter is not None:
            ctx.tasks.append(asyncio.create_task(_quote_loop(ctx)))
        if view is not None:
            ctx.tasks.append(asyncio.create_task(_view_loop(ctx, view)))
        if on_start is not None:
            ctx.tasks.append(asyncio.create_task(on_start(ctx)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ctx.stop.wait(), duration)
    finally:
        for t in ctx.tasks:
            t.cancel()
        for t in ctx.tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - shut down regardless; the failure is logged and kept
                log.exception("run task failed")
                ctx.errors.append(f"{t.get_coro().__name__}: {traceback.format_exc(limit=3)}")
        try:
            await ctx.stop_engine()
        finally:
            snapshot = [v.snapshot() for v in ctx.exchange.venues]
            await ctx.exchange.stop()
            _write_json(run_dir / "exchange.json", {"venues": snapshot, "reports": ctx.venue_reports})
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(sig)
    if report:
        from calarb.report import write_report
        ctx.summary = await asyncio.to_thread(write_report, run_dir, run_info(ctx))
    return ctx


def run_info(ctx: RunContext) -> dict:
    """What the report needs to know about the run besides the run directory."""
    return {"nic": ctx.nic_kind, "duration_s": round(ctx.elapsed, 3), "restarts": ctx.restarts, "errors": ctx.errors,
            "venues": [v.name for v in ctx.exchange.venues], "md_ports": ctx.md_ports,
            "market_shocks": [vars(s) for s in ctx.config.market.shocks],
            "chain_shocks": [{**vars(s), "series": ctx.quoter.names[i]} for s, i in
                             zip(ctx.config.chain.shocks, ctx.quoter.shock_index)] if ctx.quoter else [],
            "pairs": [[p.y, p.x] for p in ctx.config.market.pairs]}


async def _view_loop(ctx: RunContext, view) -> None:
    while True:
        try:
            view(ctx)
        except Exception:  # noqa: BLE001 - a view failure must not stop the run
            log.exception("live view")
        await asyncio.sleep(ctx.config.view_interval_s)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    _write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
