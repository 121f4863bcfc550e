"""The order table of the book: build parameters, entry layout and the index hash.

The table maps 64-bit ITCH order references to live orders in one block-RAM
memory of ``2**order_bits`` entries (default 16,384), direct-mapped: an order's
index is the XOR fold of its reference into ``order_bits`` bits (sequential
references fill consecutive indices), and the entry keeps the reference's
upper ``64 - order_bits`` bits as its tag, so a lookup is exact. An entry
holds the instrument slot, the side, the price as an index into its book
side's window (the window cannot move while the side holds orders) and the
open shares; 0 shares marks a free entry.

Collision policy: an add whose index holds another live order is not kept
(the incumbent stays), counted in ``book.lost_collision`` and reported as a
``BOOK_LOST`` event naming the order; later messages of that order are
counted in ``book.unknown``. "Table full" is the same case for a
direct-mapped table. The read-modify-write and its forwarding live in
``hw/book.py``; ``host/bookrx.py`` implements the same policy in Python.
"""

from dataclasses import dataclass

from amaranth import Value
from amaranth.lib import data


@dataclass(frozen=True)
class BookParams:
    """Build parameters of the book (see ``book.config``)."""

    order_bits: int = 14
    """log2 of the order table capacity."""
    window_bits: int = 7
    """log2 of the price window per book side, in ticks of 100 price4 units."""
    slots: int = 32
    """Instrument slots (tracked instruments)."""

    @property
    def capacity(self) -> int:
        return 1 << self.order_bits

    @property
    def window(self) -> int:
        return 1 << self.window_bits

    @property
    def slot_bits(self) -> int:
        return max(1, (self.slots - 1).bit_length())

    @property
    def books(self) -> int:
        return 2 * self.slots

    @property
    def level_shares_bits(self) -> int:
        """A level holds at most ``capacity`` orders of at most 2**32 - 1 shares: it cannot overflow."""
        return 32 + self.order_bits

    @property
    def level_count_bits(self) -> int:
        return self.order_bits + 1

    @property
    def config(self) -> int:
        """The value of the ``book.config`` register."""
        return self.order_bits | self.window_bits << 8 | self.slots << 16


def entry_layout(p: BookParams) -> data.StructLayout:
    """One order table entry (0 shares: free)."""
    return data.StructLayout({
        "shares": 32,
        "tag": 64 - p.order_bits,
        "slot": p.slot_bits,
        "side": 1,            # 1 = sell (ask)
        "idx": p.window_bits,
    })


def fold(ref: Value, bits: int) -> Value:
    """The table index of order reference ``ref``: its 64 bits XOR-folded into ``bits`` bits."""
    chunks = [ref[i:min(i + bits, 64)] for i in range(0, 64, bits)]
    out = chunks[0]
    for c in chunks[1:]:
        out = out ^ c          # a shorter last chunk is zero-extended
    return out[:bits]


def fold_int(ref: int, bits: int) -> int:
    """:func:`fold` on a Python integer (the golden model in ``host/bookrx.py`` has its own copy)."""
    out = 0
    for i in range(0, 64, bits):
        out ^= (ref >> i) & ((1 << bits) - 1)
    return out
