"""Calibration speed and accuracy: calarb against QuantLib in the same run.

On one synthetic surface (``sim/optionchain.py``, Heston-priced, noise of half
a spread, 0.01 ticks, prepared by ``host/calibration.py``: about 150
out-of-the-money quotes over six expiries from 30 to 365 days):

* calarb's Heston calibration (``models.heston_calibration``): the full
  pipeline (differential evolution, then Levenberg-Marquardt on the analytic
  Jacobian, Feller constrained), and LM alone from a fixed starting point;
* QuantLib's ``HestonModel.calibrate``: one ``HestonModelHelper`` per quote
  with the same market implied vol, ``AnalyticHestonEngine``,
  ``LevenbergMarquardt``, from the same starting point, with both
  ``ImpliedVolError`` and ``PriceError`` residuals. QuantLib's Heston model
  does not impose Feller, so calarb's LM-only run has ``feller="off"``.

Every parameter set found is scored the same way: priced with
``models.heston.price`` against the quotes' mids, RMSE in price and in implied
vol (and the distance to the parameters the surface was generated with).
Also: SABR calibration time per smile, and implied vols per second for
``models.black_scholes.implied_vol`` (vectorised, 10^6 options) against a
Python loop over QuantLib's ``blackFormulaImpliedStdDev`` (a subset).

Prints and writes ``build/bench/calibration.json``. Run as
``python -m bench.calibration``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import QuantLib as ql

from host.calibration import Chain, calibrate_sabr_surface, prepare
from models import black_scholes as bs
from models import heston
from models.heston import HestonParams
from models.heston_calibration import calibrate_heston
from sim.optionchain import DEFAULT_PARAMS, generate_chain

OUT = Path("build/bench/calibration.json")
START = HestonParams(v0=0.02, kappa=3.0, theta=0.03, sigma=0.6, rho=-0.3)
REPEATS = 3


def surface(noise=0.5, seed=5):
    g = generate_chain(DEFAULT_PARAMS, noise=noise, tick=0.01, seed=seed)
    chain = Chain(spot=g.spot, rate=g.rate, dividend=g.dividend, expiry=g.expiry_years, strike=g.strike,
                  is_call=g.is_call, bid=g.bid, ask=g.ask, line=np.arange(g.strike.size) + 2)
    return prepare(chain)


def score(quotes, params):
    p = HestonParams(*params) if not isinstance(params, HestonParams) else params
    model = heston.price(quotes.spot, quotes.strike, quotes.expiry, quotes.rate, quotes.dividend, p, quotes.is_call)
    iv = bs.implied_vol(model, quotes.spot, quotes.strike, quotes.expiry, quotes.rate, quotes.dividend,
                        quotes.is_call)
    return {
        "params": dict(zip(heston.PARAM_NAMES, map(float, p.as_array()))),
        "rmse_iv": float(np.sqrt(np.nanmean((iv - quotes.iv) ** 2))),
        "rmse_price": float(np.sqrt(np.mean((model - quotes.mid) ** 2))),
        "max_param_error_vs_true": float(np.max(np.abs(p.as_array() - DEFAULT_PARAMS.as_array()))),
        "feller_ratio": float(p.feller_ratio),
    }


def best_time(fn):
    times, result = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def calarb_heston(quotes, **kw):
    return calibrate_heston(quotes.spot, quotes.rate, quotes.dividend, quotes.strike, quotes.expiry, quotes.mid,
                            quotes.is_call, spread=quotes.spread, **kw)


def quantlib_heston(quotes, error_type):
    today = ql.Date(2, ql.January, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    calendar = ql.NullCalendar()
    r_ts = ql.YieldTermStructureHandle(ql.FlatForward(today, quotes.rate, dc))
    q_ts = ql.YieldTermStructureHandle(ql.FlatForward(today, quotes.dividend, dc))
    spot = ql.QuoteHandle(ql.SimpleQuote(quotes.spot))
    s = START
    process = ql.HestonProcess(r_ts, q_ts, spot, s.v0, s.kappa, s.theta, s.sigma, s.rho)
    model = ql.HestonModel(process)
    engine = ql.AnalyticHestonEngine(model)
    helpers = []
    for T, K, vol in zip(quotes.expiry, quotes.strike, quotes.iv):
        days = int(round(T * 365))
        h = ql.HestonModelHelper(ql.Period(days, ql.Days), calendar, quotes.spot, float(K),
                                 ql.QuoteHandle(ql.SimpleQuote(float(vol))), r_ts, q_ts, error_type)
        h.setPricingEngine(engine)
        helpers.append(h)
    lm = ql.LevenbergMarquardt(1e-8, 1e-8, 1e-8)
    t0 = time.perf_counter()
    model.calibrate(helpers, lm, ql.EndCriteria(1000, 200, 1e-10, 1e-10, 1e-10))
    seconds = time.perf_counter() - t0
    theta, kappa, sigma, rho, v0 = (float(x) for x in model.params())
    return seconds, HestonParams(v0, kappa, theta, sigma, rho), model.endCriteria()


def iv_throughput(n=1_000_000, n_ql=20_000, seed=0):
    rng = np.random.default_rng(seed)
    S = 100.0
    K = S * np.exp(rng.uniform(-0.5, 0.5, n))
    T = rng.uniform(0.05, 2.0, n)
    vol = rng.uniform(0.05, 0.8, n)
    r, q = 0.03, 0.01
    # keep strikes within 5 standard deviations of the forward: beyond, a double price no longer
    # determines the vol and both inverters' "errors" measure the input's rounding, not the inverter
    sd = np.abs(np.log(K / (S * np.exp((r - q) * T)))) / (vol * np.sqrt(T))
    K = np.where(sd < 5, K, S * np.exp((r - q) * T))
    is_call = rng.random(n) < 0.5
    prices = bs.price(S, K, T, r, q, vol, is_call)
    bs.implied_vol(prices[:1000], S, K[:1000], T[:1000], r, q, is_call[:1000])
    t0 = time.perf_counter()
    iv = bs.implied_vol(prices, S, K, T, r, q, is_call)
    ours = time.perf_counter() - t0
    ok = np.isfinite(iv)
    ours_err = float(np.max(np.abs(iv[ok] - vol[ok])))
    F = S * np.exp((r - q) * T[:n_ql])
    D = np.exp(-r * T[:n_ql])
    out = np.full(n_ql, np.nan)
    t0 = time.perf_counter()
    for i in range(n_ql):
        try:
            sd = ql.blackFormulaImpliedStdDev(ql.Option.Call if is_call[i] else ql.Option.Put, float(K[i]),
                                              float(F[i]), float(prices[i]), float(D[i]), 0.0, ql.nullDouble(),
                                              1e-12, 100)
            out[i] = sd / np.sqrt(T[i])
        except RuntimeError:
            pass
    theirs = time.perf_counter() - t0
    ok_ql = np.isfinite(out)
    ql_err = float(np.max(np.abs(out[ok_ql] - vol[:n_ql][ok_ql])))
    return {
        "calarb": {"options": n, "seconds": ours, "per_second": n / ours, "max_abs_error": ours_err,
                   "failed": int((~ok).sum())},
        "quantlib_blackFormulaImpliedStdDev_loop": {"options": n_ql, "seconds": theirs, "per_second": n_ql / theirs,
                                                    "max_abs_error": ql_err, "failed": int((~ok_ql).sum())},
        "speedup": (n / ours) / (n_ql / theirs),
    }


def main():
    quotes = surface()
    report = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "quantlib": ql.__version__, "processor": platform.processor()},
              "surface": {"quotes": len(quotes), "expiries_days": [round(t * 365) for t in quotes.expiries()],
                          "true_params": dict(zip(heston.PARAM_NAMES, map(float, DEFAULT_PARAMS.as_array()))),
                          "noise": "N(0, half-spread) on mids, 0.01 ticks", "dropped": quotes.dropped},
              "heston": {}}
    calarb_heston(quotes, global_stage=False)  # warm-up
    t, fit = best_time(lambda: calarb_heston(quotes))
    report["heston"]["calarb_de_lm_feller_constraint"] = {"seconds": t, "nfev": fit.nfev, "njev": fit.njev,
                                                          **score(quotes, fit.params)}
    t, fit = best_time(lambda: calarb_heston(quotes, global_stage=False, x0=START, feller="off"))
    report["heston"]["calarb_lm_only_from_start"] = {"seconds": t, "nfev": fit.nfev, "njev": fit.njev,
                                                     **score(quotes, fit.params)}
    t, fit = best_time(lambda: calarb_heston(quotes, global_stage=False, x0=START, feller="off", fit="iv"))
    report["heston"]["calarb_lm_only_from_start_iv_residuals"] = {"seconds": t, "nfev": fit.nfev,
                                                                  **score(quotes, fit.params)}
    for name, error_type in (("quantlib_lm_implied_vol_error", ql.BlackCalibrationHelper.ImpliedVolError),
                             ("quantlib_lm_price_error", ql.BlackCalibrationHelper.PriceError)):
        seconds, params, end = quantlib_heston(quotes, error_type)
        report["heston"][name] = {"seconds": seconds, "end_criteria": str(end), **score(quotes, params)}
    report["heston"]["start"] = dict(zip(heston.PARAM_NAMES, map(float, START.as_array())))
    report["heston"]["speedup_lm_vs_quantlib_iv_error"] = (
        report["heston"]["quantlib_lm_implied_vol_error"]["seconds"]
        / report["heston"]["calarb_lm_only_from_start"]["seconds"])

    sabr_times = []
    for _ in range(REPEATS):
        surface_fit = calibrate_sabr_surface(quotes)
        sabr_times.append(surface_fit.seconds)
    per_smile = np.min(np.array(sabr_times), axis=0)
    report["sabr"] = {"smiles": len(per_smile), "seconds_per_smile": [float(s) for s in per_smile],
                      "mean_seconds_per_smile": float(per_smile.mean()),
                      "rmse_iv": [float(f.rmse) for f in surface_fit.fits],
                      "arbitrage_free": [bool(a.ok) for a in surface_fit.arbitrage]}
    report["implied_vol"] = iv_throughput()
    report["budgets"] = {"heston_full_recalibration_s": 30.0, "sabr_per_smile_s": 1.0}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, OUT)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
