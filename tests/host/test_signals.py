"""Signal generators (host/signals.py): pairs, volatility arbitrage, term structure, failure handling."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import PairsSignalConfig, TermSignalConfig, VolArbConfig
from host.signals import (
    OptionQuotes, PairsSignal, SignalEngine, SignalError, TermStructureSignal, VolArbSignal, atm_term_structure,
    heston_model_iv, pairs_decision, sabr_model_iv,
)
from host.types import TopOfBook
from models import black_scholes as bs
from models.heston import HestonParams
from models.ou import bertram_bands, simulate_ou
from models.pairs import positions
from models.sabr import SABRParams

# --------------------------------------------------------------------------- pairs: the sample table

# The pairs sample table of calibration-arbitrage-requirements.txt:
# (A price, B price, hedge ratio, spread, z-score, signal)
TABLE = [
    (150.25, 100.10, 1.5, 0.10, 0.5, 0),
    (150.20, 100.12, 1.5, None, -1.3, 0),  # the table prints -0.08, but 150.20 - 1.5*100.12 = 0.02
    (150.05, 100.15, 1.5, -0.175, -2.1, +1),  # Buy Spread
    (150.35, 100.10, 1.5, 0.20, 2.2, -1),  # Sell Spread
]


@pytest.mark.parametrize("a,b,h,spread,z,signal", TABLE)
def test_table_spread_is_a_minus_ratio_b(a, b, h, spread, z, signal):
    if spread is not None:
        assert a - h * b == pytest.approx(spread, abs=1e-9)


def test_table_signals_from_z_scores():
    # each row from flat, and the rows in sequence (row 4 closes the long and sells the spread)
    for *_, z, signal in TABLE:
        assert pairs_decision(z, 0, 2.0, 0.5) == signal
    pos, seen = 0, []
    for *_, z, _ in TABLE:
        pos = pairs_decision(z, pos, 2.0, 0.5)
        seen.append(pos)
    assert seen == [0, 0, 1, -1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=60), st.floats(0.5, 3.0), st.floats(0.0, 0.49))
def test_decision_matches_models_pairs_positions(z, entry, exit_frac):
    exit_ = exit_frac * entry
    pos, ours = 0, []
    for v in z:
        pos = pairs_decision(v, pos, entry, exit_)
        ours.append(pos)
    assert ours == positions(np.array(z), entry, exit_).tolist()


def test_stop_loss_closes_and_blocks_entry():
    assert pairs_decision(-4.5, 1, 2.0, 0.5, stop=4.0) == 0
    assert pairs_decision(-4.5, 0, 2.0, 0.5, stop=4.0) == 0
    assert pairs_decision(-3.0, 1, 2.0, 0.5, stop=4.0) == 1


def _feed(sig, spreads, x=100.0):
    out = []
    for s in spreads:
        out.append(sig.update(s + sig.hedge_ratio * x, x))
    return out


def test_rolling_z_hand_checked():
    sig = PairsSignal("A", "B", 1.0, PairsSignalConfig(window=4))
    _feed(sig, [0.0, 0.1, -0.1, 0.4])
    # window mean 0.1, deviations (-0.1, 0, -0.2, 0.3), variance 0.14/4
    assert sig.last_z == pytest.approx(0.3 / math.sqrt(0.035), rel=1e-9)


def test_entry_and_exit_signals_hand_checked():
    sig = PairsSignal("A", "B", 1.5, PairsSignalConfig(window=6), pvalue=0.01)
    out = _feed(sig, [0, 0, 0, 0, 0, -1.0])
    assert out[:-1] == [[]] * 5
    a, b = out[-1]
    # z = -sqrt(5) for five zeros then -1; confidence = (1 - p) * (0.7 + 0.15 (|z| - 2))
    assert sig.last_z == pytest.approx(-math.sqrt(5))
    conf = 0.99 * (0.7 + 0.15 * (math.sqrt(5) - 2))
    assert (a.instrument, a.direction, a.ratio) == ("A", 1, 1.0)  # buy the spread: long A ...
    assert (b.instrument, b.direction, b.ratio) == ("B", -1, 1.5)  # ... short 1.5 B
    assert a.confidence == pytest.approx(conf) and b.confidence == pytest.approx(conf)
    assert a.group == b.group == "pairs:A/B" and a.source == "pairs"
    a, b = _feed(sig, [0.0])[0]  # z = (1/6) / sqrt(5/36) = 0.447 >= -0.5: exit
    assert (a.direction, b.direction, a.confidence) == (0, 0, 1.0)


def test_on_top_uses_mids_of_both_legs():
    sig = PairsSignal("A", "B", 1.5, PairsSignalConfig(window=3))
    assert sig.on_top(TopOfBook("A", 1502000, 10, 1503000, 10, 1, 1)) == []  # B not seen yet
    sig.on_top(TopOfBook("B", 1000000, 10, 1002000, 10, 2, 2))
    assert sig._n == 1 and sig._window[0] == pytest.approx(150.25 - 1.5 * 100.10)
    assert sig.on_top(TopOfBook("C", 1, 1, 2, 1, 3, 3)) == []
    assert sig.on_top(TopOfBook("A", 0, 0, 1503000, 10, 4, 4)) == []  # one-sided: ignored


def test_fit_finds_hedge_ratio_and_cointegration():
    rng = np.random.default_rng(7)
    x = 100 + np.cumsum(rng.normal(0, 0.5, 500))
    y = 1.5 * x + simulate_ou(499, 1.0, 0.2, 0.0, 0.3, rng=rng)[0]
    sig = PairsSignal.fit("A", "B", y, x)
    assert sig.hedge_ratio == pytest.approx(1.5, abs=0.02)
    assert sig.pvalue < 0.01
    assert sig._n == 500  # warmed up on the history


def test_ou_bands_enter_beyond_the_band_and_leave_at_the_other():
    hist = simulate_ou(2000, 1.0, 0.1, 0.0, 0.05, rng=3)[0]
    sig = PairsSignal("A", "B", 1.0, PairsSignalConfig(bands="ou", ou_cost=0.02, stop_z=None), spread_history=hist)
    bands = bertram_bands(sig.ou.kappa, sig.ou.theta, sig.ou.sigma, 0.02)
    u, theta = float(bands.half_width), sig.ou.theta
    assert _feed(sig, [theta - 0.9 * u]) == [[]]
    long_ = _feed(sig, [theta - 1.1 * u])[0]
    assert [s.direction for s in long_] == [1, -1]
    assert _feed(sig, [theta + 0.9 * u]) == [[]]  # still long inside the upper band
    short = _feed(sig, [theta + 1.1 * u])[0]
    assert [s.direction for s in short] == [-1, 1]


def test_kalman_hedge_follows_a_drifting_ratio():
    rng = np.random.default_rng(1)
    n = 3000
    x = 100 + np.cumsum(rng.normal(0, 0.3, n))
    beta = np.linspace(1.0, 1.4, n)
    y = beta * x + rng.normal(0, 0.05, n)
    sig = PairsSignal("A", "B", 1.0, PairsSignalConfig(hedge="kalman"), spread_history=np.zeros(10))
    for yi, xi in zip(y, x):
        sig.update(float(yi), float(xi))
    assert sig.hedge_ratio == pytest.approx(1.4, abs=0.03)


def test_ou_needs_history():
    with pytest.raises(SignalError, match="spread_history"):
        PairsSignal("A", "B", 1.0, PairsSignalConfig(bands="ou"))


# --------------------------------------------------------------------------- volatility arbitrage


def _one_option(bid_vol, ask_vol, *, size=50, S=100.0, K=100.0, T=0.5, r=0.01, q=0.0):
    bid = float(bs.price(S, K, T, r, q, bid_vol, True))
    ask = float(bs.price(S, K, T, r, q, ask_vol, True))
    return OptionQuotes(("OPT",), np.array([K]), np.array([T]), np.array([True]), np.array([bid]),
                        np.array([ask]), np.array([size]), np.array([size]), S, r, q)


@pytest.mark.parametrize("model_iv,direction", [(0.24, 1), (0.22, 0), (0.18, 0), (0.16, -1)])
def test_volarb_compares_model_with_the_traded_side(model_iv, direction):
    quotes = _one_option(0.19, 0.21)
    bid_iv, ask_iv, _ = quotes.implied_vols()
    assert bid_iv[0] == pytest.approx(0.19, abs=1e-10) and ask_iv[0] == pytest.approx(0.21, abs=1e-10)
    out = VolArbSignal().evaluate(quotes, [model_iv], rmse_iv=0.002)
    assert [s.direction for s in out] == ([direction] if direction else [])


def test_volarb_confidence_from_fit_and_liquidity():
    quotes = _one_option(0.199, 0.201, size=5)
    out = VolArbSignal(VolArbConfig(min_size=10)).evaluate(quotes, [0.25], rmse_iv=0.002)
    (s,) = out
    mid = (quotes.bid[0] + quotes.ask[0]) / 2
    rel = (quotes.ask[0] - quotes.bid[0]) / mid
    expected = math.sqrt((1 - 0.002 / 0.01) * (1 - rel / 0.05)) * (5 / 10)
    assert s.confidence == pytest.approx(expected)
    # a fit as bad as max_rmse_iv gives no confidence at all
    assert VolArbSignal().evaluate(quotes, [0.25], rmse_iv=0.01)[0].confidence == 0.0


def test_volarb_rejects_misshapen_model():
    with pytest.raises(SignalError, match="model_iv"):
        VolArbSignal().evaluate(_one_option(0.19, 0.21), [0.2, 0.3], rmse_iv=0.0)


def test_heston_model_iv_without_vol_of_vol_is_flat():
    quotes = OptionQuotes(("a", "b", "c"), np.array([90.0, 100.0, 110.0]), np.array([0.25, 0.5, 1.0]),
                          np.array([False, True, True]), np.ones(3), np.ones(3), np.ones(3), np.ones(3), 100.0,
                          0.02, 0.0)
    iv = heston_model_iv(HestonParams(0.04, 2.0, 0.04, 1e-4, 0.0), quotes)
    np.testing.assert_allclose(iv, 0.2, atol=1e-5)


def test_sabr_model_iv_lognormal_without_vol_of_vol_is_alpha():
    quotes = OptionQuotes(("a", "b", "c"), np.array([90.0, 100.0, 110.0]), np.array([30, 30, 91]) / 365.0,
                          np.array([True] * 3), np.ones(3), np.ones(3), np.ones(3), np.ones(3), 100.0)
    iv = sabr_model_iv({30: SABRParams(0.25, 1.0, 0.0, 0.0), 90: SABRParams(0.3, 1.0, 0.0, 0.0)}, quotes)
    np.testing.assert_allclose(iv, [0.25, 0.25, 0.3])


# --------------------------------------------------------------------------- term structure


def test_term_structure_steep_far_leg_sells_the_calendar():
    out = TermStructureSignal().evaluate([0.25, 0.5, 1.0], [0.2, 0.2, 0.26], [0.2, 0.2, 0.2],
                                         ("N", "M", "F"), rmse_iv=0.0)
    # slope 0.5y->1y: 0.06/0.5 = 0.12 per year against 0: far rich -> sell far, buy near
    assert [(s.instrument, s.direction) for s in out] == [("M", 1), ("F", -1)]
    assert out[0].strength == pytest.approx(0.12) and out[0].confidence == pytest.approx(1.0)
    assert out[0].group == "term:M/F"


def test_term_structure_confidence_at_threshold_scaled_by_fit():
    out = TermStructureSignal(TermSignalConfig(threshold=0.05)).evaluate(
        [0.5, 1.0], [0.2, 0.2], [0.2, 0.17], ("N", "F"), rmse_iv=0.005)
    # model slope -0.06/0.5 = -0.06... market 0: d = 0.06 -> fit 0.5 * (0.6 + 0.4 * 0.2)
    assert [(s.instrument, s.direction) for s in out] == [("N", 1), ("F", -1)]
    assert out[0].confidence == pytest.approx(0.5 * (0.6 + 0.4 * (0.06 / 0.05 - 1)))


def test_term_structure_calendar_arbitrage_always_signals():
    out = TermStructureSignal().evaluate([0.25, 0.5], [0.3, 0.2], [0.3, 0.2], ("N", "F"), rmse_iv=0.009)
    # total variance 0.3^2 0.25 = 0.0225 > 0.2^2 0.5 = 0.02: buy the far leg, sell the near
    assert [(s.instrument, s.direction, s.confidence) for s in out] == [("N", -1, 1.0), ("F", 1, 1.0)]


def test_atm_term_structure_picks_the_strike_nearest_the_forward():
    K = np.array([95.0, 100.0, 105.0, 95.0, 101.0])
    T = np.array([0.25, 0.25, 0.25, 0.5, 0.5])
    prices = bs.price(100.0, K, T, 0.0, 0.0, np.array([0.2, 0.21, 0.22, 0.23, 0.24]), True)
    quotes = OptionQuotes(tuple("abcde"), K, T, np.array([True] * 5), prices * 0.99, prices * 1.01,
                          np.ones(5), np.ones(5), 100.0)
    exps, iv, names, _ = atm_term_structure(quotes)
    assert names == ("b", "e") and exps.tolist() == [0.25, 0.5]
    assert iv[0] == pytest.approx(0.21, abs=2e-3)


# --------------------------------------------------------------------------- failure handling


def test_failing_signal_type_is_disabled_and_the_rest_go_on():
    alerts = []
    engine = SignalEngine(disable_after=2, on_alert=lambda k, e: alerts.append((k, str(e))))

    def broken():
        raise RuntimeError("calibration surface missing")

    ok = VolArbSignal()
    quotes = _one_option(0.19, 0.21)
    for _ in range(3):
        assert engine.run("term", broken) == []
        assert len(engine.run("volarb", ok.evaluate, quotes, [0.3], rmse_iv=0.0)) == 1
    assert engine.disabled == {"term": "RuntimeError: calibration surface missing"}
    assert alerts == [("term", "calibration surface missing")]
    assert engine.failures["term"] == 2  # not called again once disabled
    engine.enable("term")
    assert engine.run("term", lambda: []) == [] and "term" not in engine.disabled
