"""NASDAQ TotalView-ITCH 5.0: every message type as data, and the codec driven by it.

:data:`MESSAGES` is the one description of the ITCH 5.0 message layouts
(NASDAQ TotalView-ITCH 5.0 specification, section 4). The Python codec here,
the vectorised reader (``protocols/itch_reader.py``), the feed generator and
the gateware decoder (``hw/itch.py``) are all driven by it. All integers are
big-endian; ``alpha`` fields are left-justified space-padded ASCII; prices are
integers with 4 (``price4``) or 8 (``price8``) implied decimals; ``timestamp``
is 6 bytes of nanoseconds since midnight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KINDS = ("int", "alpha", "price4", "price8", "timestamp")


@dataclass(frozen=True)
class Field:
    """One field: its name, byte offset in the message, width in bytes and kind."""

    name: str
    offset: int
    width: int
    kind: str


@dataclass(frozen=True)
class MessageType:
    """One ITCH message type: its type letter, name, total length and fields (header included)."""

    code: str
    name: str
    length: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"ITCH {self.code} ({self.name}) has no field {name!r}")


HEADER = (("stock_locate", 2, "int"), ("tracking_number", 2, "int"), ("timestamp", 6, "timestamp"))
"""Every message starts with its type byte and these fields."""


def _message(code: str, name: str, *body: tuple[str, int, str]) -> MessageType:
    fields, offset = [], 1
    for fname, width, kind in HEADER + body:
        assert kind in KINDS, kind
        fields.append(Field(fname, offset, width, kind))
        offset += width
    return MessageType(code, name, offset, tuple(fields))


MESSAGES: dict[str, MessageType] = {m.code: m for m in (
    _message("S", "system_event", ("event_code", 1, "alpha")),
    _message("R", "stock_directory", ("stock", 8, "alpha"), ("market_category", 1, "alpha"),
             ("financial_status", 1, "alpha"), ("round_lot_size", 4, "int"), ("round_lots_only", 1, "alpha"),
             ("issue_classification", 1, "alpha"), ("issue_sub_type", 2, "alpha"), ("authenticity", 1, "alpha"),
             ("short_sale_threshold", 1, "alpha"), ("ipo_flag", 1, "alpha"), ("luld_tier", 1, "alpha"),
             ("etp_flag", 1, "alpha"), ("etp_leverage_factor", 4, "int"), ("inverse_indicator", 1, "alpha")),
    _message("H", "stock_trading_action", ("stock", 8, "alpha"), ("trading_state", 1, "alpha"),
             ("reserved", 1, "alpha"), ("reason", 4, "alpha")),
    _message("Y", "reg_sho_restriction", ("stock", 8, "alpha"), ("reg_sho_action", 1, "alpha")),
    _message("L", "market_participant_position", ("mpid", 4, "alpha"), ("stock", 8, "alpha"),
             ("primary_market_maker", 1, "alpha"), ("market_maker_mode", 1, "alpha"),
             ("market_participant_state", 1, "alpha")),
    _message("V", "mwcb_decline_level", ("level1", 8, "price8"), ("level2", 8, "price8"),
             ("level3", 8, "price8")),
    _message("W", "mwcb_status", ("breached_level", 1, "alpha")),
    _message("K", "ipo_quoting_period_update", ("stock", 8, "alpha"), ("ipo_release_time", 4, "int"),
             ("ipo_release_qualifier", 1, "alpha"), ("ipo_price", 4, "price4")),
    _message("J", "luld_auction_collar", ("stock", 8, "alpha"), ("collar_reference_price", 4, "price4"),
             ("upper_collar_price", 4, "price4"), ("lower_collar_price", 4, "price4"),
             ("collar_extension", 4, "int")),
    _message("h", "operational_halt", ("stock", 8, "alpha"), ("market_code", 1, "alpha"),
             ("halt_action", 1, "alpha")),
    _message("A", "add_order", ("order_ref", 8, "int"), ("side", 1, "alpha"), ("shares", 4, "int"),
             ("stock", 8, "alpha"), ("price", 4, "price4")),
    _message("F", "add_order_mpid", ("order_ref", 8, "int"), ("side", 1, "alpha"), ("shares", 4, "int"),
             ("stock", 8, "alpha"), ("price", 4, "price4"), ("attribution", 4, "alpha")),
    _message("E", "order_executed", ("order_ref", 8, "int"), ("shares", 4, "int"), ("match_number", 8, "int")),
    _message("C", "order_executed_price", ("order_ref", 8, "int"), ("shares", 4, "int"),
             ("match_number", 8, "int"), ("printable", 1, "alpha"), ("price", 4, "price4")),
    _message("X", "order_cancel", ("order_ref", 8, "int"), ("shares", 4, "int")),
    _message("D", "order_delete", ("order_ref", 8, "int")),
    _message("U", "order_replace", ("order_ref", 8, "int"), ("new_order_ref", 8, "int"), ("shares", 4, "int"),
             ("price", 4, "price4")),
    _message("P", "trade", ("order_ref", 8, "int"), ("side", 1, "alpha"), ("shares", 4, "int"),
             ("stock", 8, "alpha"), ("price", 4, "price4"), ("match_number", 8, "int")),
    _message("Q", "cross_trade", ("shares", 8, "int"), ("stock", 8, "alpha"), ("price", 4, "price4"),
             ("match_number", 8, "int"), ("cross_type", 1, "alpha")),
    _message("B", "broken_trade", ("match_number", 8, "int")),
    _message("I", "noii", ("paired_shares", 8, "int"), ("imbalance_shares", 8, "int"),
             ("imbalance_direction", 1, "alpha"), ("stock", 8, "alpha"), ("far_price", 4, "price4"),
             ("near_price", 4, "price4"), ("current_reference_price", 4, "price4"), ("cross_type", 1, "alpha"),
             ("price_variation", 1, "alpha")),
    _message("N", "rpii", ("stock", 8, "alpha"), ("interest_flag", 1, "alpha")),
    _message("O", "direct_listing_price_discovery", ("stock", 8, "alpha"), ("open_eligibility", 1, "alpha"),
             ("min_allowable_price", 4, "price4"), ("max_allowable_price", 4, "price4"),
             ("near_execution_price", 4, "price4"), ("near_execution_time", 8, "int"),
             ("lower_price_collar", 4, "price4"), ("upper_price_collar", 4, "price4")),
)}
"""Every ITCH 5.0 message type, by type letter."""

MAX_LENGTH = max(m.length for m in MESSAGES.values())


class ItchError(ValueError):
    """A message that does not decode: names the type, the reason and the byte offset."""

    def __init__(self, reason: str, offset: int, code: str | None = None, detail: str = ""):
        self.reason, self.offset, self.code = reason, offset, code
        where = f"ITCH {code!r} " if code else "ITCH "
        super().__init__(f"{where}{reason} at offset {offset}" + (f": {detail}" if detail else ""))


def _make_class(mt: MessageType):
    cls = dataclasses.make_dataclass(
        "".join(p.capitalize() for p in mt.name.split("_")),
        [(f.name, bytes if f.kind == "alpha" else int) for f in mt.fields],
        frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = f"ITCH 5.0 {mt.name.replace('_', ' ')} message ({mt.code!r}, {mt.length} bytes)."
    cls.code = mt.code
    return cls


CLASSES = {code: _make_class(mt) for code, mt in MESSAGES.items()}
"""A frozen dataclass per message type; alpha fields are bytes, everything else int."""
globals().update({cls.__name__: cls for cls in CLASSES.values()})


def decode(data: bytes, offset: int = 0):
    """Decode one message (exactly its bytes) into its dataclass."""
    if not data:
        raise ItchError("empty", offset)
    code = chr(data[0])
    mt = MESSAGES.get(code)
    if mt is None:
        raise ItchError("unknown_type", offset, code, f"type byte 0x{data[0]:02x}")
    if len(data) < mt.length:
        raise ItchError("truncated", offset + len(data), code, f"{len(data)} of {mt.length} bytes")
    if len(data) > mt.length:
        raise ItchError("wrong_length", offset + mt.length, code, f"{len(data)} bytes, the type has {mt.length}")
    values = {}
    for f in mt.fields:
        raw = data[f.offset:f.offset + f.width]
        values[f.name] = raw if f.kind == "alpha" else int.from_bytes(raw, "big")
    return CLASSES[code](**values)


def encode(message) -> bytes:
    """Encode a message dataclass (the inverse of :func:`decode`)."""
    mt = MESSAGES[message.code]
    out = bytearray(mt.length)
    out[0] = ord(mt.code)
    for f in mt.fields:
        value = getattr(message, f.name)
        if f.kind == "alpha":
            if isinstance(value, str):
                value = value.encode("ascii")
            if len(value) > f.width:
                raise ItchError("field_too_long", f.offset, mt.code, f"{f.name} has {len(value)} bytes, max {f.width}")
            out[f.offset:f.offset + f.width] = value.ljust(f.width, b" ")
        else:
            if not 0 <= value < 1 << (8 * f.width):
                raise ItchError("field_out_of_range", f.offset, mt.code, f"{f.name}={value}")
            out[f.offset:f.offset + f.width] = value.to_bytes(f.width, "big")
    return bytes(out)


def message(code: str, **fields):
    """Build a message of type ``code``; missing fields are zero (or spaces)."""
    mt = MESSAGES[code]
    values = {f.name: (b" " * f.width if f.kind == "alpha" else 0) for f in mt.fields}
    unknown = set(fields) - set(values)
    if unknown:
        raise ItchError("unknown_field", 0, code, ", ".join(sorted(unknown)))
    values.update({k: (v.encode("ascii").ljust(mt.field(k).width) if isinstance(v, str) else v)
                   for k, v in fields.items()})
    return CLASSES[code](**values)


def price_str(price: int, decimals: int = 4) -> str:
    """A price integer with implied decimals as a decimal string (``1234500`` -> ``"123.4500"``)."""
    whole, frac = divmod(price, 10 ** decimals)
    return f"{whole}.{frac:0{decimals}d}"


def as_json(msg) -> dict:
    """A decoded message as a JSON-ready dict, fields by name (alpha fields as stripped text)."""
    mt = MESSAGES[msg.code]
    out = {"type": mt.code, "name": mt.name}
    for f in mt.fields:
        v = getattr(msg, f.name)
        out[f.name] = v.decode("ascii", "replace").rstrip() if f.kind == "alpha" else v
    return out


# --- the decoded record the gateware emits ----------------------------------------------------

DECODED_FIELDS = ("stock_locate", "tracking_number", "timestamp", "order_ref", "new_order_ref", "side",
                  "shares", "price", "stock", "match_number")
"""The fields the gateware decoder extracts, each as wide as its widest use in :data:`MESSAGES`."""

DECODED_WIDTHS = {name: 8 * max(f.width for mt in MESSAGES.values() for f in mt.fields if f.name == name)
                  for name in DECODED_FIELDS}

DECODED_LAYOUT = (("type", 8), *((name, DECODED_WIDTHS[name]) for name in DECODED_FIELDS),
                  ("carries", len(DECODED_FIELDS)))
"""Bit layout of a decoded record, least significant first: the type letter, the fields, and
``carries`` with bit *i* set when the type has ``DECODED_FIELDS[i]``. ``hw/itch.py`` builds its
``amaranth.lib.data`` layout from this, and event packets carry records in this order."""

DECODED_BITS = sum(width for _, width in DECODED_LAYOUT)


def decoded_record(data: bytes) -> dict:
    """What the gateware decoder emits for one well-formed message: field values by name.

    Alpha fields (``side``, ``stock``) are their bytes read as a big-endian integer,
    as the wire carries them; fields a type does not carry are zero.
    """
    mt = MESSAGES[chr(data[0])]
    record = {"type": data[0], "carries": 0}
    for i, name in enumerate(DECODED_FIELDS):
        try:
            f = mt.field(name)
        except KeyError:
            record[name] = 0
            continue
        record[name] = int.from_bytes(data[f.offset:f.offset + f.width], "big")
        record["carries"] |= 1 << i
    return record


def pack_record(record: dict) -> int:
    value, shift = 0, 0
    for name, width in DECODED_LAYOUT:
        value |= (record[name] & ((1 << width) - 1)) << shift
        shift += width
    return value


def unpack_record(value: int) -> dict:
    record, shift = {}, 0
    for name, width in DECODED_LAYOUT:
        record[name] = (value >> shift) & ((1 << width) - 1)
        shift += width
    return record
