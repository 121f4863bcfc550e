"""Price-level updates from FAST incremental refreshes: the layout, written once.

The gateware FAST decoder (``hw/fast.py``) turns every entry of an incremental
refresh into one :data:`UPDATE_LAYOUT` record for the market-by-price book
(``hw/mbpbook.py``); :func:`updates_from_message` does the same from a message
decoded by the Python codec, so the two are compared field for field. Which
template field feeds which update field is the table :data:`LEVEL_MAP` (the
feed's names, ``protocols/spec/fast/options.xml``).

Prices become ``price4`` integers (1/10000 of the currency unit, as the ITCH
book's): ``mantissa * 10**(exponent + 4)`` for exponents in
:data:`PRICE_EXPONENTS`, kept to 32 bits (two's complement); another exponent
sets ``price_bad`` and price4 0. A NULL price or size sets its ``*_null`` flag
and the value 0.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL_TEMPLATE = "MDIncRefresh"
"""The template whose sequence entries are price-level updates."""
LEVEL_SEQUENCE = "MDEntries"
LEVEL_MAP = {"action": "MDUpdateAction", "side": "MDEntryType", "security_id": "SecurityID",
             "rpt_seq": "RptSeq", "level": "MDPriceLevel", "price": "MDEntryPx", "size": "MDEntrySize"}
"""Update field <- sequence entry field."""
MESSAGE_MAP = {"msg_seq": "MsgSeqNum", "sending_time": "SendingTime"}
"""Update field <- message field (repeated on every update of the message)."""
SIDES = {"0": 0, "1": 1}
"""MDEntryType -> side bit (0 bid, 1 offer); any other entry type is side 1 with ``side_bad`` set."""
NEW, CHANGE, DELETE = 0, 1, 2
PRICE_EXPONENTS = range(-4, 1)
"""Exponents converted to price4 (-4 .. 0)."""

UPDATE_LAYOUT = (
    ("security_id", 32), ("action", 2), ("side", 1), ("level", 16), ("price4", 32),
    ("price_mantissa", 64), ("price_exponent", 8), ("size", 64), ("rpt_seq", 32),
    ("msg_seq", 32), ("sending_time", 64),
    ("price_null", 1), ("size_null", 1), ("price_bad", 1), ("side_bad", 1),
)
"""One price-level update, fields least significant first (``price_mantissa``, ``price_exponent``
and ``size`` are two's complement; ``action`` and ``level`` keep their low bits)."""
SIGNED = ("price4", "price_mantissa", "price_exponent", "size")


def price4(exponent: int, mantissa: int) -> tuple[int, bool]:
    """(price4 as a signed 32-bit value, bad flag) of ``mantissa * 10**exponent``."""
    if exponent not in PRICE_EXPONENTS:
        return 0, True
    v = (mantissa * 10 ** (exponent + 4)) & 0xFFFFFFFF
    return (v - (1 << 32) if v >> 31 else v), False


def _wrap(v: int, bits: int, signed: bool) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if signed and v >> (bits - 1) else v


@dataclass(frozen=True)
class LevelUpdate:
    """One update as plain ints (signed fields signed); ``as_dict`` is the layout's field dict."""

    security_id: int
    action: int
    side: int
    level: int
    price4: int
    price_mantissa: int
    price_exponent: int
    size: int
    rpt_seq: int
    msg_seq: int
    sending_time: int
    price_null: int
    size_null: int
    price_bad: int
    side_bad: int

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name, _ in UPDATE_LAYOUT}


def normalise(values: dict) -> LevelUpdate:
    """A field dict (e.g. unpacked from gateware bits) as a :class:`LevelUpdate`, wrapped to the layout."""
    return LevelUpdate(**{name: _wrap(int(values[name]), width, name in SIGNED) for name, width in UPDATE_LAYOUT})


def updates_from_message(msg) -> list[LevelUpdate]:
    """The updates of one decoded :class:`protocols.fast.Message` (none for other templates)."""
    if msg.template.rsplit("}", 1)[-1] != LEVEL_TEMPLATE:
        return []
    f = msg.fields
    out = []
    for e in f.get(LEVEL_SEQUENCE) or []:
        px = e[LEVEL_MAP["price"]]
        size = e[LEVEL_MAP["size"]]
        side = e[LEVEL_MAP["side"]]
        p4, bad = (0, False) if px is None else price4(px.exponent, px.mantissa)
        out.append(normalise({
            "security_id": e[LEVEL_MAP["security_id"]], "action": e[LEVEL_MAP["action"]],
            "side": SIDES.get(side, 1), "level": e[LEVEL_MAP["level"]], "price4": p4,
            "price_mantissa": 0 if px is None else px.mantissa, "price_exponent": 0 if px is None else px.exponent,
            "size": 0 if size is None else size, "rpt_seq": e[LEVEL_MAP["rpt_seq"]],
            "msg_seq": f[MESSAGE_MAP["msg_seq"]], "sending_time": f[MESSAGE_MAP["sending_time"]],
            "price_null": int(px is None), "size_null": int(size is None), "price_bad": int(bad),
            "side_bad": int(side not in SIDES)}))
    return out


# --------------------------------------------------------------------------- #
# The decoder stage's reference: datagrams -> updates and counters
# --------------------------------------------------------------------------- #

ERROR_COUNTERS = ("past_end", "unknown_template", "seq_too_long", "bad_field")
"""The decoder's drop reasons (``protocols/registers_fast.py``), in the order of that block."""
MAX_ENTITY_BYTES = 10
"""Longest integer or ASCII string entity the gateware takes."""


def _reason(err) -> str:
    """The drop counter of a codec error, as the gateware classifies it; ``unmodelled`` for reportable
    errors the gateware does not check (overlong encodings, range checks)."""
    if err.reason == "truncated":
        return "past_end"
    if err.reason in ("unknown_template",) or (err.reason == "no_value" and err.field == "templateId"):
        return "unknown_template"
    if err.reason in ("seq_too_long",):
        return "seq_too_long"
    if err.reason in ("integer_too_long", "no_value", "empty_previous", "string_too_long"):
        return "bad_field"
    return "unmodelled"


def _model_decoder(templates, max_sequence: int):
    from protocols.fast.codec import Decoder
    from protocols.fast.errors import FastError

    class GatewareLimits(Decoder):
        """The codec with the gateware's limits: sequence length, ASCII strings of 10 characters."""

        def _primitive(self, f, pmap, ctx):
            start = self._pos
            v = super()._primitive(f, pmap, ctx)
            if f.path.endswith("/length") and v is not None and v > max_sequence:
                raise self._error("seq_too_long", start, f"sequence of {v} entries, at most {max_sequence}")
            return v

        def _ascii(self, nullable):
            start = self._pos
            end = start
            while not self._data[end] & 0x80:
                end += 1
            if end - start + 1 > MAX_ENTITY_BYTES:
                raise self._error("string_too_long", start, f"string of {end - start + 1} bytes")
            return super()._ascii(nullable)

    return GatewareLimits(templates), FastError


def reference_updates(payloads, templates, *, host=("SecurityDefinition",), max_sequence: int = 32,
                      ends: list | None = None):
    """What the gateware decoder emits for UDP ``payloads``: ``(updates, messages, counters)`` where
    ``messages`` are the decoded :class:`~protocols.fast.Message` objects (security definitions included,
    as the host decodes them) and ``counters`` are keyed like the ``fast`` register block. ``ends``, if
    given, receives ``(payload index, offset after the message, updates)`` per message the gateware decodes."""
    from collections import Counter

    dec, FastError = _model_decoder(templates, max_sequence)
    host_names = {templates[h].name for h in host}
    host_local = {n.rsplit("}", 1)[-1] for n in host_names}
    counters = Counter({k: 0 for k in ("packets", "messages", "updates", "host_messages", *ERROR_COUNTERS)})
    updates, messages = [], []
    for index, payload in enumerate(payloads):
        counters["packets"] += 1
        dec.reset()
        pos = 0
        while pos < len(payload):
            try:
                msg, pos = dec.decode(payload, pos)
            except FastError as e:
                if e.template in host_local:
                    counters["host_messages"] += 1
                else:
                    counters[_reason(e)] += 1
                break
            if msg.template in host_names:
                counters["host_messages"] += 1
                messages.append(msg)
                break
            counters["messages"] += 1
            messages.append(msg)
            ups = updates_from_message(msg)
            counters["updates"] += len(ups)
            updates.extend(ups)
            if ends is not None:
                ends.append((index, pos, len(ups)))
    return updates, messages, counters
