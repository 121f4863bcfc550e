"""Reference market-by-price book over price-level updates (the golden model of ``hw/mbpbook.py``).

Per option series (slots allocated in order of first appearance, ``slots`` at
most) and side, ``depth`` levels of (valid, price4, size) with the rules of the
gateware book: ``new`` inserts at its level and shifts deeper levels down (the
last falls off), ``change`` replaces the level, ``delete`` removes it and shifts
deeper levels up; level 0, levels beyond ``depth`` and other actions are
ignored. Every applied update that changes the best bid or ask price or size
yields a :class:`Tob`, laid out like ``protocols.events.TOB_LAYOUT``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from protocols.fast.levels import CHANGE, DELETE, NEW, LevelUpdate

EMPTY = (0, 0, 0)


@dataclass(frozen=True)
class Tob:
    """Best bid and ask of one series after an update (prices price4, sizes 32-bit, empty side 0/0)."""

    instrument: int
    timestamp: int
    bid_price: int
    ask_price: int
    bid_size: int
    ask_size: int
    seq: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class MbpBook:
    """Apply :class:`~protocols.fast.levels.LevelUpdate` s; :meth:`apply` returns the TOB record or None."""

    def __init__(self, slots: int = 64, depth: int = 5) -> None:
        self.slots, self.depth = slots, depth
        self.books: dict[int, dict[int, list]] = {}
        self.counters = Counter({"updates": 0, "tob": 0, "untracked": 0, "ignored": 0})

    def best(self, security_id: int) -> tuple[int, int, int, int]:
        """(bid price, bid size, ask price, ask size) of a series; 0 for an empty side."""
        b = self.books.get(security_id)
        if b is None:
            return 0, 0, 0, 0
        (bv, bp, bs), (av, ap, as_) = b[0][0], b[1][0]
        return (bp if bv else 0, bs if bv else 0, ap if av else 0, as_ if av else 0)

    def levels(self, security_id: int, side: int) -> list[tuple[int, int] | None]:
        b = self.books.get(security_id)
        return [None] * self.depth if b is None else [(p, s) if v else None for v, p, s in b[side]]

    def apply(self, u: LevelUpdate) -> Tob | None:
        book = self.books.get(u.security_id)
        if book is None:
            if len(self.books) >= self.slots:
                self.counters["untracked"] += 1
                return None
            book = self.books[u.security_id] = {0: [EMPTY] * self.depth, 1: [EMPTY] * self.depth}
        if not 1 <= u.level <= self.depth or u.action not in (NEW, CHANGE, DELETE):
            self.counters["ignored"] += 1
            return None
        self.counters["updates"] += 1
        before = self.best(u.security_id)
        side = book[u.side]
        i = u.level - 1
        entry = (1, u.price4 & 0xFFFFFFFF, u.size & 0xFFFFFFFF)
        if u.action == NEW:
            side[i + 1:] = side[i:-1]
            side[i] = entry
        elif u.action == CHANGE:
            side[i] = entry
        else:
            side[i:] = side[i + 1:] + [EMPTY]
        after = self.best(u.security_id)
        if after == before:
            return None
        self.counters["tob"] += 1
        return Tob(u.security_id & 0xFFFF, u.sending_time & ((1 << 48) - 1), after[0], after[2], after[1], after[3],
                   u.msg_seq & 0xFFFFFFFF)


def tob_records(updates, slots: int = 64, depth: int = 5) -> tuple[list[Tob], MbpBook]:
    """Every TOB record of a stream of updates, and the final book."""
    book = MbpBook(slots, depth)
    out = [t for t in map(book.apply, updates) if t is not None]
    return out, book
