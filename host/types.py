"""The records that flow between the host's trading stages.

What
    Small frozen dataclasses: :class:`TopOfBook` (a book's best levels, the
    same fields as ``host/book.py``'s), :class:`Signal` (one generator's view
    of one instrument), :class:`OrderIntent` (what sizing asks to trade),
    :class:`ChildOrder` (one venue's share after routing),
    :class:`Execution` (one ExecutionReport) and :class:`Position`.

Why
    Every stage (signals, aggregation, risk, sizing, routing, arming,
    reconciliation) takes and returns these, so a stage can be tested alone
    and replaced without touching its neighbours.

Units
    Prices are integers in 1/10000 of the currency (``*_e4``, as in ITCH)
    until a stage needs floats; quantities are integer shares/contracts;
    timestamps are integer nanoseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "PRICE_SCALE",
    "ChildOrder",
    "Execution",
    "OrderIntent",
    "Position",
    "Side",
    "Signal",
    "TopOfBook",
    "check_tob",
    "e4_to_price",
    "price_to_e4",
]

PRICE_SCALE = 10_000
"""Integer price units per currency unit (ITCH prices are in 1/10000 dollars)."""


def e4_to_price(value_e4: int) -> float:
    """Integer 1/10000 units to a float price."""
    return value_e4 / PRICE_SCALE


def price_to_e4(price: float) -> int:
    """Float price to the nearest integer 1/10000 unit."""
    return int(round(price * PRICE_SCALE))


class Side(enum.IntEnum):
    """Order side; the value is the sign of the position change."""

    BUY = 1
    SELL = -1

    @property
    def fix(self) -> str:
        """FIX tag 54 value."""
        return "1" if self is Side.BUY else "2"


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best bid and ask of one instrument (``host/book.py`` emits the same fields).

    A side with no orders has price 0 and size 0.
    """

    instrument: str
    bid_price: int  # 1/10000 currency units
    bid_size: int
    ask_price: int
    ask_size: int
    timestamp: int  # ns
    seq: int

    @property
    def two_sided(self) -> bool:
        return self.bid_size > 0 and self.ask_size > 0 and 0 < self.bid_price <= self.ask_price

    @property
    def mid(self) -> float:
        """Mid price as a float in currency units (NaN unless two-sided)."""
        if not self.two_sided:
            return float("nan")
        return (self.bid_price + self.ask_price) / (2 * PRICE_SCALE)


def check_tob(top: TopOfBook, previous: TopOfBook | None = None, *, max_jump: float = 0.10) -> list[str]:
    """Per-tick validation (DESIGN.md's "data validation" stage): the problems with ``top``, empty if none.

    Schema: non-negative prices and sizes, a price with every size; quality:
    a crossed book, a sequence number or timestamp going backwards against
    ``previous`` (same instrument); anomaly: a mid moving more than
    ``max_jump`` (fraction) from ``previous``'s.
    """
    problems = []
    for side in ("bid", "ask"):
        price, size = getattr(top, f"{side}_price"), getattr(top, f"{side}_size")
        if price < 0 or size < 0:
            problems.append(f"{side}: negative price or size ({price}, {size})")
        elif (price == 0) != (size == 0):
            problems.append(f"{side}: price {price} with size {size}")
    if top.bid_price > 0 and top.ask_price > 0 and top.bid_price > top.ask_price:
        problems.append(f"crossed: bid {top.bid_price} > ask {top.ask_price}")
    if previous is not None:
        if previous.instrument != top.instrument:
            problems.append(f"previous is {previous.instrument}, not {top.instrument}")
        if top.seq <= previous.seq:
            problems.append(f"seq {top.seq} not after {previous.seq}")
        if top.timestamp < previous.timestamp:
            problems.append(f"timestamp {top.timestamp} before {previous.timestamp}")
        if top.two_sided and previous.two_sided and abs(top.mid / previous.mid - 1.0) > max_jump:
            problems.append(f"mid jumped {top.mid / previous.mid - 1.0:+.1%}")
    return problems


@dataclass(frozen=True, slots=True)
class Signal:
    """One generator's view of one instrument.

    direction  : +1 wants to be long, -1 short, 0 flat (an exit)
    confidence : in [0, 1]
    source     : generator kind ("pairs", "volarb", "term")
    strength   : the generator's raw measure (z-score, IV difference, slope gap)
    expected_return : expected return of the trade as a fraction of notional, if the
                 generator has one (sizing's Kelly bound uses it)
    group      : legs of one trade (both legs of a pair, both of a calendar) share it
    ratio      : quantity of this leg per unit of the group's first leg (hedge ratio)
    """

    instrument: str
    direction: int
    confidence: float
    source: str
    strength: float = 0.0
    timestamp: int = 0
    expected_return: float | None = None
    group: str = ""
    ratio: float = 1.0

    def __post_init__(self):
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"direction must be -1, 0 or 1, got {self.direction!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the host wants to place, before routing.

    quantity > 0; ``limit_price`` in 1/10000 units (the worst price accepted).
    """

    instrument: str
    side: Side
    quantity: int
    limit_price: int
    source: str = ""
    timestamp: int = 0

    def __post_init__(self):
        if self.quantity <= 0:
            raise ValueError(f"quantity must be > 0, got {self.quantity!r}")

    @property
    def signed_quantity(self) -> int:
        return int(self.side) * self.quantity


@dataclass(frozen=True, slots=True)
class ChildOrder:
    """One venue's share of an :class:`OrderIntent` after routing.

    ``resting`` marks the residual that found no displayed liquidity at the
    touch and is sent to rest at the limit price.
    """

    venue: str
    instrument: str
    side: Side
    quantity: int
    limit_price: int
    resting: bool = False


@dataclass(frozen=True, slots=True)
class Execution:
    """One ExecutionReport (FIX 35=8) as the reconciler sees it.

    exec_type: FIX 150 ("0" new, "F" trade, "4" cancelled, "8" rejected, ...);
    last_qty/last_price: this fill (0 for non-fills); cum_qty/leaves_qty as
    reported by the venue.
    """

    clordid: str
    exec_id: str
    exec_type: str
    instrument: str
    side: Side
    last_qty: int = 0
    last_price: int = 0
    cum_qty: int = 0
    leaves_qty: int = 0
    timestamp: int = 0
    venue: str = ""


@dataclass(slots=True)
class Position:
    """A position in one instrument, at average cost.

    quantity signed; avg_price float currency units (0 when flat);
    realised_pnl in currency units.
    """

    instrument: str
    quantity: int = 0
    avg_price: float = 0.0
    realised_pnl: float = 0.0
    fills: int = field(default=0)

    def apply_fill(self, signed_qty: int, price: float) -> float:
        """Apply a fill (``signed_qty`` > 0 buys) at ``price``; returns the P&L it realised."""
        realised = 0.0
        q = self.quantity
        if q == 0 or (q > 0) == (signed_qty > 0):
            new_q = q + signed_qty
            self.avg_price = (self.avg_price * abs(q) + price * abs(signed_qty)) / abs(new_q)
            self.quantity = new_q
        else:
            closed = min(abs(q), abs(signed_qty))
            direction = 1 if q > 0 else -1
            realised = closed * (price - self.avg_price) * direction
            new_q = q + signed_qty
            if new_q == 0:
                self.avg_price = 0.0
            elif (new_q > 0) != (q > 0):  # flipped: the remainder opens at the fill price
                self.avg_price = price
            self.quantity = new_q
        self.realised_pnl += realised
        self.fills += 1
        return realised

    def unrealised(self, mark: float) -> float:
        """P&L of the open quantity at ``mark`` (currency units)."""
        return self.quantity * (mark - self.avg_price) if self.quantity else 0.0
