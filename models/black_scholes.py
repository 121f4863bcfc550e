"""Black-Scholes-Merton prices, greeks and implied volatility.

What
    European option prices and greeks under Black-Scholes-Merton (spot ``S``,
    strike ``K``, time to expiry ``T`` in years, continuously compounded rate
    ``r`` and dividend/repo yield ``q`` per year, volatility ``sigma`` per
    square-root year), the Black-76 forward form used by SABR and Heston, and
    the inverse map from prices to implied volatility.

Why
    Every other model in calarb speaks implied volatility: SABR is quoted in
    it, Heston is calibrated against it, and the volatility-arbitrage signal
    compares model and market implied vols. The inversion therefore has to
    be exact to machine precision across the whole surface (deep in and out
    of the money, one day to ten years, 1 % to 300 % vol) and cheap enough
    to run on every quote.

How
    Everything is computed from the *normalised* Black price (Jaeckel 2015,
    "Let's be rational", Wilmott 2015(75):40-53)::

        x = ln(F/K),  s = sigma*sqrt(T),  b(x, s) = B / sqrt(F*K),

    where ``B`` is the undiscounted price. Out-of-the-money prices are
    evaluated in four regions (asymptotic expansion in 1/h^2 for h = x/s <
    -10, a small-``s`` Taylor expansion, ``erfcx`` and plain ``ndtr``) so
    that even prices of 1e-300 keep their relative precision (a few ulp,
    growing like h^2/2 ulp from ``exp(-h^2/2)`` far in the tail, where the
    vol is correspondingly better conditioned); in-the-money prices are
    intrinsic plus the out-of-the-money price (put-call parity). The
    inversion follows "Let's be rational": a four-branch rational-cubic
    initial guess on transformed coordinates and at most two Householder(3)
    steps on a branch-specific objective (1/ln b in the lowest branch, b in
    the middle, ln(b_max - b) in the highest; an element stops after one
    step when that step is below 1e-4 relative), with a bracket and
    bisection as a safeguard. It always inverts the out-of-the-money price,
    which is where the information lives. All of it is NumPy over whole
    arrays (in cache-sized blocks): there is no Python loop per option.

Units
    Prices are in the currency of ``S`` and ``K``; ``vega`` is per unit of
    volatility (0.01 vol = one vol point gives ``vega * 0.01``), ``theta``
    per year of calendar time (``dV/dt = -dV/dT``), ``rho`` per unit of
    ``r`` (per 100 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfcx, ndtr, ndtri

__all__ = [
    "BlackScholesError",
    "Greeks",
    "IV_REASONS",
    "black_price",
    "call_price",
    "forward",
    "greeks",
    "implied_vol",
    "implied_vol_black",
    "implied_vol_black_with_reason",
    "implied_vol_with_reason",
    "normalised_black",
    "normalised_implied_vol",
    "normalised_vega",
    "price",
    "put_price",
    "vega",
]


class BlackScholesError(ValueError):
    """Invalid argument to a Black-Scholes function; the message names it."""


# ---------------------------------------------------------------------------
# constants (all immutable)

_EPS = float(np.finfo(float).eps)
_DBL_MIN = float(np.finfo(float).tiny)
_DBL_MAX = float(np.finfo(float).max)
_SQRT_DBL_MAX = math.sqrt(_DBL_MAX)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_SQRT_PI_OVER_2 = math.sqrt(math.pi / 2.0)
_SQRT_3 = math.sqrt(3.0)
# region boundaries of the normalised Black function (Jaeckel 2015, sec. 2)
_ASYMPTOTIC_H = -10.0
_SMALL_T = 2.0 * _EPS**0.0625  # 2 * DBL_EPSILON^(1/16) ~= 0.2102
# rational cubic control parameter limits (Delbourgo & Gregory 1985)
_R_MIN = -(1.0 - math.sqrt(_EPS))
_R_MAX = 2.0 / (_EPS * _EPS)


def _asymptotic_coefficients(order: int = 20) -> tuple[tuple[float, ...], ...]:
    """Coefficients of the h -> -inf expansion of b(h, t).

    With Y(z) = Phi(z)/phi(z) ~ -sum_k (-1)^k (2k-1)!! z^-(2k+1), the
    difference Y(h+t) - Y(h-t) becomes (t/r) * 2 sum_k (-1)^k (2k-1)!! q^k
    P_k(e) with r = h^2 - t^2, q = h^2/r^2, e = t^2/h^2 and
    P_k(e) = sum_j C(2k+1, 2j+1) e^j. Row k holds (-1)^k (2k-1)!! times the
    coefficients of P_k; Jaeckel's 17th-order sum uses k <= 12.
    """
    rows = []
    double_factorial = 1
    for k in range(order + 1):
        if k > 0:
            double_factorial *= 2 * k - 1
        sign = -1 if k % 2 else 1
        rows.append(
            tuple(float(sign * double_factorial * math.comb(2 * k + 1, 2 * j + 1)) for j in range(k + 1))
        )
    return tuple(rows)


_ASYMPTOTIC_ROWS = _asymptotic_coefficients()
_ASYMPTOTIC_MATRIX = np.zeros((len(_ASYMPTOTIC_ROWS), len(_ASYMPTOTIC_ROWS)))
for _k, _row in enumerate(_ASYMPTOTIC_ROWS):
    _ASYMPTOTIC_MATRIX[_k, : len(_row)] = _row
_ASYMPTOTIC_MATRIX.setflags(write=False)
del _k, _row
_SMALL_T_ORDER = 13  # odd derivatives of Y up to t^13/13!


# ---------------------------------------------------------------------------
# argument handling


def _as_float(name: str, value) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise BlackScholesError(f"{name} must be numeric, got {value!r}") from exc


def _check(name: str, arr: np.ndarray, *, positive=False, nonnegative=False, finite=True) -> None:
    if finite and not np.all(np.isfinite(arr)):
        raise BlackScholesError(f"{name} must be finite (found {arr[~np.isfinite(arr)].flat[0]!r})")
    if positive and not np.all(arr > 0):
        raise BlackScholesError(f"{name} must be > 0 (found {arr[~(arr > 0)].flat[0]!r})")
    if nonnegative and not np.all(arr >= 0):
        raise BlackScholesError(f"{name} must be >= 0 (found {arr[~(arr >= 0)].flat[0]!r})")


def _theta_sign(is_call) -> np.ndarray:
    """+1.0 for calls, -1.0 for puts."""
    flag = np.asarray(is_call)
    if flag.dtype.kind not in "biu":
        raise BlackScholesError(f"is_call must be boolean, got dtype {flag.dtype}")
    return np.where(flag.astype(bool), 1.0, -1.0)


def _market_inputs(S, K, T, r, q, *, allow_zero_T=True):
    S = _as_float("S", S)
    K = _as_float("K", K)
    T = _as_float("T", T)
    r = _as_float("r", r)
    q = _as_float("q", q)
    _check("S", S, positive=True)
    _check("K", K, positive=True)
    if allow_zero_T:
        _check("T", T, nonnegative=True)
    else:
        _check("T", T, positive=True)
    _check("r", r)
    _check("q", q)
    return S, K, T, r, q


def forward(S, T, r, q=0.0) -> np.ndarray:
    """Forward price ``S * exp((r - q) * T)`` (``T`` in years, rates per year)."""
    S = _as_float("S", S)
    T = _as_float("T", T)
    return S * np.exp((_as_float("r", r) - _as_float("q", q)) * T)


# ---------------------------------------------------------------------------
# the normalised Black function b(x, s) for x <= 0 (out of the money)


def _y_of_h(h: np.ndarray) -> np.ndarray:
    """Y(h) = Phi(h)/phi(h), without overflow for h << 0."""
    return _SQRT_PI_OVER_2 * erfcx(-_INV_SQRT_2 * h)


def _b_asymptotic(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Region 1 (h < -10, t small against |h|): asymptotic series in 1/h^2.

    sum_k q^k P_k(e) with the P_k evaluated together as one matrix product
    (powers of e times the coefficient matrix), then Horner in q. Term k is
    about (2k-1)!! q^k (1+sqrt(e))^(2k): 20 terms reach 1e-17 at h = -10.
    """
    e = (t / h) ** 2
    r = (h + t) * (h - t)
    q = (h / r) ** 2
    n_terms = _ASYMPTOTIC_MATRIX.shape[0]
    powers = np.empty((n_terms, h.size))  # row j: e^j
    powers[0] = 1.0
    for j in range(1, n_terms):
        np.multiply(powers[j - 1], e, out=powers[j])
    polys = _ASYMPTOTIC_MATRIX @ powers  # row k: (-1)^k (2k-1)!! P_k(e)
    total = polys[-1].copy()
    for k in range(n_terms - 2, -1, -1):
        total *= q
        total += polys[k]
    b = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + t * t)) * (t / r) * 2.0 * total
    return np.maximum(b, 0.0)


def _b_small_t(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Region 2 (t = s/2 < 0.21): Taylor series of Y(h+t) - Y(h-t) in t.

    Uses Y' = 1 + h Y and Y^(n+1) = n Y^(n-1) + h Y^(n).
    """
    y_prev = _y_of_h(h)  # Y
    y_cur = 1.0 + h * y_prev  # Y'
    w = t * t
    term_power = t.copy()  # t^n / n!
    total = y_cur * term_power
    for n in range(1, _SMALL_T_ORDER):
        y_prev, y_cur = y_cur, n * y_prev + h * y_cur  # Y^(n+1)
        if n % 2 == 0:  # y_cur is an odd derivative, order n+1
            term_power = term_power * w / ((n) * (n + 1))
            total = total + y_cur * term_power
    b = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + t * t)) * 2.0 * total
    return np.maximum(b, 0.0)


def _b_ndtr(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Region 3 (h + t > 0.85): the two terms of the Black formula directly."""
    h = x / s
    t = 0.5 * s
    b = np.exp(0.5 * x) * ndtr(h + t) - np.exp(-0.5 * x) * ndtr(h - t)
    return np.maximum(b, 0.0)


def _b_erfcx(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Region 4: b = exp(-(h^2+t^2)/2)/2 * [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)]."""
    b = 0.5 * np.exp(-0.5 * (h * h + t * t)) * (erfcx(-_INV_SQRT_2 * (h + t)) - erfcx(-_INV_SQRT_2 * (h - t)))
    return np.maximum(b, 0.0)


def _nb_otm(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Normalised out-of-the-money call b(x, s) for x <= 0, s >= 0 (1-D arrays)."""
    out = np.zeros(x.shape, dtype=float)
    pos = s > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        region1 = pos & (x < s * _ASYMPTOTIC_H) & (0.5 * s * s + x < s * (_SMALL_T + _ASYMPTOTIC_H))
        rest = pos & ~region1
        region2 = rest & (0.5 * s < _SMALL_T)
        rest &= ~region2
        region3 = rest & (x + 0.5 * s * s > 0.85 * s)
        region4 = rest & ~region3
        for mask, fn in ((region1, _b_asymptotic), (region2, _b_small_t), (region4, _b_erfcx)):
            idx = np.flatnonzero(mask)
            if idx.size:
                xs, ss = x[idx], s[idx]
                out[idx] = fn(xs / ss, 0.5 * ss)
        idx = np.flatnonzero(region3)
        if idx.size:
            out[idx] = _b_ndtr(x[idx], s[idx])
    return out


def _nvega(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """db/ds = exp(-(x^2/s^2 + s^2/4)/2)/sqrt(2 pi); zero at s = 0 unless x = 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        h = np.where(s > 0, x / np.where(s > 0, s, 1.0), np.where(x == 0, 0.0, np.inf))
        return _INV_SQRT_2PI * np.exp(-0.5 * (h * h + 0.25 * s * s))


def normalised_black(x, s, is_call=True) -> np.ndarray:
    """Normalised Black price ``B / sqrt(F K)`` for log-moneyness ``x = ln(F/K)``
    and total volatility ``s = sigma * sqrt(T)`` (dimensionless).

    Accurate to a few ulp relative for all ``x`` and ``s``, including
    out-of-the-money values far below 1e-100.
    """
    x = _as_float("x", x)
    s = _as_float("s", s)
    _check("s", s, nonnegative=True, finite=False)
    theta = _theta_sign(is_call)
    x, s, theta = np.broadcast_arrays(x, s, theta)
    shape = x.shape
    xx = (theta * x).ravel()
    otm = _nb_otm(-np.abs(xx), s.ravel())
    with np.errstate(over="ignore"):
        intrinsic = np.where(xx > 0, 2.0 * np.sinh(0.5 * xx), 0.0)
    return (intrinsic + otm).reshape(shape)


def normalised_vega(x, s) -> np.ndarray:
    """Derivative of the normalised Black price with respect to ``s``."""
    x, s = np.broadcast_arrays(_as_float("x", x), _as_float("s", s))
    return _nvega(x.ravel(), s.ravel()).reshape(x.shape)


# ---------------------------------------------------------------------------
# prices and greeks


def black_price(F, K, T, sigma, is_call=True, discount=1.0) -> np.ndarray:
    """Black-76 price of a European option on a forward ``F``.

    ``discount`` is the discount factor to expiry (1.0 gives the undiscounted
    price). Broadcasts over all arguments.
    """
    F = _as_float("F", F)
    K = _as_float("K", K)
    T = _as_float("T", T)
    sigma = _as_float("sigma", sigma)
    discount = _as_float("discount", discount)
    _check("F", F, positive=True)
    _check("K", K, positive=True)
    _check("T", T, nonnegative=True)
    _check("sigma", sigma, nonnegative=True)
    _check("discount", discount, positive=True)
    theta = _theta_sign(is_call)
    F, K, T, sigma, discount, theta = np.broadcast_arrays(F, K, T, sigma, discount, theta)
    shape = F.shape
    F, K, T, sigma, discount, theta = (a.ravel() for a in (F, K, T, sigma, discount, theta))
    return _black_unchecked(F, K, sigma * np.sqrt(T), theta, discount).reshape(shape)


def _black_unchecked(F, K, s, theta, discount):
    """Black price from 1-D arrays: total vol ``s``, ``theta`` +1 call / -1 put (no checks)."""
    otm = _nb_otm(-np.abs(np.log(F / K)), s)
    intrinsic = np.maximum(theta * (F - K), 0.0)
    return discount * (intrinsic + np.sqrt(F * K) * otm)


def price(S, K, T, r, q, sigma, is_call=True) -> np.ndarray:
    """Black-Scholes-Merton price of a European call (``is_call``) or put.

    ``T`` in years, ``r`` and ``q`` continuously compounded per year,
    ``sigma`` per square-root year. Broadcasts over all arguments; a zero
    ``sigma`` or ``T`` gives the discounted forward intrinsic value.
    """
    S, K, T, r, q = _market_inputs(S, K, T, r, q)
    F = S * np.exp((r - q) * T)
    return black_price(F, K, T, sigma, is_call, np.exp(-r * T))


def call_price(S, K, T, r, q, sigma) -> np.ndarray:
    """Black-Scholes-Merton call price (see :func:`price`)."""
    return price(S, K, T, r, q, sigma, True)


def put_price(S, K, T, r, q, sigma) -> np.ndarray:
    """Black-Scholes-Merton put price (see :func:`price`)."""
    return price(S, K, T, r, q, sigma, False)


@dataclass(frozen=True)
class Greeks:
    """First-order sensitivities (and gamma) of a Black-Scholes-Merton price.

    delta : dV/dS
    gamma : d2V/dS2 (per unit of S)
    vega  : dV/dsigma, per unit of volatility
    theta : dV/dt = -dV/dT, per year of calendar time
    rho   : dV/dr, per unit of rate
    """

    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


def _d1_d2(S, K, T, r, q, sigma):
    sqrt_t = np.sqrt(T)
    s = sigma * sqrt_t
    x = np.log(S / K) + (r - q) * T
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.where(s > 0, x / np.where(s > 0, s, 1.0) + 0.5 * s, np.sign(x) * np.inf)
    return d1, d1 - s, sqrt_t


def greeks(S, K, T, r, q, sigma, is_call=True) -> Greeks:
    """Delta, gamma, vega, theta and rho of a European option (see :class:`Greeks`).

    At ``sigma * sqrt(T) = 0`` the limits away from the strike are returned
    (gamma and vega 0, delta a step).
    """
    S, K, T, r, q = _market_inputs(S, K, T, r, q)
    sigma = _as_float("sigma", sigma)
    _check("sigma", sigma, nonnegative=True)
    theta_sign = _theta_sign(is_call)
    S, K, T, r, q, sigma, w = np.broadcast_arrays(S, K, T, r, q, sigma, theta_sign)
    d1, d2, sqrt_t = _d1_d2(S, K, T, r, q, sigma)
    df_q = np.exp(-q * T)
    df_r = np.exp(-r * T)
    pdf = np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI
    n_wd1 = ndtr(w * d1)
    n_wd2 = ndtr(w * d2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sv = sigma * sqrt_t
        gamma = np.where(sv > 0, df_q * pdf / (S * np.where(sv > 0, sv, 1.0)), 0.0)
        decay = np.where(sqrt_t > 0, -S * df_q * pdf * sigma / (2.0 * np.where(sqrt_t > 0, sqrt_t, 1.0)), 0.0)
    vega_ = S * df_q * pdf * sqrt_t
    theta_ = decay - w * r * K * df_r * n_wd2 + w * q * S * df_q * n_wd1
    return Greeks(
        delta=w * df_q * n_wd1,
        gamma=gamma,
        vega=vega_,
        theta=theta_,
        rho=w * K * T * df_r * n_wd2,
    )


def vega(S, K, T, r, q, sigma) -> np.ndarray:
    """dV/dsigma per unit volatility (same for calls and puts)."""
    S, K, T, r, q = _market_inputs(S, K, T, r, q)
    sigma = _as_float("sigma", sigma)
    _check("sigma", sigma, nonnegative=True)
    d1, _, sqrt_t = _d1_d2(*np.broadcast_arrays(S, K, T, r, q, sigma))
    return S * np.exp(-q * T) * np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI * sqrt_t


# ---------------------------------------------------------------------------
# "Let's be rational": rational cubic interpolation and the transformed maps


def _is_zero(v):
    return np.abs(v) < _DBL_MIN


def _rational_cubic(x, x_l, x_r, y_l, y_r, d_l, d_r, r):
    """Delbourgo-Gregory rational cubic, eq. (2.4)/(2.5); linear for r >= R_MAX."""
    h = x_r - x_l
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = (x - x_l) / h
        omt = 1.0 - t
        t2 = t * t
        omt2 = omt * omt
        cubic = (y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt) / (
            1.0 + (r - 3.0) * t * omt
        )
        linear = y_r * t + y_l * (1.0 - t)
    out = np.where(r >= _R_MAX, linear, cubic)
    return np.where(np.abs(h) <= 0, 0.5 * (y_l + y_r), out)


def _r_fit_left(x_l, x_r, y_l, y_r, d_l, d_r, second_l):
    h = x_r - x_l
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = 0.5 * h * second_l + (d_r - d_l)
        den = (y_r - y_l) / h - d_l
        r = num / den
    r = np.where(_is_zero(den), np.where(num > 0, _R_MAX, _R_MIN), r)
    return np.where(_is_zero(num), 0.0, r)


def _r_fit_right(x_l, x_r, y_l, y_r, d_l, d_r, second_r):
    h = x_r - x_l
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = 0.5 * h * second_r + (d_r - d_l)
        den = d_r - (y_r - y_l) / h
        r = num / den
    r = np.where(_is_zero(den), np.where(num > 0, _R_MAX, _R_MIN), r)
    return np.where(_is_zero(num), 0.0, r)


def _r_min(d_l, d_r, s, prefer_shape):
    """Minimum control parameter for monotonicity/convexity (Delbourgo-Gregory 3.8, 3.18)."""
    monotonic = (d_l * s >= 0) & (d_r * s >= 0)
    convex = (d_l <= s) & (s <= d_r)
    concave = (d_l >= s) & (s >= d_r)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r1 = np.where(
            monotonic,
            np.where(_is_zero(s), _R_MAX if prefer_shape else -_DBL_MAX, (d_r + d_l) / s),
            -_DBL_MAX,
        )
        d_r_m_d_l = d_r - d_l
        d_r_m_s = d_r - s
        s_m_d_l = s - d_l
        r2_shape = np.maximum(np.abs(d_r_m_d_l / d_r_m_s), np.abs(d_r_m_d_l / s_m_d_l))
        degenerate = _is_zero(s_m_d_l) | _is_zero(d_r_m_s)
        r2 = np.where(
            convex | concave,
            np.where(degenerate, _R_MAX if prefer_shape else -_DBL_MAX, r2_shape),
            np.where(monotonic & prefer_shape, _R_MAX, -_DBL_MAX),
        )
    out = np.maximum(_R_MIN, np.maximum(r1, r2))
    return np.where(~monotonic & ~convex & ~concave, _R_MIN, out)


def _convex_r_left(x_l, x_r, y_l, y_r, d_l, d_r, second_l, prefer_shape):
    r = _r_fit_left(x_l, x_r, y_l, y_r, d_l, d_r, second_l)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (y_r - y_l) / (x_r - x_l)
    return np.maximum(r, _r_min(d_l, d_r, slope, prefer_shape))


def _convex_r_right(x_l, x_r, y_l, y_r, d_l, d_r, second_r, prefer_shape):
    r = _r_fit_right(x_l, x_r, y_l, y_r, d_l, d_r, second_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (y_r - y_l) / (x_r - x_l)
    return np.maximum(r, _r_min(d_l, d_r, slope, prefer_shape))


def _f_lower_map(x, s):
    """f(s) = 2 pi/sqrt(27) |x| Phi(-z)^3 with z = |x|/(sqrt(3) s), and df/db, d2f/db2."""
    ax = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        z = ax / (_SQRT_3 * s)
        y = z * z
        s2 = s * s
        big_phi = ndtr(-z)
        small_phi = _INV_SQRT_2PI * np.exp(-0.5 * y)
        fpp = (
            (math.pi / 6.0)
            * y
            / (s2 * s)
            * big_phi
            * (8.0 * _SQRT_3 * s * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * big_phi / small_phi)
            * np.exp(2.0 * y + 0.25 * s2)
        )
        phi2 = big_phi * big_phi
        fp = 2.0 * math.pi * y * phi2 * np.exp(y + 0.125 * s2)
        f = (2.0 * math.pi / math.sqrt(27.0)) * ax * phi2 * big_phi
    fp = np.where(s <= 0, 1.0, fp)
    f = np.where(s <= 0, 0.0, f)
    return f, fp, fpp


def _inverse_f_lower_map(x, f):
    ax = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.abs(ax / (_SQRT_3 * ndtri(_SQRT_3 / np.cbrt(2.0 * math.pi) * np.cbrt(f / ax))))
    return np.where(f <= 0, 0.0, s)


def _f_upper_map(x, s):
    """f(s) = Phi(-s/2), and df/db, d2f/db2."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = (x / s) ** 2
        f = ndtr(-0.5 * s)
        fp = -0.5 * np.exp(0.5 * w)
        fpp = _SQRT_PI_OVER_2 * np.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


def _householder_factor(newton, halley, hh3):
    return (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))


# objective types of the iteration
_OBJ_LOWER, _OBJ_MIDDLE, _OBJ_UPPER = 0, 1, 2


def _initial_guess(beta, x, b_max):
    """Four-branch initial guess; returns s, s_left, s_right, objective type."""
    n = beta.size
    s = np.empty(n)
    s_left = np.full(n, _DBL_MIN)
    s_right = np.full(n, _DBL_MAX)
    obj = np.full(n, _OBJ_MIDDLE, dtype=np.int8)

    s_c = np.sqrt(np.abs(2.0 * x))
    # at s_c, h + t = 0: b_c = exp(x/2)/2 - exp(-x/2) Phi(-s_c). Only the initial guess and
    # the choice of branch use b_c, so the cancellation as x -> 0 is harmless.
    b_c = np.maximum(0.5 * b_max - ndtr(-s_c) / b_max, 0.0)
    v_c = _INV_SQRT_2PI * b_max
    lower = beta < b_c

    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # --- lower half: beta < b(s_c)
        il = np.flatnonzero(lower)
        if il.size:
            xl, bl_, bc, vc, sc = x[il], beta[il], b_c[il], v_c[il], s_c[il]
            s_l = sc - bc / vc
            b_l = _nb_otm(xl, s_l)
            lowest = bl_ < b_l
            # lowest branch
            i0 = np.flatnonzero(lowest)
            if i0.size:
                x0, be0, sl0, bl0 = xl[i0], bl_[i0], s_l[i0], b_l[i0]
                f_l, fp_l, fpp_l = _f_lower_map(x0, sl0)
                zeros = np.zeros_like(x0)
                ones = np.ones_like(x0)
                r_ll = _convex_r_right(zeros, bl0, zeros, f_l, ones, fp_l, fpp_l, True)
                f = _rational_cubic(be0, zeros, bl0, zeros, f_l, ones, fp_l, r_ll)
                bad = ~(f > 0)
                t = be0 / bl0
                f = np.where(bad, (f_l * t + bl0 * (1.0 - t)) * t, f)
                g = il[i0]
                s[g] = _inverse_f_lower_map(x0, f)
                s_right[g] = sl0
                obj[g] = _OBJ_LOWER
            # lower middle branch
            i1 = np.flatnonzero(~lowest)
            if i1.size:
                x1, be1, sl1, bl1, bc1, vc1, sc1 = xl[i1], bl_[i1], s_l[i1], b_l[i1], bc[i1], vc[i1], sc[i1]
                v_l = _nvega(x1, sl1)
                r_lm = _convex_r_right(bl1, bc1, sl1, sc1, 1.0 / v_l, 1.0 / vc1, np.zeros_like(x1), False)
                g = il[i1]
                s[g] = _rational_cubic(be1, bl1, bc1, sl1, sc1, 1.0 / v_l, 1.0 / vc1, r_lm)
                s_left[g] = sl1
                s_right[g] = sc1
        # --- upper half: beta >= b(s_c)
        iu = np.flatnonzero(~lower)
        if iu.size:
            xu, beu, bc, vc, sc, bm = x[iu], beta[iu], b_c[iu], v_c[iu], s_c[iu], b_max[iu]
            s_h = np.where(vc > _DBL_MIN, sc + (bm - bc) / vc, sc)
            b_h = _nb_otm(xu, s_h)
            middle = beu <= b_h
            i2 = np.flatnonzero(middle)
            if i2.size:
                x2, be2, sh2, bh2, bc2, vc2, sc2 = xu[i2], beu[i2], s_h[i2], b_h[i2], bc[i2], vc[i2], sc[i2]
                v_h = _nvega(x2, sh2)
                r_hm = _convex_r_left(bc2, bh2, sc2, sh2, 1.0 / vc2, 1.0 / v_h, np.zeros_like(x2), False)
                g = iu[i2]
                s[g] = _rational_cubic(be2, bc2, bh2, sc2, sh2, 1.0 / vc2, 1.0 / v_h, r_hm)
                s_left[g] = sc2
                s_right[g] = sh2
            i3 = np.flatnonzero(~middle)
            if i3.size:
                x3, be3, sh3, bh3, bm3 = xu[i3], beu[i3], s_h[i3], b_h[i3], bm[i3]
                f_h, fp_h, fpp_h = _f_upper_map(x3, sh3)
                finite = (fpp_h > -_SQRT_DBL_MAX) & (fpp_h < _SQRT_DBL_MAX)
                zeros = np.zeros_like(x3)
                halfs = np.full_like(x3, -0.5)
                r_hh = _convex_r_left(bh3, bm3, f_h, zeros, fp_h, halfs, fpp_h, True)
                f = np.where(finite, _rational_cubic(be3, bh3, bm3, f_h, zeros, fp_h, halfs, r_hh), -_DBL_MAX)
                hgap = bm3 - bh3
                t = (be3 - bh3) / hgap
                f = np.where(f <= 0, (f_h * (1.0 - t) + 0.5 * hgap * t) * (1.0 - t), f)
                g = iu[i3]
                s[g] = -2.0 * ndtri(f)
                s_left[g] = sh3
                obj[g] = np.where(be3 > 0.5 * bm3, _OBJ_UPPER, _OBJ_MIDDLE)
    return s, s_left, s_right, obj


def _step_lower(b, bp, ln_beta, b_halley, b_hh3):
    """Householder(3) step for g(s) = 1/ln b(s) - 1/ln beta (lowest branch)."""
    ln_b = np.log(b)
    bpob = bp / b
    newton = (ln_beta - ln_b) * ln_b / ln_beta / bpob
    k = 1.0 + 2.0 / ln_b
    halley = b_halley - bpob * k
    hh3 = b_hh3 + 2.0 * bpob * bpob * (1.0 + 3.0 / ln_b * (1.0 + 1.0 / ln_b)) - 3.0 * b_halley * bpob * k
    return newton * _householder_factor(newton, halley, hh3)


def _step_middle(b, bp, beta, b_halley, b_hh3):
    """Householder(3) step for g(s) = b(s) - beta (middle branches)."""
    newton = (beta - b) / bp
    return newton * _householder_factor(newton, b_halley, b_hh3)


def _step_upper(b, bp, beta, b_max, b_halley, b_hh3):
    """Householder(3) step for g(s) = ln((b_max - beta)/(b_max - b(s))) (highest branch)."""
    bmb = b_max - b
    gp = bp / bmb
    newton = -np.log((b_max - beta) / bmb) / gp
    halley = b_halley + gp
    hh3 = b_hh3 + gp * (2.0 * gp + 3.0 * b_halley)
    return newton * _householder_factor(newton, halley, hh3)


# After a Householder(3) step of relative size d from the "Let's be rational"
# guess, the remaining error is about 0.4 d^4 (measured over the whole domain):
# steps below 1e-4 leave nothing to iterate for.
_CONVERGED_STEP = 1e-4
_MAX_BISECTIONS = 60


def _refine(kind, beta, x, b_max, s, s_left, s_right, max_iterations):
    """Householder(3) iterations on one branch's objective (1-D arrays of that branch).

    An element stops once a Householder step is below 1e-4 relative (the
    error left is then ~1e-17) or after ``max_iterations`` of them; where a
    step fails (under/overflow, or it would leave the bracket) the element
    bisects its bracket and keeps iterating until the bracket is one ulp.
    """
    ln_beta = np.log(beta) if kind == _OBJ_LOWER else None
    idx = None  # None: every element is still active (no gathers on the first pass)
    steps = np.zeros(beta.size, dtype=np.int8)
    for iteration in range(max_iterations + _MAX_BISECTIONS):
        if idx is None:
            sa, sl, sr, xa, be, bm = s, s_left, s_right, x, beta, b_max
            lb = ln_beta
        else:
            if idx.size == 0:
                break
            sa, sl, sr, xa, be, bm = s[idx], s_left[idx], s_right[idx], x[idx], beta[idx], b_max[idx]
            lb = ln_beta[idx] if ln_beta is not None else None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            if iteration > 0:
                sa = np.where((sa > sl) & (sa < sr), sa, 0.5 * (sl + sr))
            b = _nb_otm(xa, sa)
            h = xa / sa
            bp = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + 0.25 * sa * sa))
            sr = np.where((b > be) & (sa < sr), sa, sr)
            sl = np.where((b < be) & (sa > sl), sa, sl)
            b_halley = h * h / sa - 0.25 * sa
            b_hh3 = b_halley * b_halley - 3.0 * (h / sa) ** 2 - 0.25
            if kind == _OBJ_LOWER:
                ds = _step_lower(b, bp, lb, b_halley, b_hh3)
                bad = (b <= 0) | (bp <= 0)
            elif kind == _OBJ_MIDDLE:
                ds = _step_middle(b, bp, be, b_halley, b_hh3)
                bad = bp <= 0
            else:
                ds = _step_upper(b, bp, be, bm, b_halley, b_hh3)
                bad = (b >= bm) | (bp <= _DBL_MIN)
            bad |= ~np.isfinite(ds)
            mid = 0.5 * (sl + sr)
            ds = np.maximum(-0.5 * sa, np.where(bad, mid - sa, ds))
            s_new = sa + ds
            # a step leaving the bracket bisects instead
            inside = (s_new >= sl) & (s_new <= sr)
            householder = ~bad & inside
            s_new = np.where(inside | ~np.isfinite(mid), s_new, mid)
            step = np.abs(s_new - sa)
        if idx is None:
            s, s_left, s_right = s_new, sl, sr
            steps += householder
            done = steps
            idx = np.arange(beta.size)
        else:
            s[idx] = s_new
            s_left[idx] = sl
            s_right[idx] = sr
            steps[idx] += householder
            done = steps[idx]
        more = np.where(householder, (step > _CONVERGED_STEP * s_new) & (done < max_iterations), step > _EPS * s_new)
        idx = idx[more]
    return s


def _normalised_iv_otm(beta, x, max_iterations=2):
    """Total vol s with b(x, s) = beta for x <= 0 and 0 < beta < exp(x/2) (1-D arrays).

    The "Let's be rational" initial guess, then at most ``max_iterations``
    Householder(3) steps on the branch's objective (Jaeckel 2015, sec. 5:
    two reach machine precision), one branch at a time.
    """
    b_max = np.exp(0.5 * x)
    s, s_left, s_right, obj = _initial_guess(beta, x, b_max)
    s = np.where(np.isfinite(s) & (s > 0), s, 0.5 * (s_left + np.minimum(s_right, 1e3)))
    for kind in (_OBJ_LOWER, _OBJ_MIDDLE, _OBJ_UPPER):
        i = np.flatnonzero(obj == kind)
        if i.size:
            s[i] = _refine(kind, beta[i], x[i], b_max[i], s[i], s_left[i], s_right[i], max_iterations)
    return s


# ---------------------------------------------------------------------------
# implied volatility

IV_REASONS = (
    "ok",
    "below_intrinsic",
    "at_intrinsic",
    "above_upper_bound",
    "invalid_price",
    "zero_expiry",
)
"""Reason codes of :func:`implied_vol_with_reason`, by integer code.

ok                : inverted; the volatility is exact to a few ulp of the input
below_intrinsic   : price below the discounted intrinsic value (or negative): NaN
at_intrinsic      : price equals intrinsic within rounding (or the out-of-the-money
                    price is 0): volatility 0.0
above_upper_bound : call >= S exp(-qT) or put >= K exp(-rT): NaN
invalid_price     : price is NaN or infinite: NaN
zero_expiry       : T = 0 and price not at intrinsic: NaN
"""
_OK, _BELOW, _AT, _ABOVE, _INVALID, _ZERO_T = range(6)
_BLOCK = 1 << 16
_REASON_ARRAY = np.array(IV_REASONS)


def _iv_core(undiscounted, F, K, T, theta):
    """Implied vol and integer reason codes from undiscounted prices (1-D arrays)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        intrinsic = np.maximum(theta * (F - K), 0.0)
        otm = undiscounted - intrinsic
        # in the money, the time value is a difference of two rounded numbers
        tol = np.where(intrinsic > 0, 4.0 * _EPS * np.maximum(np.abs(undiscounted), np.maximum(F, K)), 0.0)
        beta = otm / np.sqrt(F * K)
        x_otm = -np.abs(np.log(F / K))
    return _iv_classified(otm, tol, beta, x_otm, T)


def _iv_classified(otm, tol, beta, x_otm, T):
    """Classify (see IV_REASONS) and invert the out-of-the-money normalised prices.

    ``otm`` is the out-of-the-money (time value) part in price units, ``tol``
    the rounding tolerance for "at intrinsic", ``beta`` the normalised
    out-of-the-money price and ``x_otm = -|ln(F/K)|``.
    """
    n = otm.size
    vol = np.full(n, np.nan)
    code = np.full(n, _OK, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore"):
        b_max = np.exp(0.5 * x_otm)
    invalid = ~np.isfinite(otm)
    at = ~invalid & ((np.abs(otm) <= tol) | (otm == 0) | ((otm > 0) & (beta == 0)))
    below = ~invalid & ~at & (otm < 0)
    above = ~invalid & ~at & ~below & (beta >= b_max)
    zero_t = ~invalid & ~at & ~below & ~above & (T <= 0)
    code[invalid] = _INVALID
    code[below] = _BELOW
    code[above] = _ABOVE
    code[zero_t] = _ZERO_T
    code[at] = _AT
    vol[at] = 0.0
    ok = np.flatnonzero(code == _OK)
    # blocks that stay in cache make the elementwise chains ~1.5x faster
    for start in range(0, ok.size, _BLOCK):
        i = ok[start : start + _BLOCK]
        vol[i] = _normalised_iv_otm(beta[i], x_otm[i]) / np.sqrt(T[i])
    return vol, code


def _prepare_iv(price_, F, K, T, discount, is_call):
    theta = _theta_sign(is_call)
    arrays = np.broadcast_arrays(price_, F, K, T, discount, theta)
    shape = arrays[0].shape
    p, F, K, T, discount, theta = (a.ravel() for a in arrays)
    return shape, p / discount, F, K, T, theta


def implied_vol_black_with_reason(price, F, K, T, is_call=True, discount=1.0, *, as_codes=False):
    """Black-76 implied volatility and reason codes (see :data:`IV_REASONS`).

    ``price`` is the option price discounted with ``discount``; ``F`` the
    forward, ``T`` years. Returns ``(vol, reason)`` arrays of the broadcast
    shape, ``reason`` as strings, or with ``as_codes`` as int8 indices into
    :data:`IV_REASONS` (1 byte per option instead of 68).
    """
    vol, code, shape = _implied_vol_black_codes(price, F, K, T, is_call, discount)
    reason = code if as_codes else _REASON_ARRAY[code]
    return vol.reshape(shape), reason.reshape(shape)


def _implied_vol_black_codes(price_, F, K, T, is_call, discount):
    price_ = _as_float("price", price_)
    F = _as_float("F", F)
    K = _as_float("K", K)
    T = _as_float("T", T)
    discount = _as_float("discount", discount)
    _check("F", F, positive=True)
    _check("K", K, positive=True)
    _check("T", T, nonnegative=True)
    _check("discount", discount, positive=True)
    shape, undiscounted, F, K, T, theta = _prepare_iv(price_, F, K, T, discount, is_call)
    vol, code = _iv_core(undiscounted, F, K, T, theta)
    return vol, code, shape


def implied_vol_black(price, F, K, T, is_call=True, discount=1.0) -> np.ndarray:
    """Black-76 implied volatility; NaN outside the no-arbitrage bounds."""
    vol, _, shape = _implied_vol_black_codes(price, F, K, T, is_call, discount)
    return vol.reshape(shape)


def _bsm_to_black(price_, S, K, T, r, q):
    price_ = _as_float("price", price_)
    S, K, T, r, q = _market_inputs(S, K, T, r, q)
    F = S * np.exp((r - q) * T)
    return price_, F, K, T, np.exp(-r * T)


def implied_vol_with_reason(price, S, K, T, r=0.0, q=0.0, is_call=True, *, as_codes=False):
    """Black-Scholes-Merton implied volatility with a reason code per option.

    Returns ``(vol, reason)``: ``vol`` per square-root year (NaN where the
    price violates the no-arbitrage bounds, 0.0 at intrinsic) and ``reason``
    a string array of :data:`IV_REASONS` entries (int8 indices into it with
    ``as_codes``), both of the broadcast shape.
    """
    price_, F, K, T, discount = _bsm_to_black(price, S, K, T, r, q)
    return implied_vol_black_with_reason(price_, F, K, T, is_call, discount, as_codes=as_codes)


def implied_vol(price, S, K, T, r=0.0, q=0.0, is_call=True) -> np.ndarray:
    """Black-Scholes-Merton implied volatility (per square-root year).

    Exact to a few ulp of what the price determines, deep in and out of the
    money; NaN outside the no-arbitrage bounds (see
    :func:`implied_vol_with_reason` for why).
    """
    price_, F, K, T, discount = _bsm_to_black(price, S, K, T, r, q)
    vol, _, shape = _implied_vol_black_codes(price_, F, K, T, is_call, discount)
    return vol.reshape(shape)


def normalised_implied_vol(beta, x, is_call=True) -> np.ndarray:
    """Total volatility ``s`` with ``normalised_black(x, s, is_call) == beta``."""
    beta = _as_float("beta", beta)
    x = _as_float("x", x)
    _check("x", x)
    theta = _theta_sign(is_call)
    beta, x, theta = np.broadcast_arrays(beta, x, theta)
    shape = beta.shape
    beta, x, theta = beta.ravel(), x.ravel(), theta.ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        intrinsic = np.where(theta * x > 0, 2.0 * np.sinh(0.5 * np.abs(x)), 0.0)
        otm = beta - intrinsic
        tol = np.where(intrinsic > 0, 4.0 * _EPS * np.maximum(np.abs(beta), np.exp(0.5 * np.abs(x))), 0.0)
    vol, _ = _iv_classified(otm, tol, otm, -np.abs(x), np.ones_like(beta))
    return vol.reshape(shape)
