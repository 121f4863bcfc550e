"""Tests of models/black_scholes.py: published values, QuantLib as an oracle,
high-precision values of the normalised Black function, implied-vol round trips
on a dense grid, reason codes and no-arbitrage properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import black_scholes as bs

EPS = np.finfo(float).eps


# ---------------------------------------------------------------------------
# published values


def test_textbook_call(literature):
    # literature.json "black_scholes": S = K = 100, T = 1, r = 5 %, sigma = 20 %
    # (the entry records no source; it is the textbook example, also checked against QuantLib below)
    ref = literature["black_scholes"]
    got = bs.call_price(ref["S"], ref["K"], ref["T"], ref["r"], 0.0, ref["sigma"])
    assert got == pytest.approx(ref["call"], abs=1e-12)


def test_fang_oosterlee_gbm_calls(literature):
    # Fang & Oosterlee (2008) SIAM J. Sci. Comput. 31(2):826-848, Table 2 (GBM reference values),
    # via literature.json "fang_oosterlee_2008_other"
    ref = literature["fang_oosterlee_2008_other"]["gbm_table2"]
    strikes = np.array([float(k) for k in ref["calls"]])
    expected = np.array(list(ref["calls"].values()))
    got = bs.call_price(ref["S0"], strikes, ref["T"], ref["r"], ref["q"], ref["sigma"])
    np.testing.assert_allclose(got, expected, rtol=0, atol=5e-10)  # published to 9 decimals


def test_fang_oosterlee_cash_or_nothing(literature):
    # Fang & Oosterlee (2008) Table 3: the cash-or-nothing call pays K if S_T > K, so its price is
    # K * (-dC/dK), taken here by a central difference of our call prices
    ref = literature["fang_oosterlee_2008_other"]["cash_or_nothing_table3"]
    h = 1e-4
    up = bs.call_price(ref["S0"], ref["K"] + h, ref["T"], ref["r"], ref["q"], ref["sigma"])
    down = bs.call_price(ref["S0"], ref["K"] - h, ref["T"], ref["r"], ref["q"], ref["sigma"])
    assert -ref["K"] * (up - down) / (2 * h) == pytest.approx(ref["price"], abs=5e-9)


# high-precision normalised Black prices b(x, s) = B/sqrt(FK), x = ln(F/K) <= 0, computed with
# mpmath 1.4.1 at 50 digits: exp(x/2) ncdf(x/s + s/2) - exp(-x/2) ncdf(x/s - s/2).
# They cover all four evaluation regions (asymptotic, small-s, erfcx, ndtr).
MPMATH_NORMALISED = [
    (-0.5, 0.05, 3.7361342698631207492e-26),
    (-2.0, 0.1, 1.3683094548416367185e-91),
    (-5.0, 0.3, 2.0238189294117016802e-64),
    (-20.0, 1.0, 1.2097749726121600911e-90),
    (-0.01, 0.0005, 6.8500622606354904545e-94),
    (-1e-06, 0.001, 3.9844246324998678408e-4),
    (0.0, 0.2, 7.9655674554057967338e-2),
    (0.0, 1.5, 5.4674529524626360135e-1),
    (-0.3, 0.6, 1.1599366750812120981e-1),
    (-1.0, 3.0, 4.777039972474732004e-1),
    (-0.05, 8.0, 9.7524657066110313624e-1),
    (-3.0, 0.12, 1.4599345383556631614e-140),
    (-40.0, 4.0, 4.2034825122260979701e-25),
    (-0.2, 0.02, 1.4948387065937229785e-26),
]


@pytest.mark.parametrize("x, s, expected", MPMATH_NORMALISED)
def test_normalised_black_against_high_precision(x, s, expected):
    got = float(bs.normalised_black(x, s, True))
    # relative accuracy near machine precision even at 1e-140 (exp(-h^2/2) costs ~h^2/2 ulp)
    h2 = (x / s) ** 2
    assert abs(got / expected - 1) < 64 * EPS * max(1.0, h2 / 2)
    # and the inversion recovers s from the exact value
    assert float(bs.normalised_implied_vol(expected, x, True)) == pytest.approx(s, rel=64 * EPS)


def test_normalised_put_is_mirror_call():
    x = np.linspace(-3, 3, 61)
    s = 0.4
    np.testing.assert_allclose(bs.normalised_black(x, s, False), bs.normalised_black(-x, s, True), rtol=1e-15)


# ---------------------------------------------------------------------------
# QuantLib as an oracle


def _quantlib_bsm(ql, S, K, days, r, q, sigma, is_call):
    today = ql.Date(15, ql.June, 2021)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), sigma, dc)),
    )
    option = ql.EuropeanOption(
        ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, K), ql.EuropeanExercise(today + days)
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()


def test_prices_and_greeks_match_quantlib():
    ql = pytest.importorskip("QuantLib")
    rng = np.random.default_rng(20240601)
    for _ in range(60):
        S = 100.0
        K = float(S * np.exp(rng.uniform(-0.7, 0.7)))
        days = int(rng.integers(5, 3 * 365))
        T = days / 365.0
        r = float(rng.uniform(-0.01, 0.08))
        q = float(rng.uniform(0.0, 0.05))
        sigma = float(rng.uniform(0.05, 0.9))
        is_call = bool(rng.integers(0, 2))
        npv, delta, gamma, vega, theta, rho = _quantlib_bsm(ql, S, K, days, r, q, sigma, is_call)
        assert bs.price(S, K, T, r, q, sigma, is_call) == pytest.approx(npv, rel=1e-11, abs=1e-12)
        g = bs.greeks(S, K, T, r, q, sigma, is_call)
        assert g.delta == pytest.approx(delta, rel=1e-9, abs=1e-12)
        assert g.gamma == pytest.approx(gamma, rel=1e-9, abs=1e-12)
        assert g.vega == pytest.approx(vega, rel=1e-9, abs=1e-10)
        assert g.theta == pytest.approx(theta, rel=1e-9, abs=1e-10)
        assert g.rho == pytest.approx(rho, rel=1e-9, abs=1e-10)


def test_greeks_match_finite_differences():
    S, K, T, r, q, sigma = 100.0, 95.0, 0.75, 0.03, 0.01, 0.25
    for is_call in (True, False):
        g = bs.greeks(S, K, T, r, q, sigma, is_call)
        p = lambda **kw: float(bs.price(**{**dict(S=S, K=K, T=T, r=r, q=q, sigma=sigma, is_call=is_call), **kw}))
        h = 1e-4
        assert g.delta == pytest.approx((p(S=S + h) - p(S=S - h)) / (2 * h), rel=1e-7)
        assert g.gamma == pytest.approx((p(S=S + h) - 2 * p() + p(S=S - h)) / h**2, rel=1e-4)
        assert g.vega == pytest.approx((p(sigma=sigma + h) - p(sigma=sigma - h)) / (2 * h), rel=1e-7)
        assert g.theta == pytest.approx(-(p(T=T + h) - p(T=T - h)) / (2 * h), rel=1e-7)
        assert g.rho == pytest.approx((p(r=r + h) - p(r=r - h)) / (2 * h), rel=1e-7)


# ---------------------------------------------------------------------------
# implied volatility


def _grid():
    moneyness = np.geomspace(0.2, 5.0, 41)  # K/S
    T = np.geomspace(1.0 / 365.0, 10.0, 31)  # one day to ten years
    vol = np.geomspace(0.01, 3.0, 41)  # 1 % to 300 %
    return np.meshgrid(100.0 * moneyness, T, vol, indexing="ij")


@pytest.mark.parametrize("is_call", [True, False])
def test_implied_vol_round_trip_dense_grid(is_call):
    S, r, q = 100.0, 0.03, 0.01
    K, T, vol = _grid()
    price = bs.price(S, K, T, r, q, vol, is_call)
    iv, reason = bs.implied_vol_with_reason(price, S, K, T, r, q, is_call)
    vega = bs.greeks(S, K, T, r, q, vol, is_call).vega
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # relative vol error caused by one rounding of the price: eps * price / (vega * vol)
        conditioning = EPS * price / (vega * vol)
    # representable: a normal (non-underflowed) price that pins the vol down to 1e-12 in double
    # precision; deep in the money the time value otherwise drowns in the intrinsic value
    representable = (price > 1e-300) & (conditioning < 1e-12)
    assert representable.sum() > 0.5 * price.size
    rel = np.abs(iv / vol - 1.0)
    assert np.all(rel[representable] < 1e-10), float(np.max(rel[representable]))
    assert np.all(reason[representable] == "ok")
    # everything else still gets a vol (possibly 0 at intrinsic), never NaN
    assert np.all(np.isin(reason, ["ok", "at_intrinsic"]))
    assert not np.any(np.isnan(iv))


def test_implied_vol_is_exact_to_a_few_ulp_on_well_conditioned_quotes():
    rng = np.random.default_rng(7)
    n = 20000
    S, r, q = 100.0, 0.02, 0.0
    K = S * np.exp(rng.uniform(-1.0, 1.0, n))
    T = rng.uniform(0.05, 3.0, n)
    vol = rng.uniform(0.05, 1.0, n)
    # quote the out-of-the-money option, where the price carries the information
    forward = S * np.exp((r - q) * T)
    calls = K > forward
    price = bs.price(S, K, T, r, q, vol, calls)
    keep = price > 1e-300  # a few deep out-of-the-money prices underflow to 0
    assert keep.mean() > 0.99
    price, K, T, vol, calls = price[keep], K[keep], T[keep], vol[keep], calls[keep]
    iv = bs.implied_vol(price, S, K, T, r, q, calls)
    vega = bs.vega(S, K, T, r, q, vol)
    # out of the money the vol is at least as well determined as the price: a few ulp
    bound = 32 * EPS * np.maximum(1.0, price / (vega * vol))
    assert np.all(np.abs(iv / vol - 1) < bound)


def test_implied_vol_reason_codes():
    S, K, T, r, q = 100.0, 90.0, 0.5, 0.05, 0.02
    forward = S * math.exp((r - q) * T)
    disc = math.exp(-r * T)
    intrinsic = disc * (forward - K)
    prices = np.array([intrinsic - 0.01, intrinsic, intrinsic + 2.0, S * math.exp(-q * T) + 1e-9, np.nan, -1.0])
    iv, reason = bs.implied_vol_with_reason(prices, S, K, T, r, q, True)
    assert list(reason) == [
        "below_intrinsic",
        "at_intrinsic",
        "ok",
        "above_upper_bound",
        "invalid_price",
        "below_intrinsic",
    ]
    assert np.isnan(iv[0]) and iv[1] == 0.0 and 0 < iv[2] < 5 and np.isnan(iv[3]) and np.isnan(iv[4])
    # put upper bound is the discounted strike
    _, reason = bs.implied_vol_with_reason(K * disc * 1.0000001, S, K, T, r, q, False)
    assert reason == "above_upper_bound"
    _, reason = bs.implied_vol_with_reason(12.0, S, K, 0.0, r, q, True)
    assert reason == "zero_expiry"
    # plain implied_vol returns NaN outside the bounds
    assert np.isnan(bs.implied_vol(intrinsic - 0.01, S, K, T, r, q, True))


def test_implied_vol_broadcasts_and_keeps_shape():
    K = np.linspace(80, 120, 5)[:, None]
    T = np.array([0.25, 1.0])[None, :]
    price = bs.price(100.0, K, T, 0.01, 0.0, 0.3, True)
    iv = bs.implied_vol(price, 100.0, K, T, 0.01, 0.0, True)
    assert iv.shape == (5, 2)
    np.testing.assert_allclose(iv, 0.3, rtol=1e-13)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(S=-1.0), "S"),
        (dict(K=0.0), "K"),
        (dict(T=-0.1), "T"),
        (dict(sigma=-0.2), "sigma"),
        (dict(r=float("nan")), "r"),
    ],
)
def test_invalid_arguments_are_named(kwargs, name):
    args = dict(S=100.0, K=100.0, T=1.0, r=0.0, q=0.0, sigma=0.2)
    args.update(kwargs)
    with pytest.raises(bs.BlackScholesError, match=rf"\b{name}\b"):
        bs.price(**args)


def test_is_call_must_be_boolean():
    with pytest.raises(bs.BlackScholesError, match="is_call"):
        bs.price(100, 100, 1, 0, 0, 0.2, is_call="call")


# ---------------------------------------------------------------------------
# properties

spots = st.floats(1.0, 1000.0)
log_moneyness = st.floats(-2.0, 2.0)
years = st.floats(1.0 / 365.0, 10.0)
rates = st.floats(-0.02, 0.1)
vols = st.floats(0.01, 3.0)


@settings(max_examples=200, deadline=None)
@given(spots, log_moneyness, years, rates, rates, vols)
def test_put_call_parity_and_bounds(S, m, T, r, q, sigma):
    K = S * math.exp(m)
    call = float(bs.call_price(S, K, T, r, q, sigma))
    put = float(bs.put_price(S, K, T, r, q, sigma))
    forward_value = S * math.exp(-q * T)
    strike_value = K * math.exp(-r * T)
    scale = max(forward_value, strike_value)
    assert call - put == pytest.approx(forward_value - strike_value, abs=1e-13 * scale)
    assert max(0.0, forward_value - strike_value) - 1e-13 * scale <= call <= forward_value
    assert max(0.0, strike_value - forward_value) - 1e-13 * scale <= put <= strike_value


@settings(max_examples=100, deadline=None)
@given(spots, years, rates, rates, vols)
def test_calls_decrease_and_are_convex_in_strike(S, T, r, q, sigma):
    K = S * np.exp(np.linspace(-1.5, 1.5, 61))
    call = bs.call_price(S, K, T, r, q, sigma)
    tol = 1e-12 * S
    assert np.all(np.diff(call) <= tol)
    slopes = np.diff(call) / np.diff(K)
    assert np.all(np.diff(slopes) >= -tol)
    # slope between -exp(-rT) and 0
    assert np.all(slopes >= -math.exp(-r * T) - 1e-12)


@settings(max_examples=300, deadline=None)
@given(spots, log_moneyness, years, rates, rates, vols, st.booleans())
def test_implied_vol_round_trip_property(S, m, T, r, q, sigma, is_call):
    K = S * math.exp(m)
    price = bs.price(S, K, T, r, q, sigma, is_call)
    iv, reason = bs.implied_vol_with_reason(price, S, K, T, r, q, is_call)
    vega = float(bs.vega(S, K, T, r, q, sigma))
    if price > 1e-300 and EPS * price < 1e-12 * vega * sigma:
        assert reason == "ok"
        assert float(iv) == pytest.approx(sigma, rel=1e-10)
    else:
        assert reason in ("ok", "at_intrinsic")


def test_reason_codes_as_integers():
    prices = np.array([-1.0, 5.0, 1e9])
    vol, codes = bs.implied_vol_with_reason(prices, 100.0, 100.0, 1.0, 0.0, 0.0, True, as_codes=True)
    assert codes.dtype == np.int8
    assert [bs.IV_REASONS[c] for c in codes] == ["below_intrinsic", "ok", "above_upper_bound"]
