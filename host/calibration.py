"""The calibration pipeline: load an options chain, prepare it, calibrate Heston
(whole surface) or SABR (per maturity), validate the result and keep the last
accepted parameters.

Chain CSV format
    One row per option, a header row naming the columns (any order; extra
    columns are ignored; ``#`` lines are comments)::

        expiry_days,strike,type,bid,ask,spot,rate,dividend
        30,95.00,P,1.12,1.16,100.0,0.03,0.01

    ===============  ==========================================================
    ``expiry_days``  calendar days to expiry (> 0); ``T = days / 365``.
                     Or ``expiry``: years to expiry (> 0). One of them.
    ``strike``       strike (> 0, price units)
    ``type``         ``C``/``P`` (also ``call``/``put``, any case)
    ``bid``, ``ask`` quotes (price units, ``0 <= bid <= ask``, ``ask > 0``)
    ``spot``         underlying price (> 0)                 } optional columns,
    ``rate``         continuously compounded rate per year  } then one value on
    ``dividend``     continuous dividend yield per year     } every row; or pass
                                                            } them to the loader
    ===============  ==========================================================

    A missing column, an unparsable or impossible value (bid > ask, a
    negative price, a non-positive strike or expiry, an unknown type, a
    spot/rate/dividend that changes between rows) raises :class:`ChainError`
    naming the line (the header is line 1) and the column.

Preparation (:func:`prepare`, thresholds in :class:`PrepConfig`)
    mid = (bid + ask)/2, spread = ask - bid (the error scale of the mid);
    keep maturities of 30 to 365 days, forward moneyness ``K/F`` inside a
    band (default 0.8 to 1.2: deep in/out of the money dropped), relative
    spread ``spread/mid`` under 5 %; where a call and a put share a strike
    and expiry keep the out-of-the-money one (put below the forward, call at
    or above it); drop quotes whose mid has no Black-Scholes implied vol.
    Every dropped quote is counted by reason.

Validation (:func:`validate`, thresholds in :class:`ValidationConfig`)
    parameters inside their bounds and finite; the optimiser converged;
    RMSE in implied vol under a threshold (default 1 vol point) and R squared
    of prices above one (Heston); relative change of every parameter against
    the previous accepted calibration under a threshold (default 50 %,
    relative to ``max(|previous|, floor)`` so rho near 0 is not
    over-penalised); Feller reported (and required only if asked); for
    SABR, each smile's RMSE and its no-arbitrage (density) check.

:class:`Calibrator`
    keeps the last accepted parameters; a calibration that raises or fails
    validation is refused with its reasons and the previous parameters stay;
    consecutive failures are counted and ``alert`` is raised after
    ``alert_after`` (default 3). Every accepted calibration is recorded with
    the sha256 fingerprint of its prepared quotes and its metrics, in memory
    and, optionally, as one JSON line appended (``O_APPEND``, one ``write``,
    then ``fsync``) to a record file; :func:`read_records` reads it back,
    ignoring a torn last line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import black_scholes as bs
from models import sabr
from models.heston import PARAM_NAMES, HestonParams
from models.heston_calibration import DEFAULT_BOUNDS, HestonFit, calibrate_heston

__all__ = [
    "CalibrationOutcome",
    "Calibrator",
    "Chain",
    "ChainError",
    "PrepConfig",
    "PreparedQuotes",
    "SABRSurfaceFit",
    "Validation",
    "ValidationConfig",
    "calibrate_sabr_surface",
    "fingerprint",
    "load_chain_csv",
    "prepare",
    "read_records",
    "validate",
]

DAYS_PER_YEAR = 365.0


class ChainError(ValueError):
    """A chain file or chain value is unusable; ``line`` and ``column`` say where."""

    def __init__(self, message, *, line=None, column=None, path=None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.line = line
        self.column = column
        self.path = path


@dataclass(frozen=True)
class Chain:
    """An options chain as loaded (one entry per row; ``line`` = line in the file)."""

    spot: float
    rate: float
    dividend: float
    expiry: np.ndarray  # years
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    line: np.ndarray

    def __len__(self):
        return int(self.strike.size)


_TYPES = {"c": True, "call": True, "p": False, "put": False}
_MARKET = ("spot", "rate", "dividend")


def load_chain_csv(path, *, spot=None, rate=None, dividend=None) -> Chain:
    """Read a chain CSV (format in the module docstring).

    ``spot``, ``rate`` and ``dividend`` given here override the columns; each
    must come from one or the other (``rate`` and ``dividend`` default to 0
    when neither has them).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ChainError(f"cannot read: {exc.strerror or exc}", path=path) from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ChainError("empty file, expected a header row", path=path, line=1)
    header_line, header_text = lines[0]
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    col = {name: i for i, name in enumerate(header)}
    for required in ("strike", "type", "bid", "ask"):
        if required not in col:
            raise ChainError(f"missing column (have {', '.join(header)})", path=path, line=header_line,
                             column=required)
    if "expiry_days" not in col and "expiry" not in col:
        raise ChainError("missing column, need expiry_days (days) or expiry (years)", path=path,
                         line=header_line, column="expiry_days")
    expiry_col = "expiry_days" if "expiry_days" in col else "expiry"
    given = {"spot": spot, "rate": rate, "dividend": dividend}
    for name in _MARKET:
        if given[name] is None and name not in col and name == "spot":
            raise ChainError("missing column and no value given (--spot)", path=path, line=header_line,
                             column="spot")
    rows = list(csv.reader([t for _, t in lines[1:]]))
    if not rows:
        raise ChainError("no option rows after the header", path=path, line=header_line)
    n = len(rows)
    out = {name: np.empty(n) for name in ("expiry", "strike", "bid", "ask")}
    is_call = np.empty(n, bool)
    line_no = np.array([ln for ln, _ in lines[1:]])
    market = {name: None for name in _MARKET}

    def number(row, name, ln):
        i = col[name]
        if i >= len(row) or not row[i].strip():
            raise ChainError("empty value", path=path, line=ln, column=name)
        try:
            value = float(row[i])
        except ValueError:
            raise ChainError(f"not a number: {row[i]!r}", path=path, line=ln, column=name) from None
        if not math.isfinite(value):
            raise ChainError(f"not finite: {row[i]!r}", path=path, line=ln, column=name)
        return value

    for k, row in enumerate(rows):
        ln = int(line_no[k])
        expiry = number(row, expiry_col, ln)
        if expiry <= 0:
            raise ChainError(f"expiry must be > 0, got {expiry:g}", path=path, line=ln, column=expiry_col)
        out["expiry"][k] = expiry / DAYS_PER_YEAR if expiry_col == "expiry_days" else expiry
        strike = number(row, "strike", ln)
        if strike <= 0:
            raise ChainError(f"strike must be > 0, got {strike:g}", path=path, line=ln, column="strike")
        out["strike"][k] = strike
        t = row[col["type"]].strip().lower() if col["type"] < len(row) else ""
        if t not in _TYPES:
            raise ChainError(f"type must be C or P, got {t!r}", path=path, line=ln, column="type")
        is_call[k] = _TYPES[t]
        bid = number(row, "bid", ln)
        ask = number(row, "ask", ln)
        if bid < 0:
            raise ChainError(f"negative price {bid:g}", path=path, line=ln, column="bid")
        if ask <= 0:
            raise ChainError(f"ask must be > 0, got {ask:g}", path=path, line=ln, column="ask")
        if bid > ask:
            raise ChainError(f"bid {bid:g} > ask {ask:g}", path=path, line=ln, column="bid")
        out["bid"][k], out["ask"][k] = bid, ask
        for name in _MARKET:
            if given[name] is None and name in col:
                value = number(row, name, ln)
                if market[name] is None:
                    market[name] = value
                elif value != market[name]:
                    raise ChainError(f"{name} {value:g} differs from {market[name]:g} on earlier rows",
                                     path=path, line=ln, column=name)
    values = {name: given[name] if given[name] is not None else market[name] for name in _MARKET}
    values["rate"] = 0.0 if values["rate"] is None else float(values["rate"])
    values["dividend"] = 0.0 if values["dividend"] is None else float(values["dividend"])
    if not (values["spot"] is not None and values["spot"] > 0 and math.isfinite(values["spot"])):
        raise ChainError(f"spot must be > 0, got {values['spot']!r}", path=path, column="spot")
    return Chain(spot=float(values["spot"]), rate=values["rate"], dividend=values["dividend"],
                 expiry=out["expiry"], strike=out["strike"], is_call=is_call, bid=out["bid"], ask=out["ask"],
                 line=line_no)


# ---------------------------------------------------------------------------
# preparation


@dataclass(frozen=True)
class PrepConfig:
    """Data preparation thresholds (see the module docstring)."""

    max_rel_spread: float = 0.05
    moneyness_band: tuple[float, float] = (0.8, 1.2)  # K/F
    min_days: float = 30.0
    max_days: float = 365.0
    prefer_otm: bool = True


@dataclass(frozen=True)
class PreparedQuotes:
    """Quotes ready to calibrate (arrays per quote, sorted by expiry then strike).

    mid, spread : price units; moneyness = K/F; log_moneyness = ln(K/F);
    iv : Black-Scholes implied vol of the mid; line : the quote's line in the file;
    dropped : quotes removed, by reason
    """

    spot: float
    rate: float
    dividend: float
    expiry: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    spread: np.ndarray
    forward: np.ndarray
    moneyness: np.ndarray
    log_moneyness: np.ndarray
    iv: np.ndarray
    line: np.ndarray
    dropped: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.strike.size)

    def expiries(self) -> np.ndarray:
        return np.unique(self.expiry)


def prepare(chain: Chain, config: PrepConfig = PrepConfig()) -> PreparedQuotes:
    """Filter and enrich a chain for calibration (see the module docstring)."""
    T, K = chain.expiry, chain.strike
    F = chain.spot * np.exp((chain.rate - chain.dividend) * T)
    mid = 0.5 * (chain.bid + chain.ask)
    spread = chain.ask - chain.bid
    days = T * DAYS_PER_YEAR
    keep = np.ones(len(chain), bool)
    dropped = {}

    def drop(reason, mask):
        newly = keep & mask
        dropped[reason] = int(newly.sum())
        keep[newly] = False

    eps = 1e-9
    drop("maturity", (days < config.min_days - eps) | (days > config.max_days + eps))
    m = K / F
    lo, hi = config.moneyness_band
    drop("moneyness", (m < lo) | (m > hi))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mid > 0, spread / mid, np.inf)
    drop("spread", ~(rel < config.max_rel_spread))
    if config.prefer_otm:
        otm = np.where(chain.is_call, K >= F, K < F)
        # an in-the-money quote goes when the out-of-the-money one at the same (T, K) is kept
        kept_otm = {(t, k) for t, k, o, kp in zip(T, K, otm, keep) if o and kp}
        itm_dup = np.array([(not o) and (t, k) in kept_otm for t, k, o in zip(T, K, otm)], dtype=bool)
        drop("in_the_money", itm_dup)
    iv = np.full(len(chain), np.nan)
    idx = np.flatnonzero(keep)
    if idx.size:
        iv[idx] = bs.implied_vol(mid[idx], chain.spot, K[idx], T[idx], chain.rate, chain.dividend,
                                 chain.is_call[idx])
    drop("no_implied_vol", ~np.isfinite(iv))
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((K[idx], T[idx]))]
    return PreparedQuotes(
        spot=chain.spot, rate=chain.rate, dividend=chain.dividend, expiry=T[idx], strike=K[idx],
        is_call=chain.is_call[idx], bid=chain.bid[idx], ask=chain.ask[idx], mid=mid[idx], spread=spread[idx],
        forward=F[idx], moneyness=m[idx], log_moneyness=np.log(m[idx]), iv=iv[idx], line=chain.line[idx],
        dropped=dropped,
    )


def fingerprint(quotes: PreparedQuotes) -> str:
    """sha256 (hex) of the prepared quotes: market inputs and every quote, as float64 bytes."""
    h = hashlib.sha256()
    h.update(np.array([quotes.spot, quotes.rate, quotes.dividend], dtype="<f8").tobytes())
    for arr in (quotes.expiry, quotes.strike, quotes.bid, quotes.ask):
        h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(quotes.is_call, dtype=np.uint8).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# SABR per maturity


@dataclass(frozen=True)
class SABRSurfaceFit:
    """One SABR fit per expiry.

    expiries : years; fits : :class:`models.sabr.SABRFit` per expiry;
    forwards; arbitrage : :class:`models.sabr.ArbitrageReport` per expiry
    (checked over the quoted strike range); seconds : per smile
    """

    expiries: np.ndarray
    forwards: np.ndarray
    fits: list
    arbitrage: list
    seconds: np.ndarray
    n_quotes: np.ndarray

    @property
    def params(self) -> dict:
        """``{days: SABRParams}`` (days rounded to the nearest day)."""
        return {int(round(t * DAYS_PER_YEAR)): f.params for t, f in zip(self.expiries, self.fits)}

    def metrics(self) -> dict:
        return {
            "smiles": [
                {"expiry_days": round(float(t) * DAYS_PER_YEAR, 4), "forward": float(F),
                 "alpha": f.params.alpha, "beta": f.params.beta, "rho": f.params.rho, "nu": f.params.nu,
                 "rmse_iv": f.rmse, "max_residual_iv": float(np.max(np.abs(f.residuals))),
                 "success": f.success, "nfev": f.nfev, "arbitrage_free": a.ok,
                 "negative_density_strikes": [float(k) for k in a.negative_strikes[:10]],
                 "n_quotes": int(n), "seconds": float(s)}
                for t, F, f, a, s, n in zip(self.expiries, self.forwards, self.fits, self.arbitrage,
                                            self.seconds, self.n_quotes)
            ]
        }


def calibrate_sabr_surface(quotes: PreparedQuotes, *, beta=0.5, fit_beta=False, previous=None,
                           min_quotes=None) -> SABRSurfaceFit:
    """Fit Hagan's SABR to each expiry's smile of implied vols (unweighted vol residuals).

    ``previous`` (``{days: SABRParams}``) adds yesterday's smile as a starting
    point. Expiries with fewer than ``min_quotes`` (default: the number of
    free parameters + 1) quotes are skipped.
    """
    need = (4 if fit_beta else 3) + 1 if min_quotes is None else min_quotes
    expiries, forwards, fits, arbs, secs, counts = [], [], [], [], [], []
    for t in quotes.expiries():
        sel = quotes.expiry == t
        if sel.sum() < need:
            continue
        K = quotes.strike[sel]
        F = float(quotes.forward[sel][0])
        start = time.perf_counter()
        init = None if previous is None else previous.get(int(round(t * DAYS_PER_YEAR)))
        f = sabr.calibrate(K, F, float(t), quotes.iv[sel], beta=beta, fit_beta=fit_beta, initial=init)
        secs.append(time.perf_counter() - start)
        strikes = np.linspace(K.min(), K.max(), 201)
        arbs.append(sabr.arbitrage_check(F, float(t), f.params, strikes))
        expiries.append(float(t))
        forwards.append(F)
        fits.append(f)
        counts.append(int(sel.sum()))
    return SABRSurfaceFit(np.array(expiries), np.array(forwards), fits, arbs, np.array(secs), np.array(counts))


# ---------------------------------------------------------------------------
# validation


_HESTON_FLOORS = {"v0": 0.01, "kappa": 0.5, "theta": 0.01, "sigma": 0.1, "rho": 0.1}
_SABR_FLOORS = {"alpha": 0.01, "beta": 0.1, "rho": 0.1, "nu": 0.1}


@dataclass(frozen=True)
class ValidationConfig:
    """Acceptance thresholds.

    max_rmse_iv     : RMSE of implied vols (vol units; 0.01 = 1 vol point)
    min_r2          : R squared of prices (Heston)
    max_rel_change  : largest relative parameter change against the previous accepted fit
    require_feller  : refuse a Heston fit that violates Feller (otherwise only reported)
    require_arbitrage_free : refuse a SABR smile with negative density on its quoted range
    bounds          : Heston parameter bounds (defaults of models.heston_calibration)
    """

    max_rmse_iv: float = 0.01
    min_r2: float = 0.99
    max_rel_change: float = 0.5
    require_feller: bool = False
    require_arbitrage_free: bool = True
    bounds: dict = field(default_factory=lambda: dict(DEFAULT_BOUNDS))


@dataclass(frozen=True)
class Validation:
    """Verdict: ``accepted`` and, if not, ``reasons``; ``checks`` holds the measured values."""

    accepted: bool
    reasons: list
    checks: dict


def _rel_changes(new: dict, old: dict, floors: dict) -> dict:
    return {k: abs(new[k] - old[k]) / max(abs(old[k]), floors.get(k, 0.01)) for k in new if k in old}


def validate(fit, previous=None, config: ValidationConfig = ValidationConfig()) -> Validation:
    """Validate a :class:`HestonFit` or :class:`SABRSurfaceFit` (see the module docstring).

    ``previous`` is the last accepted parameters (``HestonParams`` or
    ``{days: SABRParams}``), or None.
    """
    reasons, checks = [], {}
    if isinstance(fit, HestonFit):
        p = {n: getattr(fit.params, n) for n in PARAM_NAMES}
        for name, value in p.items():
            lo, hi = config.bounds.get(name, (-math.inf, math.inf))
            if not (math.isfinite(value) and lo <= value <= hi):
                reasons.append(f"{name} = {value:.6g} outside bounds [{lo:g}, {hi:g}]")
        if not fit.success:
            reasons.append(f"optimiser did not converge: {fit.message}")
        checks.update(rmse_iv=fit.rmse_iv, r2=fit.r2, feller_ratio=fit.feller_ratio,
                      feller_satisfied=fit.feller_satisfied)
        if not fit.rmse_iv <= config.max_rmse_iv:
            reasons.append(f"rmse_iv {fit.rmse_iv:.4g} > {config.max_rmse_iv:g}")
        if not fit.r2 >= config.min_r2:
            reasons.append(f"r2 {fit.r2:.6g} < {config.min_r2:g}")
        if config.require_feller and not fit.feller_satisfied:
            reasons.append(f"Feller violated: 2 kappa theta / sigma^2 = {fit.feller_ratio:.4g} < 1")
        if previous is not None:
            old = {n: getattr(previous, n) for n in PARAM_NAMES}
            change = _rel_changes(p, old, _HESTON_FLOORS)
            checks["rel_change"] = change
            for name, c in change.items():
                if not c <= config.max_rel_change:
                    reasons.append(f"{name} moved {c:.1%} from {old[name]:.6g} to {p[name]:.6g} "
                                   f"(> {config.max_rel_change:.0%})")
    elif isinstance(fit, SABRSurfaceFit):
        if not fit.fits:
            reasons.append("no expiry had enough quotes for a SABR fit")
        smiles = {}
        for t, f, arb in zip(fit.expiries, fit.fits, fit.arbitrage):
            days = int(round(t * DAYS_PER_YEAR))
            smiles[days] = {"rmse_iv": f.rmse, "arbitrage_free": arb.ok}
            if not f.success:
                reasons.append(f"{days}d: optimiser did not converge: {f.message}")
            if not f.rmse <= config.max_rmse_iv:
                reasons.append(f"{days}d: rmse_iv {f.rmse:.4g} > {config.max_rmse_iv:g}")
            if config.require_arbitrage_free and not arb.ok:
                reasons.append(f"{days}d: negative density at {arb.negative_strikes.size} strikes "
                               f"(first {arb.negative_strikes[0]:.4g})")
            if previous is not None and days in previous:
                pp = f.params
                new = {"alpha": pp.alpha, "beta": pp.beta, "rho": pp.rho, "nu": pp.nu}
                o = previous[days]
                old = {"alpha": o.alpha, "beta": o.beta, "rho": o.rho, "nu": o.nu}
                change = _rel_changes(new, old, _SABR_FLOORS)
                smiles[days]["rel_change"] = change
                for name, c in change.items():
                    if not c <= config.max_rel_change:
                        reasons.append(f"{days}d: {name} moved {c:.1%} (> {config.max_rel_change:.0%})")
        checks["smiles"] = smiles
    else:
        raise TypeError(f"cannot validate {type(fit).__name__}")
    return Validation(accepted=not reasons, reasons=reasons, checks=checks)


# ---------------------------------------------------------------------------
# the calibrator


@dataclass(frozen=True)
class CalibrationOutcome:
    """What one :meth:`Calibrator.calibrate` call did.

    accepted : the fit became the current parameters
    params   : the current parameters after the call (the previous ones if refused)
    fit      : the new fit (None if calibration raised)
    validation : the verdict (None if calibration raised)
    reasons  : why it was refused (empty if accepted)
    fingerprint : sha256 of the prepared quotes
    consecutive_failures, alert : the calibrator's state after the call
    """

    accepted: bool
    params: object
    fit: object
    validation: Validation | None
    reasons: list
    fingerprint: str
    consecutive_failures: int
    alert: bool


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


class Calibrator:
    """Keeps a model's last accepted calibration (``model`` is ``"heston"`` or ``"sabr"``).

    ``options`` go to :func:`models.heston_calibration.calibrate_heston` or
    :func:`calibrate_sabr_surface`; the previous accepted Heston parameters
    seed the next differential evolution (``x0``) and the previous SABR
    smiles the next SABR fits.
    """

    def __init__(self, model="heston", *, validation: ValidationConfig = ValidationConfig(), alert_after=3,
                 record_path=None, options=None):
        if model not in ("heston", "sabr"):
            raise ValueError(f"model must be 'heston' or 'sabr', got {model!r}")
        if alert_after < 1:
            raise ValueError(f"alert_after must be >= 1, got {alert_after!r}")
        self.model = model
        self.validation = validation
        self.alert_after = int(alert_after)
        self.record_path = None if record_path is None else Path(record_path)
        self.options = dict(options or {})
        self.params = None
        self.consecutive_failures = 0
        self.records: list[dict] = []
        self.last_reasons: list[str] = []

    @property
    def alert(self) -> bool:
        """True once ``alert_after`` calibrations in a row have been refused."""
        return self.consecutive_failures >= self.alert_after

    def _fit(self, quotes: PreparedQuotes):
        if self.model == "heston":
            opts = dict(self.options)
            if self.params is not None:
                opts.setdefault("x0", self.params)
            return calibrate_heston(quotes.spot, quotes.rate, quotes.dividend, quotes.strike, quotes.expiry,
                                    quotes.mid, quotes.is_call, spread=quotes.spread, **opts)
        return calibrate_sabr_surface(quotes, previous=self.params, **self.options)

    def calibrate(self, quotes: PreparedQuotes, *, timestamp=None) -> CalibrationOutcome:
        """Calibrate to ``quotes``, validate, and accept or refuse (never raises for a bad fit)."""
        fp = fingerprint(quotes)
        fit = validation = None
        try:
            if len(quotes) == 0:
                raise ValueError("no quotes left after preparation")
            fit = self._fit(quotes)
            validation = validate(fit, self.params, self.validation)
            reasons = list(validation.reasons)
        except (ValueError, ArithmeticError) as exc:
            reasons = [f"calibration failed: {exc}"]
        accepted = not reasons
        if accepted:
            self.params = fit.params
            self.consecutive_failures = 0
            self._record(fit, validation, quotes, fp, timestamp)
        else:
            self.consecutive_failures += 1
        self.last_reasons = reasons
        return CalibrationOutcome(accepted=accepted, params=self.params, fit=fit, validation=validation,
                                  reasons=reasons, fingerprint=fp, consecutive_failures=self.consecutive_failures,
                                  alert=self.alert)

    def _record(self, fit, validation, quotes, fp, timestamp):
        record = {
            "time": time.time() if timestamp is None else timestamp,
            "model": self.model,
            "fingerprint": fp,
            "n_quotes": len(quotes),
            "spot": quotes.spot,
            "rate": quotes.rate,
            "dividend": quotes.dividend,
            "metrics": fit.metrics(),
            "checks": validation.checks,
        }
        record = _jsonable(record)
        self.records.append(record)
        if self.record_path is not None:
            append_record(self.record_path, record)


def append_record(path, record: dict) -> None:
    """Append one JSON line durably: one ``write`` on an ``O_APPEND`` descriptor, then ``fsync``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path) -> list[dict]:
    """The records of a JSON-lines file; a torn (unterminated, unparsable) last line is ignored."""
    text = Path(path).read_text()
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the last line, without its newline: a write cut short
                break
            raise
    return records
