"""libpcap capture files: the format feeds are recorded and replayed in.

Files written here open in tcpdump and Wireshark (little-endian, version 2.4,
nanosecond or microsecond timestamps). The reader accepts both timestamp
resolutions in both byte orders and link type 1 (Ethernet); every timestamp is
returned as integer nanoseconds since the epoch. A :class:`PcapWriter` writes
to a temporary file and renames it into place only when closed cleanly, so an
interrupted capture never appears under its final name.

:class:`PcapError` reasons and offsets (from the start of the file):

=====================  ==========================================================
``bad_magic``          the file does not start with a pcap magic number (0)
``truncated_header``   the file header or a record header is cut short (its start)
``linktype``           link type other than 1, Ethernet (20)
``truncated_record``   a record's captured length runs past the end (record start)
``oversize_record``    captured length > snaplen and > 262144 (record start)
=====================  ==========================================================

The writer refuses a negative or post-2106 ``timestamp``, a bad ``snaplen``,
``linktype`` or ``orig_len``, and writes after close (``closed``); its offsets
point at the field or record that would have been written.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from protocols.errors import WireError

MAGIC_US = 0xA1B2C3D4
"""Magic number of microsecond-resolution files."""
MAGIC_NS = 0xA1B23C4D
"""Magic number of nanosecond-resolution files."""
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
MAX_RECORD_LEN = 262144
"""Largest captured length accepted regardless of snaplen (libpcap's
MAXIMUM_SNAPLEN)."""

_NS_PER_S = 1_000_000_000


class PcapError(WireError):
    """A capture file that cannot be read or a record that cannot be written;
    ``reason`` names the fault and ``offset`` is its byte offset in the file."""


@dataclass(frozen=True)
class PcapRecord:
    """One captured packet: timestamp in ns since the epoch, the captured bytes,
    and the packet's length on the wire (``orig_len >= len(data)`` normally)."""

    ts_ns: int
    data: bytes
    orig_len: int


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


class PcapWriter:
    """Write a pcap file atomically: records go to a temporary file beside
    ``path``, which is flushed, fsynced and renamed over ``path`` on a clean
    :meth:`close` and deleted on :meth:`abort` (or when the ``with`` block
    raises).

    Packets longer than ``snaplen`` are truncated to it, keeping their original
    length in the record header. With ``nanosecond=False`` timestamps are
    rounded to the nearest microsecond.
    """

    def __init__(self, path: str | os.PathLike, *, linktype: int = LINKTYPE_ETHERNET,
                 nanosecond: bool = True, snaplen: int = 65535) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise PcapError("snaplen", 16, f"snaplen {snaplen}")
        if not 0 <= linktype <= 0xFFFFFFFF:
            raise PcapError("linktype", 20, f"linktype {linktype}")
        self.path = Path(path)
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.linktype = linktype
        self.count = 0
        self._offset = 0
        self._tmp, self._file = self._open_temp(self.path)
        try:
            self._put(struct.pack("<IHHiIII", MAGIC_NS if nanosecond else MAGIC_US,
                                  *VERSION, 0, 0, snaplen, linktype))
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _open_temp(path: Path) -> tuple[Path, BinaryIO]:
        """Create a fresh hidden file in ``path``'s directory (honouring the
        umask, unlike mkstemp's 0600)."""
        while True:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            return tmp, os.fdopen(fd, "wb")

    def _put(self, b: bytes) -> None:
        self._file.write(b)
        self._offset += len(b)

    @property
    def closed(self) -> bool:
        """True once the file was committed or abandoned."""
        return self._file is None

    def write(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> None:
        """Append one packet captured at ``ts_ns`` nanoseconds since the epoch;
        ``orig_len`` defaults to ``len(data)``."""
        if self._file is None:
            raise PcapError("closed", self._offset, f"{self.path} is already closed")
        data = bytes(data)
        if orig_len is None:
            orig_len = len(data)
        if ts_ns < 0:
            raise PcapError("timestamp", self._offset, f"negative timestamp {ts_ns}")
        if self.nanosecond:
            sec, frac = divmod(ts_ns, _NS_PER_S)
        else:
            sec, frac = divmod((ts_ns + 500) // 1000, 1_000_000)
        if sec > 0xFFFFFFFF:
            raise PcapError("timestamp", self._offset, f"{ts_ns} ns is past 2106")
        if not 0 <= orig_len <= 0xFFFFFFFF:
            raise PcapError("orig_len", self._offset + 12, f"orig_len {orig_len}")
        incl = data[:self.snaplen]
        self._put(struct.pack("<IIII", sec, frac, len(incl), max(orig_len, len(incl))))
        self._put(incl)
        self.count += 1

    def close(self) -> None:
        """Commit: flush and fsync the temporary file, then atomically rename it
        to ``path``. Idempotent."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            f.close()
            self._tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Abandon the capture: close and delete the temporary file, leaving
        ``path`` as it was. Idempotent."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            f.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fsync_dir(d: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_pcap(path: str | os.PathLike, records: Iterable[tuple[int, bytes]], **kw) -> int:
    """Write ``(ts_ns, data)`` pairs to ``path`` atomically with
    :class:`PcapWriter` (``kw`` as its options); returns the record count."""
    with PcapWriter(path, **kw) as w:
        for ts_ns, data in records:
            w.write(ts_ns, data)
    return w.count


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Header:
    endian: str      # "<" or ">"
    frac_ns: int     # nanoseconds per fractional timestamp unit
    snaplen: int
    linktype: int


def _parse_header(buf: bytes) -> _Header:
    if len(buf) < 4:
        raise PcapError("truncated_header", 0, f"{len(buf)} bytes of file header")
    for endian in "<>":
        (magic,) = struct.unpack(endian + "I", buf[:4])
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise PcapError("bad_magic", 0, f"0x{buf[:4].hex()}")
    if len(buf) < FILE_HEADER_LEN:
        raise PcapError("truncated_header", 0, f"{len(buf)} bytes of file header")
    _, _, _, _, snaplen, linktype = struct.unpack(endian + "HHiIII", buf[4:FILE_HEADER_LEN])
    if linktype != LINKTYPE_ETHERNET:  # also refuses FCS-length bits in the top nibble
        raise PcapError("linktype", 20, f"link type {linktype}, only 1 (Ethernet)")
    return _Header(endian, 1 if magic == MAGIC_NS else 1000, snaplen, linktype)


def _records(f: BinaryIO, h: _Header) -> Iterator[PcapRecord]:
    rec_hdr = struct.Struct(h.endian + "IIII")
    limit = max(h.snaplen, MAX_RECORD_LEN)
    off = FILE_HEADER_LEN
    while True:
        hb = f.read(RECORD_HEADER_LEN)
        if not hb:
            return
        if len(hb) < RECORD_HEADER_LEN:
            raise PcapError("truncated_header", off, f"{len(hb)} bytes of record header")
        sec, frac, incl, orig = rec_hdr.unpack(hb)
        if incl > limit:
            raise PcapError("oversize_record", off, f"incl_len {incl}, snaplen {h.snaplen}")
        data = f.read(incl)
        if len(data) < incl:
            raise PcapError("truncated_record", off,
                            f"incl_len {incl}, {len(data)} bytes left")
        yield PcapRecord(sec * _NS_PER_S + frac * h.frac_ns, data, orig)
        off += RECORD_HEADER_LEN + incl


def read_pcap(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview
              ) -> Iterator[PcapRecord]:
    """Iterate over the records of a pcap file given as a path or as its bytes.

    The file header is checked at once (so a wrong file fails here, not at the
    first ``next``); records are read lazily and a damaged record raises
    :class:`PcapError` when reached, after the good records before it.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
        h = _parse_header(buf[:FILE_HEADER_LEN])
        f = io.BytesIO(buf)
        f.seek(FILE_HEADER_LEN)
        return _records(f, h)
    with open(path_or_bytes, "rb") as f:
        h = _parse_header(f.read(FILE_HEADER_LEN))
    return _read_file(Path(path_or_bytes), h)


def _read_file(path: Path, h: _Header) -> Iterator[PcapRecord]:
    with open(path, "rb") as f:
        f.seek(FILE_HEADER_LEN)
        yield from _records(f, h)


def udp_payloads(path: str | os.PathLike, port: int | None = None, stats=None) -> Iterator[tuple[int, object]]:
    """``(record index, datagram)`` for every Ethernet/IPv4/UDP frame of the pcap ``path``
    (``protocols.net.Datagram``; to destination ``port`` only, if given). Frames that are
    not such a datagram, or go to another port, are skipped and counted in ``stats``
    (a ``collections.Counter``) as ``skipped_<reason>`` / ``skipped_port``; ``frames`` counts all."""
    from protocols.net import NetError, parse_udp_frame

    for index, rec in enumerate(read_pcap(path)):
        if stats is not None:
            stats["frames"] += 1
        try:
            dgram = parse_udp_frame(rec.data, verify_udp_checksum=False)
        except NetError as e:
            if stats is not None:
                stats[f"skipped_{e.reason}"] += 1
            continue
        if port is not None and dgram.dst_port != port:
            if stats is not None:
                stats["skipped_port"] += 1
            continue
        yield index, dgram
