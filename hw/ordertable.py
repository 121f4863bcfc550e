"""The order table of the book: build parameters, entry layout and the set index hash.

The table maps 64-bit ITCH order references to live orders in ``ways``
block-RAM memories of ``2**set_bits`` entries each (default 4 x 4,096 =
16,384 orders), set-associative: an order's set is the XOR fold of its
reference into ``set_bits`` bits (sequential references fill consecutive
sets), and an entry keeps the reference's upper ``64 - set_bits`` bits as its
tag, so a lookup is exact. All ways of a set are read at once and their tags
checked in parallel. An entry holds the instrument slot, the side, the price
as an index into its book side's window (the window cannot move while the
side holds orders) and the open shares; 0 shares marks a free entry.

Placement and collision policy: an add goes to the lowest-numbered free way
of its set. An add whose set has every way live is not kept (the incumbents
stay), counted in ``book.lost_collision`` and reported as a ``BOOK_LOST``
event (reason collision) naming the order; later messages of that order are
counted in ``book.unknown``. A full table is the same case (every set full).
The read-modify-write and its forwarding live in ``hw/book.py``;
``host/bookrx.py`` implements the same placement in Python.
"""

from dataclasses import dataclass

from amaranth import Value
from amaranth.lib import data


@dataclass(frozen=True)
class BookParams:
    """Build parameters of the book (see ``book.config``)."""

    set_bits: int = 11
    """log2 of the order table's sets (entries per way)."""
    ways: int = 8
    """Ways per set (one block-RAM memory each)."""
    window_bits: int = 7
    """log2 of the price window per book side, in ticks of 100 price4 units."""
    slots: int = 32
    """Instrument slots (tracked instruments)."""

    def __post_init__(self):
        if not 1 <= self.ways <= 15:
            raise ValueError(f"ways must be 1..15, not {self.ways}")
        if not 1 <= self.set_bits <= 20:
            raise ValueError(f"set_bits must be 1..20, not {self.set_bits}")
        if not 1 <= self.slots <= 32:
            raise ValueError(f"slots must be 1..32 (book.slot has 5 slot bits), not {self.slots}")

    @property
    def sets(self) -> int:
        return 1 << self.set_bits

    @property
    def capacity(self) -> int:
        """Live orders the table can hold (``sets * ways``)."""
        return self.sets * self.ways

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
        return 32 + self.capacity.bit_length()

    @property
    def level_count_bits(self) -> int:
        return self.capacity.bit_length()

    @property
    def config(self) -> int:
        """The value of the ``book.config`` register."""
        return self.set_bits | self.window_bits << 8 | self.slots << 16 | self.ways << 24


def entry_layout(p: BookParams) -> data.StructLayout:
    """One order table entry (0 shares: free)."""
    return data.StructLayout({
        "shares": 32,
        "tag": 64 - p.set_bits,
        "slot": p.slot_bits,
        "side": 1,            # 1 = sell (ask)
        "idx": p.window_bits,
    })


def fold(ref: Value, bits: int) -> Value:
    """The set of order reference ``ref``: its 64 bits XOR-folded into ``bits`` bits."""
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
