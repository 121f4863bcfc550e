"""Gateware arming: model fair values to trigger thresholds (the pure function).

What
    :func:`arm` turns a fair value into an :class:`ArmedThreshold`: the
    gateware's trigger buys up to ``max_qty`` when ``ask <= buy_below`` and
    sells when ``bid >= sell_above``, with

        edge       = edge_e4 + fair * edge_bps / 10^4
        buy_below  = floor_to_tick(fair - edge)
        sell_above = ceil_to_tick(fair + edge)

    For a derivative the fair value moves with its underlying: the threshold
    carries ``delta`` (Q16.16 fixed point, signed) and the underlying's
    reference price ``ref_e4`` at which ``fair`` was computed, and the
    gateware shifts both thresholds by ``delta * (underlying - ref)``.
    :func:`effective_thresholds` is that integer arithmetic (the golden model
    for the trigger stage), :func:`would_trigger` the comparison.

Why
    The trigger compares every top-of-book change with thresholds in
    nanoseconds; the host computes them from its calibrated models. Rounding
    is always *away* from fair value, so an armed threshold never promises
    less than the configured edge (tested). Register writes come later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from host.config import ArmingConfig
from host.types import PRICE_SCALE

__all__ = ["DELTA_ONE", "ArmedThreshold", "ArmingError", "arm", "effective_thresholds", "would_trigger"]

DELTA_ONE = 1 << 16
"""Q16.16: delta 1.0."""


class ArmingError(ValueError):
    """Arguments that cannot make a threshold; the message names the argument."""


@dataclass(frozen=True)
class ArmedThreshold:
    """One instrument's trigger thresholds (prices in 1/10000 units).

    ``buy_below = 0`` disarms buying (a fair value below the edge).
    ``delta_q16``/``ref_e4``: derivative adjustment (0/0 for a plain instrument).
    """

    instrument: str
    buy_below: int
    sell_above: int
    max_qty: int
    delta_q16: int = 0
    ref_e4: int = 0


def arm(instrument: str, fair_e4: float, tick_e4: int, config: ArmingConfig = ArmingConfig(), *,
        delta: float = 0.0, ref_e4: int = 0, max_qty: int | None = None) -> ArmedThreshold:
    """Thresholds around ``fair_e4`` (fair value in 1/10000 units, may be fractional) on the tick grid."""
    if not (math.isfinite(fair_e4) and fair_e4 > 0):
        raise ArmingError(f"fair_e4 must be > 0, got {fair_e4!r}")
    if not (isinstance(tick_e4, int) and tick_e4 > 0):
        raise ArmingError(f"tick_e4 must be a positive integer, got {tick_e4!r}")
    if not math.isfinite(delta):
        raise ArmingError(f"delta must be finite, got {delta!r}")
    if delta and ref_e4 <= 0:
        raise ArmingError(f"ref_e4 (underlying reference price) must be > 0 with a delta, got {ref_e4!r}")
    qty = config.max_qty if max_qty is None else max_qty
    if qty <= 0:
        raise ArmingError(f"max_qty must be > 0, got {qty!r}")
    edge = config.edge_e4 + fair_e4 * config.edge_bps / PRICE_SCALE
    buy = math.floor((fair_e4 - edge) / tick_e4) * tick_e4
    sell = math.ceil((fair_e4 + edge) / tick_e4) * tick_e4
    # float division can land a hair on the wrong side of a tick: step away from fair value
    while buy > fair_e4 - edge:
        buy -= tick_e4
    while sell < fair_e4 + edge:
        sell += tick_e4
    return ArmedThreshold(instrument, max(int(buy), 0), int(sell), int(qty),
                          int(round(delta * DELTA_ONE)), int(ref_e4) if delta else 0)


def effective_thresholds(armed: ArmedThreshold, underlying_e4: int = 0) -> tuple[int, int]:
    """``(buy_below, sell_above)`` after the delta shift for the underlying's current price.

    Integer arithmetic as the gateware does it: ``p = delta_q16 *
    (underlying - ref)``; the buy threshold moves by ``p >> 16`` (arithmetic
    shift: floor) and the sell threshold by ``-((-p) >> 16)`` (ceiling), both
    away from fair value; buying disarmed stays disarmed. (Delta itself is
    quantised to 2^-16.)
    """
    if armed.delta_q16 == 0 or armed.ref_e4 == 0:
        return armed.buy_below, armed.sell_above
    p = armed.delta_q16 * (underlying_e4 - armed.ref_e4)
    buy = armed.buy_below + (p >> 16) if armed.buy_below > 0 else 0
    return max(buy, 0), armed.sell_above - ((-p) >> 16)


def would_trigger(armed: ArmedThreshold, bid_e4: int, ask_e4: int, underlying_e4: int = 0) -> int:
    """+1 if the ask is at or below the buy threshold, -1 if the bid is at or above the sell one, else 0."""
    buy, sell = effective_thresholds(armed, underlying_e4)
    if ask_e4 > 0 and buy > 0 and ask_e4 <= buy:
        return 1
    if bid_e4 > 0 and bid_e4 >= sell:
        return -1
    return 0
