"""Engine configuration: dataclasses per stage, loaded from one TOML file.

What
    :class:`EngineConfig` holds the engine's own ``[engine]`` section and one section per stage (``[signals.pairs]``,
    ``[aggregation]``, ``[risk]``, ``[sizing]``, ``[routing]``, ``[arming]``,
    ``[reconcile]``, ``[retry]``, ``[storage]``, ``[metrics]``,
    ``[latency]``, ``[options]``) plus ``[[instruments]]`` and ``[[pairs]]`` tables.
    :func:`load_config` / :func:`config_from_dict` build it and refuse a
    wrong config with :class:`ConfigError` naming the dotted key
    (``risk.max_order_qty``, ``instruments[2].sector``): unknown keys, wrong
    types and out-of-range values alike. An optional limit (``var_limit``,
    ``max_drawdown``, ``stop_z``, a retention tier, ...) set to ``false`` is
    switched off (TOML has no null).

Why
    One source of truth for every limit and default; the stages take their
    own section, so a stage test builds just that dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AggregationConfig",
    "ArmingConfig",
    "ConfigError",
    "EngineConfig",
    "InstrumentConfig",
    "LatencyConfig",
    "MetricsConfig",
    "OptionsConfig",
    "PairConfig",
    "PairsSignalConfig",
    "ReconcileConfig",
    "RetentionConfig",
    "RetryConfig",
    "RiskLimits",
    "RoutingConfig",
    "RunConfig",
    "SignalsConfig",
    "SizingConfig",
    "StorageConfig",
    "TermSignalConfig",
    "VenueConfig",
    "VolArbConfig",
    "config_from_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration value is refused; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(key, message)


def _positive(obj, *names):
    for n in names:
        v = getattr(obj, n)
        _check(v is None or (v > 0 and math.isfinite(v)), n, f"must be > 0, got {v!r}")


def _nonneg(obj, *names):
    for n in names:
        v = getattr(obj, n)
        _check(v is None or (v >= 0 and math.isfinite(v)), n, f"must be >= 0, got {v!r}")


def _unit(obj, *names, open_low=False):
    for n in names:
        v = getattr(obj, n)
        ok = (0.0 < v <= 1.0) if open_low else (0.0 <= v <= 1.0)
        _check(ok, n, f"must be in {'(0' if open_low else '[0'}, 1], got {v!r}")


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class InstrumentConfig:
    """A traded instrument: ``tick`` and prices in 1/10000 units; ``kind`` equity or option."""

    name: str
    sector: str = "default"
    tick: int = 100
    lot: int = 1
    kind: str = "equity"
    underlying: str = ""

    def __post_init__(self):
        _check(bool(self.name), "name", "must not be empty")
        _positive(self, "tick", "lot")
        _check(self.kind in ("equity", "option", "future"), "kind",
               f"must be equity, option or future, got {self.kind!r}")


@dataclass(frozen=True)
class PairConfig:
    """A traded pair: ``y`` (leg A) against ``x`` (leg B); hedge ratio fitted unless given."""

    y: str
    x: str
    hedge_ratio: float | None = None

    def __post_init__(self):
        _check(self.y != self.x, "x", f"must differ from y ({self.y!r})")


@dataclass(frozen=True)
class PairsSignalConfig:
    """Pairs mean reversion (defaults from the pairs sample table: enter at |z| > 2, exit near 0)."""

    enabled: bool = True
    window: int = 20
    entry_z: float = 2.0
    exit_z: float = 0.5
    stop_z: float | None = 4.0
    bands: str = "zscore"  # or "ou" (Bertram optimal bands)
    hedge: str = "static"  # or "kalman"
    ou_cost: float = 0.01  # round-trip cost in spread units (OU bands)
    min_confidence_base: float = 0.7  # confidence at |z| = entry, before cointegration quality
    confidence_slope: float = 0.15  # confidence added per unit of z beyond entry

    def __post_init__(self):
        _check(self.window >= 3, "window", f"must be >= 3, got {self.window!r}")
        _positive(self, "entry_z", "ou_cost")
        _nonneg(self, "exit_z", "confidence_slope")
        _check(self.exit_z < self.entry_z, "exit_z", f"must be < entry_z ({self.entry_z}), got {self.exit_z}")
        _check(self.stop_z is None or self.stop_z > self.entry_z, "stop_z",
               f"must be > entry_z ({self.entry_z}), got {self.stop_z}")
        _check(self.bands in ("zscore", "ou"), "bands", f"must be 'zscore' or 'ou', got {self.bands!r}")
        _check(self.hedge in ("static", "kalman"), "hedge", f"must be 'static' or 'kalman', got {self.hedge!r}")
        _unit(self, "min_confidence_base")


@dataclass(frozen=True)
class VolArbConfig:
    """Volatility arbitrage: trade when model IV is ``threshold`` (vol units) past the quoted side's IV."""

    enabled: bool = True
    threshold: float = 0.02
    max_rmse_iv: float = 0.01  # fit quality 0 at this calibration RMSE
    max_rel_spread: float = 0.05  # liquidity 0 at this relative bid-ask spread
    min_size: int = 10  # touch size for full liquidity

    def __post_init__(self):
        _positive(self, "threshold", "max_rmse_iv", "max_rel_spread", "min_size")


@dataclass(frozen=True)
class TermSignalConfig:
    """Term structure: calendar spread when the market ATM slope departs from the model's."""

    enabled: bool = True
    threshold: float = 0.05  # vol per year of slope difference
    max_rmse_iv: float = 0.01

    def __post_init__(self):
        _positive(self, "threshold", "max_rmse_iv")


@dataclass(frozen=True)
class SignalsConfig:
    pairs: PairsSignalConfig = field(default_factory=PairsSignalConfig)
    volarb: VolArbConfig = field(default_factory=VolArbConfig)
    term: TermSignalConfig = field(default_factory=TermSignalConfig)
    disable_after: int = 1  # consecutive failures before a signal type is disabled

    def __post_init__(self):
        _positive(self, "disable_after")


@dataclass(frozen=True)
class AggregationConfig:
    min_confidence: float = 0.6
    source_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        _unit(self, "min_confidence")
        for k, v in self.source_weights.items():
            _check(v >= 0 and math.isfinite(v), f"source_weights.{k}", f"must be >= 0, got {v!r}")


@dataclass(frozen=True)
class RiskLimits:
    """Pre-trade limits. Money in currency units; ``None`` switches a limit off."""

    max_order_qty: int = 10_000
    max_order_notional: float = 1_000_000.0
    max_position: int = 50_000  # |shares| per instrument
    max_instrument_gross: float = 2_000_000.0  # |notional| per instrument
    max_gross: float = 10_000_000.0
    max_net: float = 5_000_000.0
    max_sector_gross: float | None = 5_000_000.0
    max_sector_net: float | None = 2_500_000.0
    var_limit: float | None = 250_000.0
    var_method: str = "both"  # "historical", "parametric" or "both"
    var_confidence: float = 0.99
    max_drawdown: float | None = 500_000.0
    max_price_deviation: float = 0.05  # fat finger: |limit/reference - 1|
    kill_on_breach: bool = True

    def __post_init__(self):
        _positive(self, "max_order_qty", "max_order_notional", "max_position", "max_instrument_gross",
                  "max_gross", "max_net", "max_sector_gross", "max_sector_net", "var_limit", "max_drawdown",
                  "max_price_deviation")
        _check(self.var_method in ("historical", "parametric", "both"), "var_method",
               f"must be historical, parametric or both, got {self.var_method!r}")
        _check(0.5 < self.var_confidence < 1.0, "var_confidence", f"must be in (0.5, 1), got {self.var_confidence!r}")


@dataclass(frozen=True)
class SizingConfig:
    """Position sizing: vol target, fractional Kelly bound, sector and position caps."""

    target_vol: float = 0.10  # annualised vol budget per position, fraction of equity
    kelly_fraction: float = 0.5
    max_position_notional: float = 1_000_000.0
    max_sector_gross: float = 5_000_000.0
    default_vol: float = 0.30  # annualised, when an instrument has no estimate

    def __post_init__(self):
        _positive(self, "target_vol", "max_position_notional", "max_sector_gross", "default_vol")
        _unit(self, "kelly_fraction", open_low=True)


@dataclass(frozen=True)
class VenueConfig:
    """A venue: its latency (routing) and, for the engine, where to reach it.

    Order entry: FIX 4.4 to ``fix_host:fix_port`` with TargetCompID
    ``comp_id`` (default: ``name``); ``fix_port = 0`` routes nothing there.
    Market data: the engine binds ``md_host:md_port`` (0 picks a free port)
    for the venue's MoldUDP64 datagrams and re-requests gaps from
    ``retransmit_host:retransmit_port`` (0: no recovery). ``session`` pins
    the MoldUDP64 session ("" learns it from the first datagram);
    ``locates`` maps symbols to the venue's ITCH stock locates (empty: the
    instruments in config order are locates 1, 2, ...).
    """

    name: str
    latency_us: float = 50.0
    fix_host: str = "127.0.0.1"
    fix_port: int = 0
    comp_id: str = ""
    fix_heartbeat_s: int = 30
    md_host: str = "127.0.0.1"
    md_port: int = 0
    retransmit_host: str = "127.0.0.1"
    retransmit_port: int = 0
    session: str = ""
    locates: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        _check(bool(self.name), "name", "must not be empty")
        _nonneg(self, "latency_us")
        for key in ("fix_port", "md_port", "retransmit_port"):
            v = getattr(self, key)
            _check(0 <= v <= 65535, key, f"must be a port in [0, 65535], got {v!r}")
        _check(self.fix_heartbeat_s >= 1, "fix_heartbeat_s", f"must be >= 1, got {self.fix_heartbeat_s!r}")
        _check(len(self.session) <= 10 and self.session.isascii(), "session",
               f"must be at most 10 ASCII characters, got {self.session!r}")
        for sym, loc in self.locates.items():
            _check(1 <= loc <= 0xFFFF, f"locates.{sym}", f"must be a stock locate in [1, 65535], got {loc!r}")
        locs = list(self.locates.values())
        _check(len(set(locs)) == len(locs), "locates", f"two symbols share a stock locate: {self.locates}")

    @property
    def target_comp_id(self) -> str:
        return self.comp_id or self.name


@dataclass(frozen=True)
class RoutingConfig:
    """Smart order routing: venues with their one-way latency; a latency cost in 1/10000 per microsecond."""

    venues: list[VenueConfig] = field(default_factory=lambda: [VenueConfig("XNAS", 40.0), VenueConfig("BATS", 60.0)])
    latency_cost_e4_per_us: float = 0.0
    max_quote_age_ns: int = 1_000_000_000

    def __post_init__(self):
        _check(len(self.venues) >= 1, "venues", "needs at least one venue")
        names = [v.name for v in self.venues]
        _check(len(set(names)) == len(names), "venues", f"duplicate venue names in {names}")
        _nonneg(self, "latency_cost_e4_per_us")
        _positive(self, "max_quote_age_ns")


@dataclass(frozen=True)
class ArmingConfig:
    """Trigger thresholds: ``edge`` in 1/10000 units per share, ``max_qty`` armed per threshold."""

    edge_e4: int = 200
    edge_bps: float = 0.0  # added to edge_e4, relative to fair value
    max_qty: int = 100

    def __post_init__(self):
        _nonneg(self, "edge_e4", "edge_bps")
        _positive(self, "max_qty")


@dataclass(frozen=True)
class ReconcileConfig:
    ack_timeout_ns: int = 2_000_000_000
    slippage_alert_bps: float = 5.0  # mean slippage that triggers recalibration
    slippage_window: int = 50

    def __post_init__(self):
        _positive(self, "ack_timeout_ns", "slippage_alert_bps", "slippage_window")


@dataclass(frozen=True)
class RetryConfig:
    retries: int = 3
    base_delay_s: float = 0.05
    factor: float = 2.0
    max_age_s: float = 5.0  # cached values older than this raise a staleness alert

    def __post_init__(self):
        _nonneg(self, "retries", "base_delay_s")
        _positive(self, "max_age_s")
        _check(self.factor >= 1, "factor", f"must be >= 1, got {self.factor!r}")


@dataclass(frozen=True)
class RetentionConfig:
    """Age in days at which rows leave hot (DuckDB), warm and cold (Parquet) storage; ``None`` is never.

    Rows older than ``hot_days`` move to warm Parquet, warm files older than
    ``warm_days`` to cold, cold files older than ``cold_days`` are deleted.
    """

    hot_days: float | None
    warm_days: float | None
    cold_days: float | None = None

    def __post_init__(self):
        _positive(self, "hot_days", "warm_days", "cold_days")
        ages = [a for a in (self.hot_days, self.warm_days, self.cold_days)]
        for i, name in ((1, "warm_days"), (2, "cold_days")):
            lo = ages[i - 1]
            _check(lo is not None or ages[i] is None, name, "must be off (false) when the tier before is kept forever")
            _check(lo is None or ages[i] is None or ages[i] > lo, name,
                   f"must be more than {['hot_days', 'warm_days'][i - 1]} ({lo}), got {ages[i]}")


def _retention(hot, warm, cold=None):
    return field(default_factory=lambda: RetentionConfig(hot, warm, cold))


@dataclass(frozen=True)
class StorageConfig:
    """Run directory and retention per table (defaults from DESIGN.md's retention table)."""

    run_dir: str = "runs/current"
    tob: RetentionConfig = _retention(7, 90, 5 * 365)
    calibrations: RetentionConfig = _retention(90, 5 * 365)
    signals: RetentionConfig = _retention(365, 5 * 365)
    orders: RetentionConfig = _retention(5 * 365, None)
    executions: RetentionConfig = _retention(5 * 365, None)
    audit: RetentionConfig = _retention(5 * 365, None)
    batch_rows: int = 10_000

    def __post_init__(self):
        _positive(self, "batch_rows")


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9464

    def __post_init__(self):
        _check(0 <= self.port <= 65535, "port", f"must be in [0, 65535], got {self.port!r}")
        _check(self.address in ("127.0.0.1", "::1", "localhost"), "address",
               f"must be a loopback address, got {self.address!r}")


@dataclass(frozen=True)
class LatencyConfig:
    """Host budgets in milliseconds (DESIGN.md's host latency table)."""

    validation_ms: float = 50.0
    cache_update_ms: float = 10.0
    history_insert_ms: float = 100.0
    signals_ms: float = 5000.0
    risk_ms: float = 1000.0
    order_submission_ms: float = 500.0

    def __post_init__(self):
        _positive(self, *[f.name for f in dataclasses.fields(self)])

    def budgets_ns(self) -> dict[str, int]:
        """``{stage: budget_ns}``."""
        return {f.name[:-3]: int(getattr(self, f.name) * 1e6) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class RunConfig:
    """The engine's own settings (``[engine]``): identity, capital, order style, timers, recalibration.

    ``capital`` is the equity before P&L (sizing and drawdown use it);
    ``order_tif`` "ioc" takes the touch and cancels the rest, "day" leaves
    the rest resting; ``trade = false`` runs every stage but sends nothing.
    Every ``rebalance_interval_s`` (0: never) the engine trades again
    towards targets that position + open orders miss (an IOC that found
    the touch gone).
    Pairs recalibration (Engle-Granger on the last ``recal_window``
    observations) runs every ``recalibrate_every`` observations (0: only
    when reconciliation's slippage statistics ask) and is accepted only
    with a p-value under ``recal_max_pvalue`` and a hedge ratio within
    ``recal_max_change`` (relative) of the last accepted one.
    """

    comp_id: str = "CALARB"
    capital: float = 1_000_000.0
    clordid_prefix: str = "CA"
    order_tif: str = "ioc"
    trade: bool = True
    timer_s: float = 0.05
    flush_interval_s: float = 0.5
    status_interval_s: float = 0.5
    retransmit_retry_s: float = 0.05
    rebalance_interval_s: float = 1.0
    fix_fsync: str = "always"
    recalibrate_every: int = 0
    recal_window: int = 200
    recal_max_pvalue: float = 0.05
    recal_max_change: float = 0.5
    recal_alert_after: int = 3

    def __post_init__(self):
        _check(bool(self.comp_id) and "=" not in self.comp_id, "comp_id", f"must be a CompID, got {self.comp_id!r}")
        _check(self.clordid_prefix.isalnum(), "clordid_prefix",
               f"must be letters and digits, got {self.clordid_prefix!r}")
        _check(self.order_tif in ("ioc", "day"), "order_tif", f"must be 'ioc' or 'day', got {self.order_tif!r}")
        _check(self.fix_fsync in ("always", "never"), "fix_fsync",
               f"must be 'always' or 'never', got {self.fix_fsync!r}")
        _positive(self, "capital", "timer_s", "flush_interval_s", "status_interval_s", "retransmit_retry_s",
                  "recal_max_change", "recal_alert_after")
        _nonneg(self, "recalibrate_every", "rebalance_interval_s")
        _check(self.recal_window >= 10, "recal_window", f"must be >= 10, got {self.recal_window!r}")
        _unit(self, "recal_max_pvalue", open_low=True)


@dataclass(frozen=True)
class OptionsConfig:
    """Options on one ``underlying``: the chain's quotes reach :meth:`host.engine.Engine.on_option_quotes`;
    every ``calibrate_every_s`` the engine calibrates ``model`` (Heston on the whole surface or SABR per
    expiry, :class:`host.calibration.Calibrator`, off the event loop) and the vol-arb signal compares the
    quotes with the last accepted model. ``max_rmse_iv`` and ``max_rel_change`` are the calibration's
    acceptance thresholds; ``alert_after`` refused calibrations in a row raise an alert. No venue lists
    options yet: vol-arb signals are recorded, not traded.
    """

    enabled: bool = False
    underlying: str = ""
    model: str = "heston"
    calibrate_every_s: float = 10.0
    rate: float = 0.03
    dividend: float = 0.01
    max_rmse_iv: float = 0.01
    max_rel_change: float = 0.5
    alert_after: int = 3

    def __post_init__(self):
        _check(self.model in ("heston", "sabr"), "model", f"must be 'heston' or 'sabr', got {self.model!r}")
        _check(not self.enabled or bool(self.underlying), "underlying", "must be set when options are enabled")
        _positive(self, "calibrate_every_s", "max_rmse_iv", "max_rel_change", "alert_after")
        _check(math.isfinite(self.rate) and math.isfinite(self.dividend), "rate", "rate and dividend must be finite")


@dataclass(frozen=True)
class EngineConfig:
    engine: RunConfig = field(default_factory=RunConfig)
    instruments: list[InstrumentConfig] = field(default_factory=list)
    pairs: list[PairConfig] = field(default_factory=list)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    risk: RiskLimits = field(default_factory=RiskLimits)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    arming: ArmingConfig = field(default_factory=ArmingConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    options: OptionsConfig = field(default_factory=OptionsConfig)

    def __post_init__(self):
        names = [i.name for i in self.instruments]
        dup = sorted({n for n in names if names.count(n) > 1})
        _check(not dup, "instruments", f"duplicate instrument names {dup}")
        known = set(names)
        if known:
            for k, p in enumerate(self.pairs):
                for leg in ("y", "x"):
                    _check(getattr(p, leg) in known, f"pairs[{k}].{leg}",
                           f"{getattr(p, leg)!r} is not among the instruments")
            if self.options.enabled:
                _check(self.options.underlying in known, "options.underlying",
                       f"{self.options.underlying!r} is not among the instruments")
            for k, v in enumerate(self.routing.venues):
                for sym in v.locates:
                    _check(sym in known, f"routing.venues[{k}].locates.{sym}", "is not among the instruments")

    @property
    def sectors(self) -> dict[str, str]:
        """``{instrument: sector}``."""
        return {i.name: i.sector for i in self.instruments}


# ----------------------------------------------------------------------------- loading


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(tp, value, path: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if (value is None or value is False) and type(None) in args:
            return None  # TOML has no null: ``false`` switches an optional limit off
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a table, got {type(value).__name__}")
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, f"must be an array, got {type(value).__name__}")
        return [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a table, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, _join(path, k)) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported type {tp!r}")  # pragma: no cover - a bug in the dataclasses


def _build(cls, data: dict, path: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(_join(path, key), f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(_join(path, name), "missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.key), str(exc).split(": ", 1)[-1]) from None


def config_from_dict(data: dict) -> EngineConfig:
    """Build an :class:`EngineConfig` from parsed TOML; :class:`ConfigError` names the offending key."""
    return _build(EngineConfig, data, "")


def load_config(path) -> EngineConfig:
    """Load and validate a TOML engine config."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data)
