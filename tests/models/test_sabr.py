"""Tests of models/sabr.py: QuantLib's and pysabr's published Hagan vols, the
ATM and nu -> 0 limits, calibration, and the implied-density arbitrage check."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import black_scholes as bs
from models import sabr


# ---------------------------------------------------------------------------
# published values


def test_quantlib_sabr_interpolation_vols(literature):
    # QuantLib test-suite/interpolations.cpp testSabrInterpolation (tolerance 1e-12):
    # sabrVolatility(strike, forward, expiry, alpha, beta, nu, rho) on 31 strikes
    ref = literature["sabr_quantlib_testSabrInterpolation"]
    assert ref["strikes"].startswith("0.030 to 0.090 step 0.002")
    K = 0.030 + 0.002 * np.arange(31)
    got = sabr.lognormal_vol(K, ref["forward"], ref["expiry"], ref["alpha"], ref["beta"], ref["rho"], ref["nu"])
    np.testing.assert_allclose(got, ref["vols"], rtol=0, atol=1e-12)


def test_pysabr_shifted_single(literature):
    # ynouri/pysabr (MIT) tests/hagan_2002_lognormal_sabr/test_interpolation.py, cross-checked with QuantLib
    ref = literature["sabr_pysabr_hagan2002_lognormal"]["single"]
    got = sabr.lognormal_vol(
        ref["k"], ref["f"], ref["t"], ref["alpha"], ref["beta"], ref["rho"], ref["volvol"], shift=ref["shift"]
    )
    assert 100 * got == pytest.approx(ref["vol_pct"], abs=1e-10)


def test_pysabr_shifted_smile(literature):
    # ynouri/pysabr smile at T = 10 with a 3 % shift; pysabr's tolerance is 1e-5 vol points
    ref = literature["sabr_pysabr_hagan2002_lognormal"]["smile"]
    got = 100 * sabr.lognormal_vol(
        np.array(ref["k_pct"]) / 100,
        ref["f_pct"] / 100,
        ref["t"],
        ref["alpha"],
        ref["beta"],
        ref["rho"],
        ref["volvol"],
        shift=ref["shift_pct"] / 100,
    )
    np.testing.assert_allclose(got, ref["vol_pct"], rtol=0, atol=ref["tol_volpct"])


# ---------------------------------------------------------------------------
# limits


@pytest.mark.parametrize("method", ["hagan", "obloj"])
def test_atm_limit_is_continuous_and_exact(method):
    F, T, alpha, beta, rho, nu = 0.039, 1.0, 0.3, 0.6, -0.3, 0.5
    offsets = np.array([-1e-3, -1e-6, -1e-9, -1e-12, 0.0, 1e-12, 1e-9, 1e-6, 1e-3])
    vols = sabr.lognormal_vol(F * (1 + offsets), F, T, alpha, beta, rho, nu, method=method)
    fk = F ** (1 - beta)
    correction = (1 - beta) ** 2 * alpha**2 / (24 * fk**2) + rho * beta * nu * alpha / (4 * fk) + (2 - 3 * rho**2) * nu**2 / 24
    atm = alpha / fk * (1 + T * correction)
    assert vols[4] == pytest.approx(atm, rel=1e-15)
    # smooth through the money: the vol moves by at most slope * |dK| near K = F
    slope = abs(vols[-1] - vols[0]) / (2e-3 * F)
    assert np.all(np.abs(vols - atm) <= slope * np.abs(offsets) * F * 1.5 + 4e-16)


def test_nu_zero_obloj_is_the_cev_leading_term():
    # with nu = 0, Obloj's leading term is alpha (1-beta) ln(F/K) / (F^(1-beta) - K^(1-beta))
    F, T, alpha, beta = 0.05, 2.0, 0.02, 0.4
    K = np.array([0.01, 0.03, 0.049, 0.051, 0.08, 0.2])
    got = sabr.lognormal_vol(K, F, T, alpha, beta, 0.2, 0.0, method="obloj")
    lead = alpha * (1 - beta) * np.log(F / K) / (F ** (1 - beta) - K ** (1 - beta))
    fk = (F * K) ** ((1 - beta) / 2)
    correction = 1 + T * (1 - beta) ** 2 * alpha**2 / (24 * fk**2)
    np.testing.assert_allclose(got, lead * correction, rtol=1e-14)


def test_beta_one_is_lognormal_in_the_nu_zero_limit():
    K = np.linspace(50, 150, 11)
    got = sabr.lognormal_vol(K, 100.0, 1.0, 0.25, 1.0, -0.4, 0.0)
    np.testing.assert_allclose(got, 0.25, rtol=1e-15)


def test_methods_agree_near_the_money():
    # the two leading terms differ at O(ln^2(F/K)) away from the money
    K = np.linspace(0.035, 0.043, 9)
    h = sabr.lognormal_vol(K, 0.039, 1.0, 0.3, 0.6, 0.01, 0.02, method="hagan")
    o = sabr.lognormal_vol(K, 0.039, 1.0, 0.3, 0.6, 0.01, 0.02, method="obloj")
    np.testing.assert_allclose(h, o, rtol=1e-6)


# ---------------------------------------------------------------------------
# calibration


def test_calibration_recovers_quantlib_smile(literature):
    # QuantLib's testSabrInterpolation fits these vols back; so do we, with beta fixed and free
    ref = literature["sabr_quantlib_testSabrInterpolation"]
    K = 0.030 + 0.002 * np.arange(31)
    fit = sabr.calibrate(K, ref["forward"], ref["expiry"], ref["vols"], beta=ref["beta"])
    assert fit.success and fit.rmse < 1e-12
    assert fit.params.alpha == pytest.approx(ref["alpha"], rel=1e-9)
    assert fit.params.rho == pytest.approx(ref["rho"], abs=1e-7)
    assert fit.params.nu == pytest.approx(ref["nu"], rel=1e-6)
    free = sabr.calibrate(K, ref["forward"], ref["expiry"], ref["vols"], fit_beta=True)
    assert free.rmse < 1e-10
    assert free.params.beta == pytest.approx(ref["beta"], abs=1e-6)


def test_calibration_per_maturity_on_noisy_smiles():
    rng = np.random.default_rng(12)
    truth = [
        (0.25, sabr.SABRParams(0.05, 0.5, -0.4, 0.9)),
        (1.0, sabr.SABRParams(0.045, 0.5, -0.3, 0.6)),
        (5.0, sabr.SABRParams(0.04, 0.5, -0.2, 0.35)),
    ]
    F = 0.03
    smiles = []
    for T, p in truth:
        K = F * np.exp(np.linspace(-0.8, 0.8, 15) * math.sqrt(T) * 0.3)
        vols = sabr.lognormal_vol(K, F, T, p.alpha, p.beta, p.rho, p.nu) + rng.normal(0, 1e-4, K.size)
        smiles.append((K, F, T, vols))
    fits = sabr.calibrate_smiles(smiles, beta=0.5)
    for fit, (T, p) in zip(fits, truth):
        assert fit.rmse < 2e-4  # at the noise level (1 vol bp)
        assert fit.params.alpha == pytest.approx(p.alpha, rel=0.02)
        assert fit.params.rho == pytest.approx(p.rho, abs=0.15)


def test_calibration_rejects_bad_input():
    with pytest.raises(sabr.SABRError, match="vols"):
        sabr.calibrate([0.03, 0.04], 0.035, 1.0, [0.2, 0.21])
    with pytest.raises(sabr.SABRError, match="same length"):
        sabr.calibrate([0.03, 0.04, 0.05], 0.035, 1.0, [0.2, 0.21])
    with pytest.raises(sabr.SABRError, match="rho"):
        sabr.SABRParams(0.1, 0.5, 1.0, 0.3)
    with pytest.raises(sabr.SABRError, match="method"):
        sabr.lognormal_vol(0.03, 0.03, 1.0, 0.1, 0.5, 0.0, 0.3, method="exact")


# ---------------------------------------------------------------------------
# the no-arbitrage check


def _butterflies(K, F, T, p, method="hagan"):
    """Second differences of undiscounted Black call prices on a uniform strike grid."""
    vols = sabr.lognormal_vol(K, F, T, p.alpha, p.beta, p.rho, p.nu, method=method)
    calls = bs.black_price(F, K, T, vols, True)
    h = K[1] - K[0]
    return (calls[2:] - 2 * calls[1:-1] + calls[:-2]) / h**2


def test_arbitrage_check_finds_the_low_strike_failure():
    # beta = 0, high vol of vol, ten years: Hagan's expansion gives negative density at low strikes
    F, T = 0.03, 10.0
    p = sabr.SABRParams(0.006, 0.0, -0.5, 0.8)
    K = np.linspace(0.001, 0.12, 400)
    report = sabr.arbitrage_check(F, T, p, K)
    assert not report.ok
    assert report.negative_strikes.max() < F  # only below the forward
    # the density agrees with price butterflies: negative exactly where they are
    fly = _butterflies(K, F, T, p)
    inner = K[1:-1]
    dens = report.density[1:-1]
    clear = np.abs(dens) > 1e-3 * np.abs(dens).max()
    np.testing.assert_array_equal((fly < 0)[clear], (dens < 0)[clear])
    assert np.all(np.isin(inner[(fly < 0) & clear], report.negative_strikes))


def test_arbitrage_check_passes_a_tame_smile():
    F, T = 0.03, 1.0
    p = sabr.SABRParams(0.03, 0.5, -0.3, 0.4)
    report = sabr.arbitrage_check(F, T, p, n_std=4.0, n_points=2001)
    assert report.ok and report.negative_strikes.size == 0
    # Breeden-Litzenberger consistency: the density's mass between two strikes equals the
    # difference of digital prices -dC/dK there (central differences of Black prices)
    K = report.strikes
    mass = np.sum(0.5 * (report.density[1:] + report.density[:-1]) * np.diff(K))

    def digital(k, h=1e-7):
        v = sabr.lognormal_vol(np.array([k - h, k + h]), F, T, p.alpha, p.beta, p.rho, p.nu)
        c = bs.black_price(F, np.array([k - h, k + h]), T, v, True)
        return -(c[1] - c[0]) / (2 * h)

    assert mass == pytest.approx(digital(K[0]) - digital(K[-1]), abs=1e-5)
    assert 0.98 < mass < 1.0


sabr_params = st.builds(
    sabr.SABRParams,
    alpha=st.floats(0.1, 0.6),  # as a lognormal-equivalent vol, see below
    beta=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
    rho=st.floats(-0.7, 0.7),
    nu=st.floats(0.0, 0.8),
)


@settings(max_examples=80, deadline=None)
@given(sabr_params, st.floats(0.1, 2.0), st.sampled_from(["hagan", "obloj"]))
def test_sabr_call_prices_respect_no_arbitrage_where_the_check_passes(p0, T, method):
    F = 0.04
    # alpha drawn as a Black-vol level: alpha = level * F^(1-beta)
    p = sabr.SABRParams(p0.alpha * F ** (1 - p0.beta), p0.beta, p0.rho, p0.nu)
    atm = float(sabr.lognormal_vol(F, F, T, p.alpha, p.beta, p.rho, p.nu, method=method))
    K = F * np.exp(np.linspace(-2.0, 2.0, 81) * atm * math.sqrt(T))
    vols = sabr.lognormal_vol(K, F, T, p.alpha, p.beta, p.rho, p.nu, method=method)
    calls = bs.black_price(F, K, T, vols, True)
    # within bounds
    assert np.all(calls >= np.maximum(F - K, 0.0) - 1e-15)
    assert np.all(calls <= F)
    report = sabr.arbitrage_check(F, T, p, K, method=method)
    if report.ok:
        slopes = np.diff(calls) / np.diff(K)
        assert np.all(np.diff(calls) <= 1e-15)
        assert np.all(np.diff(slopes) >= -1e-9)
