"""SABR implied volatilities (Hagan et al. 2002), per-maturity calibration and
a no-arbitrage check of the smile.

What
    The SABR model (forward ``F``, its volatility ``a``)::

        dF = a F^beta dW1,   da = nu a dW2,   d<W1, W2> = rho dt,   a(0) = alpha,

    with the lognormal (Black) implied-volatility expansion of Hagan, Kumar,
    Lesniewski and Woodward (2002), "Managing smile risk", Wilmott Magazine
    Sept 2002:84-108, eq. (2.17a). ``T`` is in years, vols are per
    square-root year; ``alpha`` has units of ``F^(1-beta)`` per sqrt year.
    An optional ``shift`` applies the formula to ``F + shift`` and
    ``K + shift`` (shifted SABR for low or negative rates).

Why
    calarb fits one SABR smile per listed maturity (Hagan's formula is the
    market's common language for smiles) and uses it to spot quotes that
    stray from the fitted smile. A fitted smile is only useful if it is
    arbitrage-free where it is traded, so :func:`arbitrage_check` reports the
    strikes where the smile's implied density is negative.

Small strikes and the z -> 0 limit
    * ``z/x(z)`` is computed with ``log1p`` on a form chosen by the sign of
      ``z - rho`` so that neither the numerator nor the argument of the
      logarithm cancels; ``z = 0`` (at the money, or ``nu = 0``) is set to
      its limit 1 exactly, and small ``z`` keeps full relative precision, so
      there is no special ATM branch and no jump near it.
    * ``method="hagan"`` is the published formula. Its leading term uses
      the geometric average ``(F K)^((1-beta)/2)`` and the series
      ``1 + (1-beta)^2/24 ln^2(F/K) + (1-beta)^4/1920 ln^4(F/K)``, which
      degrade as ``K -> 0``.
    * ``method="obloj"`` replaces the leading term with Obloj's (2008,
      "Fine-tune your smile: correction to Hagan et al.", arXiv:0708.0998)
      ``nu ln(F/K) / x(z_O)`` with ``z_O = nu (F^(1-beta) - K^(1-beta)) /
      (alpha (1-beta))`` (``nu/alpha ln(F/K)`` for ``beta = 1``), which is
      exact in the ``nu -> 0`` (CEV) limit at leading order and better behaved
      for small strikes. At ``ln(F/K) = 0`` it is evaluated through the stable
      ratio ``ln(F/K)/z_O`` (``-expm1``), again with no special case. Both
      use Hagan's first-order time correction.
    * Neither removes the expansion's known failure for very low strikes
      and long expiries (negative density); :func:`arbitrage_check` finds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

__all__ = [
    "ArbitrageReport",
    "SABRError",
    "SABRFit",
    "SABRParams",
    "arbitrage_check",
    "calibrate",
    "calibrate_smiles",
    "density",
    "lognormal_vol",
]


class SABRError(ValueError):
    """Invalid argument to a SABR function; the message names it."""


@dataclass(frozen=True)
class SABRParams:
    """SABR parameters: ``alpha > 0``, ``0 <= beta <= 1``, ``-1 < rho < 1``, ``nu >= 0``."""

    alpha: float
    beta: float
    rho: float
    nu: float

    def __post_init__(self):
        for name in ("alpha", "beta", "rho", "nu"):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError) as exc:
                raise SABRError(f"{name} must be a number, got {value!r}") from exc
            if not math.isfinite(value):
                raise SABRError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if not self.alpha > 0:
            raise SABRError(f"alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise SABRError(f"beta must be in [0, 1], got {self.beta!r}")
        if not -1.0 < self.rho < 1.0:
            raise SABRError(f"rho must be in (-1, 1), got {self.rho!r}")
        if not self.nu >= 0:
            raise SABRError(f"nu must be >= 0, got {self.nu!r}")


_METHODS = ("hagan", "obloj")


def _array(name, value):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SABRError(f"{name} must be numeric, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise SABRError(f"{name} must be finite")
    return arr


def _z_over_x(z, rho):
    """z / x(z) with x(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho)/(1 - rho)).

    For z >= rho:  x = log1p(z ((z - rho) + (r + 1 - rho)) / ((r + 1)(1 - rho)))
    for z <  rho:  x = -log1p(-z ((rho - z) + (r + 1 + rho)) / ((r + 1)(1 + rho)))
    with r = sqrt(1 - 2 rho z + z^2): both sums are of non-negative terms, so
    x keeps full relative precision as z -> 0; z = 0 gives the limit 1.
    """
    r = np.sqrt(1.0 - 2.0 * rho * z + z * z)
    rp1 = r + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.log1p(z * ((z - rho) + (rp1 - rho)) / (rp1 * (1.0 - rho)))
        lower = -np.log1p(-z * ((rho - z) + (rp1 + rho)) / (rp1 * (1.0 + rho)))
        x = np.where(z >= rho, upper, lower)
        ratio = z / x
    return np.where(z == 0, 1.0, ratio)


def lognormal_vol(K, F, T, alpha, beta, rho, nu, *, shift=0.0, method="hagan") -> np.ndarray:
    """Black implied volatility of SABR (Hagan et al. 2002, eq. 2.17a).

    ``K`` strikes and ``F`` forward (same units; ``shift`` added to both),
    ``T`` in years. Parameters broadcast with ``K``, so one call prices a
    whole smile or many smiles. ``method`` is ``"hagan"`` or ``"obloj"``
    (see the module docstring).
    """
    if method not in _METHODS:
        raise SABRError(f"method must be one of {_METHODS}, got {method!r}")
    K = _array("K", K) + float(shift)
    F = _array("F", F) + float(shift)
    T = _array("T", T)
    alpha = _array("alpha", alpha)
    beta = _array("beta", beta)
    rho = _array("rho", rho)
    nu = _array("nu", nu)
    if not np.all(K > 0):
        raise SABRError("K + shift must be > 0")
    if not np.all(F > 0):
        raise SABRError("F + shift must be > 0")
    if not np.all(T >= 0):
        raise SABRError("T must be >= 0")
    if not np.all(alpha > 0):
        raise SABRError("alpha must be > 0")
    if not np.all((beta >= 0) & (beta <= 1)):
        raise SABRError("beta must be in [0, 1]")
    if not np.all((rho > -1) & (rho < 1)):
        raise SABRError("rho must be in (-1, 1)")
    if not np.all(nu >= 0):
        raise SABRError("nu must be >= 0")
    return _vol(K, F, T, alpha, beta, rho, nu, method)


def _vol(K, F, T, alpha, beta, rho, nu, method):
    """Unchecked core of :func:`lognormal_vol` (shift already applied)."""
    one_b = 1.0 - beta
    log_fk = np.log(F / K)
    fk_b = np.exp(0.5 * one_b * (np.log(F) + np.log(K)))  # (F K)^((1-beta)/2)
    correction = 1.0 + T * (
        one_b * one_b * alpha * alpha / (24.0 * fk_b * fk_b)
        + 0.25 * rho * beta * nu * alpha / fk_b
        + (2.0 - 3.0 * rho * rho) * nu * nu / 24.0
    )
    if method == "hagan":
        l2 = (one_b * log_fk) ** 2
        denominator = fk_b * (1.0 + l2 / 24.0 + l2 * l2 / 1920.0)
        z = nu / alpha * fk_b * log_fk
        leading = alpha / denominator * _z_over_x(z, rho)
    else:
        # zeta = (F^(1-b) - K^(1-b))/(1-b) = F^(1-b) ln(F/K) g(a), a = (1-b) ln(F/K), g(a) = -expm1(-a)/a
        a = one_b * log_fk
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(np.abs(a) > 1e-8, -np.expm1(-a) / a, 1.0 - 0.5 * a)
        f_one_b = np.exp(one_b * np.log(F))
        z = nu / alpha * f_one_b * log_fk * g
        # nu ln(F/K)/x(z) = alpha/(F^(1-b) g) * z/x(z)
        leading = alpha / (f_one_b * g) * _z_over_x(z, rho)
    return leading * correction


# ---------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class SABRFit:
    """Result of :func:`calibrate` for one smile.

    params    : fitted :class:`SABRParams`
    rmse      : root mean square of the (weighted) vol residuals
    residuals : model minus market vols at the input strikes (unweighted)
    success   : whether the optimiser reported convergence
    nfev      : function evaluations used
    message   : the optimiser's message
    """

    params: SABRParams
    rmse: float
    residuals: np.ndarray = field(repr=False)
    success: bool
    nfev: int
    message: str


def _atm_vol(K, F, vols):
    order = np.argsort(K)
    return float(np.interp(math.log(F), np.log(K[order]), vols[order]))


def calibrate(
    K,
    F,
    T,
    vols,
    *,
    beta=0.5,
    fit_beta=False,
    weights=None,
    shift=0.0,
    method="hagan",
    initial=None,
) -> SABRFit:
    """Fit ``(alpha, rho, nu)`` (and ``beta`` if ``fit_beta``) to one smile.

    ``K`` strikes, ``F`` forward, ``T`` years, ``vols`` market Black vols at
    ``K`` (all for one maturity). ``weights`` (e.g. vegas or 1/bid-ask)
    multiply the residuals. Least squares (scipy ``least_squares``, trust
    region reflective, bounds ``alpha > 0``, ``|rho| < 1``, ``nu >= 0``,
    ``0 <= beta <= 1``) from a few starting points (alpha from the ATM vol,
    rho in {-0.5, 0, 0.5}); the best fit wins. ``initial`` (a
    :class:`SABRParams`) adds a starting point, e.g. yesterday's fit.
    """
    K = _array("K", K).ravel()
    vols = _array("vols", vols).ravel()
    if K.size != vols.size:
        raise SABRError(f"K and vols must have the same length ({K.size} != {vols.size})")
    n_free = 4 if fit_beta else 3
    if K.size < n_free:
        raise SABRError(f"vols needs at least {n_free} quotes to fit {n_free} parameters, got {K.size}")
    if not np.all(vols > 0):
        raise SABRError("vols must be > 0")
    F = float(F)
    T = float(T)
    if not T > 0:
        raise SABRError(f"T must be > 0, got {T!r}")
    if not 0.0 <= beta <= 1.0:
        raise SABRError(f"beta must be in [0, 1], got {beta!r}")
    if F + shift <= 0 or np.any(K + shift <= 0):
        raise SABRError("F + shift and K + shift must be > 0")
    w = np.ones_like(K) if weights is None else _array("weights", weights).ravel()
    if w.size != K.size:
        raise SABRError(f"weights must have the same length as K ({w.size} != {K.size})")

    Fs = F + shift
    Ks = K + shift

    # alpha = a * Fs^(1-beta): ``a`` is close to the ATM vol whatever beta is,
    # which decouples the level from beta (alpha and beta are nearly
    # collinear otherwise and the fit crawls along the valley)
    def unpack(x):
        if fit_beta:
            a, b, r, n = x
        else:
            (a, r, n), b = x, beta
        return a * Fs ** (1.0 - b), b, r, n

    def residuals(x):
        return w * (_vol(Ks, Fs, T, *unpack(x), method) - vols)

    atm = _atm_vol(Ks, Fs, vols)
    starts = [(atm, beta, rho0, 0.5) for rho0 in (0.0, -0.5, 0.5)]
    if initial is not None:
        initial = initial if isinstance(initial, SABRParams) else SABRParams(*initial)
        b0 = initial.beta if fit_beta else beta
        starts.insert(0, (initial.alpha / Fs ** (1.0 - b0), b0, initial.rho, max(initial.nu, 1e-4)))
    lo_rho, hi_rho = -0.9999, 0.9999
    if fit_beta:
        lower = np.array([1e-12, 0.0, lo_rho, 0.0])
        upper = np.array([np.inf, 1.0, hi_rho, np.inf])
    else:
        lower = np.array([1e-12, lo_rho, 0.0])
        upper = np.array([np.inf, hi_rho, np.inf])
    # a fit this close to the quotes is not improved by more starting points
    good_enough = 1e-6 * atm * math.sqrt(float(np.mean(w * w)))
    best = None
    for a0, b0, r0, n0 in starts:
        x0 = np.array([a0, b0, r0, n0] if fit_beta else [a0, r0, n0])
        x0 = np.clip(x0, lower + 1e-9, np.where(np.isfinite(upper), upper - 1e-9, np.inf))
        try:
            res = least_squares(
                residuals, x0, bounds=(lower, upper), method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=500
            )
        except (ValueError, FloatingPointError):
            continue
        if best is None or res.cost < best.cost:
            best = res
        if math.sqrt(2.0 * best.cost / K.size) < good_enough:
            break
    if best is None:
        raise SABRError("calibration failed from every starting point")
    a, b, r, n = unpack(best.x)
    params = SABRParams(a, b, r, n)
    raw = _vol(Ks, Fs, T, a, b, r, n, method) - vols
    return SABRFit(
        params=params,
        rmse=float(np.sqrt(np.mean((w * raw) ** 2))),
        residuals=raw,
        success=bool(best.success),
        nfev=int(best.nfev),
        message=str(best.message),
    )


def calibrate_smiles(smiles, *, beta=0.5, fit_beta=False, shift=0.0, method="hagan") -> list[SABRFit]:
    """Calibrate each maturity separately.

    ``smiles`` is an iterable of ``(K, F, T, vols)`` or ``(K, F, T, vols,
    weights)``; returns one :class:`SABRFit` per smile, in order.
    """
    fits = []
    for i, smile in enumerate(smiles):
        if len(smile) not in (4, 5):
            raise SABRError(f"smiles[{i}] must be (K, F, T, vols[, weights]), got {len(smile)} items")
        K, F, T, vols = smile[:4]
        weights = smile[4] if len(smile) == 5 else None
        fits.append(
            calibrate(K, F, T, vols, beta=beta, fit_beta=fit_beta, weights=weights, shift=shift, method=method)
        )
    return fits


# ---------------------------------------------------------------------------
# implied density and the no-arbitrage check


def density(K, F, T, params: SABRParams, *, shift=0.0, method="hagan", dy=1e-4):
    """Risk-neutral density of ``F_T`` implied by the SABR smile, per unit strike.

    Breeden-Litzenberger: the density is the second strike derivative of
    undiscounted call prices. Written with total implied variance
    ``w(y) = sigma(K)^2 T`` in ``y = ln(K/F)`` (Gatheral 2006, eq. 2.3)::

        p(K) = phi(d2) / (K sqrt(w)) * g(y),
        g(y) = (1 - y w'/(2w))^2 - w'^2/4 (1/w + 1/4) + w''/2,

    with ``d2 = -y/sqrt(w) - sqrt(w)/2``. ``w'`` and ``w''`` are central
    differences of the closed-form smile with step ``dy`` (error ~dy^2).
    Returns ``(p, g)``; ``p < 0`` exactly where ``g < 0``.
    """
    p = params if isinstance(params, SABRParams) else SABRParams(*params)
    K = _array("K", K)
    Fs = float(F) + float(shift)
    Ks = K + float(shift)
    if np.any(Ks <= 0) or Fs <= 0:
        raise SABRError("K + shift and F + shift must be > 0")
    T = float(T)
    if not T > 0:
        raise SABRError(f"T must be > 0, got {T!r}")
    y = np.log(Ks / Fs)

    def total_var(yy):
        vol = lognormal_vol(Fs * np.exp(yy), Fs, T, p.alpha, p.beta, p.rho, p.nu, method=method)
        return vol * vol * T

    w0 = total_var(y)
    wp = total_var(y + dy)
    wm = total_var(y - dy)
    w1 = (wp - wm) / (2.0 * dy)
    w2 = (wp - 2.0 * w0 + wm) / (dy * dy)
    g = (1.0 - y * w1 / (2.0 * w0)) ** 2 - 0.25 * w1 * w1 * (1.0 / w0 + 0.25) + 0.5 * w2
    sw = np.sqrt(w0)
    d2 = -y / sw - 0.5 * sw
    pdf = np.exp(-0.5 * d2 * d2) / math.sqrt(2.0 * math.pi)
    return pdf / (Ks * sw) * g, g


@dataclass(frozen=True)
class ArbitrageReport:
    """Where a SABR smile's implied density is negative.

    strikes          : strikes checked
    density          : implied density at each strike (per unit strike)
    negative         : boolean mask, density below ``-tolerance`` (in g units)
    negative_strikes : the strikes where it is
    ok               : no negative density on the grid
    """

    strikes: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)
    negative: np.ndarray = field(repr=False)
    negative_strikes: np.ndarray
    ok: bool


def arbitrage_check(
    F, T, params: SABRParams, strikes=None, *, shift=0.0, method="hagan", n_std=6.0, n_points=401, tolerance=1e-8
) -> ArbitrageReport:
    """Check the smile for butterfly arbitrage (negative implied density).

    ``strikes`` defaults to ``n_points`` strikes evenly spaced in log-strike
    over ``+-n_std`` ATM standard deviations. A strike is reported when the
    Durrleman function ``g`` (the density's bracket, see :func:`density`) is
    below ``-tolerance``; ``tolerance`` absorbs the finite-difference error.
    """
    p = params if isinstance(params, SABRParams) else SABRParams(*params)
    Fs = float(F) + float(shift)
    if strikes is None:
        atm = float(lognormal_vol(Fs, Fs, T, p.alpha, p.beta, p.rho, p.nu, method=method))
        half = n_std * atm * math.sqrt(float(T))
        strikes = Fs * np.exp(np.linspace(-half, half, int(n_points))) - float(shift)
    strikes = _array("strikes", strikes)
    dens, g = density(strikes, F, T, p, shift=shift, method=method)
    negative = ~(g >= -tolerance)
    return ArbitrageReport(
        strikes=strikes,
        density=dens,
        negative=negative,
        negative_strikes=strikes[negative],
        ok=not bool(negative.any()),
    )

