"""Tests of models/ou.py: parameter recovery from exact simulated paths with
standard errors that cover the truth at the nominal rate, the exact simulator,
and Bertram's optimal bands against brute force."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erfi

from models import ou


def test_recovers_parameters_and_standard_errors_cover_the_truth():
    kappa, theta, sigma, dt = 6.0, 0.5, 0.3, 1.0 / 252.0
    paths = ou.simulate_ou(8000, dt, kappa, theta, sigma, n_paths=500, rng=3)
    fits = [ou.fit_ou(path, dt) for path in paths]
    for name, truth in (("kappa", kappa), ("theta", theta), ("sigma", sigma)):
        est = np.array([getattr(f, name) for f in fits])
        se = np.array([getattr(f, "se_" + name) for f in fits])
        # the standard errors describe the spread of the estimates ...
        assert np.std(est) == pytest.approx(np.mean(se), rel=0.15), name
        # ... and 95 % intervals cover the truth at about the nominal rate (500 paths: +-2 %)
        coverage = np.mean(np.abs(est - truth) < 1.96 * se)
        assert 0.92 <= coverage <= 0.98, (name, coverage)
    half_lives = np.array([f.half_life for f in fits])
    assert np.median(half_lives) == pytest.approx(math.log(2) / kappa, rel=0.05)


def test_fit_is_exact_maximum_likelihood():
    # the closed form maximises the exact conditional likelihood: perturbing any parameter lowers it
    x = ou.simulate_ou(3000, 0.01, 2.0, 1.0, 0.5, rng=5)[0]
    fit = ou.fit_ou(x, 0.01)

    def loglik(kappa, theta, sigma):
        b = math.exp(-kappa * 0.01)
        var = sigma**2 * (1 - b * b) / (2 * kappa)
        e = x[1:] - theta - b * (x[:-1] - theta)
        return -0.5 * (e.size * math.log(2 * math.pi * var) + e @ e / var)

    best = loglik(fit.kappa, fit.theta, fit.sigma)
    assert best == pytest.approx(fit.loglik, rel=1e-12)
    for dk, dth, ds in [(1e-3, 0, 0), (-1e-3, 0, 0), (0, 1e-3, 0), (0, -1e-3, 0), (0, 0, 1e-3), (0, 0, -1e-3)]:
        assert loglik(fit.kappa * (1 + dk), fit.theta + dth, fit.sigma * (1 + ds)) < best


def test_exact_simulation_has_the_right_transition():
    kappa, theta, sigma, dt = 1.5, -0.2, 0.8, 0.5  # a coarse step: an Euler scheme would be far off
    x = ou.simulate_ou(200, dt, kappa, theta, sigma, x0=theta, n_paths=20000, rng=11)
    b = math.exp(-kappa * dt)
    assert np.mean(x[:, -1]) == pytest.approx(theta, abs=0.02)
    assert np.std(x[:, -1]) == pytest.approx(sigma / math.sqrt(2 * kappa), rel=0.02)
    lag = np.corrcoef(x[:, -2], x[:, -1])[0, 1]
    assert lag == pytest.approx(b, abs=0.02)
    assert np.all(x[:, 0] == theta)


def test_no_mean_reversion_is_an_error_naming_x():
    with pytest.raises(ou.OUError, match="x"):
        ou.fit_ou(np.arange(100.0), 1.0)  # a trend: AR slope 1
    with pytest.raises(ou.OUError, match="x"):
        ou.fit_ou(np.tile([1.0, -1.0], 50), 1.0)  # alternating: AR slope < 0
    with pytest.raises(ou.OUError, match="dt"):
        ou.fit_ou(np.random.default_rng(0).normal(size=50), 0.0)
    with pytest.raises(ou.OUError, match="x"):
        ou.fit_ou([1.0, 2.0, float("nan"), 3.0, 4.0], 1.0)


def _brute_force_band(kappa, sigma, cost):
    u = np.linspace(1e-6, 6 * sigma / math.sqrt(2 * kappa) + cost, 400001)
    k = math.sqrt(kappa) / sigma
    ret = (2 * u - cost) / (math.pi / kappa * (erfi(u * k) - erfi(-u * k)))
    i = int(np.argmax(ret))
    return u[i], ret[i]


@pytest.mark.parametrize(
    "kappa, sigma, cost", [(4.0, 0.3, 0.01), (0.5, 1.0, 0.2), (20.0, 0.05, 0.001), (2.0, 0.2, 0.5)]
)
def test_bertram_bands_maximise_return_per_unit_time(kappa, sigma, cost):
    # Bertram (2010), Physica A 389(11):2234-2243: E[cycle] = (pi/kappa)(erfi(m k) - erfi(a k)), k = sqrt(kappa)/sigma
    bands = ou.bertram_bands(kappa, 1.0, sigma, cost)
    u, best = _brute_force_band(kappa, sigma, cost)
    assert float(bands.half_width) == pytest.approx(u, rel=1e-4)
    assert float(bands.expected_return) == pytest.approx(best, rel=1e-9)
    assert float(bands.entry_long) == pytest.approx(1.0 - float(bands.half_width))
    assert float(bands.exit_long) == pytest.approx(1.0 + float(bands.half_width))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.05, 50.0), st.floats(0.01, 5.0), st.floats(1e-4, 3.0))
def test_bertram_first_order_condition(kappa, sigma, cost):
    bands = ou.bertram_bands(kappa, 0.0, sigma, cost)
    u = float(bands.half_width)
    assert u > cost / 2  # the band covers the cost
    k = math.sqrt(kappa) / sigma

    def ret(v):
        return (2 * v - cost) / (2 * math.pi / kappa * erfi(v * k))

    h = 1e-4 * u
    assert ret(u) >= ret(u - h) - 1e-12 * abs(ret(u))
    assert ret(u) >= ret(u + h) - 1e-12 * abs(ret(u))


def test_bertram_bands_widen_with_cost_and_vectorise():
    bands = ou.bertram_bands(3.0, 0.0, 0.4, np.array([0.001, 0.01, 0.1, 1.0]))
    assert np.all(np.diff(bands.half_width) > 0)
    assert np.all(np.diff(bands.expected_return) < 0)
    with pytest.raises(ou.OUError, match="cost"):
        ou.bertram_bands(3.0, 0.0, 0.4, 0.0)
