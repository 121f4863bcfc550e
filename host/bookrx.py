"""Golden model of the gateware book (``hw/book.py``): the reference book behind the gateware's policies.

:class:`GatewareBook` keeps what the gateware keeps and reports what it reports,
operation for operation: a set-associative order table of ``2**set_bits`` sets
of ``ways`` entries, the set being the XOR fold of the reference (an add goes
to the lowest free way of its set; an add into a set whose ways are all live
is lost: collision), a slot table of tracked stock locates, and per book
side a window of ``2**window_bits`` ticks (100 price4 units) from a base that
an add into an empty side moves (base = tick - window/2, at least 0) when the
price lies outside it; an add outside a non-empty side's window is lost. The
orders it keeps go through :class:`host.book.BookSet`, so the levels and the
top-of-book events are the reference book's for the kept orders; when nothing
is lost they are exactly the reference book's. A ``U`` is two operations
(retire the original, add the new reference with its side), as in the gateware.
"""

from __future__ import annotations

from collections import Counter

from host.book import BookSet
from protocols.events import LevelEvent, LostEvent, TobEvent

TICK = 100
BOOK_COUNTERS = ("messages", "adds", "lost_collision", "lost_window", "duplicate", "rejected", "unknown",
                 "overfill", "recentred", "refused", "tob")


def fold(ref: int, bits: int) -> int:
    """The order table set of ``ref`` (the gateware's ``hw.ordertable.fold``)."""
    out = 0
    for i in range(0, 64, bits):
        out ^= (ref >> i) & ((1 << bits) - 1)
    return out


class GatewareBook:
    """The gateware book's behaviour; :meth:`apply` takes decoded records (``protocols.itch.decoded_record``)."""

    def __init__(self, set_bits: int = 11, ways: int = 8, window_bits: int = 7, slots: int = 32):
        self.set_bits, self.ways, self.window_bits, self.slots = set_bits, ways, window_bits, slots
        self.window = 1 << window_bits
        self.slot_locate: dict[int, int] = {}        # slot -> locate
        self.table: dict[int, list] = {}              # set -> ways: [ref, slot, side 'B'/'S', idx, shares] or None
        self.orders = [0] * (2 * slots)
        self.base = [0] * (2 * slots)
        self.books = BookSet()
        self.counters: Counter = Counter(dict.fromkeys(BOOK_COUNTERS, 0))

    @property
    def config(self) -> int:
        return self.set_bits | self.window_bits << 8 | self.slots << 16 | self.ways << 24

    @classmethod
    def from_params(cls, params) -> GatewareBook:
        """The model of a build with ``hw.ordertable.BookParams`` ``params``."""
        return cls(params.set_bits, params.ways, params.window_bits, params.slots)

    def _lookup(self, ref: int) -> tuple[list, int | None]:
        """The ways of ``ref``'s set and the way holding ``ref`` (None if it is not live)."""
        ways = self.table.setdefault(fold(ref, self.set_bits), [None] * self.ways)
        for w, entry in enumerate(ways):
            if entry is not None and entry[0] == ref:
                return ways, w
        return ways, None

    # -- registers ------------------------------------------------------------------------------

    def write_slot(self, value: int) -> None:
        """``book.slot``: bits 0-15 locate, bits 16-20 slot, bit 24 valid."""
        slot = (value >> 16) & 0x1F
        if slot >= self.slots or self.orders[2 * slot] or self.orders[2 * slot + 1]:
            self.counters["refused"] += 1
            return
        if value >> 24 & 1:
            self.slot_locate[slot] = value & 0xFFFF
        else:
            self.slot_locate.pop(slot, None)

    def write_window(self, value: int) -> None:
        """``book.window``: bits 0-31 base in ticks, bits 32-37 book side (slot * 2 + 1 for asks)."""
        book = (value >> 32) & 0x3F
        if book >= 2 * self.slots or self.orders[book]:
            self.counters["refused"] += 1
            return
        self.base[book] = value & 0xFFFFFFFF

    def _slot_of(self, locate: int) -> int | None:
        for slot in range(self.slots):            # the lowest matching slot wins, as in the gateware
            if self.slot_locate.get(slot) == locate:
                return slot
        return None

    # -- operations -----------------------------------------------------------------------------

    def _level(self, seq, locate, side, price) -> LevelEvent:
        book = self.books.books[locate]
        shares, count = book.side(side).level.get(price, (0, 0))
        return LevelEvent(0, seq, locate, side, price, shares, count)

    def _add(self, out, seq, ts, locate, slot, ref, side, price, shares) -> None:
        c = self.counters
        if side not in ("B", "S") or shares == 0:
            c["rejected"] += 1
            return
        ways, hit = self._lookup(ref)
        if hit is not None:
            c["duplicate"] += 1
            return
        if None not in ways:
            c["lost_collision"] += 1
            out.append(LostEvent(0, seq, ref, locate, 1, side, price))
            return
        book = 2 * slot + (side == "S")
        tick, rest = divmod(price, TICK)
        inside = rest == 0 and 0 <= tick - self.base[book] < self.window
        recentre = self.orders[book] == 0 and rest == 0 and not inside
        if not inside and not recentre:
            c["lost_window"] += 1
            out.append(LostEvent(0, seq, ref, locate, 2, side, price))
            return
        if recentre:
            self.base[book] = max(0, tick - self.window // 2)
            c["recentred"] += 1
        c["adds"] += 1
        self.orders[book] += 1
        ways[ways.index(None)] = [ref, slot, side, tick - self.base[book], shares]
        self.books.apply({"type": "A", "stock_locate": locate, "order_ref": ref, "side": side,
                          "price": price, "shares": shares, "timestamp": ts}, seq)
        out.append(self._level(seq, locate, side, price))

    def _reduce(self, out, seq, ts, locate, slot, ref, shares: int | None) -> tuple | None:
        """Take ``shares`` (None: all) off order ``ref``; returns the entry, None if it is unknown."""
        ways, hit = self._lookup(ref)
        if hit is None or ways[hit][1] != slot:
            self.counters["unknown"] += 1
            return None
        entry = ways[hit]
        _, _, side, idx, open_ = entry
        price = (self.base[2 * slot + (side == "S")] + idx) * TICK
        take = open_ if shares is None else shares
        if take >= open_:
            if take > open_:
                self.counters["overfill"] += 1
            ways[hit] = None
            self.orders[2 * slot + (side == "S")] -= 1
            msg = {"type": "D", "stock_locate": locate, "order_ref": ref, "timestamp": ts}
        else:
            entry[4] = open_ - take
            msg = {"type": "X", "stock_locate": locate, "order_ref": ref, "shares": take, "timestamp": ts}
        self.books.apply(msg, seq)
        out.append(self._level(seq, locate, side, price))
        return entry

    def apply(self, record: dict, seq: int) -> list:
        """One decoded record: its LOST and LEVEL events in operation order, then at most one TOB."""
        code = chr(record["type"]) if isinstance(record["type"], int) else record["type"]
        if code not in "AFECXDU":
            return []
        locate = record["stock_locate"]
        slot = self._slot_of(locate)
        if slot is None:
            return []
        self.counters["messages"] += 1
        book = self.books.books.get(locate)
        before = book.quote() if book is not None else (0, 0, 0, 0)
        out: list = []
        ts = record["timestamp"]
        side = record.get("side", 0)
        side = chr(side) if isinstance(side, int) and side else (side or "")
        if code in "AF":
            self._add(out, seq, ts, locate, slot, record["order_ref"], side, record["price"], record["shares"])
        elif code in "ECX":
            self._reduce(out, seq, ts, locate, slot, record["order_ref"], record["shares"])
        elif code == "D":
            self._reduce(out, seq, ts, locate, slot, record["order_ref"], None)
        else:
            entry = self._reduce(out, seq, ts, locate, slot, record["order_ref"], None)
            if entry is not None:
                self._add(out, seq, ts, locate, slot, record["new_order_ref"], entry[2], record["price"],
                          record["shares"])
        book = self.books.books.get(locate)
        after = book.quote() if book is not None else (0, 0, 0, 0)
        if after != before:
            self.counters["tob"] += 1
            bid_p, bid_s, ask_p, ask_s = after
            out.append(TobEvent(0, seq, locate, bid_p, bid_s, ask_p, ask_s, ts))
        return out

    def levels(self, locate: int, side: str, n: int | None = None):
        """``(price, shares, orders)`` best first, as :meth:`host.book.BookSet.levels`."""
        return self.books.levels(locate, side, n)
