"""Heston (1993) stochastic volatility: characteristic function, surface prices
and their analytic gradient.

What
    Under the pricing measure the spot and its variance follow::

        dS/S = (r - q) dt + sqrt(v) dW1,
        dv   = kappa (theta - v) dt + sigma sqrt(v) dW2,   d<W1, W2> = rho dt,

    with ``v0`` the initial variance (per year), ``kappa`` the mean-reversion
    speed (per year), ``theta`` the long-run variance, ``sigma`` the vol of
    variance and ``rho`` the spot/variance correlation. This module prices
    European calls and puts for a whole surface of quotes (strikes ``K`` and
    maturities ``T`` in years) at once, and returns the gradient of every
    price with respect to ``(v0, kappa, theta, sigma, rho)``.

Why
    Heston is calarb's surface model: it is recalibrated against every
    options chain (differential evolution, then Levenberg-Marquardt), so
    surface prices and their Jacobian must be exact (the calibration's
    residuals are small differences of prices) and fast (hundreds of quotes,
    thousands of evaluations).

How
    * Characteristic function of ``ln(S_T/F_T)`` in the "little Heston trap"
      form of Albrecher, Mayer, Schoutens and Tistaert (2007, Wilmott
      Magazine Jan 2007:83-92), which stays on the principal branch of the
      complex logarithm for all parameters (the 1993 form jumps branches for
      long maturities; Kahl-Jaeckel's K=200, T=10 case is the classic test).
      ``xi - d`` is evaluated as ``-sigma^2 (u^2 + iu)/(xi + d)`` to avoid
      cancellation.
    * Prices from Lewis's (2001) single integral along Im(u) = -1/2, with a
      Black-Scholes control variate at the expected average variance
      (Andersen & Piterbarg 2010; QuantLib's AnalyticHestonEngine does the
      same)::

          C = C_BS(sigma_cv) + D sqrt(F K)/pi * int_0^inf
              Re[exp(i w x) (phi_BS(w - i/2) - phi(w - i/2))] / (w^2 + 1/4) dw

      with ``x = ln(F/K)``; puts use the same correction on the Black-Scholes
      put, so out-of-the-money puts and calls are both computed directly,
      never through parity.
    * Quadrature: the integrand is truncated where ``|phi| w/(w^2+1/4)``
      (plus the control variate's) falls below ``tol`` for good, found per
      maturity on a geometric scan of ``w``. ``[0, L]`` is split into panels
      growing geometrically from ``w = 1`` (the 1/(w^2+1/4) pole sits at
      ``i/2``), and each panel into equal pieces of 16 Gauss-Legendre nodes,
      as many as the integrand's rate of change requires: ``|x|`` for
      ``exp(i w x)``, the largest ``|d ln phi/dw|`` seen on the scan (decay
      and phase of phi) and the Gaussian's ``v T w``. The error of 16 nodes
      over R radians is about (R/4)^32/32!, so pieces span the R that meets
      ``tol`` relative to the integrand's size on that panel: far in the
      tail, where the integrand is tiny, pieces are longer. The
      characteristic function is evaluated once per maturity and node and
      shared by all strikes of that maturity; each quote then costs one
      cosine and one sine per node of its own maturity. A maturity gets at
      most 2048 pieces: only degenerate corners (a day to expiry, tiny v0,
      large sigma, strikes far away) ask for more, and are integrated less
      accurately rather than with millions of nodes.
    * Gradient: the derivatives of ``ln phi`` with respect to the five
      parameters are differentiated analytically through the little-trap
      form and integrated with the same nodes.

Accuracy: absolute price errors are about ``1e-13 * sqrt(F K)`` at the default
``tol`` (tests check the published Fang-Oosterlee, Lewis and Kahl-Jaeckel values
and QuantLib on random parameters); relative accuracy of prices far below that
is not promised. Prices are clipped to the no-arbitrage bounds, so a deep
out-of-the-money price is never negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models import black_scholes as _bs

__all__ = [
    "HestonError",
    "HestonParams",
    "PARAM_NAMES",
    "characteristic_function",
    "characteristic_function_gradient",
    "feller_ratio",
    "feller_satisfied",
    "price",
    "price_and_gradient",
]

PARAM_NAMES = ("v0", "kappa", "theta", "sigma", "rho")
"""Order of the parameters in gradients and in :meth:`HestonParams.as_array`."""


class HestonError(ValueError):
    """Invalid argument to a Heston function; the message names it."""


@dataclass(frozen=True)
class HestonParams:
    """Heston parameters (variances per year, rates per year).

    v0    : initial variance (>= 0)
    kappa : mean-reversion speed of the variance (> 0)
    theta : long-run variance (> 0)
    sigma : volatility of the variance (> 0)
    rho   : correlation of spot and variance shocks (-1 < rho < 1)
    """

    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float

    def __post_init__(self):
        for name in PARAM_NAMES:
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError) as exc:
                raise HestonError(f"{name} must be a number, got {value!r}") from exc
            if not math.isfinite(value):
                raise HestonError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if self.v0 < 0:
            raise HestonError(f"v0 must be >= 0, got {self.v0!r}")
        for name in ("kappa", "theta", "sigma"):
            if not getattr(self, name) > 0:
                raise HestonError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not -1.0 < self.rho < 1.0:
            raise HestonError(f"rho must be in (-1, 1), got {self.rho!r}")

    def as_array(self) -> np.ndarray:
        """``[v0, kappa, theta, sigma, rho]``."""
        return np.array([self.v0, self.kappa, self.theta, self.sigma, self.rho])

    @classmethod
    def from_array(cls, values) -> "HestonParams":
        """Inverse of :meth:`as_array`."""
        values = np.asarray(values, dtype=float).ravel()
        if values.size != 5:
            raise HestonError(f"params must have 5 entries {PARAM_NAMES}, got {values.size}")
        return cls(*values)

    @property
    def feller_ratio(self) -> float:
        """``2 kappa theta / sigma^2``; >= 1 keeps the variance away from zero."""
        return feller_ratio(self.kappa, self.theta, self.sigma)

    @property
    def feller_satisfied(self) -> bool:
        """Whether the Feller condition ``2 kappa theta >= sigma^2`` holds."""
        return bool(self.feller_ratio >= 1.0)


def feller_ratio(kappa, theta, sigma):
    """``2 kappa theta / sigma^2`` (vectorised); the Feller condition is ratio >= 1."""
    kappa = np.asarray(kappa, dtype=float)
    theta = np.asarray(theta, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    return 2.0 * kappa * theta / (sigma * sigma)


def feller_satisfied(kappa, theta, sigma):
    """Feller condition ``2 kappa theta >= sigma^2`` (vectorised)."""
    return feller_ratio(kappa, theta, sigma) >= 1.0


def _params(params) -> HestonParams:
    if isinstance(params, HestonParams):
        return params
    if isinstance(params, dict):
        try:
            return HestonParams(**params)
        except TypeError as exc:
            raise HestonError(f"params must have keys {PARAM_NAMES}: {exc}") from exc
    return HestonParams.from_array(params)


# ---------------------------------------------------------------------------
# characteristic function (little Heston trap)


def _cf_parts(u, T, p: HestonParams):
    """Building blocks of ln phi(u) for complex u, broadcasting u with T."""
    kappa, theta, sigma, rho = p.kappa, p.theta, p.sigma, p.rho
    iu = 1j * u
    beta = u * u + iu
    xi = kappa - sigma * rho * iu
    d = np.sqrt(xi * xi + sigma * sigma * beta)
    s = xi + d
    m = -sigma * sigma * beta / s  # = xi - d without cancellation
    g = m / s
    e = np.exp(-d * T)
    one_minus_ge = 1.0 - g * e
    one_minus_g = 2.0 * d / s  # = 1 - g
    a = -beta / s  # = (xi - d)/sigma^2
    big_d = a * (1.0 - e) / one_minus_ge
    big_l = np.log(one_minus_ge / one_minus_g)
    kts = kappa * theta / (sigma * sigma)
    big_c = kts * (m * T - 2.0 * big_l)
    return dict(
        iu=iu, beta=beta, xi=xi, d=d, s=s, m=m, g=g, e=e, one_minus_ge=one_minus_ge,
        one_minus_g=one_minus_g, a=a, big_d=big_d, big_l=big_l, kts=kts, big_c=big_c,
    )


def characteristic_function(u, T, params) -> np.ndarray:
    """``E[exp(i u ln(S_T/F_T))]`` for complex ``u`` and ``T`` in years (broadcast).

    The forward ``F_T = S exp((r-q)T)`` carries the drift, so the result
    does not depend on rates; ``phi(-i) = 1``.
    """
    p = _params(params)
    u = np.asarray(u, dtype=complex)
    T = np.asarray(T, dtype=float)
    if np.any(T < 0):
        raise HestonError("T must be >= 0")
    parts = _cf_parts(u, T, p)
    return np.exp(parts["big_c"] + p.v0 * parts["big_d"])


def _ln_cf_gradient(T, p: HestonParams, parts):
    """d ln phi / d (v0, kappa, theta, sigma, rho), stacked on a new first axis."""
    kappa, theta, sigma, rho = p.kappa, p.theta, p.sigma, p.rho
    iu, beta, xi, d, s, m = parts["iu"], parts["beta"], parts["xi"], parts["d"], parts["s"], parts["m"]
    g, e, omge, omg, a = parts["g"], parts["e"], parts["one_minus_ge"], parts["one_minus_g"], parts["a"]
    big_l, kts, big_d = parts["big_l"], parts["kts"], parts["big_d"]
    one_minus_e = 1.0 - e
    grads = [big_d, None, (kappa / (sigma * sigma)) * (m * T - 2.0 * big_l), None, None]

    def through(xi_p, sigma_p, kts_p):
        d_p = (xi * xi_p + sigma * sigma_p * beta) / d
        s_p = xi_p + d_p
        m_p = xi_p - d_p
        g_p = (m_p * s - m * s_p) / (s * s)
        e_p = -T * d_p * e
        a_p = beta * s_p / (s * s)
        ge_p = g_p * e + g * e_p
        big_d_p = a_p * one_minus_e / omge + a * (-e_p * omge + one_minus_e * ge_p) / (omge * omge)
        big_l_p = -ge_p / omge + g_p / omg
        big_c_p = kts_p * (m * T - 2.0 * big_l) + kts * (m_p * T - 2.0 * big_l_p)
        return big_c_p + p.v0 * big_d_p

    grads[1] = through(1.0, 0.0, theta / (sigma * sigma))
    grads[3] = through(-rho * iu, 1.0, -2.0 * kappa * theta / sigma**3)
    grads[4] = through(-sigma * iu, 0.0, 0.0)
    return np.stack(np.broadcast_arrays(*grads))


def characteristic_function_gradient(u, T, params):
    """``(phi, dphi)``: the characteristic function and its derivatives.

    ``dphi[k]`` is ``d phi / d PARAM_NAMES[k]``; shape ``(5,) + phi.shape``.
    """
    p = _params(params)
    u = np.asarray(u, dtype=complex)
    T = np.asarray(T, dtype=float)
    parts = _cf_parts(u, T, p)
    phi = np.exp(parts["big_c"] + p.v0 * parts["big_d"])
    return phi, phi * _ln_cf_gradient(T, p, parts)


# ---------------------------------------------------------------------------
# quadrature plan


def _gl_unit(n):
    z, w = np.polynomial.legendre.leggauss(n)
    z = 0.5 * (z + 1.0)  # nodes on [0, 1]
    w = 0.5 * w
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


# Quadrature layout. Every piece carries the same 16-node Gauss-Legendre rule,
# so the whole plan is one (pieces x nodes) array. Panels grow geometrically
# from w = 1 (the integrand's 1/(w^2 + 1/4) pole sits at w = i/2; a panel
# [a, 4a] sees it far enough away for 16 nodes to reach ~1e-16) and a panel is
# cut into pieces short enough for the oscillation exp(i w x): the error of n
# Gauss-Legendre nodes over R radians of an exponential is about
# (R/4)^(2n)/(2n)!, so pieces span R = 4 ((2n)! eps_rel)^(1/2n) radians, where
# eps_rel = tol / (size of the integrand on the panel): far out in the tail,
# where the integrand is tiny, pieces get longer.
_NODES_PER_PIECE = 16
_GL_Z, _GL_W = _gl_unit(_NODES_PER_PIECE)
_PANEL_RATIO = 4.0
_LOG_FACT_2N = math.lgamma(2 * _NODES_PER_PIECE + 1)
_MAX_RADIANS = 0.8 * math.pi * _NODES_PER_PIECE  # keep >= 1.25 nodes per half wave
_MAX_PIECES = 2048  # per maturity (32768 nodes)
_SCAN = 2.0 ** np.arange(-2.0, 24.0, 0.5)  # truncation scan, w from 0.25 to 2^23.5
_SCAN.setflags(write=False)


@dataclass(frozen=True)
class _Plan:
    """Quadrature pieces of all maturities, flat and grouped by maturity.

    Piece ``k`` of maturity ``t`` is row ``start[t] + k``; its nodes are
    ``left + width * z`` with the Gauss-Legendre ``z`` on [0, 1]. Pieces of
    one panel share a width, so ``exp(i w x)`` factors into
    ``exp(i left x)`` (per piece) times ``exp(i width z x)`` (per panel).
    """

    T: np.ndarray  # (n_pieces,) maturity of each piece (years)
    left: np.ndarray  # (n_pieces,) left end of each piece
    panel: np.ndarray  # (n_pieces,) panel of each piece within its maturity
    w: np.ndarray  # (n_pieces, n_nodes) nodes on the real axis
    weight: np.ndarray  # (n_pieces, n_nodes) quadrature weight / (w^2 + 1/4)
    start: np.ndarray  # (n_maturities,) first piece of each maturity
    pieces: np.ndarray  # (n_maturities,) pieces per maturity
    panel_width: np.ndarray  # (n_maturities, n_panels) piece width in each panel (0 if empty)
    vbar: np.ndarray  # (n_maturities,) control-variate variance


def _plan(T_unique, x_abs_max, p: HestonParams, tol) -> _Plan:
    n_t = T_unique.size
    T_col = T_unique[:, None]
    kt = p.kappa * T_unique
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(kt > 1e-8, -np.expm1(-kt) / kt, 1.0 - 0.5 * kt)
    vbar = np.maximum(p.theta + (p.v0 - p.theta) * decay, 1e-12)
    vt = vbar * T_unique
    parts = _cf_parts(_SCAN[None, :] - 0.5j, T_col, p)
    ln_phi = parts["big_c"] + p.v0 * parts["big_d"]
    per_log_w = _SCAN / (_SCAN * _SCAN + 0.25)  # integral per unit of ln w
    mag_phi = np.exp(ln_phi.real) * per_log_w
    mag_gauss = np.exp(-0.5 * vt[:, None] * (_SCAN * _SCAN + 0.25)) * per_log_w

    def tail_max(a):  # the largest value at or beyond each scan point
        return np.maximum.accumulate(a[:, ::-1], axis=1)[:, ::-1]

    tail_phi = tail_max(mag_phi)
    tail_gauss = tail_max(mag_gauss)
    above = tail_phi + tail_gauss > tol
    # truncate one scan step after the last point above tol
    last = np.where(above.any(axis=1), above.sum(axis=1) - 1, 0)
    length = _SCAN[np.minimum(last + 1, _SCAN.size - 1)]

    # Widest piece allowed on each scan interval [w_i, w_i+1], for each part of the
    # integrand: a part of size m changing at rate k (|d ln/dw|, plus |x| for
    # exp(i w x)) needs pieces of at most R(tol/m)/k, R(eps) = 4 ((2n)! eps)^(1/2n).
    def radians(size):
        eps_rel = np.clip(tol / np.maximum(size, 1e-300), 1e-300, 1.0)
        return np.minimum(4.0 * np.exp((np.log(eps_rel) + _LOG_FACT_2N) / (2 * _NODES_PER_PIECE)), _MAX_RADIANS)

    x_col = x_abs_max[:, None]
    rate_phi = np.abs(np.diff(ln_phi, axis=1)) / np.diff(_SCAN)
    rate_gauss = vt[:, None] * _SCAN[1:]
    with np.errstate(divide="ignore"):
        width_phi = radians(tail_phi[:, :-1]) / (x_col + rate_phi)
        width_gauss = radians(tail_gauss[:, :-1]) / (x_col + rate_gauss)
    # a part already below tol on and beyond an interval cannot cost more than tol there
    width = np.minimum(
        np.where(tail_phi[:, :-1] > tol, width_phi, np.inf), np.where(tail_gauss[:, :-1] > tol, width_gauss, np.inf)
    )

    # panels [0, 1], [1, 4], [4, 16], ... clipped at L (empty beyond it), each cut into
    # equal pieces no wider than the narrowest allowed on its scan intervals (the last
    # panel also looks beyond L, which is conservative)
    n_panels = 1 + max(0, math.ceil(math.log(float(length.max())) / math.log(_PANEL_RATIO) - 1e-12))
    bounds = np.concatenate(([0.0], _PANEL_RATIO ** np.arange(n_panels)))
    edges = np.minimum(bounds[None, :], length[:, None])
    edges[:, -1] = length
    span = np.diff(edges, axis=1)  # (n_t, n_panels)
    first_scan = np.clip(np.searchsorted(_SCAN, edges[:, :-1]), 0, _SCAN.size - 2)
    flat = first_scan + (_SCAN.size - 1) * np.arange(n_t)[:, None]
    width = np.where(np.isnan(width), np.inf, width)  # a NaN characteristic function shows in the price
    panel_width = np.minimum.reduceat(width.ravel(), flat.ravel()).reshape(n_t, n_panels)
    pieces = np.where(span > 0, np.maximum(1, np.ceil(span / panel_width)), 0)
    # degenerate corners (days to expiry, tiny v0, large sigma, far strikes) can ask for
    # millions of nodes; cap the work per maturity and accept a looser integral there
    need = pieces.sum(axis=1, keepdims=True)
    pieces = np.where(need > _MAX_PIECES, np.maximum(np.floor(pieces * (_MAX_PIECES / need)), 1), pieces)
    pieces = np.where(span > 0, pieces, 0).astype(int)
    per_t = pieces.sum(axis=1)
    piece_width = np.where(pieces > 0, span / np.maximum(pieces, 1), 0.0)
    # one row per piece, maturity by maturity, panel by panel
    counts = pieces.ravel()
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    j = np.arange(total) - first  # index of the piece inside its panel
    width = np.repeat(piece_width.ravel(), counts)
    left = np.repeat(edges[:, :-1].ravel(), counts) + j * width
    nodes = left[:, None] + width[:, None] * _GL_Z[None, :]
    return _Plan(
        T=np.repeat(np.repeat(T_unique, n_panels), counts),
        left=left,
        panel=np.repeat(np.tile(np.arange(n_panels), n_t), counts),
        w=nodes,
        weight=width[:, None] * _GL_W[None, :] / (nodes * nodes + 0.25),
        start=np.cumsum(per_t) - per_t,
        pieces=per_t,
        panel_width=piece_width,
        vbar=vbar,
    )


# ---------------------------------------------------------------------------
# prices


def _prepare(S, K, T, r, q, is_call):
    try:
        S = np.asarray(S, dtype=float)
        K = np.asarray(K, dtype=float)
        T = np.asarray(T, dtype=float)
        r = np.asarray(r, dtype=float)
        q = np.asarray(q, dtype=float)
    except (TypeError, ValueError) as exc:
        raise HestonError(f"S, K, T, r, q must be numeric: {exc}") from exc
    for name, arr in (("S", S), ("K", K), ("T", T), ("r", r), ("q", q)):
        if not np.all(np.isfinite(arr)):
            raise HestonError(f"{name} must be finite")
    if not np.all(S > 0):
        raise HestonError("S must be > 0")
    if not np.all(K > 0):
        raise HestonError("K must be > 0")
    if not np.all(T > 0):
        raise HestonError("T must be > 0 (years)")
    flag = np.asarray(is_call)
    if flag.dtype.kind not in "biu":
        raise HestonError(f"is_call must be boolean, got dtype {flag.dtype}")
    S, K, T, r, q, flag = np.broadcast_arrays(S, K, T, r, q, flag.astype(bool))
    shape = K.shape
    return shape, S.ravel(), K.ravel(), T.ravel(), r.ravel(), q.ravel(), flag.ravel()


def _integrate(S, K, T, r, q, is_call, p: HestonParams, tol, with_gradient):
    T_unique, t_index = np.unique(T, return_inverse=True)
    F = S * np.exp((r - q) * T)
    D = np.exp(-r * T)
    x = np.log(F / K)
    x_abs_max = np.zeros(T_unique.size)
    np.maximum.at(x_abs_max, t_index, np.abs(x))
    plan = _plan(T_unique, x_abs_max, p, tol)
    T_col = plan.T[:, None]
    parts = _cf_parts(plan.w - 0.5j, T_col, p)
    phi = np.exp(parts["big_c"] + p.v0 * parts["big_d"])
    vbar_piece = np.repeat(plan.vbar, plan.pieces)[:, None]
    phi_bs = np.exp(-0.5 * vbar_piece * T_col * (plan.w * plan.w + 0.25))
    diff = (phi_bs - phi) * plan.weight  # (n_pieces, n_nodes)
    # exp(i w x) = exp(i left x) exp(i width z x): the second factor once per quote and
    # panel, the first once per quote and piece (instead of one per quote and node)
    zx = plan.panel_width[t_index][:, :, None] * (_GL_Z[None, None, :] * x[:, None, None])
    z_cos, z_sin = np.cos(zx), np.sin(zx)  # (n_quotes, n_panels, n_nodes)
    counts = plan.pieces[t_index]
    starts = np.cumsum(counts) - counts
    q_of = np.repeat(np.arange(x.size), counts)
    piece = np.repeat(plan.start[t_index] - starts, counts) + np.arange(q_of.size)
    panel = plan.panel[piece]
    zc, zs = z_cos[q_of, panel], z_sin[q_of, panel]  # (n_pairs, n_nodes)
    theta = plan.left[piece] * x[q_of]
    c0, s0 = np.cos(theta), np.sin(theta)

    def project(d):
        """sum over nodes of Re[exp(i w x) d] for each (quote, piece) pair; d (..., n_pairs, n_nodes)."""
        re = np.einsum("ij,...ij->...i", zc, d.real) - np.einsum("ij,...ij->...i", zs, d.imag)
        im = np.einsum("ij,...ij->...i", zc, d.imag) + np.einsum("ij,...ij->...i", zs, d.real)
        return c0 * re - s0 * im

    integral = np.add.reduceat(project(diff[piece]), starts)
    scale = D * np.sqrt(F * K) / np.pi
    s_cv = np.sqrt(plan.vbar[t_index] * T)  # control variate's total vol
    value = _bs._black_unchecked(F, K, s_cv, np.where(is_call, 1.0, -1.0), D) + scale * integral
    # the quadrature is accurate to ~1e-13 sqrt(FK); keep prices inside the no-arbitrage bounds
    lower = D * np.maximum(np.where(is_call, F - K, K - F), 0.0)
    upper = D * np.where(is_call, F, K)
    value = np.clip(value, lower, upper)
    if not with_gradient:
        return value, None
    dln = _ln_cf_gradient(T_col, p, parts)  # (5, n_pieces, n_nodes)
    dphi = (phi * plan.weight)[None] * dln
    grad = -np.add.reduceat(project(dphi[:, piece]), starts, axis=1).T * scale[:, None]
    return value, grad


def price(S, K, T, r, q, params, is_call=True, *, tol=1e-14) -> np.ndarray:
    """Heston prices of European options for a whole surface of quotes.

    ``K`` (strikes), ``T`` (years), ``is_call`` and, if they vary, ``S``,
    ``r`` and ``q`` broadcast against each other; each element is one quote.
    ``params`` is a :class:`HestonParams`, a dict or ``[v0, kappa, theta,
    sigma, rho]``. ``tol`` is the truncation level of the integrand relative
    to ``sqrt(F K)``.
    """
    p = _params(params)
    shape, S, K, T, r, q, is_call = _prepare(S, K, T, r, q, is_call)
    value, _ = _integrate(S, K, T, r, q, is_call, p, tol, False)
    return value.reshape(shape)


def price_and_gradient(S, K, T, r, q, params, is_call=True, *, tol=1e-14):
    """Prices and their gradient with respect to ``(v0, kappa, theta, sigma, rho)``.

    Returns ``(price, grad)`` with ``grad.shape == price.shape + (5,)``, the
    last axis in :data:`PARAM_NAMES` order. The gradient is analytic (the
    characteristic function differentiated through the little-trap form),
    integrated with the same nodes as the prices.
    """
    p = _params(params)
    shape, S, K, T, r, q, is_call = _prepare(S, K, T, r, q, is_call)
    value, grad = _integrate(S, K, T, r, q, is_call, p, tol, True)
    return value.reshape(shape), grad.reshape(shape + (5,))
