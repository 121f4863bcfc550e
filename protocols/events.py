"""Events from the NIC to the host: kinds and byte layout, written once.

The gateware's event stream (``hw/events.py``) emits one packet per event;
the simulated NIC and a board NIC hand the same bytes to the host, which
decodes them here. Layout, little-endian:

* bytes 0-7: ``kind`` in byte 0, the cycle counter when the event left its
  stage in bytes 1-7 (56 bits);
* bytes 8-15: the event's first argument (a sequence number);
* then per kind: ``MESSAGE`` carries the message bytes; ``GAP`` carries the
  second sequence number in bytes 16-23; ``ITCH`` carries the decoded record
  (``protocols.itch.DECODED_LAYOUT``) as little-endian bytes; the book's
  events ``TOB``, ``BOOK_LOST`` and ``LEVEL`` carry a record laid out by
  :data:`TOB_LAYOUT`, :data:`LOST_LAYOUT` and :data:`LEVEL_LAYOUT` (fields
  least significant first, little-endian bytes); their first argument is the
  sequence number of the message that caused them.

A message event whose packet ended with ``abort`` was cut short on the wire
(its bytes are incomplete).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

HEADER_LEN = 16
TIMESTAMP_BITS = 56


class EventKind(enum.IntEnum):
    """What an event reports; the numbers are the wire values."""

    MESSAGE = 1
    """A MoldUDP64 message (only while ``events.control`` bit 0 asks for them)."""
    GAP = 2
    """Messages ``[expected, seq)`` were not received."""
    ITCH = 3
    """A decoded ITCH record (``protocols.itch.DECODED_LAYOUT``, little-endian), while ``events.control`` bit 1 asks."""
    TOB = 4
    """An instrument's best bid or ask price or size changed (``events.control`` bit 2)."""
    BOOK_LOST = 5
    """The book could not keep an order: collision in the order table or price outside the window (bit 3)."""
    LEVEL = 6
    """A price level's new aggregate shares and order count after one book operation (bit 4)."""


TOB_LAYOUT = (("instrument", 16), ("timestamp", 48), ("bid_price", 32), ("ask_price", 32),
              ("bid_size", 64), ("ask_size", 64))
"""A top-of-book record: stock locate, ITCH timestamp, best bid/ask price (price4) and aggregate size;
an empty side has price 0 and size 0."""

LOST_REASONS = {1: "collision", 2: "window"}
"""Why the book did not keep an order (``BOOK_LOST`` ``reason``)."""

LOST_LAYOUT = (("order_ref", 64), ("instrument", 16), ("reason", 8), ("side", 8), ("price", 32))
"""A lost order: its reference, stock locate, reason (:data:`LOST_REASONS`), side (ASCII) and price."""

LEVEL_LAYOUT = (("price", 32), ("instrument", 16), ("orders", 16), ("shares", 56), ("side", 8))
"""A price level after an operation: price (price4), stock locate, live orders, aggregate shares, side (ASCII)."""


def layout_bits(layout) -> int:
    return sum(width for _, width in layout)


def pack_fields(layout, values: dict) -> int:
    value, shift = 0, 0
    for name, width in layout:
        value |= (int(values[name]) & ((1 << width) - 1)) << shift
        shift += width
    return value


def unpack_fields(layout, value: int) -> dict:
    out, shift = {}, 0
    for name, width in layout:
        out[name] = (value >> shift) & ((1 << width) - 1)
        shift += width
    return out


class EventError(ValueError):
    """An event packet that does not decode; names the kind and the offset."""


@dataclass(frozen=True)
class MessageEvent:
    cycle: int
    seq: int
    data: bytes
    aborted: bool = False

    def as_json(self) -> dict:
        return {"event": "message", "seq": self.seq, "hex": "" if self.aborted else self.data.hex(),
                "aborted": self.aborted}


@dataclass(frozen=True)
class GapEvent:
    cycle: int
    expected: int
    seq: int

    def as_json(self) -> dict:
        return {"event": "gap", "expected": self.expected, "seq": self.seq}


@dataclass(frozen=True)
class ItchEvent:
    cycle: int
    seq: int
    record: dict

    def as_json(self) -> dict:
        """The fields the message type carries, by name; ``side`` and ``stock`` as text."""
        from protocols.itch import DECODED_FIELDS

        out = {"event": "itch", "seq": self.seq, "type": chr(self.record["type"])}
        for i, name in enumerate(DECODED_FIELDS):
            if self.record["carries"] >> i & 1:
                value = self.record[name]
                if name in ("side", "stock"):
                    width = 1 if name == "side" else 8
                    value = value.to_bytes(width, "big").decode("ascii", "replace").rstrip()
                out[name] = value
        return out


@dataclass(frozen=True)
class TobEvent:
    """Best bid and ask of one instrument after a message (the fields of ``host.book.TopOfBook``)."""

    cycle: int
    seq: int
    instrument: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    timestamp: int

    def as_json(self) -> dict:
        """The same dict as ``host.book.TopOfBook.as_json``."""
        return {"event": "tob", "instrument": self.instrument, "bid_price": self.bid_price,
                "bid_size": self.bid_size, "ask_price": self.ask_price, "ask_size": self.ask_size,
                "timestamp": self.timestamp, "seq": self.seq}


@dataclass(frozen=True)
class LostEvent:
    """An order the book did not keep (:data:`LOST_REASONS`)."""

    cycle: int
    seq: int
    order_ref: int
    instrument: int
    reason: int
    side: str
    price: int

    def as_json(self) -> dict:
        return {"event": "book_lost", "seq": self.seq, "order_ref": self.order_ref, "instrument": self.instrument,
                "reason": LOST_REASONS.get(self.reason, str(self.reason)), "side": self.side, "price": self.price}


@dataclass(frozen=True)
class LevelEvent:
    """One price level's state after a book operation (0 shares and 0 orders: the level is gone)."""

    cycle: int
    seq: int
    instrument: int
    side: str
    price: int
    shares: int
    orders: int

    def as_json(self) -> dict:
        return {"event": "level", "seq": self.seq, "instrument": self.instrument, "side": self.side,
                "price": self.price, "shares": self.shares, "orders": self.orders}


Event = MessageEvent | GapEvent | ItchEvent | TobEvent | LostEvent | LevelEvent

_RECORDS = {EventKind.TOB: (TobEvent, TOB_LAYOUT), EventKind.BOOK_LOST: (LostEvent, LOST_LAYOUT),
            EventKind.LEVEL: (LevelEvent, LEVEL_LAYOUT)}
_KIND_OF = {cls: kind for kind, (cls, _) in _RECORDS.items()}


def encode_event(event: Event) -> tuple[bytes, bool]:
    """The packet bytes of ``event`` and its abort flag (the inverse of :func:`decode_event`)."""
    def header(kind: EventKind, first: int) -> bytes:
        word = int(kind) | (event.cycle & ((1 << TIMESTAMP_BITS) - 1)) << 8
        return word.to_bytes(8, "little") + first.to_bytes(8, "little")
    if isinstance(event, MessageEvent):
        return header(EventKind.MESSAGE, event.seq) + event.data, event.aborted
    if type(event) in _KIND_OF:
        kind = _KIND_OF[type(event)]
        layout = _RECORDS[kind][1]
        values = {name: getattr(event, name) for name, _ in layout}
        if "side" in values:
            values["side"] = ord(values["side"])
        return header(kind, event.seq) + pack_fields(layout, values).to_bytes(
            (layout_bits(layout) + 7) // 8, "little"), False
    if isinstance(event, ItchEvent):
        from protocols.itch import DECODED_BITS, pack_record
        return header(EventKind.ITCH, event.seq) + pack_record(event.record).to_bytes(
            (DECODED_BITS + 7) // 8, "little"), False
    return header(EventKind.GAP, event.expected) + event.seq.to_bytes(8, "little"), False


def decode_event(packet: bytes, aborted: bool = False) -> Event:
    """Decode one event packet."""
    if len(packet) < HEADER_LEN:
        raise EventError(f"event packet of {len(packet)} bytes is shorter than the {HEADER_LEN}-byte header")
    word = int.from_bytes(packet[:8], "little")
    cycle = word >> 8
    first = int.from_bytes(packet[8:16], "little")
    try:
        kind = EventKind(word & 0xFF)
    except ValueError:
        raise EventError(f"unknown event kind {word & 0xFF} at offset 0") from None
    if kind is EventKind.MESSAGE:
        return MessageEvent(cycle, first, packet[HEADER_LEN:], aborted)
    if kind in _RECORDS:
        cls, layout = _RECORDS[kind]
        size = (layout_bits(layout) + 7) // 8
        if len(packet) != HEADER_LEN + size:
            raise EventError(f"{kind.name} event of {len(packet)} bytes, expected {HEADER_LEN + size} (offset 16)")
        values = unpack_fields(layout, int.from_bytes(packet[HEADER_LEN:], "little"))
        if "side" in values:
            values["side"] = chr(values["side"])
        return cls(cycle=cycle, seq=first, **values)
    if kind is EventKind.ITCH:
        from protocols.itch import DECODED_BITS, unpack_record
        size = (DECODED_BITS + 7) // 8
        if len(packet) != HEADER_LEN + size:
            raise EventError(f"ITCH event of {len(packet)} bytes, expected {HEADER_LEN + size} (offset 16)")
        return ItchEvent(cycle, first, unpack_record(int.from_bytes(packet[HEADER_LEN:], "little")))
    if len(packet) != HEADER_LEN + 8:
        raise EventError(f"GAP event of {len(packet)} bytes, expected {HEADER_LEN + 8} (offset 16)")
    return GapEvent(cycle, first, int.from_bytes(packet[16:24], "little"))
