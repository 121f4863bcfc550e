"""FAST 1.1 transfer encoding: the reference decoder and encoder.

Both are driven by a :class:`~protocols.fast.templates.TemplateSet` and keep
the operators' previous values in :class:`Dictionaries` across messages, so a
stream is decoded (or encoded) message after message exactly as the
specification's processing model does (FAST 1.x.1 sections 6.3 and 10).
When a dictionary is reset is left to the application by the specification
(section 6.3.1); :meth:`Decoder.reset` and :meth:`Encoder.reset` do it, and
the options feed resets at every datagram.

Decoded messages are :class:`Message` objects: the template's name and
identifier and a ``dict`` of field values (``None`` for an absent optional
field; integers; :class:`~protocols.fast.templates.ScaledNumber` for decimals;
``str`` for strings; ``bytes`` for byte vectors; a ``dict`` for a group; a
``list`` of ``dict`` for a sequence; a nested :class:`Message` for a dynamic
template reference, under the key ``templateRef`` (``templateRef2``...)).

Every fault raises :class:`~protocols.fast.errors.FastError` naming the
template, the field and the byte offset, with the specification's error code
where it has one; reportable errors (overlong integers, strings and presence
maps, out-of-range combined values) are signalled too.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field as _dc_field

from protocols.fast.errors import FastError
from protocols.fast.templates import (
    EXPONENT_RANGE,
    INTEGER_TYPES,
    Field,
    Group,
    ScaledNumber,
    Sequence,
    Template,
    TemplateRef,
    TemplateSet,
)

MAX_INT_BYTES = 10
"""Longest integer entity accepted: 70 bits hold any nullable 64-bit value or
delta; a longer non-overlong integer cannot be in range (ERR D2)."""

INT64 = (-(1 << 63), (1 << 63) - 1)
INT32 = (-(1 << 31), (1 << 31) - 1)

_EMPTY = object()
"""Dictionary state *empty* (section 6.3.1); *undefined* is a missing entry."""

TID_KEY = ("global", "\x00templateId")
"""The template identifier's copy operator: global dictionary, internal key (section 10)."""


@dataclass
class Message:
    """One decoded message (or dynamically referenced segment)."""

    template: str
    id: int
    fields: dict = _dc_field(default_factory=dict)

    def as_json(self) -> dict:
        """The message as JSON-ready data: decimals as strings (exact), byte
        vectors as hex."""
        return {"template": self.template.rsplit("}", 1)[-1], "id": self.id, **_json(self.fields)}


def _json(v):
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json(x) for x in v]
    if isinstance(v, ScaledNumber):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, Message):
        return v.as_json()
    return v


class Dictionaries:
    """Previous values of every operator, keyed by dictionary scope and key.

    Entries are ``(kind, value)`` so sharing one key between fields of
    different types is caught (ERR D4); ``value`` may be the *empty* marker.
    """

    def __init__(self) -> None:
        self.entries: dict = {}

    def reset(self) -> None:
        """Set every entry of every dictionary to *undefined*."""
        self.entries.clear()


def _scope(dictionary: str, template: str, app_type: str):
    if dictionary == "global":
        return "global"
    if dictionary == "template":
        return ("template", template)
    if dictionary == "type":
        return ("type", app_type)
    return ("user", dictionary)


# --------------------------------------------------------------------------- #
# Primitive encodings (section 10.6, 10.7)
# --------------------------------------------------------------------------- #


def encode_uint(v: int) -> bytes:
    """Stop-bit encode a non-negative integer in the fewest bytes (section 10.6.1.2)."""
    out = [0x80 | (v & 0x7F)]
    v >>= 7
    while v:
        out.append(v & 0x7F)
        v >>= 7
    return bytes(reversed(out))


def encode_int(v: int) -> bytes:
    """Stop-bit encode a signed integer as two's complement with its sign bit the
    most significant data bit, in the fewest bytes (section 10.6.1.1)."""
    out = [0x80 | (v & 0x7F)]
    while not (-64 <= v <= 63):
        v >>= 7
        out.append(v & 0x7F)
    return bytes(reversed(out))


def encode_uint_nullable(v: int | None) -> bytes:
    return b"\x80" if v is None else encode_uint(v + 1)


def encode_int_nullable(v: int | None) -> bytes:
    if v is None:
        return b"\x80"
    return encode_int(v + 1 if v >= 0 else v)


def encode_ascii(s: str | None, nullable: bool = False) -> bytes:
    """ASCII string with the zero-preamble rules of section 10.6.3."""
    if s is None:
        if not nullable:
            raise ValueError("NULL string for a non-nullable field")
        return b"\x80"
    raw = s.encode("ascii")
    if raw == b"":
        raw = b"\x00\x00" if nullable else b"\x00"
    elif raw[0] == 0:
        raw = (b"\x00\x00" if nullable else b"\x00") + raw
    return raw[:-1] + bytes([raw[-1] | 0x80])


def encode_bytevector(b: bytes | None, nullable: bool = False) -> bytes:
    """Length preamble (nullable iff ``nullable``) and raw bytes (section 10.6.5)."""
    if b is None:
        if not nullable:
            raise ValueError("NULL byte vector for a non-nullable field")
        return b"\x80"
    return (encode_uint_nullable(len(b)) if nullable else encode_uint(len(b))) + bytes(b)


def encode_pmap(bits: list) -> bytes:
    """A presence map from its bits, trailing all-zero 7-bit groups dropped (section 10.5)."""
    n = len(bits)
    while n and not bits[n - 1]:
        n -= 1
    nbytes = max(1, -(-n // 7))
    out = bytearray(nbytes)
    for i in range(n):
        if bits[i]:
            out[i // 7] |= 0x40 >> (i % 7)
    out[-1] |= 0x80
    return bytes(out)


class _PMap:
    """A presence map being consumed bit by bit; bits past its end are 0."""

    __slots__ = ("value", "nbits", "index", "offset")

    def __init__(self, value: int, nbits: int, offset: int) -> None:
        self.value = value
        self.nbits = nbits
        self.index = 0
        self.offset = offset

    def next(self) -> bool:
        i = self.index
        self.index = i + 1
        if i >= self.nbits:
            return False
        return bool((self.value >> (self.nbits - 1 - i)) & 1)

    def unused_set_bits(self) -> bool:
        if self.index >= self.nbits:
            return False
        return bool(self.value & ((1 << (self.nbits - self.index)) - 1))


# --------------------------------------------------------------------------- #
# Decoder
# --------------------------------------------------------------------------- #


class _Where:
    """Where the decoder is: template and field path, for error messages."""

    __slots__ = ("template", "field")

    def __init__(self) -> None:
        self.template = None
        self.field = None


class Decoder:
    """Decode FAST messages with ``templates``, keeping dictionary state between calls."""

    def __init__(self, templates: TemplateSet) -> None:
        self.templates = templates
        self.dictionaries = Dictionaries()
        self._where = _Where()

    def reset(self) -> None:
        """Reset every dictionary (all previous values undefined)."""
        self.dictionaries.reset()

    # -- public ------------------------------------------------------------ #

    def decode(self, data: bytes, pos: int = 0) -> tuple[Message, int]:
        """Decode one message starting at ``pos``; returns it and the offset after it."""
        self._data = data
        self._pos = pos
        self._where.template = None
        self._where.field = None
        try:
            msg = self._segment_with_tid()
        except IndexError:
            raise self._error("truncated", len(data), "message runs past the end of the buffer") from None
        return msg, self._pos

    def decode_all(self, data: bytes, pos: int = 0) -> list[Message]:
        """Decode back-to-back messages until the end of ``data``."""
        out = []
        while pos < len(data):
            msg, pos = self.decode(data, pos)
            out.append(msg)
        return out

    # -- errors ------------------------------------------------------------ #

    def _error(self, reason: str, offset: int, detail: str = "", code: str | None = None) -> FastError:
        t = self._where.template
        return FastError(reason, offset, detail, code=code,
                         template=t.rsplit("}", 1)[-1] if t else None, field=self._where.field)

    # -- primitives -------------------------------------------------------- #

    def _uint(self) -> int:
        data, pos = self._data, self._pos
        start = pos
        b = data[pos]
        v = b & 0x7F
        while not b & 0x80:
            pos += 1
            b = data[pos]
            v = (v << 7) | (b & 0x7F)
            if pos - start >= MAX_INT_BYTES:
                raise self._error("integer_too_long", start, f"more than {MAX_INT_BYTES} bytes", "D2")
        if pos > start and data[start] == 0:
            raise self._error("overlong", start, "overlong unsigned integer", "R6")
        self._pos = pos + 1
        return v

    def _int(self) -> int:
        data, pos = self._data, self._pos
        start = pos
        b = data[pos]
        v = (b & 0x7F) - 0x80 if b & 0x40 else b & 0x7F
        while not b & 0x80:
            pos += 1
            b = data[pos]
            v = (v << 7) | (b & 0x7F)
            if pos - start >= MAX_INT_BYTES:
                raise self._error("integer_too_long", start, f"more than {MAX_INT_BYTES} bytes", "D2")
        if pos > start:
            b0, b1 = data[start], data[start + 1]
            if (b0 == 0 and not b1 & 0x40) or (b0 == 0x7F and b1 & 0x40):
                raise self._error("overlong", start, "overlong signed integer", "R6")
        self._pos = pos + 1
        return v

    def _check_range(self, v: int, kind: str, start: int, code: str = "D2") -> int:
        lo, hi = INTEGER_TYPES[kind]
        if not lo <= v <= hi:
            raise self._error("out_of_range", start, f"{v} is outside {kind}", code)
        return v

    def _integer(self, kind: str, nullable: bool):
        start = self._pos
        if kind[0] == "u":
            v = self._uint()
            if nullable:
                if v == 0:
                    return None
                v -= 1
        else:
            v = self._int()
            if nullable:
                if v == 0:
                    return None
                if v > 0:
                    v -= 1
        return self._check_range(v, kind, start)

    def _ascii(self, nullable: bool):
        data, pos = self._data, self._pos
        start = pos
        end = pos
        while not data[end] & 0x80:
            end += 1
        raw = bytearray(data[pos:end + 1])
        raw[-1] &= 0x7F
        self._pos = end + 1
        if raw[0] == 0:
            if nullable:
                raw = raw[1:]
                if not raw:
                    return None
                if raw[0] != 0:
                    raise self._error("overlong", start, "overlong string", "R9")
            if len(raw) == 1:
                return ""
            if raw[1] != 0:
                raise self._error("overlong", start, "overlong string", "R9")
            raw = raw[1:]
        return raw.decode("ascii")

    def _bytes(self, nullable: bool):
        start = self._pos
        n = self._uint()
        if nullable:
            if n == 0:
                return None
            n -= 1
        end = self._pos + n
        if end > len(self._data):
            raise self._error("truncated", start, f"byte vector of {n} bytes runs past the end")
        b = bytes(self._data[self._pos:end])
        self._pos = end
        return b

    def _pmap(self) -> _PMap:
        data, pos = self._data, self._pos
        start = pos
        v = 0
        while True:
            b = data[pos]
            v = (v << 7) | (b & 0x7F)
            pos += 1
            if b & 0x80:
                break
        n = pos - start
        if n > 1 and not data[pos - 1] & 0x7F:
            raise self._error("overlong_pmap", start, "presence map ends in a zero byte", "R7")
        self._pos = pos
        return _PMap(v, 7 * n, start)

    def _value(self, f: Field, nullable: bool):
        """Read a field value in its plain representation (no operator, or the
        value of copy/default/increment/tail)."""
        k = f.kind
        if k in INTEGER_TYPES:
            return self._integer(k, nullable)
        if k == "decimal":
            start = self._pos
            e = self._int()
            if nullable:
                if e == 0:
                    return None
                if e > 0:
                    e -= 1
            m = self._int()
            return self._check_decimal(ScaledNumber(e, m), start)
        if k == "ascii":
            return self._ascii(nullable)
        return self._bytes(nullable)       # unicode (UTF-8 bytes) and byteVector

    def _check_decimal(self, v: ScaledNumber, start: int) -> ScaledNumber:
        if not EXPONENT_RANGE[0] <= v.exponent <= EXPONENT_RANGE[1] or not INT64[0] <= v.mantissa <= INT64[1]:
            raise self._error("decimal_range", start, f"{v.exponent=}, {v.mantissa=}", "R1")
        return v

    # -- operators (section 6.3) ------------------------------------------- #

    def _primitive(self, f: Field, pmap: _PMap, ctx) -> object:
        op = f.op
        if op is None:
            if f.individual:
                e = self._primitive(f.exponent, pmap, ctx)
                if e is None:
                    return None
                start = self._pos
                m = self._primitive(f.mantissa, pmap, ctx)
                return self._check_decimal(ScaledNumber(e, m), start)
            return self._value(f, f.optional)
        k = op.kind
        if k == "constant":
            if f.optional and not pmap.next():
                return None
            return op.value
        if k == "default":
            if pmap.next():
                return self._value(f, f.optional)
            return op.value
        entries = self.dictionaries.entries
        key = (_scope(op.dictionary, ctx[0], ctx[1]), op.key)
        prev = entries.get(key)
        if prev is not None:
            if prev[0] != f.kind:
                raise self._error("dictionary_type", self._pos,
                                  f"entry {op.key} holds a {prev[0]}, field is {f.kind}", "D4")
            prev = prev[1]
        if k == "copy" or k == "increment":
            if pmap.next():
                v = self._value(f, f.optional)
                entries[key] = (f.kind, _EMPTY if v is None else v)
                return v
            return self._absent(f, op, key, prev, k == "increment")
        if k == "delta":
            start = self._pos
            if prev is _EMPTY:
                raise self._error("empty_previous", start, "delta base is an empty previous value", "D6")
            base = prev if prev is not None else (op.value if op.value is not None else _default_base(f.kind))
            v = self._delta(f, base, start)
            if v is not None:
                entries[key] = (f.kind, v)
            return v
        # tail
        if pmap.next():
            start = self._pos
            t = self._value(f, f.optional)
            if t is None:
                entries[key] = (f.kind, _EMPTY)
                return None
            base = prev if prev is not None and prev is not _EMPTY else \
                (op.value if op.value is not None else _default_base(f.kind))
            v = t if len(t) >= len(base) else base[:len(base) - len(t)] + t
            if f.kind == "unicode":
                self._utf8(v, start)
            entries[key] = (f.kind, v)
            return v
        return self._absent(f, op, key, prev, False)

    def _absent(self, f: Field, op, key, prev, increment: bool):
        """Value of a copy/increment/tail field whose bit is 0 (sections 6.3.5-6.3.8)."""
        entries = self.dictionaries.entries
        if prev is None:                                   # undefined
            if op.value is None:
                if f.optional:
                    entries[key] = (f.kind, _EMPTY)
                    return None
                raise self._error("no_value", self._pos,
                                  "mandatory field absent, previous value undefined, no initial value", "D5")
            entries[key] = (f.kind, op.value)
            return op.value
        if prev is _EMPTY:
            if f.optional:
                return None
            raise self._error("empty_previous", self._pos, "mandatory field absent, previous value empty", "D6")
        if increment:
            lo, hi = INTEGER_TYPES[f.kind]
            prev = lo if prev == hi else prev + 1
            entries[key] = (f.kind, prev)
        return prev

    def _delta(self, f: Field, base, start: int):
        k = f.kind
        nullable = f.optional
        if k in INTEGER_TYPES:
            d = self._int()
            if nullable:
                if d == 0:
                    return None
                if d > 0:
                    d -= 1
            return self._check_range(base + d, k, start, "R4")
        if k == "decimal":
            de = self._int()
            if nullable:
                if de == 0:
                    return None
                if de > 0:
                    de -= 1
            dm = self._int()
            return self._check_decimal(ScaledNumber(base.exponent + de, base.mantissa + dm), start)
        sub = self._int()
        if nullable:
            if sub == 0:
                return None
            if sub > 0:
                sub -= 1
        part = self._ascii(False) if k == "ascii" else self._bytes(False)
        front = sub < 0
        n = -(sub + 1) if front else sub
        if n > len(base) or not INT32[0] <= sub <= INT32[1]:
            raise self._error("subtraction_length", start,
                              f"subtraction length {n} but the base value has {len(base)}", "D7")
        v = part + base[n:] if front else base[:len(base) - n] + part
        if k == "unicode":
            self._utf8(v, start)
        return v

    def _utf8(self, v: bytes, start: int) -> None:
        try:
            v.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._error("utf8", start, str(e), "R2") from None

    # -- structure --------------------------------------------------------- #

    def _segment_with_tid(self) -> Message:
        pmap = self._pmap()
        start = self._pos
        entries = self.dictionaries.entries
        self._where.field = "templateId"
        if pmap.next():
            tid = self._uint()
            entries[TID_KEY] = ("uInt32", tid)
        else:
            prev = entries.get(TID_KEY)
            if prev is None:
                raise self._error("no_value", start, "template identifier absent and undefined", "D5")
            tid = prev[1]
        t = self.templates.by_id.get(tid)
        if t is None:
            raise self._error("unknown_template", start, f"template identifier {tid}", "D9")
        saved = self._where.template
        self._where.template = t.name
        out: dict = {}
        self._instructions(t.instructions, pmap, (t.name, t.type_ref or "any"), out)
        self._end_segment(pmap)
        self._where.template = saved
        return Message(t.name, tid, out)

    def _end_segment(self, pmap: _PMap) -> None:
        if pmap.unused_set_bits():
            self._where.field = None
            raise self._error("pmap_bits", pmap.offset,
                              f"presence map has set bits past the {pmap.index} the instructions use", "R8")

    def _instructions(self, instrs: list, pmap: _PMap, ctx, out: dict) -> None:
        where = self._where
        for ins in instrs:
            if type(ins) is Field:
                where.field = ins.path
                out[ins.name] = self._primitive(ins, pmap, ctx)
                if ins.kind == "unicode" and out[ins.name] is not None:
                    try:
                        out[ins.name] = out[ins.name].decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise self._error("utf8", self._pos, str(e), "R2") from None
            elif type(ins) is Sequence:
                where.field = ins.length.path
                n = self._primitive(ins.length, pmap, ctx)
                if n is None:
                    out[ins.name] = None
                    continue
                sub_ctx = (ctx[0], ins.type_ref or ctx[1])
                items = []
                for _ in range(n):
                    item: dict = {}
                    if ins.has_pmap:
                        sp = self._pmap()
                        self._instructions(ins.instructions, sp, sub_ctx, item)
                        self._end_segment(sp)
                    else:
                        self._instructions(ins.instructions, pmap, sub_ctx, item)
                    items.append(item)
                out[ins.name] = items
            elif type(ins) is Group:
                where.field = ins.path
                if ins.optional and not pmap.next():
                    out[ins.name] = None
                    continue
                sub_ctx = (ctx[0], ins.type_ref or ctx[1])
                item = {}
                if ins.has_pmap:
                    sp = self._pmap()
                    self._instructions(ins.instructions, sp, sub_ctx, item)
                    self._end_segment(sp)
                else:
                    self._instructions(ins.instructions, pmap, sub_ctx, item)
                out[ins.name] = item
            else:                                             # TemplateRef
                where.field = ins.path
                if ins.name is not None:
                    t = self.templates.templates[ins.name]
                    saved = where.template
                    where.template = t.name
                    self._instructions(t.instructions, pmap, (t.name, t.type_ref or ctx[1]), out)
                    where.template = saved
                else:
                    k = "templateRef"
                    i = 2
                    while k in out:
                        k = f"templateRef{i}"
                        i += 1
                    out[k] = self._segment_with_tid()


def _default_base(kind: str):
    """Base value of delta and tail when the previous value is undefined and there is no initial value."""
    if kind in INTEGER_TYPES:
        return 0
    if kind == "decimal":
        return ScaledNumber(0, 0)
    if kind == "ascii":
        return ""
    return b""


# --------------------------------------------------------------------------- #
# Encoder
# --------------------------------------------------------------------------- #


class Encoder:
    """Encode messages with ``templates``, keeping dictionary state between calls;
    a stream encoded by one Encoder decodes with one Decoder reset at the same points."""

    def __init__(self, templates: TemplateSet) -> None:
        self.templates = templates
        self.dictionaries = Dictionaries()
        self._where = _Where()

    def reset(self) -> None:
        self.dictionaries.reset()

    def encode(self, template: str | int | Template, fields: dict | None = None) -> bytes:
        """Encode one message of ``template`` (name, identifier or object) with ``fields``
        (missing keys are absent values)."""
        t = template if isinstance(template, Template) else self.templates[template]
        if t.id is None:
            raise FastError("no_template_id", 0, "a message needs a template with an id attribute",
                            template=t.local_name)
        self._where.template = t.name
        self._where.field = None
        self._dynamic: dict[int, int] = {}
        out = bytearray()
        self._segment_with_tid(t, fields or {}, out)
        return bytes(out)

    def encode_message(self, msg: Message) -> bytes:
        return self.encode(self.templates.by_id[msg.id], msg.fields)

    def _error(self, reason: str, detail: str, code: str | None = None, offset: int = 0) -> FastError:
        t = self._where.template
        return FastError(reason, offset, detail, code=code,
                         template=t.rsplit("}", 1)[-1] if t else None, field=self._where.field)

    def _segment_with_tid(self, t: Template, fields: dict, out: bytearray) -> None:
        bits: list = []
        body = bytearray()
        entries = self.dictionaries.entries
        prev = entries.get(TID_KEY)
        if prev is not None and prev[1] == t.id:
            bits.append(0)
        else:
            bits.append(1)
            body += encode_uint(t.id)
            entries[TID_KEY] = ("uInt32", t.id)
        saved = self._where.template
        self._where.template = t.name
        self._instructions(t.instructions, fields, bits, body, (t.name, t.type_ref or "any"))
        self._where.template = saved
        out += encode_pmap(bits)
        out += body

    def _instructions(self, instrs: list, values: dict, bits: list, out: bytearray, ctx) -> None:
        where = self._where
        for ins in instrs:
            if type(ins) is Field:
                where.field = ins.path
                v = values.get(ins.name)
                if ins.kind == "unicode" and v is not None:
                    if not isinstance(v, str):
                        raise self._error("type", f"expected str, got {type(v).__name__}")
                    v = v.encode("utf-8")
                self._primitive(ins, v, bits, out, ctx)
            elif type(ins) is Sequence:
                where.field = ins.length.path
                items = values.get(ins.name)
                if items is None and not ins.optional:
                    raise self._error("missing", f"mandatory sequence {ins.name} has no value")
                self._primitive(ins.length, None if items is None else len(items), bits, out, ctx)
                if items is None:
                    continue
                sub_ctx = (ctx[0], ins.type_ref or ctx[1])
                for item in items:
                    self._nested(ins, item, bits, out, sub_ctx)
            elif type(ins) is Group:
                where.field = ins.path
                item = values.get(ins.name)
                if ins.optional:
                    bits.append(item is not None)
                    if item is None:
                        continue
                elif item is None:
                    raise self._error("missing", f"mandatory group {ins.name} has no value")
                self._nested(ins, item, bits, out, (ctx[0], ins.type_ref or ctx[1]))
            else:
                where.field = ins.path
                if ins.name is not None:
                    t = self.templates.templates[ins.name]
                    saved = where.template
                    where.template = t.name
                    self._instructions(t.instructions, values, bits, out, (t.name, t.type_ref or ctx[1]))
                    where.template = saved
                else:
                    i = self._dynamic.get(id(values), 0) + 1
                    self._dynamic[id(values)] = i
                    k = "templateRef" if i == 1 else f"templateRef{i}"
                    msg = values.get(k)
                    if not isinstance(msg, Message):
                        raise self._error("missing", f"dynamic template reference needs a Message under {k!r}")
                    self._segment_with_tid(self.templates.by_id[msg.id], msg.fields, out)

    def _nested(self, ins, item: dict, bits: list, out: bytearray, ctx) -> None:
        if ins.has_pmap:
            sub_bits: list = []
            body = bytearray()
            self._instructions(ins.instructions, item, sub_bits, body, ctx)
            out += encode_pmap(sub_bits)
            out += body
        else:
            self._instructions(ins.instructions, item, bits, out, ctx)

    # -- values ------------------------------------------------------------ #

    def _check(self, f: Field, v):
        """Validate a non-None value for ``f`` and normalise its Python type."""
        k = f.kind
        if k in INTEGER_TYPES:
            if isinstance(v, bool):
                raise self._error("type", "expected int, got bool")
            try:
                v = operator.index(v)
            except TypeError:
                raise self._error("type", f"expected int, got {type(v).__name__}") from None
            lo, hi = INTEGER_TYPES[k]
            if not lo <= v <= hi:
                raise self._error("out_of_range", f"{v} is outside {k}", "D2")
            return v
        if k == "decimal":
            if not isinstance(v, ScaledNumber):
                try:
                    v = ScaledNumber.from_decimal(v, normalise=False)
                except Exception:
                    raise self._error("type", f"expected a decimal, got {v!r}") from None
            if not EXPONENT_RANGE[0] <= v.exponent <= EXPONENT_RANGE[1] or not INT64[0] <= v.mantissa <= INT64[1]:
                raise self._error("decimal_range", f"{v!r} does not fit a FAST decimal", "R1")
            return v
        if k == "ascii":
            if not isinstance(v, str):
                raise self._error("type", f"expected str, got {type(v).__name__}")
            if not v.isascii():
                raise self._error("not_ascii", f"{v!r} has non-ASCII characters", "R3")
            return v
        if not isinstance(v, (bytes, bytearray)):
            raise self._error("type", f"expected bytes, got {type(v).__name__}")
        return bytes(v)

    def _write(self, f: Field, v, nullable: bool, out: bytearray) -> None:
        k = f.kind
        if k in INTEGER_TYPES:
            if k[0] == "u":
                out += encode_uint_nullable(v) if nullable else encode_uint(v)
            else:
                out += encode_int_nullable(v) if nullable else encode_int(v)
        elif k == "decimal":
            if v is None:
                out += b"\x80"
            else:
                out += encode_int_nullable(v.exponent) if nullable else encode_int(v.exponent)
                out += encode_int(v.mantissa)
        elif k == "ascii":
            out += encode_ascii(v, nullable)
        else:
            out += encode_bytevector(v, nullable)

    def _primitive(self, f: Field, v, bits: list, out: bytearray, ctx) -> None:
        if v is not None:
            v = self._check(f, v)
        elif not f.optional:
            raise self._error("missing", f"mandatory field {f.name} has no value")
        op = f.op
        if op is None:
            if f.individual:
                if v is None:
                    self._primitive(f.exponent, None, bits, out, ctx)
                    return
                self._primitive(f.exponent, v.exponent, bits, out, ctx)
                self._primitive(f.mantissa, v.mantissa, bits, out, ctx)
                return
            self._write(f, v, f.optional, out)
            return
        k = op.kind
        if k == "constant":
            if v is not None and v != op.value:
                raise self._error("constant", f"{v!r} differs from the constant {op.value!r}", "D3")
            if f.optional:
                bits.append(v is not None)
            return
        if k == "default":
            if v == op.value:
                bits.append(0)
            else:
                bits.append(1)
                self._write(f, v, f.optional, out)
            return
        entries = self.dictionaries.entries
        key = (_scope(op.dictionary, ctx[0], ctx[1]), op.key)
        prev = entries.get(key)
        if prev is not None:
            if prev[0] != f.kind:
                raise self._error("dictionary_type", f"entry {op.key} holds a {prev[0]}, field is {f.kind}", "D4")
            prev = prev[1]
        if k == "delta":
            if v is None:
                out += b"\x80"
                return
            if prev is _EMPTY:
                raise self._error("empty_previous", "delta base is an empty previous value", "D6")
            base = prev if prev is not None else (op.value if op.value is not None else _default_base(f.kind))
            self._write_delta(f, base, v, out)
            entries[key] = (f.kind, v)
            return
        # copy, increment, tail: can the value be left out (bit 0)?
        if prev is None:
            # undefined: the initial value is implied; an absent value with no initial
            # value is sent as NULL, as appendix 3.2.3 example 2 does (leaving it out
            # would decode the same)
            skip = op.value is not None and v == op.value
            if skip:
                entries[key] = (f.kind, op.value)
        elif prev is _EMPTY:
            skip = v is None
        elif k == "increment":
            lo, hi = INTEGER_TYPES[f.kind]
            nxt = lo if prev == hi else prev + 1
            skip = v == nxt
            if skip:
                entries[key] = (f.kind, nxt)
        else:
            skip = v == prev
        if skip:
            bits.append(0)
            return
        bits.append(1)
        if k == "tail" and v is not None:
            base = prev if prev is not None and prev is not _EMPTY else \
                (op.value if op.value is not None else _default_base(f.kind))
            if len(v) > len(base):
                t = v
            elif len(v) == len(base):
                p = 0
                while p < len(v) and v[p] == base[p]:
                    p += 1
                t = v[p:]
            else:
                raise self._error("tail", f"{v!r} is shorter than the base value {base!r}: a tail cannot express it")
            self._write(f, t, f.optional, out)
        else:
            self._write(f, v, f.optional, out)
        entries[key] = (f.kind, _EMPTY if v is None else v)

    def _write_delta(self, f: Field, base, v, out: bytearray) -> None:
        k = f.kind
        nullable = f.optional
        if k in INTEGER_TYPES:
            d = v - base
            out += encode_int_nullable(d) if nullable else encode_int(d)
            return
        if k == "decimal":
            de = v.exponent - base.exponent
            out += encode_int_nullable(de) if nullable else encode_int(de)
            out += encode_int(v.mantissa - base.mantissa)
            return
        # strings and byte vectors: remove from the back or the front, whichever sends less
        n, nb = len(v), len(base)
        p = 0
        while p < n and p < nb and v[p] == base[p]:
            p += 1
        s = 0
        while s < n and s < nb and v[n - 1 - s] == base[nb - 1 - s]:
            s += 1
        if n - s < n - p:
            sub, part = -(nb - s) - 1, v[:n - s]
        else:
            sub, part = nb - p, v[p:]
        out += encode_int_nullable(sub) if nullable else encode_int(sub)
        out += encode_ascii(part, False) if k == "ascii" else encode_bytevector(part, False)
