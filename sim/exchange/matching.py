"""The exchange's matching engine: one price-time priority book per symbol.

:class:`MatchingEngine` takes orders (limit or market, day or IOC), cancels and
replaces, and answers each with a list of events in the order they happened:
:class:`ExecReport` and :class:`CancelReject` for the order's owner, and book
changes (:class:`BookAdd`, :class:`BookExecute`, :class:`BookCancel`,
:class:`BookDelete`, :class:`BookReplace`) that the market data publisher turns
into ITCH ``A``/``E``/``X``/``D``/``U`` one for one. It is synchronous and
deterministic (no clock, no I/O), so the same inputs always give the same
events; the venue wraps it in asyncio.

Rules, as real venues apply them:

* Trades happen at the resting order's price; the aggressor walks the book
  best price first, oldest order first at each price.
* A day limit order's remainder rests (ITCH ``A``); an IOC or market order's
  remainder is canceled (it never reaches the book, so the feed shows nothing
  for it). A market order with nothing to trade against is canceled
  (``text="no liquidity"``).
* A replace that only lowers the size at the same price keeps the order's
  place (ITCH ``X`` for the removed shares); one that changes the price or
  raises the size loses it: the order goes to the back under a new book
  reference (ITCH ``U``), or, when the new price crosses, the old reference is
  deleted (``D``) and the order matches as a new aggressor before resting
  (``A``).
* Every ExecReport has ``cum_qty + leaves_qty == order_qty`` while the order
  is live; the last one (filled, canceled, rejected) has ``leaves_qty == 0``.

Prices are integers in 1/10000 dollars (ITCH ``price4``); ``None`` is a market
order's price. ``order_id`` is stable for an order's life; ``ref`` is its
current ITCH order reference (it changes when a replace loses priority).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

BUY, SELL = "B", "S"
DAY, IOC = "DAY", "IOC"

# FIX 4.4 ExecType (150) and OrdStatus (39) values the engine uses.
EXEC_NEW, EXEC_CANCELED, EXEC_REPLACED, EXEC_REJECTED, EXEC_TRADE = "0", "4", "5", "8", "F"
STATUS_NEW, STATUS_PARTIAL, STATUS_FILLED, STATUS_CANCELED, STATUS_REJECTED = "0", "1", "2", "4", "8"
TERMINAL = frozenset({STATUS_FILLED, STATUS_CANCELED, STATUS_REJECTED})

# FIX OrdRejReason (103) and CxlRejReason (102) codes.
REJ_UNKNOWN_SYMBOL, REJ_DUPLICATE, REJ_OTHER = 1, 6, 99
CXL_TOO_LATE, CXL_UNKNOWN, CXL_OTHER = 0, 1, 99


class MatchingError(ValueError):
    """A request the engine cannot take at all (not an order reject): names the field."""


# --------------------------------------------------------------------------- #
# requests and events
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class NewOrder:
    """A new order: ``price`` in price4 units, ``None`` for a market order."""

    owner: str
    cl_ord_id: str
    symbol: str
    side: str
    qty: int
    price: int | None = None
    tif: str = DAY


@dataclass(frozen=True)
class CancelRequest:
    """Cancel the owner's live order ``orig_cl_ord_id`` (its latest ClOrdID)."""

    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str = ""
    side: str = ""


@dataclass(frozen=True)
class ReplaceRequest:
    """Replace the owner's live order ``orig_cl_ord_id``: ``qty`` is the new total
    order quantity (filled shares included), ``price`` the new limit price."""

    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str
    qty: int
    price: int | None
    symbol: str = ""
    side: str = ""


@dataclass(frozen=True)
class ExecReport:
    """An ExecutionReport for ``owner``. ``exec_type``/``ord_status`` are FIX 4.4
    codes; ``notional`` is the sum of fill price x shares (price4 x shares), so the
    average price is ``notional / cum_qty``; ``ref`` is the order's current ITCH
    order reference: the one it rests (or will rest) under; 0 for IOC and market orders."""

    owner: str
    order_id: int
    exec_id: int
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str
    side: str
    exec_type: str
    ord_status: str
    order_qty: int
    price: int | None
    tif: str
    last_qty: int
    last_px: int
    cum_qty: int
    leaves_qty: int
    notional: int
    ref: int = 0
    text: str = ""
    rej_reason: int | None = None

    @property
    def avg_px(self) -> float:
        """Average fill price in price4 units (0 before the first fill)."""
        return self.notional / self.cum_qty if self.cum_qty else 0.0

    @property
    def done(self) -> bool:
        return self.ord_status in TERMINAL


@dataclass(frozen=True)
class CancelReject:
    """An OrderCancelReject: ``response_to`` is ``"1"`` (cancel) or ``"2"`` (replace)."""

    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: int
    ord_status: str
    response_to: str
    reason: int
    text: str


@dataclass(frozen=True)
class BookAdd:
    symbol: str
    ref: int
    side: str
    shares: int
    price: int


@dataclass(frozen=True)
class BookExecute:
    symbol: str
    ref: int
    shares: int
    match: int
    price: int


@dataclass(frozen=True)
class BookCancel:
    symbol: str
    ref: int
    shares: int


@dataclass(frozen=True)
class BookDelete:
    symbol: str
    ref: int


@dataclass(frozen=True)
class BookReplace:
    symbol: str
    ref: int
    new_ref: int
    shares: int
    price: int


BOOK_EVENTS = (BookAdd, BookExecute, BookCancel, BookDelete, BookReplace)


# --------------------------------------------------------------------------- #
# the book
# --------------------------------------------------------------------------- #


@dataclass(eq=False)
class Order:
    """A live (or just finished) order as the engine keeps it."""

    order_id: int
    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str
    symbol: str
    side: str
    qty: int
    price: int | None
    tif: str
    ref: int = 0
    cum_qty: int = 0
    notional: int = 0
    status: str = STATUS_NEW

    @property
    def leaves(self) -> int:
        return 0 if self.status in TERMINAL else self.qty - self.cum_qty


@dataclass
class Side:
    """One side of a book: price levels (FIFO of orders by ref) and the sorted prices."""

    side: str
    levels: dict[int, OrderedDict[int, Order]] = field(default_factory=dict)
    prices: list[int] = field(default_factory=list)   # ascending

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.side == BUY else self.prices[0]

    def add(self, order: Order) -> None:
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = OrderedDict()
            bisect.insort(self.prices, order.price)
        level[order.ref] = order

    def remove(self, order: Order) -> None:
        level = self.levels[order.price]
        del level[order.ref]
        if not level:
            del self.levels[order.price]
            del self.prices[bisect.bisect_left(self.prices, order.price)]

    def depth(self) -> list[tuple[int, int, int]]:
        """``(price, shares, orders)`` per level, best first."""
        ps = reversed(self.prices) if self.side == BUY else self.prices
        return [(p, sum(o.leaves for o in self.levels[p].values()), len(self.levels[p])) for p in ps]

    def orders(self) -> Iterable[Order]:
        ps = reversed(self.prices) if self.side == BUY else self.prices
        for p in ps:
            yield from self.levels[p].values()


@dataclass
class Book:
    """The book of one symbol."""

    symbol: str
    bids: Side = field(default_factory=lambda: Side(BUY))
    asks: Side = field(default_factory=lambda: Side(SELL))

    def side(self, side: str) -> Side:
        return self.bids if side == BUY else self.asks

    def top(self) -> tuple[int | None, int | None]:
        """``(best bid, best ask)``; ``None`` for an empty side."""
        return self.bids.best(), self.asks.best()

    def crossed(self) -> bool:
        bid, ask = self.top()
        return bid is not None and ask is not None and bid >= ask


def _crosses(side: str, limit: int | None, resting_price: int) -> bool:
    if limit is None:
        return True
    return resting_price <= limit if side == BUY else resting_price >= limit


# --------------------------------------------------------------------------- #
# the engine
# --------------------------------------------------------------------------- #


class MatchingEngine:
    """Books for ``symbols`` with price-time priority (see the module doc).

    ``tick`` (price4 units, per symbol or one for all) is the price grid limit
    prices must sit on; order references, order ids, exec ids and match numbers
    each count up from 1 across all symbols, as one venue's feed does.
    """

    def __init__(self, symbols: Iterable[str], tick: int | dict[str, int] = 100):
        self.books: dict[str, Book] = {s: Book(s) for s in symbols}
        self.ticks = tick if isinstance(tick, dict) else {s: tick for s in self.books}
        self.orders: dict[tuple[str, str], Order] = {}   # (owner, latest ClOrdID) -> live order
        self.seen: set[tuple[str, str]] = set()           # every (owner, ClOrdID) ever used
        self._by_ref: dict[int, Order] = {}
        self.done: dict[tuple[str, str], Order] = {}      # (owner, last ClOrdID) -> finished order
        self.next_ref = 1
        self.next_order_id = 1
        self.next_exec_id = 1
        self.next_match = 1

    # ---- helpers -------------------------------------------------------------

    def _new_ref(self) -> int:
        ref, self.next_ref = self.next_ref, self.next_ref + 1
        return ref

    def _report(self, o: Order, exec_type: str, *, last_qty: int = 0, last_px: int = 0, text: str = "",
                rej_reason: int | None = None) -> ExecReport:
        eid, self.next_exec_id = self.next_exec_id, self.next_exec_id + 1
        return ExecReport(o.owner, o.order_id, eid, o.cl_ord_id, o.orig_cl_ord_id, o.symbol, o.side, exec_type,
                          o.status, o.qty, o.price, o.tif, last_qty, last_px, o.cum_qty, o.leaves, o.notional,
                          o.ref, text, rej_reason)

    def _reject(self, req: NewOrder, reason: int, text: str) -> list:
        oid, self.next_order_id = self.next_order_id, self.next_order_id + 1
        o = Order(oid, req.owner, req.cl_ord_id, "", req.symbol, req.side, req.qty, req.price, req.tif,
                  status=STATUS_REJECTED)
        return [self._report(o, EXEC_REJECTED, text=text, rej_reason=reason)]

    def _validate(self, symbol: str, side: str, qty: int, price: int | None, tif: str) -> str | None:
        if symbol not in self.books:
            return f"unknown symbol {symbol!r}"
        if side not in (BUY, SELL):
            return f"side {side!r} is not B or S"
        if not isinstance(qty, int) or qty <= 0:
            return f"quantity {qty!r} is not a positive integer"
        if tif not in (DAY, IOC):
            return f"time in force {tif!r} is not DAY or IOC"
        if price is not None:
            if price <= 0:
                return f"price {price} is not positive"
            if price % self.ticks[symbol]:
                return f"price {price} is not on the {self.ticks[symbol]} tick grid"
        return None

    def _rest(self, o: Order) -> None:
        if not o.ref:
            o.ref = self._new_ref()
        self.books[o.symbol].side(o.side).add(o)
        self._by_ref[o.ref] = o

    def _unrest(self, o: Order) -> None:
        self.books[o.symbol].side(o.side).remove(o)
        del self._by_ref[o.ref]

    def _finish(self, o: Order, status: str) -> None:
        o.status = status
        self.orders.pop((o.owner, o.cl_ord_id), None)
        self.done[(o.owner, o.cl_ord_id)] = o
        if o.orig_cl_ord_id:
            self.done[(o.owner, o.orig_cl_ord_id)] = o

    def _match(self, o: Order, events: list) -> None:
        """Trade ``o`` against the opposite side while it crosses (``o`` is not in the book)."""
        opp = self.books[o.symbol].side(SELL if o.side == BUY else BUY)
        while o.qty > o.cum_qty:
            best = opp.best()
            if best is None or not _crosses(o.side, o.price, best):
                break
            resting = next(iter(opp.levels[best].values()))
            n = min(o.qty - o.cum_qty, resting.qty - resting.cum_qty)
            match, self.next_match = self.next_match, self.next_match + 1
            events.append(BookExecute(o.symbol, resting.ref, n, match, best))
            for x in (resting, o):
                x.cum_qty += n
                x.notional += n * best
                x.status = STATUS_FILLED if x.cum_qty == x.qty else STATUS_PARTIAL
            if resting.status == STATUS_FILLED:
                self._unrest(resting)
                self._finish(resting, STATUS_FILLED)
            events.append(self._report(resting, EXEC_TRADE, last_qty=n, last_px=best))
            if o.status == STATUS_FILLED:
                self._finish(o, STATUS_FILLED)
            events.append(self._report(o, EXEC_TRADE, last_qty=n, last_px=best))

    def _place(self, o: Order, events: list) -> None:
        """Match ``o``, then rest a day limit order's remainder or cancel the rest."""
        self._match(o, events)
        if o.status in TERMINAL:
            return
        if o.price is not None and o.tif == DAY:
            self._rest(o)
            events.append(BookAdd(o.symbol, o.ref, o.side, o.qty - o.cum_qty, o.price))
            return
        text = "no liquidity" if o.price is None and o.cum_qty == 0 else f"{o.tif} remainder canceled"
        self._finish(o, STATUS_CANCELED)
        events.append(self._report(o, EXEC_CANCELED, text=text))

    def _find(self, owner: str, orig: str, cl: str, response_to: str) -> Order | CancelReject:
        o = self.orders.get((owner, orig))
        if o is not None:
            return o
        done = self.done.get((owner, orig))
        if done is not None:
            return CancelReject(owner, cl, orig, done.order_id, done.status, response_to, CXL_TOO_LATE,
                                "too late: the order is done")
        return CancelReject(owner, cl, orig, 0, STATUS_REJECTED, response_to, CXL_UNKNOWN, f"unknown order {orig!r}")

    # ---- requests ------------------------------------------------------------

    def submit(self, req: NewOrder) -> list:
        """Take a new order; returns the events it caused, in order."""
        if (req.owner, req.cl_ord_id) in self.seen:
            return self._reject(req, REJ_DUPLICATE, f"duplicate ClOrdID {req.cl_ord_id!r}")
        self.seen.add((req.owner, req.cl_ord_id))
        problem = self._validate(req.symbol, req.side, req.qty, req.price, req.tif)
        if problem:
            return self._reject(req, REJ_UNKNOWN_SYMBOL if req.symbol not in self.books else REJ_OTHER, problem)
        oid, self.next_order_id = self.next_order_id, self.next_order_id + 1
        o = Order(oid, req.owner, req.cl_ord_id, "", req.symbol, req.side, req.qty, req.price, req.tif)
        if o.price is not None and o.tif == DAY:
            o.ref = self._new_ref()      # the book reference it will rest under (told in the ack)
        self.orders[(o.owner, o.cl_ord_id)] = o
        events: list = [self._report(o, EXEC_NEW)]
        self._place(o, events)
        return events

    def cancel(self, req: CancelRequest) -> list:
        """Cancel a live order (ITCH ``D``); an unknown or finished one gets a CancelReject."""
        found = self._find(req.owner, req.orig_cl_ord_id, req.cl_ord_id, "1")
        if isinstance(found, CancelReject):
            return [found]
        if (req.owner, req.cl_ord_id) in self.seen:
            return [self._cxl_reject(found, req.cl_ord_id, "1", f"duplicate ClOrdID {req.cl_ord_id!r}")]
        self.seen.add((req.owner, req.cl_ord_id))
        o = found
        events: list = []
        if o.ref in self._by_ref:
            self._unrest(o)
            events.append(BookDelete(o.symbol, o.ref))
        del self.orders[(o.owner, o.cl_ord_id)]
        o.orig_cl_ord_id, o.cl_ord_id = o.cl_ord_id, req.cl_ord_id
        self._finish(o, STATUS_CANCELED)
        events.append(self._report(o, EXEC_CANCELED))
        return events

    def _cxl_reject(self, o: Order, cl: str, response_to: str, text: str) -> CancelReject:
        return CancelReject(o.owner, cl, o.cl_ord_id, o.order_id, o.status, response_to, CXL_OTHER, text)

    def replace(self, req: ReplaceRequest) -> list:
        """Change a live order's size and/or price (see the module doc for priority)."""
        found = self._find(req.owner, req.orig_cl_ord_id, req.cl_ord_id, "2")
        if isinstance(found, CancelReject):
            return [found]
        o = found
        if (req.owner, req.cl_ord_id) in self.seen:
            return [self._cxl_reject(o, req.cl_ord_id, "2", f"duplicate ClOrdID {req.cl_ord_id!r}")]
        price = o.price if req.price is None else req.price
        problem = self._validate(o.symbol, o.side, req.qty, price, o.tif)
        if problem is None and o.price is None:
            problem = "a market order cannot be replaced"
        if problem is None and req.qty <= o.cum_qty:
            problem = f"quantity {req.qty} is not above the {o.cum_qty} shares already filled"
        if problem:
            return [self._cxl_reject(o, req.cl_ord_id, "2", problem)]
        self.seen.add((req.owner, req.cl_ord_id))
        del self.orders[(o.owner, o.cl_ord_id)]
        o.orig_cl_ord_id, o.cl_ord_id = o.cl_ord_id, req.cl_ord_id
        self.orders[(o.owner, o.cl_ord_id)] = o
        old_leaves = o.qty - o.cum_qty
        new_leaves = req.qty - o.cum_qty
        events: list = []
        resting = o.ref in self._by_ref
        if price == o.price and new_leaves <= old_leaves:
            # keeps its place: a size reduction is a partial cancel on the feed
            o.qty = req.qty
            if resting and new_leaves < old_leaves:
                events.append(BookCancel(o.symbol, o.ref, old_leaves - new_leaves))
            events.append(self._report(o, EXEC_REPLACED))
            return events
        opp = self.books[o.symbol].side(SELL if o.side == BUY else BUY).best()
        crosses = opp is not None and _crosses(o.side, price, opp)
        if resting and not crosses:
            # loses its place: a new reference at the back of the (new) level
            old_ref = o.ref
            self._unrest(o)
            o.qty, o.price, o.ref = req.qty, price, self._new_ref()
            self._rest(o)
            events.append(BookReplace(o.symbol, old_ref, o.ref, new_leaves, price))
            events.append(self._report(o, EXEC_REPLACED))
            return events
        if resting:
            self._unrest(o)
            events.append(BookDelete(o.symbol, o.ref))
        o.qty, o.price, o.ref = req.qty, price, self._new_ref()
        events.append(self._report(o, EXEC_REPLACED))
        self._place(o, events)
        return events

    # ---- views ---------------------------------------------------------------

    def depth(self, symbol: str) -> tuple[list, list]:
        """``(bids, asks)`` as ``(price, shares, orders)`` levels, best first."""
        b = self.books[symbol]
        return b.bids.depth(), b.asks.depth()

    def resting(self, symbol: str) -> dict[int, tuple[str, int, int]]:
        """Every resting order of ``symbol``: ``ref -> (side, price, leaves)``."""
        b = self.books[symbol]
        return {o.ref: (o.side, o.price, o.leaves) for s in (b.bids, b.asks) for o in s.orders()}

    def live_orders(self, owner: str | None = None) -> list[Order]:
        return [o for (w, _), o in self.orders.items() if owner is None or w == owner]
