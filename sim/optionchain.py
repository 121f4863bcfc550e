"""Synthetic options chains priced with Heston, for tests, benchmarks and demos.

What
    :func:`generate_chain` prices calls and puts on a grid of expiries
    (calendar days) and strikes around the forward with
    :func:`models.heston.price`, puts a bid-ask spread around each price that
    widens away from the money, optionally adds noise (a fraction of the
    half-spread) and rounds to a tick; :func:`write_chain_csv` writes it in
    the format :func:`host.calibration.load_chain_csv` reads (columns
    ``expiry_days,strike,type,bid,ask,spot,rate,dividend``).

Why
    A chain priced with known parameters is the reference a calibration is
    tested against: without noise the calibration must give the parameters
    back, with noise it must stay within the spreads.

How
    Strikes for expiry ``T`` are ``F exp(u)`` on an even grid of
    log-moneyness ``u`` whose half-width is ``min(ln(1.2), width * 0.2
    sqrt(T))`` (short expiries get a narrower grid, as listed chains do).
    The spread in vol terms is ``vol_spread + wing_spread * |u| / sqrt(T)``
    (vol units), converted to price through the Black-Scholes vega at the
    Heston implied vol, with at least ``min_spread`` (price units).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import black_scholes as bs
from models import heston
from models.heston import HestonParams

__all__ = ["DEFAULT_EXPIRIES_DAYS", "DEFAULT_PARAMS", "SyntheticChain", "generate_chain", "write_chain_csv"]

DEFAULT_PARAMS = HestonParams(v0=0.04, kappa=1.5, theta=0.06, sigma=0.4, rho=-0.65)
"""An equity-like surface (20 % spot vol, skewed, Feller satisfied: ratio 1.125)."""

DEFAULT_EXPIRIES_DAYS = (30, 60, 91, 182, 273, 365)


@dataclass(frozen=True)
class SyntheticChain:
    """One generated chain (arrays per row: one call or put at one strike and expiry).

    expiry_days, strike, is_call, bid, ask, price (the noise-free Heston price)
    spot, rate, dividend (per year, continuously compounded), params
    """

    spot: float
    rate: float
    dividend: float
    params: HestonParams
    expiry_days: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    price: np.ndarray

    @property
    def expiry_years(self) -> np.ndarray:
        return self.expiry_days / 365.0

    @property
    def mid(self) -> np.ndarray:
        return 0.5 * (self.bid + self.ask)


def generate_chain(
    params: HestonParams = DEFAULT_PARAMS,
    *,
    spot=100.0,
    rate=0.03,
    dividend=0.01,
    expiries_days=DEFAULT_EXPIRIES_DAYS,
    strikes_per_expiry=25,
    width=2.2,
    both_types=True,
    vol_spread=0.002,
    wing_spread=0.004,
    min_spread=0.01,
    noise=0.0,
    tick=None,
    seed=0,
) -> SyntheticChain:
    """Price a chain with Heston ``params``.

    ``both_types`` lists a call and a put at every strike (otherwise only the
    out-of-the-money one). ``noise`` moves each mid by ``noise * half-spread
    * N(0, 1)`` (so ``noise=1`` is a standard deviation of half the spread);
    ``tick`` rounds bid down and ask up to the tick. ``seed`` fixes the noise.
    """
    rng = np.random.default_rng(seed)
    days = np.asarray(expiries_days, dtype=float)
    if np.any(days <= 0):
        raise ValueError("expiries_days must be > 0")
    T_e = days / 365.0
    u = np.linspace(-1.0, 1.0, int(strikes_per_expiry))
    rows_T, rows_days, rows_K = [], [], []
    for d, t in zip(days, T_e):
        F = spot * math.exp((rate - dividend) * t)
        half = min(math.log(1.2), width * 0.2 * math.sqrt(t))
        K = np.round(F * np.exp(u * half), 2)
        rows_T.append(np.full(K.size, t))
        rows_days.append(np.full(K.size, d))
        rows_K.append(K)
    T = np.concatenate(rows_T)
    days_col = np.concatenate(rows_days)
    K = np.concatenate(rows_K)
    F = spot * np.exp((rate - dividend) * T)
    if both_types:
        T = np.concatenate([T, T])
        days_col = np.concatenate([days_col, days_col])
        K = np.concatenate([K, K])
        F = np.concatenate([F, F])
        is_call = np.concatenate([np.ones(F.size // 2, bool), np.zeros(F.size // 2, bool)])
    else:
        is_call = K >= F
    price = heston.price(spot, K, T, rate, dividend, params, is_call)
    iv = bs.implied_vol(price, spot, K, T, rate, dividend, is_call)
    iv = np.where(np.isfinite(iv), iv, math.sqrt(params.theta))
    vega = bs.vega(spot, K, T, rate, dividend, iv)
    x = np.abs(np.log(K / F)) / np.sqrt(T)
    spread = np.maximum(min_spread, vega * (vol_spread + wing_spread * x))
    mid = price + noise * 0.5 * spread * rng.standard_normal(price.size)
    bid = np.maximum(mid - 0.5 * spread, 0.0)
    ask = np.maximum(mid + 0.5 * spread, bid + min_spread)
    if tick:
        bid = np.floor(bid / tick + 1e-9) * tick
        ask = np.ceil(ask / tick - 1e-9) * tick
    order = np.lexsort((~is_call, K, days_col))
    return SyntheticChain(
        spot=float(spot), rate=float(rate), dividend=float(dividend), params=params,
        expiry_days=days_col[order], strike=K[order], is_call=is_call[order],
        bid=bid[order], ask=ask[order], price=price[order],
    )


def write_chain_csv(chain: SyntheticChain, path, *, market_columns=True) -> Path:
    """Write ``chain`` as CSV (atomically: a temporary file renamed into place).

    Columns ``expiry_days,strike,type,bid,ask`` and, with ``market_columns``,
    ``spot,rate,dividend`` on every row (otherwise pass them to the loader).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    header = ["expiry_days", "strike", "type", "bid", "ask"]
    if market_columns:
        header += ["spot", "rate", "dividend"]
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(chain.strike.size):
            row = [f"{chain.expiry_days[i]:g}", f"{chain.strike[i]:.2f}", "C" if chain.is_call[i] else "P",
                   repr(float(chain.bid[i])), repr(float(chain.ask[i]))]
            if market_columns:
                row += [repr(chain.spot), repr(chain.rate), repr(chain.dividend)]
            writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
