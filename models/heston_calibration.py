"""Heston calibration to a surface of option quotes: differential evolution,
then Levenberg-Marquardt on the analytic Jacobian, with the Feller condition
penalised, constrained or ignored.

What
    :func:`calibrate_heston` fits ``(v0, kappa, theta, sigma, rho)`` to mid
    prices of European options (spot ``S``, rate ``r``, dividend yield ``q``,
    strikes ``K``, maturities ``T`` in years). The residuals are either

    * ``fit="price"``: weighted price errors ``w (model - mid)``, with
      ``weights="vega"`` (``w = 1/vega`` of the market implied vol, so a
      residual approximates an implied-vol error), ``"spread"`` (``w =
      1/bid-ask spread``: a quote counts by how tightly it is quoted) or
      ``"none"``;
    * ``fit="iv"``: implied-vol errors ``w (iv(model) - iv(mid))``, with
      ``weights="vega"`` meaning unweighted vols, ``"spread"`` dividing by
      the spread in vol units (``spread/vega``) and ``"none"`` unweighted.

    The result is a :class:`HestonFit` with the parameters and the fit's
    quality (RMSE in price and in vol, R squared of prices, the worst quote),
    the Feller ratio, the work done and the optimiser's verdict.

Why
    The mission documents ask for a global stage (differential evolution)
    followed by Levenberg-Marquardt, with the Feller condition
    ``2 kappa theta >= sigma^2`` enforced. Heston's least-squares surface has
    long flat valleys (kappa against sigma, theta against v0) and local
    minima, so a local optimiser alone is at the mercy of its starting point;
    differential evolution alone converges slowly to the exact minimum. The
    two together are robust and fast.

How
    * Parameters live in a box (``bounds``, default :data:`DEFAULT_BOUNDS`).
      SciPy's ``least_squares(method="lm")`` (MINPACK's lmder, a true
      Levenberg-Marquardt) does not accept bounds, and the bounded
      alternative ("trf") is a different algorithm. So each parameter is
      reparametrised to an unconstrained ``x`` with MINUIT's sine transform,
      ``p = lo + (hi - lo) (1 + sin x) / 2``, and LM runs on ``x``; the
      Jacobian is the analytic price gradient of :func:`models.heston.
      price_and_gradient` times ``dp/dx`` (chain rule), never finite
      differences. A logistic transform was tried first and rejected: once
      LM pushes a parameter towards a bound the logistic saturates, its
      Jacobian column vanishes and the parameter stays stuck there (it did
      for rho on about a third of the test surfaces); the sine's derivative
      vanishes only at the bound itself and a step can pass through it and
      come back. LM starts 2 % of each range inside the bounds.
    * Feller, ``feller="constraint"``: ``sigma`` is replaced by
      ``s in (0, 1)`` with ``sigma = s * min(sqrt(2 kappa theta),
      sigma_max)``, so every point of the search space satisfies
      ``2 kappa theta >= sigma^2`` (ratio ``1/s^2 >= 1``; ``s`` stops just
      short of 1 so rounding cannot produce a violation).
      ``feller="penalty"``: one extra residual ``feller_weight * sqrt(n) *
      max(0, sigma^2 - 2 kappa theta)`` (variance units, ``n`` quotes), so a
      violation costs like an implied-vol error spread over the surface;
      the fit may still violate slightly, and :attr:`HestonFit.feller_ratio`
      says by how much (LM crawls along the penalty's kink, so this mode is
      the slowest when the market wants a violation). ``feller="off"``: no
      treatment, just reported. The default is the constraint.
    * Global stage: ``scipy.optimize.differential_evolution`` over the same
      bounded coordinates (sigma or s), on the price residuals weighted as
      for ``fit="price"`` (cheaper than inverting vols for every member),
      with a fixed seed, a small population and few generations (see
      :data:`DEFAULT_DE_OPTIONS`): its job is to land in the right valley,
      LM's to reach the bottom. ``x0`` adds a starting point (e.g. the
      previous calibration) to DE's initial population; with
      ``global_stage=False`` LM starts from ``x0`` (or the middle of a
      typical equity surface).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import differential_evolution, least_squares

from models import black_scholes as bs
from models import heston
from models.heston import PARAM_NAMES, HestonParams

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_DE_OPTIONS",
    "HestonCalibrationError",
    "HestonFit",
    "calibrate_heston",
]

DEFAULT_BOUNDS = {
    "v0": (1e-4, 1.0),
    "kappa": (0.05, 10.0),
    "theta": (1e-4, 1.0),
    "sigma": (0.01, 2.0),
    "rho": (-0.99, 0.99),
}
"""Default parameter box (variances per year, kappa per year)."""

DEFAULT_DE_OPTIONS = {"popsize": 4, "maxiter": 6, "tol": 1e-3, "mutation": (0.5, 1.0), "recombination": 0.7,
                      "init": "latinhypercube"}
"""Differential evolution settings: 20 members, at most 7 generations (about 0.3 to 0.7 s on 150 quotes)."""

_DEFAULT_START = HestonParams(v0=0.04, kappa=2.0, theta=0.04, sigma=0.4, rho=-0.6)
_S_MIN, _S_MAX = 1e-3, 1.0 - 1e-9  # range of s = sigma / sqrt(2 kappa theta) under the Feller constraint
_START_MARGIN = 0.02  # LM starts at least this fraction of each range inside the bounds
_WEIGHTS = ("vega", "spread", "none")
_FITS = ("price", "iv")
_FELLER = ("penalty", "constraint", "off")


class HestonCalibrationError(ValueError):
    """Invalid input to :func:`calibrate_heston`; the message names the argument."""


@dataclass(frozen=True)
class HestonFit:
    """Result of :func:`calibrate_heston`.

    params            : fitted :class:`models.heston.HestonParams`
    rmse_price        : root mean square of model - mid prices (price units)
    rmse_iv           : root mean square of model - market implied vols (vol units)
    r2                : R squared of model prices against mid prices
    max_residual      : largest absolute implied-vol error (vol units)
    max_residual_strike, max_residual_expiry : where it is (strike, years)
    feller_ratio      : ``2 kappa theta / sigma^2`` of the fit
    feller_satisfied  : ratio >= 1
    feller_mode       : "penalty", "constraint" or "off"
    n_quotes          : quotes fitted
    iterations        : differential evolution generations (0 without the global stage)
    nfev              : function evaluations (DE + LM)
    njev              : Jacobian evaluations (LM)
    seconds           : wall time of the whole calibration
    success           : the LM stage converged and the fit is finite
    message           : the optimisers' messages
    model_prices, residuals_iv : per quote, in input order
    """

    params: HestonParams
    rmse_price: float
    rmse_iv: float
    r2: float
    max_residual: float
    max_residual_strike: float
    max_residual_expiry: float
    feller_ratio: float
    feller_satisfied: bool
    feller_mode: str
    n_quotes: int
    iterations: int
    nfev: int
    njev: int
    seconds: float
    success: bool
    message: str
    model_prices: np.ndarray = field(repr=False)
    residuals_iv: np.ndarray = field(repr=False)

    def metrics(self) -> dict:
        """JSON-friendly summary (parameters and scalar metrics)."""
        return {
            "params": {name: getattr(self.params, name) for name in PARAM_NAMES},
            "rmse_price": self.rmse_price,
            "rmse_iv": self.rmse_iv,
            "r2": self.r2,
            "max_residual_iv": self.max_residual,
            "max_residual_strike": self.max_residual_strike,
            "max_residual_expiry": self.max_residual_expiry,
            "feller_ratio": self.feller_ratio,
            "feller_satisfied": self.feller_satisfied,
            "feller_mode": self.feller_mode,
            "n_quotes": self.n_quotes,
            "iterations": self.iterations,
            "nfev": self.nfev,
            "njev": self.njev,
            "seconds": self.seconds,
            "success": self.success,
            "message": self.message,
        }


# ---------------------------------------------------------------------------
# coordinates: y (bounded, natural: v0, kappa, theta, sigma or s, rho) <-> x (unconstrained, for LM)


class _Coordinates:
    def __init__(self, bounds, feller_constraint):
        self.lo = np.array([bounds[n][0] for n in PARAM_NAMES], dtype=float)
        self.hi = np.array([bounds[n][1] for n in PARAM_NAMES], dtype=float)
        self.sigma_hi = self.hi[3]
        self.constraint = feller_constraint
        self.y_lo = self.lo.copy()
        self.y_hi = self.hi.copy()
        if feller_constraint:
            self.y_lo[3], self.y_hi[3] = _S_MIN, _S_MAX

    def params(self, y) -> np.ndarray:
        """Heston parameters from the bounded coordinates ``y``."""
        p = np.array(y, dtype=float)
        if self.constraint:
            p[3] = y[3] * min(math.sqrt(2.0 * y[1] * y[2]), self.sigma_hi)
        return p

    def dparams_dy(self, y) -> np.ndarray:
        """5x5 Jacobian of :meth:`params` (rows: parameters, columns: y)."""
        jac = np.eye(5)
        if self.constraint:
            root = math.sqrt(2.0 * y[1] * y[2])
            if root < self.sigma_hi:
                jac[3, 3] = root
                jac[3, 1] = y[3] * root / (2.0 * y[1])
                jac[3, 2] = y[3] * root / (2.0 * y[2])
            else:
                jac[3, 3] = self.sigma_hi
        return jac

    def y_of_params(self, p) -> np.ndarray:
        y = np.array(p, dtype=float)
        if self.constraint:
            y[3] = p[3] / min(math.sqrt(2.0 * p[1] * p[2]), self.sigma_hi)
        return np.clip(y, self.y_lo, self.y_hi)

    def y(self, x) -> np.ndarray:
        return self.y_lo + 0.5 * (self.y_hi - self.y_lo) * (1.0 + np.sin(x))

    def dy_dx(self, x) -> np.ndarray:
        return 0.5 * (self.y_hi - self.y_lo) * np.cos(x)

    def x(self, y) -> np.ndarray:
        u = (np.asarray(y, dtype=float) - self.y_lo) / (self.y_hi - self.y_lo)
        # keep a start off the bounds, where the transform's derivative vanishes
        u = np.clip(u, _START_MARGIN, 1.0 - _START_MARGIN)
        return np.arcsin(2.0 * u - 1.0)


def _param_array(value) -> np.ndarray:
    if isinstance(value, HestonParams):
        return value.as_array()
    if isinstance(value, dict):
        try:
            return HestonParams(**value).as_array()
        except TypeError as exc:
            raise HestonCalibrationError(f"x0 must have keys {PARAM_NAMES}: {exc}") from exc
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size != 5 or not np.all(np.isfinite(arr)):
        raise HestonCalibrationError(f"x0 must be 5 finite numbers {PARAM_NAMES}, got {value!r}")
    return arr


# ---------------------------------------------------------------------------


def _as_1d(name, value, n=None):
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise HestonCalibrationError(f"{name} must be numeric: {exc}") from exc
    if n is not None and arr.size == 1:
        arr = np.full(n, arr[0])
    if n is not None and arr.size != n:
        raise HestonCalibrationError(f"{name} must have {n} entries like K, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise HestonCalibrationError(f"{name} must be finite")
    return arr


def _check_bounds(bounds):
    merged = dict(DEFAULT_BOUNDS)
    if bounds is not None:
        unknown = set(bounds) - set(PARAM_NAMES)
        if unknown:
            raise HestonCalibrationError(f"bounds has unknown parameters {sorted(unknown)}; known {PARAM_NAMES}")
        merged.update(bounds)
    for name, (lo, hi) in merged.items():
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise HestonCalibrationError(f"bounds[{name!r}] must be finite with lo < hi, got {(lo, hi)}")
    if merged["v0"][0] < 0 or merged["kappa"][0] <= 0 or merged["theta"][0] <= 0 or merged["sigma"][0] <= 0:
        raise HestonCalibrationError("bounds of v0 must be >= 0 and of kappa, theta, sigma > 0")
    if merged["rho"][0] <= -1 or merged["rho"][1] >= 1:
        raise HestonCalibrationError("bounds of rho must lie inside (-1, 1)")
    return merged


def calibrate_heston(
    S,
    r,
    q,
    K,
    T,
    price_mid,
    is_call,
    *,
    weights="vega",
    spread=None,
    fit="price",
    bounds=None,
    feller="constraint",
    feller_weight=1.0,
    global_stage=True,
    de_options=None,
    x0=None,
    seed=0,
    max_nfev=200,
) -> HestonFit:
    """Calibrate Heston to mid prices; see the module docstring for the method.

    ``S`` spot, ``r`` and ``q`` continuously compounded rate and dividend
    yield (per year; scalars or one per quote), ``K`` strikes, ``T`` years,
    ``price_mid`` mid prices, ``is_call`` booleans (one per quote),
    ``spread`` bid-ask spreads (price units; needed for
    ``weights="spread"``). ``bounds`` overrides entries of
    :data:`DEFAULT_BOUNDS`; ``de_options`` entries of
    :data:`DEFAULT_DE_OPTIONS`. ``x0`` (a :class:`HestonParams`, dict or
    5-sequence) seeds DE's population, or is LM's start without the global
    stage. ``max_nfev`` limits LM's residual evaluations.
    """
    t_start = time.perf_counter()
    if weights not in _WEIGHTS:
        raise HestonCalibrationError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    if fit not in _FITS:
        raise HestonCalibrationError(f"fit must be one of {_FITS}, got {fit!r}")
    if feller not in _FELLER:
        raise HestonCalibrationError(f"feller must be one of {_FELLER}, got {feller!r}")
    K = _as_1d("K", K)
    n = K.size
    if n < 5:
        raise HestonCalibrationError(f"at least 5 quotes are needed to fit 5 parameters, got {n}")
    T = _as_1d("T", T, n)
    mid = _as_1d("price_mid", price_mid, n)
    S = _as_1d("S", S, n)
    r = _as_1d("r", r, n)
    q = _as_1d("q", q, n)
    flag = np.asarray(is_call).ravel()
    if flag.size == 1:
        flag = np.full(n, bool(flag[0]))
    if flag.size != n or flag.dtype.kind not in "biu":
        raise HestonCalibrationError(f"is_call must be {n} booleans")
    flag = flag.astype(bool)
    if np.any(K <= 0) or np.any(T <= 0) or np.any(S <= 0):
        raise HestonCalibrationError("S, K and T must be > 0")
    if np.any(mid <= 0):
        raise HestonCalibrationError("price_mid must be > 0")
    if weights == "spread":
        if spread is None:
            raise HestonCalibrationError('weights="spread" needs spread')
        spread = _as_1d("spread", spread, n)
        if np.any(spread <= 0):
            raise HestonCalibrationError("spread must be > 0 for weights='spread'")
    bounds = _check_bounds(bounds)

    iv_mkt = bs.implied_vol(mid, S, K, T, r, q, flag)
    if not np.all(np.isfinite(iv_mkt)):
        bad = int(np.flatnonzero(~np.isfinite(iv_mkt))[0])
        raise HestonCalibrationError(
            f"price_mid[{bad}] = {mid[bad]!r} (K={K[bad]}, T={T[bad]}) has no implied volatility")
    vega_mkt = bs.vega(S, K, T, r, q, iv_mkt)
    vega_floor = 1e-2 * float(np.max(vega_mkt))
    vega_mkt = np.maximum(vega_mkt, vega_floor)

    # price-space weights (DE always uses them; LM in price mode)
    if weights == "vega":
        w_price = 1.0 / vega_mkt
    elif weights == "spread":
        w_price = 1.0 / spread
    else:
        w_price = np.ones(n)
    # iv-space weights (LM in iv mode)
    if weights == "spread":
        w_iv = vega_mkt / spread
        w_iv = w_iv / np.mean(w_iv)
    else:
        w_iv = np.ones(n)

    coords = _Coordinates(bounds, feller == "constraint")
    penalty = feller == "penalty"
    pen_scale = float(feller_weight) * math.sqrt(n)
    if penalty:
        # put the penalty in the same units as the residuals: vol-like for vega/iv, price for the others
        unit = 1.0 if (fit == "iv" or weights == "vega") else float(np.median(vega_mkt * w_price))
        pen_scale *= unit
    counts = {"nfev": 0, "njev": 0}

    def price_residuals(p):
        model = heston.price(S, K, T, r, q, p, flag)
        return w_price * (model - mid)

    def feller_residual(p):
        return pen_scale * max(0.0, p[3] * p[3] - 2.0 * p[1] * p[2])

    def de_cost(y):
        counts["nfev"] += 1
        p = coords.params(y)
        try:
            res = price_residuals(p)
        except heston.HestonError:
            return 1e30
        cost = float(res @ res)
        if penalty:
            cost += feller_residual(p) ** 2
        return cost if math.isfinite(cost) else 1e30

    start = None
    if x0 is not None:
        start = np.clip(_param_array(x0), coords.lo, coords.hi)
        if coords.constraint:
            # move a Feller-violating start just inside the constraint
            root = math.sqrt(2.0 * start[1] * start[2])
            start[3] = min(start[3], 0.99 * root)

    messages = []
    iterations = 0
    if global_stage:
        options = dict(DEFAULT_DE_OPTIONS)
        if de_options:
            options.update(de_options)
        if start is not None:
            # a given start joins DE's population
            rng = np.random.default_rng(seed)
            size = int(options["popsize"]) * 5
            y_lo, y_hi = coords.y_lo, coords.y_hi
            pop = y_lo + (y_hi - y_lo) * rng.random((size, 5))
            pop[0] = coords.y_of_params(start)
            options["init"] = pop
        result = differential_evolution(
            de_cost, list(zip(coords.y_lo, coords.y_hi)), seed=seed, polish=False, **options)
        iterations = int(result.nit)
        y_start = result.x
        messages.append(f"DE: {result.message}")
    else:
        y_start = coords.y_of_params(start if start is not None else _DEFAULT_START.as_array())

    # ---- Levenberg-Marquardt on the unconstrained coordinates
    def evaluate(x, with_jac):
        y = coords.y(x)
        p = coords.params(y)
        if with_jac:
            model, grad = heston.price_and_gradient(S, K, T, r, q, p, flag)
        else:
            model, grad = heston.price(S, K, T, r, q, p, flag), None
        if fit == "price":
            res = w_price * (model - mid)
            d_res = None if grad is None else grad * w_price[:, None]
        else:
            iv_model = bs.implied_vol(model, S, K, T, r, q, flag)
            ok = np.isfinite(iv_model)
            vega_model = np.where(ok, bs.vega(S, K, T, r, q, np.where(ok, iv_model, 0.2)), vega_mkt)
            vega_model = np.maximum(vega_model, vega_floor)
            # where the model price has no implied vol, fall back to the vega-scaled price error
            res = w_iv * np.where(ok, iv_model - iv_mkt, (model - mid) / vega_mkt)
            d_res = None if grad is None else grad * (w_iv / np.where(ok, vega_model, vega_mkt))[:, None]
        if penalty:
            res = np.append(res, feller_residual(p))
        if not with_jac:
            return res
        chain = coords.dparams_dy(y) * coords.dy_dx(x)[None, :]  # dp/dx
        jac = d_res @ chain
        if penalty:
            excess = p[3] * p[3] - 2.0 * p[1] * p[2]
            dpen = np.zeros(5)
            if excess > 0:
                dpen[1], dpen[2], dpen[3] = -2.0 * p[2], -2.0 * p[1], 2.0 * p[3]
            jac = np.vstack([jac, pen_scale * (dpen @ chain)])
        return res, jac

    cache = {}

    def fun(x):
        counts["nfev"] += 1
        res, jac = evaluate(x, True)  # LM asks for the Jacobian at the accepted points: compute both once
        cache["x"], cache["jac"] = x.copy(), jac
        return res

    def jac(x):
        counts["njev"] += 1
        if "x" in cache and np.array_equal(cache["x"], x):
            return cache["jac"]
        return evaluate(x, True)[1]

    x_start = coords.x(y_start)
    try:
        lm = least_squares(fun, x_start, jac=jac, method="lm", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                           max_nfev=max_nfev)
        x_best, lm_success, lm_message = lm.x, bool(lm.success), str(lm.message)
    except (heston.HestonError, ValueError, FloatingPointError) as exc:
        x_best, lm_success, lm_message = x_start, False, f"LM failed: {exc}"
    messages.append(f"LM: {lm_message}")

    p_best = coords.params(coords.y(x_best))
    params = HestonParams.from_array(p_best)
    model = heston.price(S, K, T, r, q, params, flag)
    iv_model = bs.implied_vol(model, S, K, T, r, q, flag)
    res_price = model - mid
    res_iv = iv_model - iv_mkt
    ss_tot = float(np.sum((mid - mid.mean()) ** 2))
    r2 = 1.0 - float(res_price @ res_price) / ss_tot if ss_tot > 0 else float("nan")
    abs_iv = np.where(np.isfinite(res_iv), np.abs(res_iv), np.inf)
    worst = int(np.argmax(abs_iv))
    ratio = float(params.feller_ratio)
    finite = bool(np.all(np.isfinite(model)))
    return HestonFit(
        params=params,
        rmse_price=float(np.sqrt(np.mean(res_price ** 2))),
        rmse_iv=float(np.sqrt(np.mean(res_iv ** 2))),
        r2=r2,
        max_residual=float(abs_iv[worst]),
        max_residual_strike=float(K[worst]),
        max_residual_expiry=float(T[worst]),
        feller_ratio=ratio,
        feller_satisfied=ratio >= 1.0,
        feller_mode=feller,
        n_quotes=n,
        iterations=iterations,
        nfev=counts["nfev"],
        njev=counts["njev"],
        seconds=time.perf_counter() - t_start,
        success=lm_success and finite,
        message="; ".join(messages),
        model_prices=model,
        residuals_iv=res_iv,
    )
