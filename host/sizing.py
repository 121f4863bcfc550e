"""Position sizing: volatility scaling, a fractional Kelly bound, sector and position caps.

What
    :func:`target_position` turns a direction and confidence into a target
    position (signed shares) whose notional is the smallest of

    * vol scaling: ``confidence * equity * target_vol / vol`` (``vol`` the
      instrument's annualised volatility, ``default_vol`` if unknown) - each
      position contributes about ``target_vol`` of equity in risk;
    * fractional Kelly: ``kelly_fraction * max(0, p - (1 - p) / b) * equity``
      with ``p`` the confidence taken as the win probability and ``b`` the
      payoff ratio (1 by default: ``f* = 2p - 1``);
    * ``max_position_notional``;
    * the sector's headroom: ``max_sector_gross`` less the gross notional the
      sector already holds in *other* instruments;

    rounded *down* to whole lots. :func:`size_order` returns the order that
    moves the current position to the target (an exit, direction 0, targets
    flat). :func:`size_legs` sizes the legs of one trade (a pair, a calendar)
    together so their quantities keep the legs' ratios while every leg stays
    inside its own bounds.

Why
    DESIGN.md: sizing by vol scaling, Kelly bounds and sector limits. Every
    bound is an upper bound, so the result never exceeds any of them (a
    tested property); risk checks the portfolio afterwards regardless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from host.config import SizingConfig
from host.types import OrderIntent, Side, price_to_e4

__all__ = ["SizeResult", "SizingError", "kelly_fraction", "size_legs", "size_order", "target_position"]


class SizingError(ValueError):
    """Invalid input to sizing; the message names it."""


def kelly_fraction(p: float, payoff: float = 1.0) -> float:
    """Full Kelly fraction for win probability ``p`` and win/loss ratio ``payoff`` (0 if no edge)."""
    if not payoff > 0:
        raise SizingError(f"payoff must be > 0, got {payoff!r}")
    return max(0.0, p - (1.0 - p) / payoff)


@dataclass(frozen=True)
class SizeResult:
    """A target position and the bounds (notional, currency units) it was limited by."""

    target: int
    bounds: dict
    binding: str


def _bounds(confidence, price, vol, equity, sector_other_gross, config: SizingConfig, payoff) -> dict:
    if not (price > 0 and math.isfinite(price)):
        raise SizingError(f"price must be > 0, got {price!r}")
    if not 0.0 <= confidence <= 1.0:
        raise SizingError(f"confidence must be in [0, 1], got {confidence!r}")
    vol = config.default_vol if vol is None or not (vol > 0 and math.isfinite(vol)) else vol
    equity = max(float(equity), 0.0)
    return {
        "vol_target": confidence * equity * config.target_vol / vol,
        "kelly": config.kelly_fraction * kelly_fraction(confidence, payoff) * equity,
        "max_position": config.max_position_notional,
        "sector": max(0.0, config.max_sector_gross - max(sector_other_gross, 0.0)),
    }


def target_position(direction: int, confidence: float, price: float, vol: float | None, equity: float,
                    sector_other_gross: float = 0.0, config: SizingConfig = SizingConfig(), *, lot: int = 1,
                    payoff: float = 1.0) -> SizeResult:
    """Target signed position for ``direction`` (see the module docstring); price in currency units."""
    if direction not in (-1, 0, 1):
        raise SizingError(f"direction must be -1, 0 or 1, got {direction!r}")
    if lot < 1:
        raise SizingError(f"lot must be >= 1, got {lot!r}")
    bounds = _bounds(confidence, price, vol, equity, sector_other_gross, config, payoff)
    if direction == 0:
        return SizeResult(0, bounds, "exit")
    binding = min(bounds, key=bounds.get)
    lots = math.floor(bounds[binding] / (price * lot) * (1 + 1e-12))
    while lots > 0 and lots * lot * price > bounds[binding]:  # never above the bound after rounding
        lots -= 1
    return SizeResult(direction * lots * lot, bounds, binding)


def size_order(instrument: str, direction: int, confidence: float, price: float, vol: float | None,
               equity: float, position: int, sector_other_gross: float = 0.0,
               config: SizingConfig = SizingConfig(), *, lot: int = 1, limit_price_e4: int | None = None,
               source: str = "", timestamp: int = 0) -> OrderIntent | None:
    """The order taking ``position`` to the target; ``None`` if already there.

    ``limit_price_e4`` defaults to ``price``.
    """
    target = target_position(direction, confidence, price, vol, equity, sector_other_gross, config,
                             lot=lot).target
    delta = target - position
    if delta == 0:
        return None
    limit = price_to_e4(price) if limit_price_e4 is None else limit_price_e4
    return OrderIntent(instrument, Side.BUY if delta > 0 else Side.SELL, abs(delta), limit, source, timestamp)


def size_legs(legs: list[dict], equity: float, config: SizingConfig = SizingConfig()) -> list[int]:
    """Target positions for the legs of one trade, keeping their ratios.

    Each leg is ``{"direction", "confidence", "price", "vol", "ratio", "lot",
    "sector_other_gross"}`` (``vol``, ``lot``, ``sector_other_gross``
    optional). The trade is ``units`` of its first leg and ``units *
    ratio_i`` of leg ``i``; ``units`` is the largest that keeps every leg
    inside its bounds, then each leg is rounded down to its lots.
    """
    if not legs:
        return []
    units = math.inf
    caps = []
    for i, leg in enumerate(legs):
        ratio = float(leg.get("ratio", 1.0))
        if not (ratio > 0 and math.isfinite(ratio)):
            raise SizingError(f"legs[{i}].ratio must be > 0, got {ratio!r}")
        b = _bounds(leg["confidence"], leg["price"], leg.get("vol"), equity, leg.get("sector_other_gross", 0.0),
                    config, 1.0)
        caps.append(min(b.values()))
        units = min(units, caps[-1] / (leg["price"] * ratio))
    out = []
    for leg, cap in zip(legs, caps):
        lot = int(leg.get("lot", 1))
        qty = math.floor(units * float(leg.get("ratio", 1.0)) / lot) * lot
        while qty > 0 and qty * leg["price"] > cap:  # rounding never takes a leg past its bound
            qty -= lot
        out.append(int(leg["direction"]) * max(qty, 0))
    return out
