"""Ornstein-Uhlenbeck mean reversion: exact maximum-likelihood fit, standard
errors, exact simulation and optimal trading bands.

What
    ``dX = kappa (theta - X) dt + sigma dW``: ``kappa`` is the mean-reversion
    speed (per unit of ``dt``, usually per year), ``theta`` the long-run mean
    (units of X), ``sigma`` the diffusion (units of X per square root of the
    time unit), half-life ``ln 2 / kappa`` (time units) and stationary
    standard deviation ``sigma / sqrt(2 kappa)``.

Why
    calarb's mean-reversion signals trade spreads (pairs residuals, model vs
    market vol) that revert; the fitted speed decides whether a spread is
    worth trading (a half-life of weeks is not), and the bands decide when
    to enter and leave.

How
    * Fit. Sampled every ``dt`` the process is exactly an AR(1)::

          X[t+1] = a + b X[t] + e,  b = exp(-kappa dt),  a = theta (1 - b),
          e ~ N(0, s^2),  s^2 = sigma^2 (1 - b^2) / (2 kappa),

      so the likelihood conditional on the first observation is maximised in
      closed form by least squares of ``X[t+1]`` on ``(1, X[t])`` with
      ``s^2 = SSR/n`` (no Euler discretisation error at any ``dt``). Standard
      errors come from the inverse Fisher information of ``(a, b, s^2)``
      (``s^2 (X'X)^-1`` and ``2 s^4 / n``) mapped to ``(kappa, theta, sigma)``
      and the half-life by the delta method. Conditioning on ``X[0]`` changes
      the estimate by O(1/n) against the full stationary likelihood.
    * Bands. Bertram (2010), "Analytic solutions for optimal statistical
      arbitrage trading", Physica A 389(11):2234-2243: enter long at
      ``theta - u``, exit at ``theta + u`` (and the mirror for shorts),
      paying ``cost`` (round trip, units of X) per trade. The expected return
      per unit time ``(2u - cost) / E[cycle]`` with
      ``E[cycle] = (pi/kappa) (erfi(u k) - erfi(-u k))``, ``k = sqrt(kappa)/sigma``,
      is maximised where ``D(z) = z - cost k / 2`` with ``z = u k`` and ``D``
      Dawson's function (``erfi(z) = 2/sqrt(pi) exp(z^2) D(z)``), solved by
      safeguarded Newton for every element at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter
from scipy.special import dawsn

__all__ = [
    "OUError",
    "OUFit",
    "OUBands",
    "bertram_bands",
    "fit_ou",
    "simulate_ou",
]

_LN2 = math.log(2.0)


class OUError(ValueError):
    """Invalid argument to an OU function, or data without mean reversion."""


@dataclass(frozen=True)
class OUFit:
    """Exact maximum-likelihood OU fit (see :func:`fit_ou`).

    kappa, theta, sigma, half_life : estimates (time unit of ``dt``)
    se_kappa, se_theta, se_sigma, se_half_life : asymptotic standard errors
    cov     : 3x3 covariance of (kappa, theta, sigma)
    ar_a, ar_b, ar_s2 : the AR(1) intercept, slope and innovation variance
    loglik  : conditional log-likelihood at the optimum
    n       : number of transitions used; dt : sampling step
    """

    kappa: float
    theta: float
    sigma: float
    half_life: float
    se_kappa: float
    se_theta: float
    se_sigma: float
    se_half_life: float
    cov: np.ndarray = field(repr=False)
    ar_a: float
    ar_b: float
    ar_s2: float
    loglik: float
    n: int
    dt: float

    @property
    def stationary_std(self) -> float:
        """Standard deviation of X around theta in the long run, ``sigma/sqrt(2 kappa)``."""
        return self.sigma / math.sqrt(2.0 * self.kappa)


def fit_ou(x, dt: float) -> OUFit:
    """Exact (conditional) maximum-likelihood fit of an OU process.

    ``x`` are observations equally spaced by ``dt`` (> 0; e.g. 1/252 for
    daily data with rates per year). Raises :class:`OUError` if the data
    show no mean reversion (AR slope outside (0, 1)).
    """
    try:
        x = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise OUError(f"x must be numeric: {exc}") from exc
    try:
        dt = float(dt)
    except (TypeError, ValueError) as exc:
        raise OUError(f"dt must be a number, got {dt!r}") from exc
    if not (dt > 0 and math.isfinite(dt)):
        raise OUError(f"dt must be > 0, got {dt!r}")
    if x.size < 4:
        raise OUError(f"x needs at least 4 observations, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise OUError("x must be finite (found NaN or inf)")
    prev, nxt = x[:-1], x[1:]
    n = prev.size
    # centre for numerical stability of the normal equations
    m_prev, m_next = prev.mean(), nxt.mean()
    dp = prev - m_prev
    dn = nxt - m_next
    sxx = float(dp @ dp)
    if sxx <= 0:
        raise OUError("x is constant: no mean reversion to estimate")
    b = float(dp @ dn) / sxx
    a = m_next - b * m_prev
    resid = dn - b * dp
    s2 = float(resid @ resid) / n
    if not 0.0 < b < 1.0:
        raise OUError(f"x shows no mean reversion at this dt (AR(1) slope b = {b:.6g}, needs 0 < b < 1)")
    if not s2 > 0:
        raise OUError("x is exactly autoregressive (zero residual variance)")
    kappa = -math.log(b) / dt
    theta = a / (1.0 - b)
    sigma2 = s2 * 2.0 * kappa / (1.0 - b * b)
    sigma = math.sqrt(sigma2)
    # covariance of (a, b, s2): s2 (X'X)^-1 for (a, b), 2 s2^2/n for s2
    sum_x = float(prev.sum())
    sum_xx = float(prev @ prev)
    det = n * sum_xx - sum_x * sum_x
    cov_ab = s2 / det * np.array([[sum_xx, -sum_x], [-sum_x, n]])
    cov_abs = np.zeros((3, 3))
    cov_abs[:2, :2] = cov_ab
    cov_abs[2, 2] = 2.0 * s2 * s2 / n
    # Jacobian of (kappa, theta, sigma) with respect to (a, b, s2)
    ln_b = math.log(b)
    jac = np.zeros((3, 3))
    jac[0, 1] = -1.0 / (b * dt)
    jac[1, 0] = 1.0 / (1.0 - b)
    jac[1, 1] = a / (1.0 - b) ** 2
    jac[2, 1] = sigma * 0.5 * (1.0 / (b * ln_b) + 2.0 * b / (1.0 - b * b))
    jac[2, 2] = sigma / (2.0 * s2)
    cov = jac @ cov_abs @ jac.T
    se = np.sqrt(np.diag(cov))
    half_life = _LN2 / kappa
    loglik = -0.5 * n * (math.log(2.0 * math.pi * s2) + 1.0)
    return OUFit(
        kappa=kappa,
        theta=theta,
        sigma=sigma,
        half_life=half_life,
        se_kappa=float(se[0]),
        se_theta=float(se[1]),
        se_sigma=float(se[2]),
        se_half_life=float(_LN2 / kappa**2 * se[0]),
        cov=cov,
        ar_a=a,
        ar_b=b,
        ar_s2=s2,
        loglik=loglik,
        n=n,
        dt=dt,
    )


def simulate_ou(n_steps: int, dt: float, kappa, theta, sigma, *, x0=None, n_paths: int = 1, rng=None) -> np.ndarray:
    """Exact OU paths, shape ``(n_paths, n_steps + 1)`` (the first column is ``x0``).

    ``x0`` defaults to draws from the stationary distribution. Uses the exact
    transition (AR(1) above), so any ``dt`` is exact; the recursion runs in
    scipy's ``lfilter`` over all paths at once.
    """
    if n_steps < 1:
        raise OUError(f"n_steps must be >= 1, got {n_steps!r}")
    if not dt > 0:
        raise OUError(f"dt must be > 0, got {dt!r}")
    if not kappa > 0:
        raise OUError(f"kappa must be > 0, got {kappa!r}")
    if not sigma >= 0:
        raise OUError(f"sigma must be >= 0, got {sigma!r}")
    rng = np.random.default_rng(rng)
    b = math.exp(-kappa * dt)
    step_sd = sigma * math.sqrt(-math.expm1(-2.0 * kappa * dt) / (2.0 * kappa))
    out = np.empty((n_paths, n_steps + 1))
    if x0 is None:
        out[:, 0] = theta + sigma / math.sqrt(2.0 * kappa) * rng.standard_normal(n_paths)
    else:
        out[:, 0] = x0
    shocks = rng.standard_normal((n_paths, n_steps)) * step_sd
    # X[t+1] - theta = b (X[t] - theta) + e: a linear recursion, solved by a filter
    dev, _ = lfilter([1.0], [1.0, -b], shocks, axis=1, zi=(b * (out[:, :1] - theta)))
    out[:, 1:] = theta + dev
    return out


@dataclass(frozen=True)
class OUBands:
    """Bertram (2010) optimal symmetric bands around ``theta``.

    half_width        : u, distance of entry and exit from theta (units of X)
    entry_long        : theta - u (buy the spread at or below)
    exit_long         : theta + u (sell it back at or above; the short entry)
    entry_short       : theta + u
    exit_short        : theta - u
    expected_return   : expected return per unit time, (2u - cost)/E[cycle]
    expected_cycle    : expected time of one enter-exit cycle (time units)
    """

    half_width: np.ndarray
    entry_long: np.ndarray
    exit_long: np.ndarray
    entry_short: np.ndarray
    exit_short: np.ndarray
    expected_return: np.ndarray
    expected_cycle: np.ndarray


def _erfi(z):
    with np.errstate(over="ignore"):  # bands far out: the expected cycle is astronomically long
        return 2.0 / math.sqrt(math.pi) * np.exp(z * z) * dawsn(z)


def bertram_bands(kappa, theta, sigma, cost) -> OUBands:
    """Bands maximising expected return per unit time (Bertram 2010).

    ``cost`` is the transaction cost of a round trip in units of X (> 0; at
    zero cost the optimal band collapses to theta and trades infinitely
    often). All arguments broadcast.
    """
    kappa, theta, sigma, cost = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (kappa, theta, sigma, cost)))
    if not np.all(kappa > 0):
        raise OUError("kappa must be > 0")
    if not np.all(sigma > 0):
        raise OUError("sigma must be > 0")
    if not np.all(cost > 0):
        raise OUError("cost must be > 0 (round-trip transaction cost in units of X)")
    k = np.sqrt(kappa) / sigma
    c = 0.5 * cost * k
    # solve h(z) = z - D(z) - c = 0; h(0) = -c < 0, h(c + 1) > 0 since D <= 0.5411
    lo = np.zeros_like(c)
    hi = c + 1.0
    z = np.maximum(np.cbrt(1.5 * c), c)  # z - D(z) ~ 2 z^3/3 small, ~ z - 1/(2z) large
    z = np.clip(z, lo, hi)
    for _ in range(100):
        d = dawsn(z)
        h = z - d - c
        lo = np.where(h < 0, z, lo)
        hi = np.where(h > 0, z, hi)
        step = h / np.maximum(2.0 * z * d, 1e-300)
        z_new = z - step
        z_new = np.where((z_new > lo) & (z_new < hi), z_new, 0.5 * (lo + hi))
        done = np.abs(z_new - z) <= 4.0 * np.finfo(float).eps * np.maximum(z, 1e-300)
        z = z_new
        if np.all(done):
            break
    u = z / k
    cycle = 2.0 * math.pi / kappa * _erfi(z)
    return OUBands(
        half_width=u,
        entry_long=theta - u,
        exit_long=theta + u,
        entry_short=theta + u,
        exit_short=theta - u,
        expected_return=(2.0 * u - cost) / cycle,
        expected_cycle=cycle,
    )
