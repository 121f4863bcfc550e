"""Tests of models/pairs.py: Engle-Granger on simulated cointegrated and
independent pairs (MacKinnon critical values from statsmodels), the Kalman
hedge ratio, the rolling z-score against a naive loop, and the position state
machine against a sequential reference."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from statsmodels.tsa.adfvalues import mackinnoncrit
from statsmodels.tsa.stattools import coint

from models import ou, pairs


def _cointegrated(seed, n=1000, beta=1.5, alpha=2.0, kappa=0.1):
    rng = np.random.default_rng(seed)
    x = 50.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    e = ou.simulate_ou(n - 1, 1.0, kappa, 0.0, 0.5, rng=rng)[0]
    return alpha + beta * x + e, x


def test_engle_granger_detects_cointegration():
    y, x = _cointegrated(0)
    res = pairs.engle_granger(y, x)
    assert res.is_cointegrated and res.pvalue < 1e-4
    assert res.hedge_ratio == pytest.approx(1.5, abs=0.02)
    assert res.intercept == pytest.approx(2.0, abs=1.0)
    assert res.adf_stat < res.critical_values["1%"]
    # the half-life of an OU spread with kappa = 0.1 per step is ln 2 / 0.1 ~ 7 steps
    assert res.half_life == pytest.approx(math.log(2) / 0.1, rel=0.3)
    np.testing.assert_allclose(res.spread, y - res.intercept - res.hedge_ratio * x, atol=1e-9)


def test_critical_values_are_mackinnon_2010_for_two_variables():
    y, x = _cointegrated(1, n=500)
    res = pairs.engle_granger(y, x)
    crit = mackinnoncrit(N=2, regression="c", nobs=499)
    assert [res.critical_values[k] for k in ("1%", "5%", "10%")] == pytest.approx(list(crit))
    # stricter than the Dickey-Fuller table for a single known series (about -2.87 at 5 %)
    assert res.critical_values["5%"] < -3.3


@pytest.mark.parametrize("trend", ["c", "ct"])
@pytest.mark.parametrize("seed", [6, 7])
def test_engle_granger_equals_statsmodels_coint(seed, trend):
    y, x = _cointegrated(seed, n=400, kappa=0.02)
    res = pairs.engle_granger(y, x, trend=trend)
    stat, pvalue, crit = coint(y, x, trend=trend)
    assert res.adf_stat == pytest.approx(stat, rel=1e-10)
    assert res.pvalue == pytest.approx(pvalue, rel=1e-8, abs=1e-15)
    assert [res.critical_values[k] for k in ("1%", "5%", "10%")] == pytest.approx(list(crit))


def test_engle_granger_rarely_rejects_independent_random_walks():
    pvalues = []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        x = np.cumsum(rng.normal(size=500))
        y = np.cumsum(rng.normal(size=500))
        pvalues.append(pairs.engle_granger(y, x).pvalue)
    pvalues = np.array(pvalues)
    assert np.sum(pvalues < 0.05) <= 2  # 5 % size: expect 0.6 rejections in twelve
    assert np.median(pvalues) > 0.2


def test_engle_granger_rejects_bad_input():
    with pytest.raises(pairs.PairsError, match="same length"):
        pairs.engle_granger(np.arange(30.0), np.arange(31.0))
    with pytest.raises(pairs.PairsError, match="x"):
        pairs.engle_granger(np.arange(30.0), np.ones(30))
    with pytest.raises(pairs.PairsError, match="y"):
        pairs.engle_granger(np.r_[np.arange(29.0), np.nan], np.arange(30.0))


def test_kalman_recovers_a_constant_hedge_ratio():
    y, x = _cointegrated(2)
    res = pairs.kalman_hedge(y, x, delta=1e-6)
    assert np.mean(res.beta[-200:]) == pytest.approx(1.5, abs=0.03)
    # the innovations are a fair z-score: unit variance after the start-up
    assert np.std(res.zscore[100:]) == pytest.approx(1.0, abs=0.3)


def test_kalman_tracks_a_drifting_hedge_ratio_better_than_ols():
    rng = np.random.default_rng(3)
    n = 2000
    x = 50.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    beta = 1.0 + 0.5 * np.sin(np.arange(n) / 300.0)
    y = beta * x + rng.normal(0.0, 0.5, n)
    res = pairs.kalman_hedge(y, x, delta=1e-4)
    ols = pairs.engle_granger(y, x).hedge_ratio
    kalman_err = np.mean(np.abs(res.beta[200:] - beta[200:]))
    assert kalman_err < 0.05
    assert kalman_err < 0.2 * np.mean(np.abs(ols - beta[200:]))


def test_online_filter_matches_batch_and_is_one_step_ahead():
    y, x = _cointegrated(4, n=300)
    batch = pairs.kalman_hedge(y, x, delta=1e-5, obs_var=0.3, n_init=30)
    # rebuild the batch start from its documented initialisation and replay it online
    n0 = 30
    design = np.column_stack([x[:n0], np.ones(n0)])
    coef, *_ = np.linalg.lstsq(design, y[:n0], rcond=None)
    s2 = float(np.sum((y[:n0] - design @ coef) ** 2)) / (n0 - 2)
    p0 = 10.0 * s2 * np.linalg.inv(design.T @ design) + 1e-12 * np.eye(2)
    filt = pairs.KalmanHedgeFilter(coef[0], coef[1], p0=p0, delta=1e-5, obs_var=0.3)
    for i in range(y.size):
        b_before, a_before = filt.beta, filt.alpha
        b, a, e, s = filt.update(y[i], x[i])
        assert e == pytest.approx(y[i] - (b_before * x[i] + a_before))
        assert (b, a, e, s) == pytest.approx((batch.beta[i], batch.alpha[i], batch.spread[i], batch.spread_var[i]))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(2, 120), elements=st.floats(-1e3, 1e3)), st.integers(2, 30))
def test_rolling_zscore_matches_a_naive_loop(series, window):
    z = pairs.rolling_zscore(series, window)
    assert z.shape == series.shape
    for t in range(series.size):
        if t < window - 1:
            assert np.isnan(z[t])
            continue
        w = series[t - window + 1 : t + 1]
        sd = w.std()
        if sd == 0:
            assert np.isnan(z[t])  # a constant window has no z-score
        elif sd > 1e-12 * np.abs(w).max():  # else the naive two-pass result is itself rounding noise
            assert z[t] == pytest.approx((series[t] - w.mean()) / sd, rel=1e-6, abs=1e-6)


def _positions_reference(z, entry, exit):
    """Sequential state machine: the specification of pairs.positions."""
    pos = np.zeros(z.size, dtype=np.int8)
    state = 0
    for t, v in enumerate(z):
        if not np.isnan(v):
            if state == 1 and v >= -exit:
                state = 0
            elif state == -1 and v <= exit:
                state = 0
            if state == 0:
                if v < -entry:
                    state = 1
                elif v > entry:
                    state = -1
        pos[t] = state
    return pos


def test_positions_example():
    z = np.array([np.nan, 0.0, -2.1, -1.0, -0.4, 0.0, 2.5, 1.0, 0.3, -3.0, 3.0, 0.0])
    expected = [0, 0, 1, 1, 0, 0, -1, -1, 0, 1, -1, 0]
    np.testing.assert_array_equal(pairs.positions(z, entry=2.0, exit=0.5), expected)


@settings(max_examples=300, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 200), elements=st.one_of(st.floats(-5, 5), st.just(np.nan))),
    st.floats(0.5, 3.0),
    st.floats(0.0, 0.99),
)
def test_positions_match_the_sequential_reference(z, entry, exit_fraction):
    exit = exit_fraction * entry
    np.testing.assert_array_equal(pairs.positions(z, entry, exit), _positions_reference(z, entry, exit))


def test_spread_signal_trades_a_cointegrated_pair():
    y, x = _cointegrated(5, n=2000)
    eg = pairs.engle_granger(y, x)
    sig = pairs.spread_signal(y, x, eg.hedge_ratio, window=60)
    assert set(np.unique(sig.position)) == {-1, 0, 1}
    # long positions start below -2, short positions above +2
    starts_long = np.flatnonzero((sig.position[1:] == 1) & (sig.position[:-1] != 1)) + 1
    starts_short = np.flatnonzero((sig.position[1:] == -1) & (sig.position[:-1] != -1)) + 1
    assert np.all(sig.zscore[starts_long] < -2) and np.all(sig.zscore[starts_short] > 2)
    # trading the mean-reverting spread makes money before costs
    pnl = np.sum(sig.position[:-1] * np.diff(sig.spread))
    assert pnl > 0


def test_positions_reject_bad_thresholds():
    with pytest.raises(pairs.PairsError, match="exit"):
        pairs.positions([0.0, 1.0], entry=1.0, exit=1.0)
    with pytest.raises(pairs.PairsError, match="entry"):
        pairs.positions([0.0, 1.0], entry=0.0, exit=0.0)
    with pytest.raises(pairs.PairsError, match="window"):
        pairs.rolling_zscore([1.0, 2.0, 3.0], 1)
