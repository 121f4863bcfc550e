"""Events from the NIC to the host: kinds and byte layout, written once.

The gateware's event stream (``hw/events.py``) emits one packet per event;
the simulated NIC and a board NIC hand the same bytes to the host, which
decodes them here. Layout, little-endian:

* bytes 0-7: ``kind`` in byte 0, the cycle counter when the event left its
  stage in bytes 1-7 (56 bits);
* bytes 8-15: the event's first argument (a sequence number);
* then per kind: ``MESSAGE`` carries the message bytes; ``GAP`` carries the
  second sequence number in bytes 16-23; ``ITCH`` carries the decoded record
  (``protocols.itch.DECODED_LAYOUT``) as little-endian bytes.

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


Event = MessageEvent | GapEvent | ItchEvent


def encode_event(event: Event) -> tuple[bytes, bool]:
    """The packet bytes of ``event`` and its abort flag (the inverse of :func:`decode_event`)."""
    def header(kind: EventKind, first: int) -> bytes:
        word = int(kind) | (event.cycle & ((1 << TIMESTAMP_BITS) - 1)) << 8
        return word.to_bytes(8, "little") + first.to_bytes(8, "little")
    if isinstance(event, MessageEvent):
        return header(EventKind.MESSAGE, event.seq) + event.data, event.aborted
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
    if kind is EventKind.ITCH:
        from protocols.itch import DECODED_BITS, unpack_record
        size = (DECODED_BITS + 7) // 8
        if len(packet) != HEADER_LEN + size:
            raise EventError(f"ITCH event of {len(packet)} bytes, expected {HEADER_LEN + size} (offset 16)")
        return ItchEvent(cycle, first, unpack_record(int.from_bytes(packet[HEADER_LEN:], "little")))
    if len(packet) != HEADER_LEN + 8:
        raise EventError(f"GAP event of {len(packet)} bytes, expected {HEADER_LEN + 8} (offset 16)")
    return GapEvent(cycle, first, int.from_bytes(packet[16:24], "little"))
