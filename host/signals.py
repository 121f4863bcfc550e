"""Signal generators: pairs mean reversion, volatility arbitrage, term structure.

What
    * :class:`PairsSignal` - one pair ``y``/``x``: ``spread = y - h x`` from
      mid prices, its rolling z-score over ``window`` observations
      (:func:`models.pairs.rolling_zscore`; the Kalman hedge
      :class:`models.pairs.KalmanHedgeFilter` as an option), entry beyond
      ``+-entry_z`` (2 by default, as in the pairs sample table: buy the spread
      below -2, sell it above +2), exit once ``z`` is back within ``exit_z`` of
      0, stop-loss beyond ``stop_z``; or Bertram's optimal OU bands
      (:func:`models.ou.bertram_bands`). It emits a signal per leg on each
      change of position.
    * :class:`VolArbSignal` - per option: the model's implied vol (from the
      last accepted Heston or SABR calibration) against the market's; buy when
      the model is ``threshold`` above the *ask's* implied vol, sell when
      ``threshold`` below the *bid's*.
    * :class:`TermStructureSignal` - slope of at-the-money vol between
      adjacent expiries, market against model; a calendar spread (two legs)
      where they differ by more than ``threshold``; a calendar arbitrage
      (total variance falling with expiry) always signals.
    * :class:`SignalEngine` - runs generators by kind; a kind that raises
      ``disable_after`` times in a row is disabled (and alerted) while the
      others go on.

Confidence (in [0, 1])
    pairs: ``(1 - p) * min(1, base + slope * (|z| - entry))`` with ``p`` the
    Engle-Granger p-value (``base`` 0.7, ``slope`` 0.15 per unit of z);
    exits (flattening reduces risk) have confidence 1.
    volarb: ``sqrt(fit * liquidity) * min(1, size / min_size)`` where
    ``fit = 1 - rmse_iv / max_rmse_iv`` and ``liquidity = 1 - rel_spread /
    max_rel_spread`` (each clipped to [0, 1]).
    term: ``fit * min(1, 0.6 + 0.4 (|d| / threshold - 1))`` for a slope gap ``d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from host.config import PairsSignalConfig, TermSignalConfig, VolArbConfig
from host.types import Signal, TopOfBook
from models import black_scholes as bs
from models import heston, sabr
from models.ou import bertram_bands, fit_ou
from models.pairs import KalmanHedgeFilter, engle_granger, rolling_zscore

__all__ = [
    "OptionQuotes",
    "PairsSignal",
    "SignalEngine",
    "SignalError",
    "TermStructureSignal",
    "VolArbSignal",
    "atm_term_structure",
    "heston_model_iv",
    "pairs_decision",
    "sabr_model_iv",
]


class SignalError(ValueError):
    """Invalid input to a signal generator; the message names it."""


def _clip01(x):
    return np.clip(x, 0.0, 1.0)


# ----------------------------------------------------------------------------- pairs


def pairs_decision(z: float, position: int, entry: float, exit: float, stop: float | None = None) -> int:
    """Next position in the spread (+1 long, -1 short, 0 flat) given its z-score.

    Flat: long when ``z < -entry``, short when ``z > entry``. Long: flat once
    ``z >= -exit`` (reverted) or ``z < -stop`` (stop-loss); short mirrors.
    Closing and opening the other side can happen in one step (the rule of
    :func:`models.pairs.positions`). NaN keeps the position.
    """
    if math.isnan(z):
        return position
    if position > 0 and (z >= -exit or (stop is not None and z < -stop)):
        position = 0
    elif position < 0 and (z <= exit or (stop is not None and z > stop)):
        position = 0
    if position == 0:
        stopped = stop is not None and abs(z) > stop
        if z < -entry and not stopped:
            position = 1
        elif z > entry and not stopped:
            position = -1
    return position


class PairsSignal:
    """Pairs mean reversion on one pair, fed one observation (or top of book) at a time.

    ``hedge_ratio`` and ``pvalue`` come from :meth:`fit` (Engle-Granger on
    history) or are given; with ``config.hedge == "kalman"`` the hedge ratio
    follows a Kalman filter started there and the z-score is the filter's
    standardised innovation. With ``config.bands == "ou"`` an OU process is
    fitted to the history's spread and Bertram's bands replace ``+-entry_z``.
    """

    source = "pairs"

    def __init__(self, y: str, x: str, hedge_ratio: float, config: PairsSignalConfig = PairsSignalConfig(), *,
                 pvalue: float = 0.0, intercept: float = 0.0, spread_history=None):
        if not math.isfinite(hedge_ratio):
            raise SignalError(f"hedge_ratio must be finite, got {hedge_ratio!r}")
        self.y, self.x = y, x
        self.hedge_ratio = float(hedge_ratio)
        self.pvalue = float(pvalue)
        self.config = config
        self.group = f"pairs:{y}/{x}"
        self.position = 0
        self.last_z = math.nan
        self._window = np.zeros(config.window)
        self._n = 0
        self._mid = {y: math.nan, x: math.nan}
        self._kalman = None
        if config.hedge == "kalman":
            self._kalman = KalmanHedgeFilter(hedge_ratio, intercept, delta=1e-4,
                                             obs_var=self._obs_var(spread_history))
        self.ou = self.bands = None
        if config.bands == "ou":
            if spread_history is None:
                raise SignalError("bands = 'ou' needs spread_history to fit the OU process")
            self.ou = fit_ou(np.asarray(spread_history, dtype=float), dt=1.0)
            self.bands = bertram_bands(self.ou.kappa, self.ou.theta, self.ou.sigma, config.ou_cost)
        for value in spread_history if spread_history is not None and self._kalman is None else ():
            self._push(float(value))

    @staticmethod
    def _obs_var(history):
        if history is None or len(history) < 3:
            return 1e-3
        v = float(np.var(np.asarray(history, dtype=float)))
        return v if v > 0 else 1e-3

    @classmethod
    def fit(cls, y: str, x: str, y_history, x_history, config: PairsSignalConfig = PairsSignalConfig()):
        """Engle-Granger on price history (``y`` on ``x``), then a signal warmed up on its spread."""
        eg = engle_granger(y_history, x_history)
        spread = np.asarray(y_history, float) - eg.hedge_ratio * np.asarray(x_history, float)
        return cls(y, x, eg.hedge_ratio, config, pvalue=eg.pvalue, intercept=eg.intercept, spread_history=spread)

    def _push(self, spread: float) -> None:
        self._window[self._n % self.config.window] = spread
        self._n += 1

    def _zscore(self) -> float:
        w = self.config.window
        if self._n < w:
            return math.nan
        k = self._n % w
        ordered = np.concatenate((self._window[k:], self._window[:k]))
        return float(rolling_zscore(ordered, w)[-1])

    def on_top(self, top: TopOfBook) -> list[Signal]:
        """Feed a top-of-book change of either leg; evaluates once both legs have a two-sided mid."""
        if top.instrument not in self._mid:
            return []
        mid = top.mid
        if math.isnan(mid):
            return []
        self._mid[top.instrument] = mid
        y, x = self._mid[self.y], self._mid[self.x]
        if math.isnan(y) or math.isnan(x):
            return []
        return self.update(y, x, top.timestamp)

    def update(self, y_price: float, x_price: float, timestamp: int = 0) -> list[Signal]:
        """One observation of both prices; signals for both legs if the position changes."""
        cfg = self.config
        if self._kalman is not None:
            beta, _, innovation, var = self._kalman.update(y_price, x_price)
            spread = innovation
            z = innovation / math.sqrt(var) if var > 0 else math.nan
            self.hedge_ratio = beta
            band_z, entry, exit_, stop_z = z, cfg.entry_z, cfg.exit_z, z
        else:
            spread = y_price - self.hedge_ratio * x_price
            self._push(spread)
            z = self._zscore()
            if self.bands is not None:  # OU: distance from theta in units of the band half-width
                u = float(self.bands.half_width)
                band_z = (spread - self.ou.theta) / u
                entry, exit_ = 1.0, -1.0  # enter beyond the band, leave at the opposite band
                stop_z = (spread - self.ou.theta) / self.ou.stationary_std
            else:
                band_z, entry, exit_, stop_z = z, cfg.entry_z, cfg.exit_z, z
        self.last_z = z
        new = pairs_decision(band_z, self.position, entry, exit_, None)
        if cfg.stop_z is not None and not math.isnan(stop_z) and abs(stop_z) > cfg.stop_z:
            new = 0  # stop-loss, and no new entry this far out
        if new == self.position:
            return []
        self.position = new
        if new == 0:
            confidence = 1.0
        else:
            excess = abs(band_z) - entry
            if self.bands is not None:
                excess = (abs(spread - self.ou.theta) - float(self.bands.half_width)) / self.ou.stationary_std
            confidence = float(_clip01((1.0 - self.pvalue) * min(1.0, cfg.min_confidence_base
                                                                    + cfg.confidence_slope * max(excess, 0.0))))
        gross = abs(y_price) + abs(self.hedge_ratio * x_price)
        mean = self._window.mean() if self._kalman is None else 0.0
        expected = abs(spread - mean) / gross if (new != 0 and gross > 0) else None
        sign_h = 1 if self.hedge_ratio >= 0 else -1
        return [
            Signal(self.y, new, confidence, self.source, z, timestamp, expected, self.group, 1.0),
            Signal(self.x, -new * sign_h, confidence, self.source, z, timestamp, expected, self.group,
                   abs(self.hedge_ratio)),
        ]


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class OptionQuotes:
    """Quotes of options on one underlying (arrays per option; prices float currency units)."""

    instrument: tuple
    strike: np.ndarray
    expiry: np.ndarray  # years
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    spot: float
    rate: float = 0.0
    dividend: float = 0.0

    def __post_init__(self):
        n = len(self.instrument)
        for name in ("strike", "expiry", "is_call", "bid", "ask", "bid_size", "ask_size"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise SignalError(f"{name} must have shape ({n},), got {arr.shape}")
            object.__setattr__(self, name, arr)

    @property
    def forward(self) -> np.ndarray:
        return self.spot * np.exp((self.rate - self.dividend) * self.expiry)

    def implied_vols(self):
        """``(bid_iv, ask_iv, mid_iv)``; NaN where a price has no implied vol (a zero bid, say)."""
        with np.errstate(all="ignore"):
            ivs = [bs.implied_vol(np.where(p > 0, p, np.nan), self.spot, self.strike, self.expiry, self.rate,
                                  self.dividend, self.is_call)
                   for p in (self.bid, self.ask, 0.5 * (self.bid + self.ask))]
        return tuple(np.where(np.isfinite(v), v, np.nan) for v in ivs)


def heston_model_iv(params, quotes: OptionQuotes) -> np.ndarray:
    """Implied vols of Heston prices for each quoted option (NaN where the price has none)."""
    p = heston.price(quotes.spot, quotes.strike, quotes.expiry, quotes.rate, quotes.dividend, params, quotes.is_call)
    return bs.implied_vol(p, quotes.spot, quotes.strike, quotes.expiry, quotes.rate, quotes.dividend, quotes.is_call)


def sabr_model_iv(smiles: dict, quotes: OptionQuotes) -> np.ndarray:
    """SABR vols per option from ``{expiry_days: SABRParams}`` (nearest calibrated expiry; NaN past 7 days off)."""
    days = np.array(sorted(smiles), dtype=float)
    out = np.full(len(quotes.instrument), np.nan)
    if days.size == 0:
        return out
    qdays = quotes.expiry * 365.0
    nearest = days[np.abs(qdays[:, None] - days[None, :]).argmin(axis=1)]
    F = quotes.forward
    for d in np.unique(nearest):
        sel = (nearest == d) & (np.abs(qdays - d) <= 7.0)
        if sel.any():
            p = smiles[int(d)]
            out[sel] = sabr.lognormal_vol(quotes.strike[sel], F[sel], quotes.expiry[sel], p.alpha, p.beta, p.rho, p.nu)
    return out


class VolArbSignal:
    """Model implied vol against market implied vol, per option (see the module docstring)."""

    source = "volarb"

    def __init__(self, config: VolArbConfig = VolArbConfig()):
        self.config = config

    def evaluate(self, quotes: OptionQuotes, model_iv, rmse_iv: float, timestamp: int = 0) -> list[Signal]:
        """Signals for the options whose quoted side is mispriced against ``model_iv`` by ``threshold``."""
        cfg = self.config
        model_iv = np.asarray(model_iv, dtype=float)
        if model_iv.shape != quotes.strike.shape:
            raise SignalError(f"model_iv must have shape {quotes.strike.shape}, got {model_iv.shape}")
        if not (rmse_iv >= 0):
            raise SignalError(f"rmse_iv must be >= 0, got {rmse_iv!r}")
        bid_iv, ask_iv, mid_iv = quotes.implied_vols()
        with np.errstate(invalid="ignore"):
            buy = model_iv - ask_iv > cfg.threshold
            sell = bid_iv - model_iv > cfg.threshold
        direction = buy.astype(int) - sell.astype(int)
        idx = np.flatnonzero(direction)
        if idx.size == 0:
            return []
        fit = float(_clip01(1.0 - rmse_iv / cfg.max_rmse_iv))
        mid = 0.5 * (quotes.bid + quotes.ask)
        rel_spread = (quotes.ask - quotes.bid) / mid
        liquidity = _clip01(1.0 - rel_spread / cfg.max_rel_spread)
        size = np.where(direction > 0, quotes.ask_size, quotes.bid_size)
        confidence = np.sqrt(fit * liquidity) * np.minimum(1.0, size / cfg.min_size)
        vega = bs.vega(quotes.spot, quotes.strike, quotes.expiry, quotes.rate, quotes.dividend,
                       np.where(np.isfinite(model_iv), model_iv, 0.0))
        edge_iv = np.where(direction > 0, model_iv - ask_iv, bid_iv - model_iv)
        traded_at = np.where(direction > 0, quotes.ask, quotes.bid)
        expected = vega * edge_iv / traded_at
        return [Signal(quotes.instrument[i], int(direction[i]), float(_clip01(confidence[i])), self.source,
                       float(model_iv[i] - mid_iv[i]), timestamp, float(expected[i]))
                for i in idx.tolist()]


def atm_term_structure(quotes: OptionQuotes):
    """Per expiry, the quote nearest the forward: ``(expiries, mid_iv, instruments, index)``."""
    _, _, mid_iv = quotes.implied_vols()
    F = quotes.forward
    exps = np.unique(quotes.expiry)
    picks = []
    for t in exps:
        sel = np.flatnonzero((quotes.expiry == t) & np.isfinite(mid_iv))
        if sel.size:
            picks.append(int(sel[np.abs(np.log(quotes.strike[sel] / F[sel])).argmin()]))
    picks = np.array(picks, dtype=int)
    return quotes.expiry[picks], mid_iv[picks], tuple(quotes.instrument[i] for i in picks), picks


class TermStructureSignal:
    """Calendar spreads from the slope of ATM vol across expiries (see the module docstring)."""

    source = "term"

    def __init__(self, config: TermSignalConfig = TermSignalConfig()):
        self.config = config

    def evaluate(self, expiries, market_atm_iv, model_atm_iv, instruments, rmse_iv: float,
                 timestamp: int = 0) -> list[Signal]:
        """Two legs per adjacent expiry pair whose market ATM slope departs from the model's."""
        cfg = self.config
        T = np.asarray(expiries, float)
        mkt = np.asarray(market_atm_iv, float)
        mdl = np.asarray(model_atm_iv, float)
        if not (T.shape == mkt.shape == mdl.shape == (len(instruments),)):
            raise SignalError("expiries, market_atm_iv, model_atm_iv and instruments must have the same length")
        if T.size >= 2 and not np.all(np.diff(T) > 0):
            raise SignalError("expiries must be strictly increasing")
        fit = float(_clip01(1.0 - rmse_iv / cfg.max_rmse_iv))
        out = []
        for i in range(T.size - 1):
            dt = T[i + 1] - T[i]
            d = (mkt[i + 1] - mkt[i]) / dt - (mdl[i + 1] - mdl[i]) / dt
            if not math.isfinite(d):
                continue
            far = 0
            if mkt[i + 1] ** 2 * T[i + 1] < mkt[i] ** 2 * T[i]:  # total variance falls: calendar arbitrage
                far, confidence = 1, 1.0
            elif abs(d) > cfg.threshold:
                far = -1 if d > 0 else 1  # far leg rich (steeper than the model): sell far, buy near
                confidence = fit * min(1.0, 0.6 + 0.4 * (abs(d) / cfg.threshold - 1.0))
            if far:
                group = f"term:{instruments[i]}/{instruments[i + 1]}"
                out.append(Signal(instruments[i], -far, float(confidence), self.source, float(d), timestamp,
                                  None, group))
                out.append(Signal(instruments[i + 1], far, float(confidence), self.source, float(d), timestamp,
                                  None, group))
        return out


# ----------------------------------------------------------------------------- failure handling


class SignalEngine:
    """Runs signal generators by kind; a kind failing ``disable_after`` times in a row is disabled.

    ``on_alert(kind, error)`` is called when a kind is disabled. :meth:`enable`
    re-enables it after review.
    """

    def __init__(self, disable_after: int = 1, on_alert: Callable[[str, BaseException], None] | None = None):
        if disable_after < 1:
            raise SignalError(f"disable_after must be >= 1, got {disable_after!r}")
        self.disable_after = disable_after
        self.on_alert = on_alert
        self.disabled: dict[str, str] = {}
        self.failures: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def run(self, kind: str, fn: Callable[..., list[Signal]], *args, **kwargs) -> list[Signal]:
        """``fn(*args, **kwargs)`` unless ``kind`` is disabled; an exception yields no signals."""
        if kind in self.disabled:
            return []
        try:
            signals = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of a generator disables it, the rest go on
            n = self.failures[kind] = self.failures.get(kind, 0) + 1
            if n >= self.disable_after:
                self.disabled[kind] = f"{type(exc).__name__}: {exc}"
                if self.on_alert is not None:
                    self.on_alert(kind, exc)
            return []
        self.failures[kind] = 0
        self.counts[kind] = self.counts.get(kind, 0) + len(signals)
        return signals

    def enable(self, kind: str) -> None:
        self.disabled.pop(kind, None)
        self.failures[kind] = 0
