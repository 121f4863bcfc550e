"""Pairs trading: Engle-Granger cointegration, a Kalman-filter hedge ratio, and
the rolling z-score signal with entry and exit thresholds.

What
    For two price series ``y`` and ``x`` (same sampling, same length):

    * :func:`engle_granger` - static hedge ratio ``y = alpha + beta x + e``
      by OLS and the residual unit-root test with MacKinnon (2010) critical
      values and p-values (``statsmodels.tsa.stattools.coint``; plain
      Dickey-Fuller tables would overstate significance because the
      residuals come from an estimated regression). The steps are those of
      statsmodels' ``coint`` (same statistic, p-value and critical values;
      the tests compare them) so that the chosen ADF lag count is kept.
    * :func:`kalman_hedge` / :class:`KalmanHedgeFilter` - a time-varying
      ``(beta_t, alpha_t)`` that follows a random walk, filtered one
      observation at a time; its innovation divided by its predicted
      standard deviation is a ready-made z-score.
    * :func:`rolling_zscore` and :func:`positions` - the signal of the
      mission documents: ``spread = y - hedge * x``, compared with its moving
      average; buy the spread when ``z < -entry`` (default 2), sell it when
      ``z > +entry``, close when ``z`` comes back inside ``exit`` of zero
      (default 0.5).

Why
    The pairs signal is one of calarb's three signal families; the
    cointegration test decides which pairs are admitted at all, and the
    Kalman hedge keeps the spread stationary when the relationship drifts.

Conventions
    Position ``+1`` is long the spread (long 1 unit of ``y``, short ``hedge``
    units of ``x``), ``-1`` short, ``0`` flat. Warm-up values of the z-score
    are NaN and keep the position flat.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import numpy as np
from statsmodels.tsa.adfvalues import mackinnoncrit, mackinnonp
from statsmodels.tsa.stattools import adfuller

# statsmodels >= 0.15 warns unless asked for the tuple explicitly; older versions lack the keyword
_ADF_TUPLE = (("result_object", False),) if "result_object" in inspect.signature(adfuller).parameters else ()

__all__ = [
    "EngleGrangerResult",
    "KalmanHedgeFilter",
    "KalmanResult",
    "PairsError",
    "SpreadSignal",
    "engle_granger",
    "kalman_hedge",
    "positions",
    "rolling_zscore",
    "spread_signal",
]


class PairsError(ValueError):
    """Invalid argument to a pairs function; the message names it."""


def _series(name, value, *, min_len=2):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PairsError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise PairsError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_len:
        raise PairsError(f"{name} needs at least {min_len} observations, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        where = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise PairsError(f"{name} must be finite (found NaN or inf at index {where})")
    return arr


def _pair(y, x, min_len):
    y = _series("y", y, min_len=min_len)
    x = _series("x", x, min_len=min_len)
    if y.size != x.size:
        raise PairsError(f"y and x must have the same length ({y.size} != {x.size})")
    return y, x


# ---------------------------------------------------------------------------
# Engle-Granger


@dataclass(frozen=True)
class EngleGrangerResult:
    """Engle-Granger two-step cointegration test of ``y`` on ``x``.

    hedge_ratio, intercept : OLS ``y = intercept + hedge_ratio x + spread``
    spread           : the OLS residuals
    adf_stat         : ADF t-statistic of the residuals
    pvalue           : MacKinnon (2010) approximate p-value (no cointegration is H0)
    critical_values  : {"1%", "5%", "10%"} MacKinnon (2010) critical values
    lags             : lagged differences used in the ADF regression
    half_life        : half-life of the spread in observations (from its AR(1) slope; inf if none)
    significance     : level used for ``is_cointegrated``
    """

    hedge_ratio: float
    intercept: float
    spread: np.ndarray = field(repr=False)
    adf_stat: float
    pvalue: float
    critical_values: dict
    lags: int
    half_life: float
    significance: float

    @property
    def is_cointegrated(self) -> bool:
        """Whether no-cointegration is rejected at :attr:`significance`."""
        return bool(self.pvalue < self.significance)


def engle_granger(y, x, *, trend="c", maxlag=None, autolag="aic", significance=0.05) -> EngleGrangerResult:
    """Engle-Granger test: OLS hedge ratio, then ADF on the residuals.

    ``trend`` is the deterministic term of the cointegrating regression
    (``"c"`` constant, ``"ct"`` constant and trend, ...) as in
    ``statsmodels.tsa.stattools.coint``; ``maxlag``/``autolag`` choose the
    ADF lags. The statistic, p-value and critical values are statsmodels'
    (MacKinnon 2010 response surfaces for two variables).
    """
    y, x = _pair(y, x, 20)
    if not 0.0 < significance < 1.0:
        raise PairsError(f"significance must be in (0, 1), got {significance!r}")
    if trend not in ("c", "ct", "ctt", "n"):
        raise PairsError(f"trend must be one of 'c', 'ct', 'ctt', 'n', got {trend!r}")
    if np.ptp(x) == 0:
        raise PairsError("x is constant: no hedge ratio")
    columns = [x]
    if trend != "n":
        columns.append(np.ones_like(x))
    t = np.arange(x.size, dtype=float)
    if trend in ("ct", "ctt"):
        columns.append(t)
    if trend == "ctt":
        columns.append(t * t)
    design = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    spread = y - design @ coef
    # statsmodels.tsa.stattools.coint's "aeg" test, step by step so the ADF lag count is kept
    # (tests check the outcome equals coint's): ADF without deterministic terms on the
    # residuals, MacKinnon (2010) p-value and critical values for two variables
    # (statsmodels' R^2 is uncentred for a regression without a constant)
    ss_tot = float(y @ y) if trend == "n" else float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - float(spread @ spread) / ss_tot if ss_tot > 0 else 1.0
    if r_squared < 1.0 - 100.0 * math.sqrt(np.finfo(float).eps):
        adf = adfuller(spread, maxlag=maxlag, regression="n", autolag=autolag, **dict(_ADF_TUPLE))
        stat, lags = float(adf[0]), int(adf[2])
    else:  # (almost) perfectly collinear: the residuals are rounding noise
        stat, lags = -math.inf, 0
    crit = [math.nan] * 3 if trend == "n" else list(mackinnoncrit(N=2, regression=trend, nobs=y.size - 1))
    pvalue = float(mackinnonp(stat, regression=trend, N=2))
    prev, nxt = spread[:-1], spread[1:]
    slope = float(prev @ nxt / (prev @ prev)) if prev @ prev > 0 else 1.0
    half_life = -math.log(2.0) / math.log(slope) if 0.0 < slope < 1.0 else math.inf
    return EngleGrangerResult(
        hedge_ratio=float(coef[0]),
        intercept=float(coef[1]) if trend != "n" else 0.0,
        spread=spread,
        adf_stat=float(stat),
        pvalue=float(pvalue),
        critical_values={"1%": float(crit[0]), "5%": float(crit[1]), "10%": float(crit[2])},
        lags=lags,
        half_life=half_life,
        significance=float(significance),
    )


# ---------------------------------------------------------------------------
# Kalman filter hedge ratio


class KalmanHedgeFilter:
    """Online Kalman filter for ``y_t = beta_t x_t + alpha_t + e_t``.

    State ``(beta, alpha)`` follows a random walk with covariance
    ``delta/(1 - delta) I`` per step (Chan 2013, "Algorithmic Trading", ch. 3);
    ``obs_var`` is the variance of ``e_t``. :meth:`update` takes one
    observation and returns ``(beta, alpha, innovation, innovation_var)``,
    where the innovation ``y - (beta x + alpha)`` uses the state predicted
    before seeing ``y`` (so it is a fair out-of-sample spread) and
    ``innovation / sqrt(innovation_var)`` is its z-score. Each update is a
    handful of float operations (the host calls it per tick).
    """

    __slots__ = ("beta", "alpha", "p", "q", "obs_var")

    def __init__(self, beta0=0.0, alpha0=0.0, *, p0=None, delta=1e-4, obs_var=1e-3):
        if not 0.0 < delta < 1.0:
            raise PairsError(f"delta must be in (0, 1), got {delta!r}")
        if not obs_var > 0:
            raise PairsError(f"obs_var must be > 0, got {obs_var!r}")
        self.beta = float(beta0)
        self.alpha = float(alpha0)
        p0 = np.eye(2) if p0 is None else np.asarray(p0, dtype=float)
        if p0.shape != (2, 2):
            raise PairsError(f"p0 must be 2x2, got shape {p0.shape}")
        # covariance as floats [p_bb, p_ba, p_aa]
        self.p = [float(p0[0, 0]), float(p0[0, 1]), float(p0[1, 1])]
        self.q = delta / (1.0 - delta)
        self.obs_var = float(obs_var)

    def update(self, y: float, x: float):
        """Filter one observation; returns (beta, alpha, innovation, innovation_var)."""
        p_bb, p_ba, p_aa = self.p
        q = self.q
        r_bb, r_ba, r_aa = p_bb + q, p_ba, p_aa + q  # predicted covariance
        innovation = y - (self.beta * x + self.alpha)
        # H R H' + V with H = [x, 1]
        rh_b = r_bb * x + r_ba
        rh_a = r_ba * x + r_aa
        s = x * rh_b + rh_a + self.obs_var
        k_b = rh_b / s
        k_a = rh_a / s
        self.beta += k_b * innovation
        self.alpha += k_a * innovation
        # P = R - K H R = R - K (R H')'
        self.p = [r_bb - k_b * rh_b, r_ba - k_b * rh_a, r_aa - k_a * rh_a]
        return self.beta, self.alpha, innovation, s


@dataclass(frozen=True)
class KalmanResult:
    """Output of :func:`kalman_hedge`, one entry per observation.

    beta, alpha    : filtered hedge ratio and intercept after each observation
    spread         : innovation ``y_t - (beta_{t-1} x_t + alpha_{t-1})``
    spread_var     : its predicted variance
    zscore         : ``spread / sqrt(spread_var)``
    """

    beta: np.ndarray
    alpha: np.ndarray
    spread: np.ndarray
    spread_var: np.ndarray
    zscore: np.ndarray


def kalman_hedge(y, x, *, delta=1e-4, obs_var=None, n_init=30) -> KalmanResult:
    """Kalman-filtered dynamic hedge ratio over whole series.

    The state starts at the OLS fit of the first ``n_init`` observations with
    ten times its OLS covariance (so the prior is scale-free but loose);
    ``obs_var`` defaults to that fit's residual variance. ``delta`` sets how
    fast ``(beta, alpha)`` may drift (per observation). The recursion is
    sequential by nature: one :meth:`KalmanHedgeFilter.update` per
    observation, on plain floats.
    """
    y, x = _pair(y, x, 3)
    n0 = int(min(max(n_init, 3), y.size))
    design = np.column_stack([x[:n0], np.ones(n0)])
    coef, *_ = np.linalg.lstsq(design, y[:n0], rcond=None)
    resid = y[:n0] - design @ coef
    dof = max(n0 - 2, 1)
    s2 = float(resid @ resid) / dof
    if obs_var is None:
        obs_var = s2 if s2 > 0 else 1e-12 * max(float(np.var(y[:n0])), 1.0)
    try:
        cov = s2 * np.linalg.inv(design.T @ design)
    except np.linalg.LinAlgError:
        cov = np.eye(2)
    cov = 10.0 * cov + 1e-12 * np.eye(2)
    filt = KalmanHedgeFilter(coef[0], coef[1], p0=cov, delta=delta, obs_var=obs_var)
    n = y.size
    beta = np.empty(n)
    alpha = np.empty(n)
    spread = np.empty(n)
    var = np.empty(n)
    update = filt.update
    for i, (yi, xi) in enumerate(zip(y.tolist(), x.tolist())):
        beta[i], alpha[i], spread[i], var[i] = update(yi, xi)
    return KalmanResult(beta=beta, alpha=alpha, spread=spread, spread_var=var, zscore=spread / np.sqrt(var))


# ---------------------------------------------------------------------------
# z-score and positions


def rolling_zscore(spread, window: int, *, ddof: int = 0) -> np.ndarray:
    """``(s_t - mean) / std`` over the trailing ``window`` observations (t included).

    The first ``window - 1`` values are NaN, as are windows of constant
    values. O(n) for any window: running sums restart every block of
    ``max(4 window, 64)`` observations, each block measured from its own
    first value, so rounding stays at the scale of a block's local range
    (a random walk's level and the series' length do not leak into it);
    near-constant windows, where that could still cost digits, are
    recomputed exactly.
    """
    s = _series("spread", spread, min_len=1)
    if int(window) != window or window < 2:
        raise PairsError(f"window must be an integer >= 2, got {window!r}")
    window = int(window)
    if not 0 <= ddof < window:
        raise PairsError(f"ddof must be in [0, window), got {ddof!r}")
    n = s.size
    out = np.full(n, np.nan)
    n_windows = n - window + 1
    if n_windows <= 0:
        return out
    block = max(4 * window, 64)
    n_blocks = -(-n_windows // block)
    # segment b covers the windows starting in [b*block, (b+1)*block): block + window - 1 values
    padded = np.concatenate((s, np.full(n_blocks * block + window - 1 - n, s[-1])))
    seg = np.lib.stride_tricks.sliding_window_view(padded, block + window - 1)[::block]
    local = seg - seg[:, :1]  # measured from the segment's first value
    p1 = np.zeros((n_blocks, block + window))
    p2 = np.zeros((n_blocks, block + window))
    np.cumsum(local, axis=1, out=p1[:, 1:])
    np.cumsum(local * local, axis=1, out=p2[:, 1:])
    sum1 = (p1[:, window:] - p1[:, :-window]).ravel()[:n_windows]
    sum2 = (p2[:, window:] - p2[:, :-window]).ravel()[:n_windows]
    last = local[:, window - 1 :].ravel()[:n_windows]  # the newest value of each window
    mean = sum1 / window
    ssd = sum2 - sum1 * mean  # sum of squared deviations from the window mean
    deviation = last - mean
    # rounding of ssd: a few ulp of the running sums it is differenced from
    p2_end = p2[:, window:].ravel()[:n_windows]
    rounding = 8.0 * np.finfo(float).eps * (p2_end + np.sqrt(window * p2_end) * np.abs(mean) * window)
    # windows those sums cannot resolve to 1e-8 (near-constant ones, or tiny values after
    # large ones in the same block) are recomputed exactly, two-pass
    unsure = np.flatnonzero(ssd <= 1e8 * rounding)
    if unsure.size:
        windows = np.lib.stride_tricks.sliding_window_view(s, window)[unsure]
        dev = windows - windows.mean(axis=1)[:, None]
        ssd[unsure] = np.einsum("ij,ij->i", dev, dev)
        deviation[unsure] = dev[:, -1]
    var = ssd / (window - ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = deviation / np.sqrt(var)
    out[window - 1 :] = np.where(var > 0, z, np.nan)
    return out


def positions(z, entry: float = 2.0, exit: float = 0.5) -> np.ndarray:
    """Position in the spread for each z-score (int8: +1 long, -1 short, 0 flat).

    Enter long when ``z < -entry`` and hold until ``z >= -exit``; enter short
    when ``z > entry`` and hold until ``z <= exit``. A single step can close
    one side and open the other (``z`` jumping from below ``-entry`` to above
    ``entry``). NaN z-scores trigger nothing. Vectorised: the position at
    ``t`` follows from the last entry and the last exit before ``t``.
    """
    try:
        z = np.asarray(z, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PairsError(f"z must be numeric: {exc}") from exc
    if z.ndim != 1:
        raise PairsError(f"z must be one-dimensional, got shape {z.shape}")
    if not (entry > 0 and math.isfinite(entry)):
        raise PairsError(f"entry must be > 0, got {entry!r}")
    if not 0.0 <= exit < entry:
        raise PairsError(f"exit must satisfy 0 <= exit < entry, got exit={exit!r}, entry={entry!r}")
    idx = np.arange(z.size)
    with np.errstate(invalid="ignore"):
        open_long = z < -entry
        close_long = z >= -exit
        open_short = z > entry
        close_short = z <= exit
    last_open_long = np.maximum.accumulate(np.where(open_long, idx, -1))
    last_close_long = np.maximum.accumulate(np.where(close_long, idx, -1))
    last_open_short = np.maximum.accumulate(np.where(open_short, idx, -1))
    last_close_short = np.maximum.accumulate(np.where(close_short, idx, -1))
    long_ = last_open_long > last_close_long
    short = last_open_short > last_close_short
    return (long_.astype(np.int8) - short.astype(np.int8)).astype(np.int8)


@dataclass(frozen=True)
class SpreadSignal:
    """Spread, its rolling z-score and the resulting positions."""

    spread: np.ndarray
    zscore: np.ndarray
    position: np.ndarray


def spread_signal(y, x, hedge_ratio, window: int, *, entry=2.0, exit=0.5) -> SpreadSignal:
    """``spread = y - hedge_ratio * x`` (``hedge_ratio`` scalar or per observation),
    its rolling z-score over ``window`` and the :func:`positions` it implies."""
    y, x = _pair(y, x, 2)
    h = np.asarray(hedge_ratio, dtype=float)
    if h.ndim > 1 or (h.ndim == 1 and h.size != y.size):
        raise PairsError(f"hedge_ratio must be a scalar or have length {y.size}, got shape {h.shape}")
    s = y - h * x
    z = rolling_zscore(s, window)
    return SpreadSignal(spread=s, zscore=z, position=positions(z, entry, exit))
