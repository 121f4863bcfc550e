"""The beat stream every stage speaks, and Python helpers to convert packets.

A packet (an Ethernet frame, a UDP payload, one MoldUDP64 message) travels as
64-bit beats. Byte *k* of the packet sits in lane ``k % 8`` of beat ``k // 8``,
lane 0 being ``data[0:8]``: the first byte on the wire is the least
significant. Every beat but the last carries 8 bytes; the last carries ``n``
(1 to 8) bytes in lanes ``0 .. n-1``. An empty packet is one beat with
``n == 0``. ``abort`` on a last beat means the packet was cut short upstream
and must be discarded; such a beat may carry no bytes.
"""

from __future__ import annotations

from amaranth.lib import data

BEAT_BYTES = 8

BEAT_FIELDS = {
    "data": 64,
    "n": 4,
    "first": 1,
    "last": 1,
    "abort": 1,
}


def beat_layout(**extra) -> data.StructLayout:
    """The beat layout, optionally with extra per-beat fields (e.g. a sequence number)."""
    return data.StructLayout({**BEAT_FIELDS, **extra})


Beat = beat_layout()
"""A 64-bit frame beat: ``data``, byte count ``n``, ``first``, ``last``, ``abort``."""


def packet_to_beats(packet: bytes, **extra) -> list[dict]:
    """Split ``packet`` into beat dicts (field name to int), adding ``extra`` fields to each."""
    if len(packet) == 0:
        return [dict(data=0, n=0, first=1, last=1, abort=0, **extra)]
    count = (len(packet) + BEAT_BYTES - 1) // BEAT_BYTES
    beats = []
    for i in range(count):
        chunk = packet[i * BEAT_BYTES:(i + 1) * BEAT_BYTES]
        beats.append(dict(data=int.from_bytes(chunk, "little"), n=len(chunk),
                          first=int(i == 0), last=int(i == count - 1), abort=0, **extra))
    return beats


class BeatError(ValueError):
    """A beat sequence that breaks the framing rules of this module."""


def beats_to_packets(beats) -> list[tuple[bytes, dict]]:
    """Reassemble beat dicts into ``(packet bytes, last beat)`` pairs, checking the framing.

    The last beat is returned so callers can read ``abort`` and any extra fields.
    """
    packets = []
    buf = bytearray()
    open_ = False
    for i, beat in enumerate(beats):
        if beat["first"] != (not open_):
            raise BeatError(f"beat {i}: first={beat['first']} but a packet is {'open' if open_ else 'not open'}")
        n = beat["n"]
        if not beat["last"] and n != BEAT_BYTES:
            raise BeatError(f"beat {i}: a beat that is not last carries {n} bytes, not 8")
        if n > BEAT_BYTES or (n == 0 and not (beat["last"] and (beat["first"] or beat["abort"]))):
            raise BeatError(f"beat {i}: byte count {n} is invalid here")
        buf += (beat["data"] & ((1 << (8 * n)) - 1)).to_bytes(BEAT_BYTES, "little")[:n]
        open_ = True
        if beat["last"]:
            packets.append((bytes(buf), beat))
            buf = bytearray()
            open_ = False
    if open_:
        raise BeatError("the beats end inside a packet")
    return packets


def pack(layout: data.Layout, fields: dict) -> int:
    """Pack a dict of field values into the integer a layout's bits hold (nested dicts for nested layouts)."""
    value = 0
    for name, field in layout:
        v = fields.get(name, 0)
        if isinstance(field.shape, data.Layout):
            v = pack(field.shape, v) if isinstance(v, dict) else v
        value |= (int(v) & ((1 << field.width) - 1)) << field.offset
    return value


def unpack(layout: data.Layout, value: int) -> dict:
    """Unpack an integer into a dict of field values, the inverse of :func:`pack`."""
    out = {}
    for name, field in layout:
        v = (value >> field.offset) & ((1 << field.width) - 1)
        if isinstance(field.shape, data.Layout):
            v = unpack(field.shape, v)
        elif getattr(field.shape, "signed", False) and v >> (field.width - 1):
            v -= 1 << field.width
        out[name] = v
    return out
