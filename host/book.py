"""Reference market-by-order book: every instrument's orders and price levels rebuilt from ITCH 5.0.

:class:`BookSet` is the readable golden model of the book stage (the gateware
book and :mod:`host.fastbook` are tested against it). It keeps every live order
by reference (ITCH order references are global across instruments) and, per
instrument and side, price levels (aggregate shares and order count) in sorted
order. :meth:`BookSet.apply` takes one decoded message and returns what it
caused: :class:`Trade` events for ``E``, ``C`` and ``P`` and at most one
:class:`TopOfBook` event, only when that instrument's best bid or ask price or
size changed.

Rules the message types follow (ITCH 5.0 section 4.3):

* ``A``/``F`` add an order; ``E`` executes (at the resting price) and ``C``
  executes at the message's price, both reduce the resting order; ``X``
  cancels shares, ``D`` deletes the rest; an order reaching 0 shares is gone.
* ``U`` retires the original order and adds ``new_order_ref`` with the
  original's side and instrument at the new price and shares; its event
  reflects the net change.
* ``P`` (non-displayed trade) reports a trade and changes no book.

Bad input is either raised as :class:`BookError` (``strict=True``, for tests
and replays that must be clean) or counted in :attr:`BookSet.counters` and
skipped (the default, for live feeds):

* ``unknown_order``: ``E``/``C``/``X``/``D``/``U`` of a reference that is not
  live in the book the message's ``stock_locate`` names;
* ``overfill``: an execute or cancel of more shares than are open; the order
  is removed (clamped to zero) and an execution still reports the message's
  shares as traded (that is what the exchange printed);
* ``duplicate_order``: an add (or a replace's new reference) of a live
  reference; the live order is kept and the add dropped;
* ``zero_shares``: an add (or a replace's new order) of 0 shares, dropped
  (a replace still retires its original);
* ``bad_side``: an add whose side is neither ``B`` nor ``S``, dropped.

Messages of instruments outside ``instruments`` are ignored and counted in
``untracked``; other message types only count in ``messages``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

BOOK_TYPES = frozenset("AFECXDUP")
"""The ITCH types that touch a book or report a trade."""
ERROR_COUNTERS = ("unknown_order", "overfill", "duplicate_order", "zero_shares", "bad_side")
"""Counters of bad input: each is a :class:`BookError` in strict mode."""
COUNTERS = ("messages", "tob_events", "trades", "untracked") + ERROR_COUNTERS
"""Every key of :attr:`BookSet.counters`, in a fixed order (shared with :mod:`host.fastbook`)."""


class BookError(ValueError):
    """A message the book cannot apply (strict mode): names the reason, type, order reference and seq."""

    def __init__(self, reason: str, code: str, order_ref: int, seq: int, detail: str = ""):
        self.reason, self.code, self.order_ref, self.seq = reason, code, order_ref, seq
        super().__init__(f"ITCH {code!r} order_ref {order_ref} at seq {seq}: {reason}"
                         + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class TopOfBook:
    """An instrument's best bid and ask (price4 units, aggregate shares; 0 for an empty side),
    with the ITCH timestamp and sequence number of the message that made it so."""

    instrument: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    timestamp: int
    seq: int

    def as_json(self) -> dict:
        return {"event": "tob", **asdict(self)}


@dataclass(frozen=True)
class Trade:
    """A trade reported by ``E`` (resting price), ``C`` (the execution price) or ``P``.

    ``side`` is the resting order's side (``P``: the message's side field).
    """

    instrument: int
    side: str
    price: int
    shares: int
    order_ref: int
    match_number: int
    timestamp: int
    seq: int
    kind: str

    def as_json(self) -> dict:
        return {"event": "trade", **asdict(self)}


class _Order:
    """A live order (mutable: executions and cancels reduce ``shares``)."""

    __slots__ = ("instrument", "side", "price", "shares")

    def __init__(self, instrument: int, side: str, price: int, shares: int):
        self.instrument, self.side, self.price, self.shares = instrument, side, price, shares


class _Side:
    """One side of one book: ``price -> [shares, orders]`` and the prices in ascending order."""

    __slots__ = ("bids", "prices", "level")

    def __init__(self, bids: bool):
        self.bids = bids
        self.prices: list[int] = []
        self.level: dict[int, list[int]] = {}

    def add(self, price: int, shares: int) -> None:
        lvl = self.level.get(price)
        if lvl is None:
            insort(self.prices, price)
            self.level[price] = [shares, 1]
        else:
            lvl[0] += shares
            lvl[1] += 1

    def take(self, price: int, shares: int, leaves: bool) -> None:
        """Remove ``shares`` from the level at ``price``; ``leaves``: one order leaves it too."""
        lvl = self.level[price]
        lvl[0] -= shares
        if leaves:
            lvl[1] -= 1
            if lvl[1] == 0:
                assert lvl[0] == 0, (price, lvl)
                del self.level[price]
                del self.prices[bisect_left(self.prices, price)]

    def best(self) -> tuple[int, int]:
        """``(price, shares)`` of the best level, ``(0, 0)`` when empty."""
        if not self.prices:
            return 0, 0
        p = self.prices[-1] if self.bids else self.prices[0]
        return p, self.level[p][0]

    def levels(self, n: int | None = None) -> list[tuple[int, int, int]]:
        prices = self.prices[::-1] if self.bids else self.prices
        if n is not None:
            prices = prices[:n]
        return [(p, *self.level[p]) for p in prices]


class _Book:
    __slots__ = ("bid", "ask", "last")

    def __init__(self):
        self.bid, self.ask = _Side(True), _Side(False)
        self.last: TopOfBook | None = None

    def side(self, side: str) -> _Side:
        return self.bid if side == "B" else self.ask

    def quote(self) -> tuple[int, int, int, int]:
        return self.bid.best() + self.ask.best()


def _text(value) -> str:
    """An alpha field as text, whether bytes (codec), str (``as_json``) or an int (decoded record)."""
    if isinstance(value, int):
        return chr(value) if value else ""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii", "replace").rstrip(" \0")
    return str(value).rstrip()


class _Msg:
    """Uniform read access to a message given as a codec dataclass or a dict
    (:func:`protocols.itch.as_json` or :func:`protocols.itch.decoded_record`)."""

    __slots__ = ("code", "_get")

    def __init__(self, msg):
        if isinstance(msg, dict):
            code = msg["type"]
            self.code = chr(code) if isinstance(code, int) else code
            self._get = msg.get
        else:
            self.code = msg.code
            self._get = lambda name, default=0: getattr(msg, name, default)

    def __getattr__(self, name):
        return self._get(name, 0)


class BookSet:
    """Books for every tracked instrument, fed one decoded ITCH message at a time (see the module doc)."""

    def __init__(self, strict: bool = False, instruments: Iterable[int] | None = None):
        self.strict = strict
        self.instruments = None if instruments is None else frozenset(int(i) for i in instruments)
        self.books: dict[int, _Book] = {}
        self.orders: dict[int, _Order] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- queries ----------------------------------------------------------------------------------

    def levels(self, instrument: int, side: str, n: int | None = None) -> list[tuple[int, int, int]]:
        """``(price, shares, orders)`` per level, best first (bids descending, asks ascending)."""
        book = self.books.get(instrument)
        return [] if book is None else book.side(_text(side)).levels(n)

    def top(self, instrument: int) -> TopOfBook | None:
        """The instrument's last top-of-book event (its current best bid and ask), None before any."""
        book = self.books.get(instrument)
        return None if book is None else book.last

    def snapshot(self, instrument: int, n: int = 10) -> dict:
        """Depth of ``n`` levels a side, JSON-ready, with the timestamp and seq of the last change."""
        last = self.top(instrument)
        return {"event": "depth", "instrument": instrument,
                "timestamp": last.timestamp if last else 0, "seq": last.seq if last else 0,
                "bids": [list(lv) for lv in self.levels(instrument, "B", n)],
                "asks": [list(lv) for lv in self.levels(instrument, "S", n)]}

    def order(self, ref: int) -> tuple[int, str, int, int] | None:
        """``(instrument, side, price, shares)`` of a live order, None if it is not live."""
        o = self.orders.get(ref)
        return None if o is None else (o.instrument, o.side, o.price, o.shares)

    # -- the update -------------------------------------------------------------------------------

    def _tracked(self, locate: int) -> bool:
        return self.instruments is None or locate in self.instruments

    def _bad(self, reason: str, code: str, ref: int, seq: int, detail: str = "") -> None:
        if self.strict:
            raise BookError(reason, code, ref, seq, detail)
        self.counters[reason] += 1

    def _live(self, m: _Msg, seq: int) -> _Order | None:
        """The live order ``m.order_ref`` in the book of ``m.stock_locate``, or None (counted)."""
        o = self.orders.get(m.order_ref)
        if o is None or o.instrument != m.stock_locate:
            self._bad("unknown_order", m.code, m.order_ref, seq,
                      "not live" if o is None else f"live in instrument {o.instrument}, not {m.stock_locate}")
            return None
        return o

    def _add(self, m: _Msg, ref: int, instrument: int, side: str, price: int, shares: int, seq: int) -> None:
        if side not in ("B", "S"):
            return self._bad("bad_side", m.code, ref, seq, f"side {side!r}")
        if ref in self.orders:
            return self._bad("duplicate_order", m.code, ref, seq, "reference is live")
        if shares == 0:
            return self._bad("zero_shares", m.code, ref, seq)
        book = self.books.get(instrument)
        if book is None:
            book = self.books[instrument] = _Book()
        self.orders[ref] = _Order(instrument, side, price, shares)
        book.side(side).add(price, shares)

    def _reduce(self, o: _Order, ref: int, shares: int) -> None:
        """Take ``shares`` off order ``ref`` (all of them: delete); an overfill clamps."""
        if shares >= o.shares:
            del self.orders[ref]
            self.books[o.instrument].side(o.side).take(o.price, o.shares, True)
            o.shares = 0
        else:
            o.shares -= shares
            self.books[o.instrument].side(o.side).take(o.price, shares, False)

    def apply(self, msg, seq: int) -> list[TopOfBook | Trade]:
        """Apply one decoded message (a :func:`protocols.itch.decode` dataclass or a dict of its
        fields); return its trades and at most one :class:`TopOfBook` (only when the best bid or
        ask price or size of the message's instrument changed)."""
        self.counters["messages"] += 1
        m = _Msg(msg)
        code = m.code
        if code not in BOOK_TYPES:
            return []
        locate = m.stock_locate
        if not self._tracked(locate):
            self.counters["untracked"] += 1
            return []
        book = self.books.get(locate)
        before = book.quote() if book is not None else (0, 0, 0, 0)
        events: list = []
        ts = m.timestamp
        if code in "AF":
            self._add(m, m.order_ref, locate, _text(m.side), m.price, m.shares, seq)
        elif code == "P":
            events.append(Trade(locate, _text(m.side), m.price, m.shares, m.order_ref, m.match_number, ts, seq, "P"))
        else:
            ref = m.order_ref
            o = self._live(m, seq)
            if o is None:
                return []
            if code in "ECX":
                shares = m.shares
                if shares > o.shares:
                    self._bad("overfill", code, ref, seq, f"{shares} shares, {o.shares} open")
                if code != "X":
                    price = o.price if code == "E" else m.price
                    events.append(Trade(locate, o.side, price, shares, ref, m.match_number, ts, seq, code))
                self._reduce(o, ref, shares)
            elif code == "D":
                self._reduce(o, ref, o.shares)
            else:  # U
                new_ref = m.new_order_ref
                if self.strict:      # check the new order before retiring the original
                    if new_ref != ref and new_ref in self.orders:
                        raise BookError("duplicate_order", code, new_ref, seq, "new reference is live")
                    if m.shares == 0:
                        raise BookError("zero_shares", code, new_ref, seq)
                self._reduce(o, ref, o.shares)
                self._add(m, new_ref, locate, o.side, m.price, m.shares, seq)
        self.counters["trades"] += len(events)
        book = self.books.get(locate)
        after = book.quote() if book is not None else (0, 0, 0, 0)
        if after != before:
            tob = TopOfBook(locate, *after, ts, seq)
            book.last = tob
            events.append(tob)
            self.counters["tob_events"] += 1
        return events


def tob_events(messages: Iterable[tuple[int, object]], strict: bool = False,
               instruments: Iterable[int] | None = None) -> Iterator[TopOfBook]:
    """The top-of-book change events of ``(seq, decoded message)`` pairs, in order."""
    books = BookSet(strict=strict, instruments=instruments)
    for seq, msg in messages:
        for ev in books.apply(msg, seq):
            if isinstance(ev, TopOfBook):
                yield ev
