"""Smart order routing across venues by displayed liquidity at the touch and venue latency.

What
    :func:`route` splits an :class:`~host.types.OrderIntent` into
    :class:`~host.types.ChildOrder` s:

    1. *Eligible venues*: configured venues with a top of book for the
       instrument that is no older than ``max_quote_age_ns`` (when ``now_ns``
       is given) and whose touch is marketable within the limit (a buy needs
       ``ask <= limit`` and ask size > 0; a sell ``bid >= limit``).
    2. *Ranking*: by effective price, the touch worsened by
       ``latency_cost_e4_per_us * latency_us`` (a slower venue's displayed
       price is less likely to still be there), then by lower latency, then
       by venue name (deterministic).
    3. *Allocation*: in rank order, each venue gets ``min(displayed size,
       remaining)`` at its touch price (a child never sweeps past the touch).
    4. *Residual*: what the touch cannot fill rests at the order's limit on
       the fastest configured venue (lowest latency, then name), marked
       ``resting``.

    The children's quantities always add up to the order's; no taking
    child exceeds its venue's displayed size or crosses the limit.

Why
    Issue 10: routing across at least two venues by displayed liquidity at the
    touch and configured venue latency, documented and tested.
"""

from __future__ import annotations

from host.config import RoutingConfig
from host.types import ChildOrder, OrderIntent, Side, TopOfBook

__all__ = ["RoutingError", "rank_venues", "route"]


class RoutingError(ValueError):
    """A quote for the wrong instrument, an unknown venue, ..."""


def rank_venues(order: OrderIntent, quotes: dict[str, TopOfBook], config: RoutingConfig,
                now_ns: int | None = None) -> list[tuple[str, int, int]]:
    """Eligible venues best first: ``[(venue, touch_price_e4, displayed_size)]``."""
    latency = {v.name: v.latency_us for v in config.venues}
    for venue, q in quotes.items():
        if venue not in latency:
            raise RoutingError(f"quote from unconfigured venue {venue!r} (configured: {sorted(latency)})")
        if q.instrument != order.instrument:
            raise RoutingError(f"venue {venue}: quote for {q.instrument}, order for {order.instrument}")
    ranked = []
    for venue, q in quotes.items():
        if now_ns is not None and now_ns - q.timestamp > config.max_quote_age_ns:
            continue
        cost = config.latency_cost_e4_per_us * latency[venue]
        if order.side is Side.BUY:
            if q.ask_size <= 0 or q.ask_price <= 0 or q.ask_price > order.limit_price:
                continue
            ranked.append((q.ask_price + cost, latency[venue], venue, q.ask_price, q.ask_size))
        else:
            if q.bid_size <= 0 or q.bid_price <= 0 or q.bid_price < order.limit_price:
                continue
            ranked.append((-(q.bid_price - cost), latency[venue], venue, q.bid_price, q.bid_size))
    ranked.sort()
    return [(venue, price, size) for _, _, venue, price, size in ranked]


def route(order: OrderIntent, quotes: dict[str, TopOfBook], config: RoutingConfig = RoutingConfig(),
          now_ns: int | None = None) -> list[ChildOrder]:
    """Children of ``order`` across venues (see the module docstring); ``quotes`` is ``{venue: top}``."""
    remaining = order.quantity
    children = []
    for venue, price, size in rank_venues(order, quotes, config, now_ns):
        if remaining == 0:
            break
        take = min(size, remaining)
        children.append(ChildOrder(venue, order.instrument, order.side, take, price))
        remaining -= take
    if remaining:
        home = min(config.venues, key=lambda v: (v.latency_us, v.name)).name
        children.append(ChildOrder(home, order.instrument, order.side, remaining, order.limit_price, resting=True))
    return children
