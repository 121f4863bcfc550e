"""The exchange simulator's TOML configuration: venues, their ports and symbols.

One file describes the whole exchange; every key is documented in
``sim/exchange/example.toml``. :func:`load` (a path) and :func:`parse` (a dict,
as :mod:`tomllib` returns it) validate everything up front and refuse a wrong
key, a wrong type or a bad value with a :class:`ConfigError` naming the key
(``venue[1].symbol[0].tick: ...``). Prices are written in dollars in the file
and kept as price4 integers (1/10000 dollar).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from sim.exchange.flow import FlowConfig


class ConfigError(ValueError):
    """A configuration the exchange refuses; ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class SymbolConfig:
    """One listed symbol: its ITCH stock locate, opening price and tick (price4), round lot."""

    symbol: str
    locate: int
    price: int
    tick: int = 100
    round_lot: int = 100


@dataclass(frozen=True)
class VenueConfig:
    """One venue: order entry (FIX), market data (MoldUDP64 to ``md_host:md_port``) and its
    re-request server, the symbols it lists and its background flow. Port 0 picks a free port."""

    name: str
    symbols: tuple[SymbolConfig, ...]
    host: str = "127.0.0.1"
    fix_port: int = 9876
    comp_id: str = ""
    md_host: str = "127.0.0.1"
    md_port: int = 26400
    retransmit_port: int = 26401
    session: str = ""
    latency_ms: float = 0.0
    heartbeat_s: float = 1.0
    max_payload: int = 1400
    fix_heartbeat_s: int = 30
    store_dir: str = ""
    clients: tuple[str, ...] = ("CALARB",)
    flow: FlowConfig | None = field(default_factory=FlowConfig)

    def __post_init__(self):
        if not self.comp_id:
            object.__setattr__(self, "comp_id", self.name)
        if not self.session:
            object.__setattr__(self, "session", (self.name + "0" * 10)[:10])

    @property
    def prices(self) -> dict[str, int]:
        return {s.symbol: s.price for s in self.symbols}

    @property
    def ticks(self) -> dict[str, int]:
        return {s.symbol: s.tick for s in self.symbols}

    @property
    def locates(self) -> dict[str, int]:
        return {s.symbol: s.locate for s in self.symbols}


@dataclass(frozen=True)
class ExchangeConfig:
    venues: tuple[VenueConfig, ...]
    stats_interval_s: float = 5.0


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #

_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _take(table: dict, key: str, where: str, typ, default=None, required: bool = False):
    path = f"{where}.{key}" if where else key
    if key not in table:
        if required:
            raise ConfigError(path, "is required")
        return default
    v = table[key]
    ok = isinstance(v, typ) and not (typ is not bool and isinstance(v, bool))
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v, ok = float(v), True
    if not ok:
        raise ConfigError(path, f"must be {_TYPES[typ]}, not {v!r}")
    return v


def _no_strays(table: dict, allowed: set[str], where: str) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}" if where else k,
                              f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _dollars(table: dict, key: str, where: str, default=None, required=False) -> int | None:
    v = _take(table, key, where, float, default, required)
    if v is None:
        return None
    e4 = round(v * 10_000)
    if e4 <= 0 or abs(e4 - v * 10_000) > 1e-6 * max(1.0, abs(v * 10_000)):
        raise ConfigError(f"{where}.{key}", f"{v} is not a positive price in 1/10000 dollars")
    return e4


def _port(table, key, where, default) -> int:
    v = _take(table, key, where, int, default)
    if not 0 <= v <= 65535:
        raise ConfigError(f"{where}.{key}", f"{v} is not a port (0..65535)")
    return v


def _positive(v, path):
    if v <= 0:
        raise ConfigError(path, f"must be positive, not {v}")
    return v


def _symbol(t: dict, where: str) -> SymbolConfig:
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    _no_strays(t, {"symbol", "locate", "price", "tick", "round_lot"}, where)
    sym = _take(t, "symbol", where, str, required=True)
    if not (1 <= len(sym) <= 8 and sym.isascii() and sym == sym.strip() and sym.upper() == sym):
        raise ConfigError(f"{where}.symbol", f"{sym!r} is not 1-8 upper-case ASCII characters")
    locate = _take(t, "locate", where, int, required=True)
    if not 1 <= locate <= 0xFFFF:
        raise ConfigError(f"{where}.locate", f"{locate} is not a stock locate (1..65535)")
    tick = _dollars(t, "tick", where, 0.01)
    price = _dollars(t, "price", where, required=True)
    if price % tick:
        raise ConfigError(f"{where}.price", f"{price / 1e4} is not on the {tick / 1e4} tick grid")
    lot = _positive(_take(t, "round_lot", where, int, 100), f"{where}.round_lot")
    return SymbolConfig(sym, locate, price, tick, lot)


def _flow(t, where: str) -> FlowConfig | None:
    if t is None:
        return FlowConfig()
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    names = {f.name: f for f in fields(FlowConfig)}
    _no_strays(t, set(names) | {"enabled"}, where)
    if not _take(t, "enabled", where, bool, True):
        return None
    kw = {}
    for name, f in names.items():
        typ = int if f.type in ("int", int) else float
        if name in t:
            kw[name] = _take(t, name, where, typ)
            if name != "seed" and kw[name] < 0:
                raise ConfigError(f"{where}.{name}", f"must not be negative, not {kw[name]}")
    cfg = replace(FlowConfig(), **kw)
    if cfg.rate <= 0:
        raise ConfigError(f"{where}.rate", f"must be positive, not {cfg.rate}")
    return cfg


VENUE_KEYS = {"name", "host", "fix_port", "comp_id", "md_host", "md_port", "retransmit_port", "session",
              "latency_ms", "heartbeat_s", "max_payload", "fix_heartbeat_s", "store_dir", "clients", "flow",
              "symbol"}


def _venue(t: dict, where: str) -> VenueConfig:
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    _no_strays(t, VENUE_KEYS, where)
    name = _take(t, "name", where, str, required=True)
    if not name or not name.isascii() or not name.isalnum():
        raise ConfigError(f"{where}.name", f"{name!r} is not a non-empty ASCII alphanumeric name")
    syms = t.get("symbol")
    if not isinstance(syms, list) or not syms:
        raise ConfigError(f"{where}.symbol", "needs at least one [[venue.symbol]] table")
    symbols = tuple(_symbol(s, f"{where}.symbol[{i}]") for i, s in enumerate(syms))
    seen_s, seen_l = {}, {}
    for i, s in enumerate(symbols):
        if s.symbol in seen_s:
            raise ConfigError(f"{where}.symbol[{i}].symbol", f"{s.symbol} is listed twice")
        if s.locate in seen_l:
            raise ConfigError(f"{where}.symbol[{i}].locate", f"{s.locate} is already {seen_l[s.locate]}'s")
        seen_s[s.symbol], seen_l[s.locate] = i, s.symbol
    session = _take(t, "session", where, str, "")
    if len(session) > 10 or not session.isascii():
        raise ConfigError(f"{where}.session", f"{session!r} is not at most 10 ASCII characters")
    max_payload = _take(t, "max_payload", where, int, 1400)
    if not 100 <= max_payload <= 65507:
        raise ConfigError(f"{where}.max_payload", f"{max_payload} is not within 100..65507 bytes")
    latency = _take(t, "latency_ms", where, float, 0.0)
    if latency < 0:
        raise ConfigError(f"{where}.latency_ms", f"must not be negative, not {latency}")
    clients = t.get("clients", ["CALARB"])
    if (not isinstance(clients, list) or not clients
            or not all(isinstance(c, str) and c and c.isascii() and "=" not in c and c.isprintable()
                       for c in clients)):
        raise ConfigError(f"{where}.clients", f"must be a non-empty list of client CompIDs, not {clients!r}")
    return VenueConfig(
        name=name, clients=tuple(clients), symbols=symbols, host=_take(t, "host", where, str, "127.0.0.1"),
        fix_port=_port(t, "fix_port", where, 9876), comp_id=_take(t, "comp_id", where, str, ""),
        md_host=_take(t, "md_host", where, str, "127.0.0.1"), md_port=_port(t, "md_port", where, 26400),
        retransmit_port=_port(t, "retransmit_port", where, 26401), session=session, latency_ms=latency,
        heartbeat_s=_positive(_take(t, "heartbeat_s", where, float, 1.0), f"{where}.heartbeat_s"),
        max_payload=max_payload,
        fix_heartbeat_s=_positive(_take(t, "fix_heartbeat_s", where, int, 30), f"{where}.fix_heartbeat_s"),
        store_dir=_take(t, "store_dir", where, str, ""), flow=_flow(t.get("flow"), f"{where}.flow"))


def parse(doc: dict) -> ExchangeConfig:
    """Validate a parsed TOML document (see the module doc)."""
    _no_strays(doc, {"exchange", "venue"}, "")
    ex = doc.get("exchange", {})
    if not isinstance(ex, dict):
        raise ConfigError("exchange", "must be a table")
    _no_strays(ex, {"stats_interval_s"}, "exchange")
    stats = _positive(_take(ex, "stats_interval_s", "exchange", float, 5.0), "exchange.stats_interval_s")
    vs = doc.get("venue")
    if not isinstance(vs, list) or not vs:
        raise ConfigError("venue", "needs at least one [[venue]] table")
    venues = tuple(_venue(v, f"venue[{i}]") for i, v in enumerate(vs))
    names: dict[str, int] = {}
    ports: dict[tuple[str, int], str] = {}
    for i, v in enumerate(venues):
        if v.name in names:
            raise ConfigError(f"venue[{i}].name", f"{v.name} is already venue[{names[v.name]}]")
        names[v.name] = i
        for key in ("fix_port", "retransmit_port"):
            port = getattr(v, key)
            if port and (v.host, port) in ports:
                raise ConfigError(f"venue[{i}].{key}", f"port {port} is already {ports[(v.host, port)]}")
            if port:
                ports[(v.host, port)] = f"venue[{i}].{key}"
    return ExchangeConfig(venues, stats)


def load(path: str | Path) -> ExchangeConfig:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    return parse(doc)


def default_config() -> ExchangeConfig:
    """The shipped example (``sim/exchange/example.toml``)."""
    return load(Path(__file__).with_name("example.toml"))
