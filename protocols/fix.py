"""FIX 4.4 tag=value codec: messages, BodyLength and CheckSum, a resynchronising stream parser.

:class:`Message` is a MsgType plus the fields in wire order (header and body,
without BeginString, BodyLength and CheckSum, which :meth:`Message.encode`
computes). Values are kept as bytes and converted by the typed accessors.
:func:`decode` checks framing, BodyLength and CheckSum; :func:`validate` checks a
decoded message against the data dictionary (``protocols/fix44.py``): known
tags, required fields, enums, formats and repeating groups. :class:`StreamParser`
cuts a TCP byte stream into frames and, on garbage, truncated or oversized
input, reports a :class:`FixError` and resynchronises on the next ``8=FIX``.
:func:`stamp` is the golden model of the downstream sequencer that writes
MsgSeqNum and CheckSum into an otherwise finished message.

Every error this module raises is a :class:`FixError` (a
:class:`protocols.errors.WireError`); ``reject_reason`` carries the FIX
SessionRejectReason (tag 373) when the fault is one a session answers with a
Reject, and ``tag`` the offending tag.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
import zlib
from decimal import Decimal, InvalidOperation
from typing import Iterable, Iterator

from protocols import fix44
from protocols.errors import WireError

SOH = b"\x01"
BEGIN_STRING = "FIX.4.4"
MAX_MESSAGE = 64 * 1024
"""Default largest frame (bytes) the stream parser accepts."""
SEQ_WIDTH = 9
"""Digits of a MsgSeqNum placeholder stamped downstream (leading zeros are legal in FIX ints)."""

# Session-level tags, by name, for readability in the session layer.
BEGIN_STRING_TAG, BODY_LENGTH, CHECKSUM, MSG_TYPE = 8, 9, 10, 35
MSG_SEQ_NUM, SENDER_COMP_ID, TARGET_COMP_ID, SENDING_TIME = 34, 49, 56, 52
POSS_DUP_FLAG, ORIG_SENDING_TIME, POSS_RESEND = 43, 122, 97

# SessionRejectReason (373) values used here.
REJECT_INVALID_TAG, REJECT_REQUIRED_MISSING, REJECT_TAG_NOT_DEFINED = 0, 1, 2
REJECT_NO_VALUE, REJECT_VALUE_OUT_OF_RANGE, REJECT_BAD_FORMAT = 4, 5, 6
REJECT_COMP_ID, REJECT_SENDING_TIME, REJECT_INVALID_MSGTYPE = 9, 10, 11
REJECT_DUPLICATE_TAG, REJECT_OUT_OF_ORDER, REJECT_GROUP_COUNT, REJECT_OTHER = 13, 14, 16, 99


class FixError(WireError):
    """A FIX message or stream that cannot be encoded, decoded or accepted."""

    def __init__(self, reason: str, offset: int = 0, detail: str = "", tag: int | None = None,
                 reject_reason: int | None = None) -> None:
        self.tag = tag
        self.reject_reason = reject_reason
        super().__init__(reason, offset, detail)


# ---------------------------------------------------------------------------------------------- values

def format_utc(seconds: float, ms: bool = True) -> bytes:
    """A UTCTimestamp (``YYYYMMDD-HH:MM:SS.sss``) for seconds since the epoch."""
    whole = int(seconds)
    t = time.gmtime(whole)
    base = b"%04d%02d%02d-%02d:%02d:%02d" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    if not ms:
        return base
    return base + b".%03d" % min(999, int(round((seconds - whole) * 1000)))


_UTC_RE = re.compile(rb"(\d{4})(\d\d)(\d\d)-(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\Z")


def parse_utc(value: bytes | str) -> float:
    """Seconds since the epoch for a UTCTimestamp; FixError (format) if it is not one."""
    if isinstance(value, str):
        value = value.encode("latin-1")
    m = _UTC_RE.match(value)
    if not m:
        raise FixError("bad UTCTimestamp", 0, repr(value), reject_reason=REJECT_BAD_FORMAT)
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        whole = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
        dt.datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59))
    except (ValueError, OverflowError) as e:
        raise FixError("bad UTCTimestamp", 0, f"{value!r}: {e}", reject_reason=REJECT_BAD_FORMAT) from None
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


def to_bytes(value) -> bytes:
    """A Python value as FIX field bytes: str, int, bool (Y/N), Decimal/float (plain
    decimal notation), datetime (UTCTimestamp, milliseconds) or bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise FixError("non-ASCII value", 0, repr(value)) from None
    if isinstance(value, bool):
        return b"Y" if value else b"N"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FixError("non-finite decimal", 0, str(value))
        return format(value.normalize(), "f").encode()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y%m%d-%H:%M:%S.").encode() + b"%03d" % (value.microsecond // 1000)
    raise FixError("no FIX representation", 0, f"{type(value).__name__} {value!r}")


def byte_sum(data) -> int:
    """The plain sum of the bytes, computed with ``zlib.adler32`` on pieces of at most 256
    bytes: Adler-32's low half is 1 + the byte sum modulo 65521, exact while the sum stays
    below 65521 (256 x 255 = 65280), and C-speed instead of a Python-level ``sum``."""
    n = len(data)
    if n <= 256:
        return (zlib.adler32(data) & 0xFFFF) - 1
    view = memoryview(data)
    return sum((zlib.adler32(view[i:i + 256]) & 0xFFFF) - 1 for i in range(0, n, 256))


def checksum(data: bytes) -> int:
    """FIX CheckSum: the sum of the bytes modulo 256."""
    return byte_sum(data) & 0xFF


# ---------------------------------------------------------------------------------------------- message

class Message:
    """One FIX message: ``msg_type`` (str) and ``fields``, a list of (tag, bytes) in wire
    order, header fields first; BeginString, BodyLength and CheckSum are not stored.

    Build with ``Message("D", [(11, "c1"), ...])`` or :func:`message` (field names from
    the dictionary); read with ``msg[tag]`` (str), the typed ``get_*`` accessors or the
    named properties (``cl_ord_id``, ``order_qty``, ``price_e4``...).
    """

    __slots__ = ("msg_type", "fields", "_index")

    def __init__(self, msg_type: str, fields: Iterable[tuple[int, object]] = ()) -> None:
        self.msg_type = msg_type
        self.fields = [(int(t), to_bytes(v)) for t, v in fields]
        self._index = None

    # -- access
    def _idx(self) -> dict[int, bytes]:
        if self._index is None:
            idx = {}
            for t, v in self.fields:
                if t not in idx:
                    idx[t] = v
            self._index = idx
        return self._index

    def raw(self, tag: int) -> bytes | None:
        """The first value of ``tag`` as bytes, or None."""
        return self._idx().get(tag)

    def __contains__(self, tag: int) -> bool:
        return tag in self._idx()

    def __getitem__(self, tag: int) -> str:
        v = self._idx().get(tag)
        if v is None:
            raise KeyError(f"MsgType {self.msg_type} has no tag {tag}")
        return v.decode("latin-1")

    def get(self, tag: int, default=None):
        v = self._idx().get(tag)
        return default if v is None else v.decode("latin-1")

    def require(self, tag: int) -> bytes:
        v = self._idx().get(tag)
        if v is None:
            raise FixError("required tag missing", 0, f"tag {tag} in MsgType {self.msg_type}", tag,
                           REJECT_REQUIRED_MISSING)
        return v

    def get_int(self, tag: int, default=None):
        v = self._idx().get(tag)
        if v is None:
            return default
        if not (v.isdigit() or (v[:1] == b"-" and v[1:].isdigit())):
            raise FixError("bad int", 0, f"tag {tag} = {v!r}", tag, REJECT_BAD_FORMAT)
        return int(v)

    def get_decimal(self, tag: int, default=None):
        v = self._idx().get(tag)
        if v is None:
            return default
        if not _DECIMAL_RE.match(v):
            raise FixError("bad decimal", 0, f"tag {tag} = {v!r}", tag, REJECT_BAD_FORMAT)
        return Decimal(v.decode())

    def get_e4(self, tag: int, default=None):
        """A decimal field as an integer in 1/10000 units (calarb's price ticks); FixError if finer."""
        d = self.get_decimal(tag)
        if d is None:
            return default
        q = d * 10000
        if q != q.to_integral_value():
            raise FixError("value finer than 1/10000", 0, f"tag {tag} = {d}", tag, REJECT_VALUE_OUT_OF_RANGE)
        return int(q)

    def get_bool(self, tag: int, default=None):
        v = self._idx().get(tag)
        if v is None:
            return default
        if v not in (b"Y", b"N"):
            raise FixError("bad boolean", 0, f"tag {tag} = {v!r}", tag, REJECT_BAD_FORMAT)
        return v == b"Y"

    def get_time(self, tag: int, default=None):
        """A UTCTimestamp field as seconds since the epoch."""
        v = self._idx().get(tag)
        if v is None:
            return default
        try:
            return parse_utc(v)
        except FixError as e:
            raise FixError("bad UTCTimestamp", 0, f"tag {tag} = {v!r}", tag, REJECT_BAD_FORMAT) from e

    def value(self, tag: int, dictionary: fix44.Dictionary | None = None):
        """The first value of ``tag`` converted by its dictionary type (int, Decimal, bool,
        epoch seconds for UTCTimestamp, else str), or None."""
        d = dictionary or fix44.dictionary()
        fd = d.fields.get(tag)
        kind = fd.type if fd else "STRING"
        if kind in fix44.INT_TYPES:
            return self.get_int(tag)
        if kind in fix44.DECIMAL_TYPES:
            return self.get_decimal(tag)
        if kind == "BOOLEAN":
            return self.get_bool(tag)
        if kind == "UTCTIMESTAMP":
            return self.get_time(tag)
        return self.get(tag)

    def group(self, count_tag: int, dictionary: fix44.Dictionary | None = None) -> list["Message"]:
        """The entries of repeating group ``count_tag`` (each a Message of its fields, nested
        groups included), shaped by the data dictionary."""
        d = dictionary or fix44.dictionary()
        tree = _structure(self, d)
        return [Message(self.msg_type, e) for e in tree.get(count_tag, [])]

    # -- building
    def set(self, tag: int, value) -> "Message":
        """Replace the first ``tag`` (or append it)."""
        b = to_bytes(value)
        for i, (t, _) in enumerate(self.fields):
            if t == tag:
                self.fields[i] = (tag, b)
                break
        else:
            self.fields.append((tag, b))
        self._index = None
        return self

    def append(self, tag: int, value) -> "Message":
        """Append a field (repeating groups append their entries in order)."""
        self.fields.append((tag, to_bytes(value)))
        self._index = None
        return self

    def remove(self, tag: int) -> "Message":
        self.fields = [(t, v) for t, v in self.fields if t != tag]
        self._index = None
        return self

    def copy(self) -> "Message":
        m = Message.__new__(Message)
        m.msg_type, m.fields, m._index = self.msg_type, list(self.fields), None
        return m

    def encode(self, begin_string: str = BEGIN_STRING) -> bytes:
        """The wire bytes, with BodyLength and CheckSum computed."""
        return frame(self.msg_type, self.fields, begin_string)

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and self.msg_type == other.msg_type and self.fields == other.fields

    def __repr__(self) -> str:
        body = "|".join(f"{t}={v.decode('latin-1')}" for t, v in self.fields)
        return f"Message(35={self.msg_type}|{body})"

    # -- named accessors for the fields calarb uses
    seq_num = property(lambda self: self.get_int(MSG_SEQ_NUM))
    sender_comp_id = property(lambda self: self.get(SENDER_COMP_ID))
    target_comp_id = property(lambda self: self.get(TARGET_COMP_ID))
    sending_time = property(lambda self: self.get_time(SENDING_TIME))
    poss_dup = property(lambda self: self.get_bool(POSS_DUP_FLAG, False))
    cl_ord_id = property(lambda self: self.get(11))
    orig_cl_ord_id = property(lambda self: self.get(41))
    order_id = property(lambda self: self.get(37))
    exec_id = property(lambda self: self.get(17))
    symbol = property(lambda self: self.get(55))
    side = property(lambda self: self.get(54))
    ord_type = property(lambda self: self.get(40))
    time_in_force = property(lambda self: self.get(59))
    order_qty = property(lambda self: self.get_int(38))
    price_e4 = property(lambda self: self.get_e4(44))
    exec_type = property(lambda self: self.get(150))
    ord_status = property(lambda self: self.get(39))
    cum_qty = property(lambda self: self.get_int(14))
    leaves_qty = property(lambda self: self.get_int(151))
    last_qty = property(lambda self: self.get_int(32))
    last_px_e4 = property(lambda self: self.get_e4(31))
    avg_px_e4 = property(lambda self: self.get_e4(6))
    text = property(lambda self: self.get(58))


_DECIMAL_RE = re.compile(rb"-?(\d+\.?\d*|\.\d+)\Z")
_FIELD_RE = re.compile(rb"([1-9][0-9]{0,8})=([^\x01]+)\x01")
_INT_RE = re.compile(rb"-?\d+\Z")
_TAG_PREFIX: dict[int, bytes] = {}


def _prefix(tag: int) -> bytes:
    p = _TAG_PREFIX.get(tag)
    if p is None:
        p = _TAG_PREFIX[tag] = b"%d=" % tag
    return p


def frame(msg_type: str, fields: Iterable[tuple[int, bytes]], begin_string: str = BEGIN_STRING) -> bytes:
    """Wire bytes for a MsgType and (tag, bytes) fields: BeginString, BodyLength, the
    fields, CheckSum. FixError if a value is empty or holds SOH outside a DATA field."""
    prefix = _TAG_PREFIX
    try:
        body = b"35=" + msg_type.encode("ascii") + SOH + b"".join([prefix[t] + v + SOH for t, v in fields])
    except KeyError:
        for t, _ in fields:
            _prefix(t)
        return frame(msg_type, fields, begin_string)
    # one pass over the body instead of a test per field: every field adds exactly one SOH and
    # no "=SOH" (empty value); anything else is checked field by field to name the culprit
    if body.count(SOH) != len(fields) + 1 or b"=\x01" in body:
        for t, v in fields:
            if not v or (SOH in v and t not in _DATA_TAGS):
                raise FixError("value empty or holds SOH", 0, f"tag {t} = {v!r}", t)
    head = b"8=%s\x019=%d\x01" % (begin_string.encode("ascii"), len(body))
    msg = head + body
    return msg + b"10=%03d\x01" % (byte_sum(msg) & 0xFF)


_DATA_TAGS = frozenset(fix44.dictionary().data_lengths.values())
_DATA_LENGTH_TAGS = fix44.dictionary().data_lengths


def message(msg_type: str, _dictionary: fix44.Dictionary | None = None, **fields) -> Message:
    """A Message by names: ``message("NewOrderSingle", ClOrdID="c1", Side="1", ...)``,
    fields in keyword order (None values are skipped)."""
    d = _dictionary or fix44.dictionary()
    return Message(d.msg_type(msg_type), [(d.tag(k), v) for k, v in fields.items() if v is not None])


# ---------------------------------------------------------------------------------------------- decoding

def _frame_bounds(data: bytes, base: int = 0) -> tuple[int, int, int]:
    """(BeginString end, body start, CheckSum field start) of one complete frame; FixError
    for a malformed head, a BodyLength that misses the CheckSum field, or a bad CheckSum."""
    if not data.startswith(b"8="):
        raise FixError("BeginString (8) is not the first field", base, tag=8)
    i = data.find(SOH, 2)
    if i < 0:
        raise FixError("BeginString (8) not terminated", base + 2, tag=8)
    if data[i + 1:i + 3] != b"9=":
        raise FixError("BodyLength (9) is not the second field", base + i + 1, tag=9)
    j = data.find(SOH, i + 3)
    if j < 0 or not data[i + 3:j].isdigit() or j - i - 3 > 9:
        raise FixError("bad BodyLength (9)", base + i + 3, repr(data[i + 3:j if j >= 0 else i + 13]), tag=9)
    body_start = j + 1
    cs = body_start + int(data[i + 3:j])
    if data[cs - 1:cs] != SOH or data[cs:cs + 3] != b"10=":
        raise FixError("BodyLength (9) does not end at the CheckSum (10) field", base + cs,
                       f"BodyLength {int(data[i + 3:j])}", tag=9)
    value = data[cs + 3:cs + 6]
    if len(data) != cs + 7 or data[cs + 6] != 1 or not value.isdigit():
        raise FixError("bad CheckSum (10) field", base + cs, repr(data[cs:cs + 8]), tag=10)
    actual = byte_sum(memoryview(data)[:cs]) & 0xFF
    if int(value) != actual:
        raise FixError("CheckSum mismatch", base + cs, f"field says {value.decode()}, bytes sum to {actual:03d}",
                       tag=10)
    return i, body_start, cs


def decode(data: bytes, base: int = 0) -> Message:
    """Parse one complete frame into a Message; FixError names the fault and its offset
    (``base`` is added to offsets, e.g. the frame's position in a stream)."""
    data = bytes(data)
    i, body_start, cs = _frame_bounds(data, base)
    if not data.startswith(b"8=FIX"):
        raise FixError("bad BeginString (8)", base + 2, repr(data[2:i]), tag=8)
    if data[body_start:body_start + 3] != b"35=":
        raise FixError("MsgType (35) is not the third field", base + body_start, tag=35)
    pairs = _FIELD_RE.findall(data, body_start, cs)
    if len(pairs) == data.count(SOH, body_start, cs):
        fields = [(int(t), v) for t, v in pairs]
        if _DATA_LENGTH_TAGS.keys().isdisjoint([t for t, _ in fields]):
            msg = Message.__new__(Message)
            msg.msg_type = fields[0][1].decode("latin-1")
            msg.fields = fields[1:]
            msg._index = None
            return msg
    # slow path: raw data fields, or a malformed field to report precisely
    fields = []
    pos = body_start
    parts = data[body_start:cs - 1].split(SOH)
    data_lengths = _DATA_LENGTH_TAGS
    for part in parts:
        t, eq, v = part.partition(b"=")
        if not eq or not t.isdigit() or t[0] == 48 or len(t) > 9:
            raise FixError("malformed field", base + pos, repr(part[:40]), reject_reason=REJECT_INVALID_TAG)
        tag = int(t)
        if tag in data_lengths:          # raw data may hold SOH: parse sequentially from here
            fields += _decode_sequential(data, pos, cs, base)
            break
        if not v:
            raise FixError("tag without a value", base + pos, f"tag {tag}", tag, REJECT_NO_VALUE)
        fields.append((tag, v))
        pos += len(part) + 1
    msg = Message.__new__(Message)
    msg.msg_type = fields[0][1].decode("latin-1")
    msg.fields = fields[1:]
    msg._index = None
    return msg


def _decode_sequential(data: bytes, pos: int, end: int, base: int) -> list[tuple[int, bytes]]:
    """Fields from ``pos`` to ``end`` one by one, honouring LENGTH-prefixed DATA fields."""
    fields = []
    expect_data: tuple[int, int] | None = None
    while pos < end:
        eq = data.find(b"=", pos, end)
        t = data[pos:eq] if eq >= 0 else b""
        if eq < 0 or not t.isdigit() or t[0] == 48 or len(t) > 9:
            raise FixError("malformed field", base + pos, repr(data[pos:pos + 40]), reject_reason=REJECT_INVALID_TAG)
        tag = int(t)
        if expect_data is not None and tag == expect_data[0]:
            stop = eq + 1 + expect_data[1]
            if stop >= end or data[stop] != 1:
                raise FixError("DATA field does not match its length", base + eq + 1, f"tag {tag}", tag,
                               REJECT_BAD_FORMAT)
        else:
            stop = data.find(SOH, eq + 1, end)
        expect_data = None
        v = data[eq + 1:stop]
        if not v:
            raise FixError("tag without a value", base + pos, f"tag {tag}", tag, REJECT_NO_VALUE)
        if tag in _DATA_LENGTH_TAGS:
            if not v.isdigit():
                raise FixError("bad LENGTH field", base + pos, f"tag {tag} = {v!r}", tag, REJECT_BAD_FORMAT)
            expect_data = (_DATA_LENGTH_TAGS[tag], int(v))
        fields.append((tag, v))
        pos = stop + 1
    return fields


_SEQ_RE = re.compile(rb"\x0134=(\d{1,12})\x01")
_TYPE_RE = re.compile(rb"\x0135=([^\x01=]{1,8})\x01")


def peek(data: bytes) -> tuple[str | None, int | None]:
    """(MsgType, MsgSeqNum) found in raw bytes that did not decode, for a Reject; None where absent."""
    t, s = _TYPE_RE.search(data), _SEQ_RE.search(data)
    return (t.group(1).decode("latin-1") if t else None, int(s.group(1)) if s else None)


# ---------------------------------------------------------------------------------------------- validation

_VALID: dict[tuple[int, bytes], bool] = {}
"""(tag, value) pairs already found valid: order flow repeats most values (Side, OrdType, symbols)."""


def _check_value(fd: fix44.FieldDef, v: bytes, tag: int) -> None:
    key = (tag, v)
    if key in _VALID:
        return
    _check_value_uncached(fd, v, tag)
    if len(_VALID) >= 65536:
        _VALID.clear()
    _VALID[key] = True


def _check_value_uncached(fd: fix44.FieldDef, v: bytes, tag: int) -> None:
    kind = fd.type
    if kind in fix44.INT_TYPES:
        if not _INT_RE.match(v):
            raise FixError("incorrect data format", 0, f"tag {tag} ({fd.name}) = {v!r}", tag, REJECT_BAD_FORMAT)
    elif kind in fix44.DECIMAL_TYPES:
        if not _DECIMAL_RE.match(v):
            raise FixError("incorrect data format", 0, f"tag {tag} ({fd.name}) = {v!r}", tag, REJECT_BAD_FORMAT)
    elif kind == "UTCTIMESTAMP":
        try:
            parse_utc(v)
        except FixError:
            raise FixError("incorrect data format", 0, f"tag {tag} ({fd.name}) = {v!r}", tag,
                           REJECT_BAD_FORMAT) from None
    elif kind == "BOOLEAN" and v not in (b"Y", b"N"):
        raise FixError("incorrect data format", 0, f"tag {tag} ({fd.name}) = {v!r}", tag, REJECT_BAD_FORMAT)
    elif kind == "CHAR" and len(v) != 1:
        raise FixError("incorrect data format", 0, f"tag {tag} ({fd.name}) = {v!r}", tag, REJECT_BAD_FORMAT)
    if fd.enums:
        s = v.decode("latin-1")
        values = s.split(" ") if kind == "MULTIPLEVALUESTRING" else (s,)
        for x in values:
            if x not in fd.enums:
                raise FixError("value is incorrect (out of range) for this tag", 0, f"tag {tag} ({fd.name}) = {s!r}",
                               tag, REJECT_VALUE_OUT_OF_RANGE)


def _walk(fields, i, tags, groups, d, out, check, in_entry=False):
    """Consume one scope (the message, or one group entry) from ``fields[i]`` and return
    the index of the first field that does not belong to it: a tag not allowed here, or
    (in an entry) a repeated tag, which starts the next entry. Group entries go to ``out``."""
    seen = set()
    n = len(fields)
    while i < n:
        tag, v = fields[i]
        if tag not in tags or (in_entry and tag in seen):
            return i
        if tag in seen:
            if check:
                raise FixError("tag appears more than once", 0, f"tag {tag}", tag, REJECT_DUPLICATE_TAG)
            return i
        seen.add(tag)
        if check:
            fd = d.fields.get(tag)
            if fd is not None:
                _check_value(fd, v, tag)
        i += 1
        g = groups.get(tag)
        if g is None:
            continue
        entries = []
        entry_tags = g.tags | {g.delimiter}
        while i < n and fields[i][0] == g.delimiter:
            start = i
            i = _walk(fields, i, entry_tags, g.groups, d, {}, check, True)
            entry = fields[start:i]
            entries.append(entry)
            if check and g.required:
                missing = g.required - {t for t, _ in entry}
                if missing:
                    t = min(missing)
                    raise FixError("required tag missing in group", 0, f"tag {t} in {g.name}", t,
                                   REJECT_REQUIRED_MISSING)
        if check and (not _INT_RE.match(v) or int(v) != len(entries)):
            raise FixError("incorrect NumInGroup count for repeating group", 0,
                           f"{g.name} ({tag}) says {v.decode('latin-1')}, found {len(entries)}", tag,
                           REJECT_GROUP_COUNT)
        out[tag] = entries
    return i


_SCOPES: dict[tuple[int, str], tuple[frozenset, dict]] = {}


def _structure(msg: Message, d: fix44.Dictionary, check: bool = False) -> dict[int, list]:
    """Repeating groups of a message by NumInGroup tag (each entry a list of fields)."""
    key = (id(d), msg.msg_type)
    scope = _SCOPES.get(key)
    if scope is None:
        md = d.messages.get(msg.msg_type)
        groups = dict(d.header.groups)
        tags = d.header.tags | d.trailer.tags
        if md is not None:
            groups.update(md.groups)
            tags = tags | md.tags
        scope = _SCOPES[key] = (tags, groups)
    tags, groups = scope
    out: dict = {}
    i = _walk(msg.fields, 0, tags, groups, d, out, check)
    if check and i < len(msg.fields):
        tag = msg.fields[i][0]
        if tag not in d.fields:
            raise FixError("invalid tag number", 0, f"tag {tag}", tag, REJECT_INVALID_TAG)
        if tag in tags:
            raise FixError("tag appears more than once", 0, f"tag {tag}", tag, REJECT_DUPLICATE_TAG)
        raise FixError("tag not defined for this message type", 0, f"tag {tag} in MsgType {msg.msg_type}", tag,
                       REJECT_TAG_NOT_DEFINED)
    return out


def validate(msg: Message, d: fix44.Dictionary | None = None, header: bool = True) -> None:
    """Check a message against the data dictionary; FixError with the SessionRejectReason
    and tag: unknown MsgType, unknown or misplaced tags, missing required fields, bad
    formats or enum values, duplicate tags, wrong repeating-group counts."""
    d = d or fix44.dictionary()
    md = d.messages.get(msg.msg_type)
    if md is None:
        raise FixError("invalid MsgType", 0, repr(msg.msg_type), 35, REJECT_INVALID_MSGTYPE)
    _structure(msg, d, check=True)
    present = msg._idx()
    required = md.required | (d.header.required - {8, 9, 35}) if header else md.required
    missing = [t for t in required if t not in present]
    if missing:
        t = min(missing)
        raise FixError("required tag missing", 0, f"tag {t} ({d.fields[t].name}) in {md.name}", t,
                       REJECT_REQUIRED_MISSING)


# ---------------------------------------------------------------------------------------------- stamping

def stamp(template: bytes, seq: int) -> bytes:
    """Write ``seq`` into a finished frame's fixed-width MsgSeqNum placeholder and fix the
    CheckSum: the golden model of a downstream (gateware) sequencer. The CheckSum is updated
    incrementally (old sum minus the placeholder digits plus the new ones), as hardware would."""
    m = _SEQ_RE.search(template)
    if m is None:
        raise FixError("no MsgSeqNum (34) to stamp", 0)
    width = m.end(1) - m.start(1)
    digits = b"%0*d" % (width, seq)
    if len(digits) != width or seq < 1:
        raise FixError("MsgSeqNum does not fit its placeholder", m.start(1), f"{seq} in {width} digits", 34)
    cs = len(template) - 7
    if template[cs:cs + 3] != b"10=":
        raise FixError("no CheckSum (10) field to stamp", cs, tag=10)
    old = int(template[cs + 3:cs + 6])
    new = (old - sum(m.group(1)) + sum(digits)) & 0xFF
    return template[:m.start(1)] + digits + template[m.end(1):cs + 3] + b"%03d\x01" % new


# ---------------------------------------------------------------------------------------------- stream

class StreamParser:
    """Cut a byte stream into FIX frames. :meth:`feed` returns, in stream order, complete
    frames (bytes) and :class:`FixError` items for garbage, malformed heads, BodyLengths
    that miss the CheckSum field and oversized frames; after an error it resynchronises on
    the next ``8=FIX``. Offsets in errors are stream offsets. CheckSums are checked by
    :func:`decode`."""

    MAGIC = b"8=FIX"

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.buf = bytearray()
        self.offset = 0          # stream offset of buf[0]
        self._dropping = False   # skipping after an error: the skipped bytes belong to that error
        self._scan_owner = -1    # stream offset of the frame _scan_from belongs to
        self._scan_from = 1

    def _skip(self, n: int) -> None:
        del self.buf[:n]
        self.offset += n

    def _resync(self, out: list, reason: str, at: int, detail: str = "", tag=None) -> None:
        out.append(FixError(reason, self.offset + at, detail, tag))
        self._skip(1)
        self._dropping = True

    def _garbage(self, out: list, n: int) -> None:
        if not self._dropping:
            out.append(FixError("garbage before BeginString", self.offset, f"{n} bytes skipped"))
        self._skip(n)

    def feed(self, data: bytes) -> list:
        buf = self.buf
        buf += data
        out: list = []
        magic = self.MAGIC
        while buf:
            start = buf.find(magic)
            if start < 0:
                keep = next((k for k in range(min(len(magic) - 1, len(buf)), 0, -1) if buf.endswith(magic[:k])), 0)
                if len(buf) - keep:
                    self._garbage(out, len(buf) - keep)
                break
            if start:
                self._garbage(out, start)
            i = buf.find(SOH, 0, 40)
            if i < 0:
                if len(buf) >= 40:
                    self._resync(out, "BeginString (8) not terminated", 0, tag=8)
                    continue
                break
            if len(buf) < i + 3:
                break
            if buf[i + 1:i + 3] != b"9=":
                self._resync(out, "BodyLength (9) is not the second field", i + 1, tag=9)
                continue
            j = buf.find(SOH, i + 3, i + 13)
            if j < 0:
                if len(buf) >= i + 13:
                    self._resync(out, "bad BodyLength (9)", i + 3, "not terminated within 9 digits", 9)
                    continue
                break
            digits = bytes(buf[i + 3:j])
            if not digits.isdigit():
                self._resync(out, "bad BodyLength (9)", i + 3, repr(digits), 9)
                continue
            total = j + 1 + int(digits) + 7
            if total > self.max_message:
                self._resync(out, "oversized message", 0, f"{total} bytes > {self.max_message}", 9)
                continue
            if len(buf) < total:
                k = self._complete_frame_inside(total)
                if k:
                    out.append(FixError("BodyLength (9) runs over the next message", self.offset + k,
                                        f"BodyLength {int(digits)}", 9))
                    self._skip(k)
                    continue
                break
            cs = total - 7
            if buf[cs - 1] != 1 or buf[cs:cs + 3] != b"10=" or buf[total - 1] != 1:
                self._resync(out, "BodyLength (9) does not end at the CheckSum (10) field", cs,
                             f"BodyLength {int(digits)}", 9)
                continue
            out.append(bytes(buf[:total]))
            self._skip(total)
            self._dropping = False
        return out

    def _complete_frame_inside(self, claimed: int) -> int:
        """While waiting for a claimed frame: the offset of a complete, CheckSum-correct frame
        that starts inside it (then the claim is wrong), else 0. Scans each byte once."""
        buf = self.buf
        k = max(self._scan_from, 1) if self._scan_owner == self.offset else 1
        while True:
            k = buf.find(self.MAGIC, k)
            if k < 0:
                self._scan_owner, self._scan_from = self.offset, max(1, len(buf) - len(self.MAGIC))
                return 0
            i = buf.find(SOH, k, k + 40)
            j = buf.find(SOH, i + 3, i + 13) if i >= 0 and buf[i + 1:i + 3] == b"9=" else -1
            if j < 0 or not buf[i + 3:j].isdigit():
                if i < 0 or j < 0 and len(buf) < i + 13:
                    self._scan_owner, self._scan_from = self.offset, k
                    return 0
                k += 1
                continue
            end = j + 1 + int(buf[i + 3:j]) + 7
            if end > len(buf):
                self._scan_owner, self._scan_from = self.offset, k
                return 0
            cs = end - 7
            value = bytes(buf[cs + 3:cs + 6])
            if buf[cs - 1] == 1 and buf[cs:cs + 3] == b"10=" and buf[end - 1] == 1 and value.isdigit() \
                    and int(value) == byte_sum(bytes(buf[k:cs])) & 0xFF:
                return k
            k += 1

    def close(self) -> list:
        """End of stream: an error for any unfinished frame left in the buffer."""
        out = []
        if self.buf:
            out.append(FixError("truncated message at end of stream", self.offset, f"{len(self.buf)} bytes"))
            self._skip(len(self.buf))
        return out


def iter_messages(data: bytes) -> Iterator[Message | FixError]:
    """Decode a whole byte string (a capture, a log) into messages and errors."""
    p = StreamParser()
    for item in p.feed(data) + p.close():
        if isinstance(item, FixError):
            yield item
        else:
            try:
                yield decode(item)
            except FixError as e:
                yield e
