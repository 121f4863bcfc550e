"""Vectorised ITCH 5.0 reading (and writing) of whole feeds into NumPy structured arrays.

:func:`read_itch_file` reads NASDAQ's daily binary format (every message
preceded by a 2-byte big-endian length); :func:`read_itch_pcap` reads a pcap of
MoldUDP64 datagrams. Both return an :class:`ItchTable`: one structured array per
message type whose dtype is generated from :data:`protocols.itch.MESSAGES`
(:func:`dtype`), so no layout is written here.

How it works, without a Python loop per message:

1. a numba-jitted scan walks the length prefixes and returns every message's
   offset and length (:func:`scan_lengths`, :func:`scan_segments` for the
   message blocks of MoldUDP64 payloads);
2. type bytes and table lengths are looked up for all messages at once; unknown
   types, zero-length messages and length prefixes that disagree with the table
   are counted in :attr:`ItchTable.errors` (with the first few offsets), never
   raised;
3. a stable sort by type byte groups each type's messages in feed order; per
   type they are gathered into fixed-length rows by fancy indexing a
   sliding-window view of the buffer and block-copied into the structured array,
   whose fields are views of the wire bytes at the table's offsets (only the
   6-byte timestamp is widened, into its own ``uint64`` slot).

A truncated final message in a NASDAQ file raises :class:`~protocols.itch.ItchError`
naming its offset. In a pcap a damaged datagram is counted like the gateware
does (``mold_truncated``, ``mold_trailing_bytes``) and its complete messages kept.

:func:`encode_rows` is the inverse of step 3 (columns to message bytes), used by
the feed generator and by :meth:`ItchTable.to_nasdaq`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from numba import njit

from protocols import itch
from protocols.itch import MESSAGES, ItchError

FIRST_ERRORS = 5
"""How many offending messages each error entry lists."""
MOLD_HEADER = struct.Struct(">10sQH")
MOLD_END_OF_SESSION = 0xFFFF

_BYTE_WIDTHS = (1, 2, 4, 8)


# --------------------------------------------------------------------------- #
# dtypes, generated from the table
# --------------------------------------------------------------------------- #


def _is_wide(f: itch.Field) -> bool:
    """A field that is widened to ``uint64`` (the 6-byte timestamp; any odd width)."""
    return f.kind != "alpha" and (f.kind == "timestamp" or f.width not in _BYTE_WIDTHS)


@dataclass(frozen=True)
class _Layout:
    """Where things sit in one row of :func:`dtype`: ``index`` at 0, the widened
    fields in 8-byte slots after it, then the message's own bytes from ``block``
    (so every other field is a view of the wire bytes at ``block + offset``)."""

    block: int
    wide: tuple[tuple[itch.Field, int], ...]


@cache
def _layout(code: str) -> _Layout:
    wide = [f for f in MESSAGES[code].fields if _is_wide(f)]
    return _Layout(8 * (1 + len(wide)), tuple((f, 8 * (1 + k)) for k, f in enumerate(wide)))


@cache
def dtype(code: str) -> np.dtype:
    """The structured dtype of type ``code``, generated from the table: ``index``
    (the message's position in the feed, ``uint64``) then every field in table
    order, big-endian unsigned ints, ``S<width>`` for alpha, ``uint64`` for the
    6-byte timestamp.

    A row holds the message's bytes as they came off the wire, and the fields
    other than the timestamp are views into them at their table offsets, so
    decoding a type is one block copy per message plus the timestamp. ``S`` drops
    trailing NUL bytes; :meth:`ItchTable.to_messages` restores them.
    """
    mt, lay = MESSAGES[code], _layout(code)
    wide = dict(lay.wide)
    names, formats, offsets = ["index"], ["<u8"], [0]
    for f in mt.fields:
        names.append(f.name)
        if f in wide:
            formats.append("<u8")
            offsets.append(wide[f])
        else:
            formats.append(f"S{f.width}" if f.kind == "alpha" else f">u{f.width}")
            offsets.append(lay.block + f.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": lay.block + mt.length})


TYPE_LENGTHS = np.zeros(256, np.int64)
"""Message length by type byte (0 for a byte that is no type), from the table."""
for _mt in MESSAGES.values():
    TYPE_LENGTHS[ord(_mt.code)] = _mt.length
TYPE_LENGTHS.flags.writeable = False
_LENGTHS = TYPE_LENGTHS
_WANT = np.where(_LENGTHS > 0, _LENGTHS, -1)
"""Length of each type byte, -1 for no type (so an empty message never matches)."""


# --------------------------------------------------------------------------- #
# rows <-> columns
# --------------------------------------------------------------------------- #


def _widen(raw: np.ndarray) -> np.ndarray:
    """Big-endian ``(n, width)`` bytes (width <= 8) as native ``uint64``."""
    n, width = raw.shape
    tmp = np.zeros((n, 8), np.uint8)
    tmp[:, 8 - width:] = raw
    return tmp.view(">u8").reshape(n).astype(np.uint64)


def decode_rows(code: str, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Convert ``(n, length)`` uint8 rows of type ``code`` into its structured array."""
    mt, lay = MESSAGES[code], _layout(code)
    n = len(rows)
    out = np.empty(n, dtype(code))
    view = out.view(np.uint8).reshape(n, out.dtype.itemsize)
    view[:, lay.block:] = rows
    out["index"] = index
    for f, _ in lay.wide:
        out[f.name] = _widen(view[:, lay.block + f.offset:lay.block + f.offset + f.width])
    return out


def encode_rows(code: str, columns: Mapping[str, np.ndarray] | np.ndarray, n: int | None = None) -> np.ndarray:
    """Encode ``n`` messages of type ``code`` from columns into ``(n, length)`` uint8 rows.

    ``columns`` maps field names to arrays (or scalars), or is a structured array
    of :func:`dtype` (``code``). Missing fields are zero or spaces, as in
    :func:`protocols.itch.message`. Alpha values are written as NumPy holds them,
    NUL-padded to the width (the exact inverse of :func:`decode_rows`), so give
    them space-padded as they go on the wire. Integers must fit their width.
    """
    mt = MESSAGES[code]
    fields = mt.fields
    if isinstance(columns, np.ndarray) and columns.dtype == dtype(code):
        # The row already holds the wire bytes: copy them, then write the widened fields.
        n, lay = len(columns), _layout(code)
        rows = np.array(columns.view(np.uint8).reshape(n, columns.dtype.itemsize)[:, lay.block:])
        fields = tuple(f for f, _ in lay.wide)
    else:
        if isinstance(columns, np.ndarray):
            n = len(columns) if n is None else n
        elif n is None:
            n = len(next(v for v in columns.values() if np.ndim(v)))
        rows = np.empty((n, mt.length), np.uint8)
    names = set(columns.dtype.names if isinstance(columns, np.ndarray) else columns)
    rows[:, 0] = ord(code)
    for f in fields:
        sl = slice(f.offset, f.offset + f.width)
        if f.name not in names:
            rows[:, sl] = 0x20 if f.kind == "alpha" else 0
            continue
        value = columns[f.name]
        if f.kind == "alpha":
            a = np.ascontiguousarray(np.broadcast_to(np.asarray(value, f"S{f.width}"), (n,)))
            rows[:, sl] = a.view(np.uint8).reshape(n, f.width)
        else:
            v = np.broadcast_to(np.asarray(value), (n,))
            bad = v < 0 if v.dtype.kind in "iO" else np.zeros(n, bool)
            if f.width < 8:
                bad |= (v >= 1 << (8 * f.width))
            elif v.dtype.kind == "O":
                bad |= (v >= 1 << 64)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ItchError("field_out_of_range", f.offset, code, f"{f.name}={v[i]} (row {i})")
            be = v.astype(">u8").view(np.uint8).reshape(n, 8)
            rows[:, sl] = be[:, 8 - f.width:]
    return rows


# --------------------------------------------------------------------------- #
# the scans
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True)
def _count_messages(buf, start, end):
    pos, n = start, 0
    while pos + 2 <= end:
        length = (np.int64(buf[pos]) << 8) | buf[pos + 1]
        if pos + 2 + length > end:
            break
        pos += 2 + length
        n += 1
    return n, pos


@njit(cache=True, nogil=True)
def _fill_messages(buf, start, n, offsets, lengths):
    pos = start
    for i in range(n):
        length = (np.int64(buf[pos]) << 8) | buf[pos + 1]
        offsets[i] = pos
        lengths[i] = length
        pos += 2 + length


def scan_lengths(buf: np.ndarray, start: int = 0, end: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Walk 2-byte-length-prefixed messages in ``buf[start:end]``.

    Returns the offsets of the length prefixes, the lengths, and where the walk
    stopped (``end`` when every message was whole).
    """
    end = len(buf) if end is None else end
    n, stop = _count_messages(buf, start, end)
    offsets = np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    _fill_messages(buf, start, n, offsets, lengths)
    return offsets, lengths, stop


@njit(cache=True, nogil=True)
def _scan_segments(buf, seg_start, seg_end, seg_count, offsets, lengths, seg_of, status, status_at, fill):
    """Walk each segment's ``seg_count`` blocks; status 0 ok, 1 truncated, 2 trailing bytes."""
    n = 0
    for s in range(len(seg_start)):
        pos, end = seg_start[s], seg_end[s]
        status[s] = 0
        for _ in range(seg_count[s]):
            if pos + 2 > end:
                status[s], status_at[s] = 1, pos
                break
            length = (np.int64(buf[pos]) << 8) | buf[pos + 1]
            if pos + 2 + length > end:
                status[s], status_at[s] = 1, pos
                break
            if fill:
                offsets[n], lengths[n], seg_of[n] = pos, length, s
            n += 1
            pos += 2 + length
        if status[s] == 0 and pos != end:
            status[s], status_at[s] = 2, pos
    return n


def scan_segments(buf: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray, seg_count: np.ndarray):
    """Walk MoldUDP64 message blocks: segment ``s`` is ``buf[seg_start[s]:seg_end[s]]``
    and declares ``seg_count[s]`` messages.

    Returns ``(offsets, lengths, segment, status, status_at)``: per message the
    offset of its length prefix, its length and its segment; per segment 0 (whole),
    1 (a message runs past the end, at ``status_at``) or 2 (bytes after the last
    declared message, from ``status_at``).
    """
    k = len(seg_start)
    status, status_at = np.zeros(k, np.int8), np.zeros(k, np.int64)
    empty = np.empty(0, np.int64)
    n = _scan_segments(buf, seg_start, seg_end, seg_count, empty, empty, empty, status, status_at, False)
    offsets, lengths, seg_of = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    _scan_segments(buf, seg_start, seg_end, seg_count, offsets, lengths, seg_of, status, status_at, True)
    return offsets, lengths, seg_of, status, status_at


# --------------------------------------------------------------------------- #
# the table
# --------------------------------------------------------------------------- #


@dataclass
class ItchTable:
    """Messages of a feed, one structured array per type (all 23 present, maybe empty).

    ``n_messages`` counts every message found, good or bad; a message's ``index``
    is its position among them, so ordering by ``index`` restores the feed.
    ``errors`` maps a reason (``unknown_type``, ``wrong_length``, ``empty``, and for
    pcaps ``mold_*`` and ``net_*``) to ``{"count": n, "first": [...]}``, the first
    :data:`FIRST_ERRORS` occurrences with their offsets. For pcaps ``seq`` holds
    every message's MoldUDP64 sequence number (by index) and ``sessions`` the
    sessions seen.
    """

    tables: dict[str, np.ndarray]
    n_messages: int
    errors: dict[str, dict] = field(default_factory=dict)
    seq: np.ndarray | None = None
    sessions: tuple[bytes, ...] = ()

    def __getitem__(self, code: str) -> np.ndarray:
        return self.tables[code]

    def __len__(self) -> int:
        """Messages decoded (the bad ones are only counted)."""
        return sum(len(t) for t in self.tables.values())

    def counts(self) -> dict[str, int]:
        """Decoded messages per type letter (types that occur), in table order."""
        return {code: len(t) for code, t in self.tables.items() if len(t)}

    def error_count(self) -> int:
        """Total of every error counter."""
        return sum(e["count"] for e in self.errors.values())

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], n_messages: int | None = None) -> ItchTable:
        """A table from per-type structured arrays (missing types are empty)."""
        tables = {code: np.asarray(arrays[code], dtype(code)) if code in arrays else np.empty(0, dtype(code))
                  for code in MESSAGES}
        if n_messages is None:
            n_messages = max((int(t["index"].max()) + 1 for t in tables.values() if len(t)), default=0)
        return cls(tables, n_messages)

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, rows)``: per decoded message in feed order its type byte and its
        row in that type's array."""
        idx = np.concatenate([t["index"] for t in self.tables.values()])
        codes = np.concatenate([np.full(len(t), ord(c), np.uint8) for c, t in self.tables.items()])
        rows = np.concatenate([np.arange(len(t)) for t in self.tables.values()])
        by = np.argsort(idx, kind="stable")
        return codes[by], rows[by]

    def to_messages(self) -> list:
        """Every decoded message as its :mod:`protocols.itch` dataclass, in feed order
        (a Python loop: for tests and small feeds)."""
        decoded = {}
        for code, t in self.tables.items():
            if not len(t):
                continue
            mt, cls = MESSAGES[code], itch.CLASSES[code]
            pads = [f.width if f.kind == "alpha" else 0 for f in mt.fields]
            names = [f.name for f in mt.fields]
            for rec in t.tolist():
                values = {n: (v.ljust(p, b"\0") if p else v) for n, p, v in zip(names, pads, rec[1:])}
                decoded[rec[0]] = cls(**values)
        return [decoded[i] for i in sorted(decoded)]

    def encode(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoded messages in feed order as NASDAQ binary (``uint8`` array) and
        the offset of every message's type byte in it."""
        codes, rows = self.order()
        lengths = _LENGTHS[codes]
        starts = np.cumsum(lengths + 2) - lengths
        out = np.empty(int(lengths.sum() + 2 * len(lengths)), np.uint8)
        out[starts - 2] = lengths >> 8
        out[starts - 1] = lengths & 0xFF
        for code, t in self.tables.items():
            if len(t):
                sel = codes == ord(code)
                put_rows(out, starts[sel][np.argsort(rows[sel])], encode_rows(code, t))
        return out, starts

    def to_nasdaq(self) -> bytes:
        """The decoded messages as a NASDAQ binary file's bytes."""
        return self.encode()[0].tobytes()


def put_rows(buf: np.ndarray, starts: np.ndarray, rows: np.ndarray) -> None:
    """Write ``rows[i]`` at ``buf[starts[i]:]`` (rows must not overlap)."""
    if not len(rows):
        return
    width = rows.shape[1]
    window = np.lib.stride_tricks.as_strided(buf, shape=(len(buf) - width + 1, width),
                                             strides=(buf.strides[0], buf.strides[0]))
    window[starts] = rows


def gather_rows(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``(n, width)`` copy of ``buf[starts[i]:starts[i] + width]`` for every ``i``."""
    if len(buf) < width:
        return np.empty((0, width), np.uint8)
    return np.lib.stride_tricks.sliding_window_view(buf, width)[starts]


def _note(errors: dict, reason: str, mask: np.ndarray, detail) -> None:
    """Count ``mask``'s messages under ``reason``; ``detail(i)`` describes the i-th hit."""
    hits = np.flatnonzero(mask)
    if not len(hits):
        return
    entry = errors.setdefault(reason, {"count": 0, "first": []})
    entry["count"] += len(hits)
    room = FIRST_ERRORS - len(entry["first"])
    entry["first"].extend(detail(int(i)) for i in hits[:max(room, 0)])


def _tabulate(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, describe) -> tuple[dict, dict]:
    """Classify the messages at ``offsets`` (length prefixes) and gather each type."""
    errors: dict[str, dict] = {}
    body = offsets + 2
    codes = buf[np.minimum(body, max(len(buf) - 1, 0))] if len(body) else np.empty(0, np.uint8)
    good = _WANT[codes] == lengths
    if not good.all():
        empty = lengths == 0
        codes[empty] = 0                      # type byte 0 is no type: empties sort with the bad
        want = _LENGTHS[codes]
        good &= ~empty
        _note(errors, "empty", empty, lambda i: describe(i, None, 0))
        _note(errors, "unknown_type", ~empty & (want == 0),
              lambda i: describe(i, chr(codes[i]), int(lengths[i])))
        _note(errors, "wrong_length", ~empty & (want != 0) & ~good,
              lambda i: dict(describe(i, chr(codes[i]), int(lengths[i])), expected=int(want[i])))
        codes = np.where(good, codes, np.uint8(0))
    # A stable sort by type byte groups each type's messages, in feed order.
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=256))])
    tables = {}
    for code, mt in MESSAGES.items():
        idx = order[bounds[ord(code)]:bounds[ord(code) + 1]]
        tables[code] = decode_rows(code, gather_rows(buf, body[idx], mt.length), idx)
    return tables, errors


def _as_buffer(path_or_bytes) -> np.ndarray:
    if isinstance(path_or_bytes, np.ndarray):
        return path_or_bytes.view(np.uint8).reshape(-1)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return np.frombuffer(path_or_bytes, np.uint8)
    return np.fromfile(os.fspath(path_or_bytes), np.uint8)


def read_itch_file(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview | np.ndarray) -> ItchTable:
    """Read a NASDAQ binary ITCH file (each message after a 2-byte big-endian length).

    Bad messages are counted in ``errors`` with the offset of their length prefix;
    a final message cut short raises :class:`ItchError` ``truncated`` at the
    offset of its length prefix.
    """
    buf = _as_buffer(path_or_bytes)
    offsets, lengths, stop = scan_lengths(buf)
    if stop != len(buf):
        left = len(buf) - stop
        code = chr(buf[stop + 2]) if left > 2 else None
        detail = (f"{left} byte(s) left, a length prefix needs 2" if left < 2 else
                  f"length prefix says {int(buf[stop]) << 8 | int(buf[stop + 1])} bytes, {left - 2} left")
        raise ItchError("truncated", stop, code, detail + f" (message {len(offsets)})")

    def describe(i, code, length):
        return {"index": i, "offset": int(offsets[i]), "type": code, "length": length}

    tables, errors = _tabulate(buf, offsets, lengths, describe)
    return ItchTable(tables, len(offsets), errors)


def read_itch_pcap(path: str | os.PathLike | bytes, *, port: int | None = None) -> ItchTable:
    """Read the ITCH messages of a pcap of MoldUDP64 datagrams (Ethernet/IPv4/UDP).

    Frames that are not UDP (``net_<reason>``), datagrams to another ``port``
    (``skipped_port``), payloads shorter than a MoldUDP64 header
    (``mold_short_header``) and damaged packets (``mold_truncated``,
    ``mold_trailing_bytes``) are counted in ``errors`` by frame; bad messages are
    counted as in :func:`read_itch_file` with their offset in the UDP payload and
    their sequence number.
    """
    from protocols.net import NetError, parse_udp_frame
    from protocols.pcap import read_pcap

    errors: dict[str, dict] = {}

    def frame_error(reason, frame, **kw):
        entry = errors.setdefault(reason, {"count": 0, "first": []})
        entry["count"] += 1
        if len(entry["first"]) < FIRST_ERRORS:
            entry["first"].append({"frame": frame, **kw})

    payloads, seg_frame, seg_seq, seg_count, seg_session = [], [], [], [], []
    for frame_no, rec in enumerate(read_pcap(path)):
        try:
            d = parse_udp_frame(rec.data, verify_udp_checksum=False)
        except NetError as e:
            frame_error(f"net_{e.reason}", frame_no, offset=e.offset)
            continue
        if port is not None and d.dst_port != port:
            frame_error("skipped_port", frame_no, port=d.dst_port)
            continue
        p = d.payload
        if len(p) < MOLD_HEADER.size:
            frame_error("mold_short_header", frame_no, offset=0)
            continue
        session, seq, count = MOLD_HEADER.unpack_from(p)
        payloads.append(p)
        seg_frame.append(frame_no)
        seg_seq.append(seq)
        seg_count.append(0 if count == MOLD_END_OF_SESSION else count)
        seg_session.append(session)

    sizes = np.fromiter(map(len, payloads), np.int64, len(payloads))
    base = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    buf = np.frombuffer(b"".join(payloads), np.uint8)
    offsets, lengths, seg, status, status_at = scan_segments(
        buf, base[:-1] + MOLD_HEADER.size, base[1:], np.asarray(seg_count, np.int64))
    for s in np.flatnonzero(status):
        frame_error("mold_truncated" if status[s] == 1 else "mold_trailing_bytes", seg_frame[s],
                    offset=int(status_at[s] - base[s]))
    seqs = np.asarray(seg_seq, np.uint64)
    first_of_seg = np.searchsorted(seg, np.arange(len(payloads)))
    seq = seqs[seg] + (np.arange(len(offsets)) - first_of_seg[seg]).astype(np.uint64) if len(offsets) \
        else np.empty(0, np.uint64)

    def describe(i, code, length):
        s = int(seg[i])
        return {"index": i, "frame": seg_frame[s], "seq": int(seq[i]), "offset": int(offsets[i] - base[s]),
                "type": code, "length": length}

    tables, msg_errors = _tabulate(buf, offsets, lengths, describe)
    for reason, entry in msg_errors.items():
        errors[reason] = entry
    return ItchTable(tables, len(offsets), errors, seq, tuple(dict.fromkeys(seg_session)))
