"""Heston calibration (models/heston_calibration.py) against surfaces priced with known parameters."""

import numpy as np
import pytest

from models.heston import HestonParams
from models.heston_calibration import HestonCalibrationError, calibrate_heston
from sim.optionchain import generate_chain

FELLER_OK = HestonParams(v0=0.04, kappa=1.5, theta=0.06, sigma=0.4, rho=-0.65)       # ratio 1.125
FELLER_BAD = HestonParams(v0=0.09, kappa=0.8, theta=0.04, sigma=0.9, rho=-0.8)       # ratio 0.079


def surface(params, noise=0.0, seed=0):
    c = generate_chain(params, both_types=False, noise=noise, seed=seed)
    return c, dict(S=c.spot, r=c.rate, q=c.dividend, K=c.strike, T=c.expiry_years, price_mid=c.mid,
                   is_call=c.is_call)


def fit(args, **kw):
    return calibrate_heston(args["S"], args["r"], args["q"], args["K"], args["T"], args["price_mid"],
                            args["is_call"], **kw)


@pytest.mark.parametrize("kw", [
    dict(seed=0), dict(seed=7), dict(fit="iv"), dict(weights="none"),
    dict(global_stage=False), dict(global_stage=False, x0=HestonParams(0.02, 4.0, 0.03, 0.2, -0.2)),
    dict(global_stage=False, x0=HestonParams(0.1, 0.5, 0.1, 0.8, -0.9)),
])
def test_recovers_parameters_without_noise(kw):
    _, args = surface(FELLER_OK)
    f = fit(args, **kw)
    assert f.success, f.message
    np.testing.assert_allclose(f.params.as_array(), FELLER_OK.as_array(), rtol=1e-7, atol=1e-9)
    assert f.rmse_iv < 1e-9 and f.rmse_price < 1e-9 and f.r2 > 1 - 1e-12
    assert f.n_quotes == 150 and f.feller_satisfied and f.feller_ratio == pytest.approx(1.125)


def test_recovers_feller_violating_parameters_when_feller_is_off():
    _, args = surface(FELLER_BAD)
    f = fit(args, feller="off", global_stage=False)
    np.testing.assert_allclose(f.params.as_array(), FELLER_BAD.as_array(), rtol=1e-6)
    assert not f.feller_satisfied and f.feller_ratio == pytest.approx(FELLER_BAD.feller_ratio)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_constraint_never_returns_a_feller_violation(seed):
    _, args = surface(FELLER_BAD, noise=1.0, seed=seed)
    f = fit(args, feller="constraint", seed=seed)
    assert f.feller_satisfied and f.feller_ratio >= 1.0
    assert 2 * f.params.kappa * f.params.theta >= f.params.sigma ** 2
    assert f.rmse_iv < 0.05  # a worse fit than unconstrained, but a fit


def test_penalty_reports_the_feller_ratio_and_pushes_towards_it():
    _, args = surface(FELLER_BAD)
    off = fit(args, feller="off", global_stage=False)
    pen = fit(args, feller="penalty", global_stage=False)
    assert pen.feller_mode == "penalty"
    assert pen.feller_ratio == pytest.approx(pen.params.feller_ratio)
    assert pen.feller_satisfied == (pen.feller_ratio >= 1.0)
    assert pen.feller_ratio > 10 * off.feller_ratio


@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("weights", ["vega", "spread"])
def test_noise_within_the_spread_gives_a_fit_within_the_spread(seed, weights):
    c, args = surface(FELLER_OK, noise=1.0, seed=seed)
    f = fit(args, weights=weights, spread=c.ask - c.bid, seed=seed)
    assert f.success
    assert f.rmse_iv < 0.003                         # noise is ~0.1 to 0.3 vol points
    p, true = f.params, FELLER_OK
    assert abs(p.v0 - true.v0) < 0.003
    assert abs(p.rho - true.rho) < 0.1
    assert abs(np.sqrt(p.theta) - np.sqrt(true.theta)) < 0.03
    # the noise has a standard deviation of half the spread: the fit averages it out and lands
    # within half a spread of the noise-free prices nearly everywhere
    close = np.abs(f.model_prices - c.price) <= 0.5 * (c.ask - c.bid)
    assert close.mean() > 0.9


def test_fit_reports_the_worst_quote():
    c, args = surface(FELLER_OK)
    args = dict(args)
    mid = args["price_mid"].copy()
    mid[40] *= 1.2
    args["price_mid"] = mid
    f = fit(args, global_stage=False)
    assert f.max_residual_strike == c.strike[40] and f.max_residual_expiry == c.expiry_years[40]
    assert f.max_residual == pytest.approx(np.nanmax(np.abs(f.residuals_iv)))


def test_bad_inputs_name_the_argument():
    _, args = surface(FELLER_OK)
    with pytest.raises(HestonCalibrationError, match="weights"):
        fit(args, weights="bogus")
    with pytest.raises(HestonCalibrationError, match="spread"):
        fit(args, weights="spread")
    with pytest.raises(HestonCalibrationError, match="bounds"):
        fit(args, bounds={"rho": (-1.5, 0.5)})
    bad = dict(args, price_mid=np.where(np.arange(150) == 3, 1e6, args["price_mid"]))
    with pytest.raises(HestonCalibrationError, match=r"price_mid\[3\]"):
        fit(bad)
