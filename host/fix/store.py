"""Persistent FIX message store: outbound messages and both sequence numbers survive a restart.

The file is a header line followed by append-only records, each
``0xF1, kind, seq (u32), length (u32), crc32 (u32), payload`` (big-endian),
written with one ``write()`` on an ``O_APPEND`` descriptor:

* ``O`` an outbound message (seq, its wire bytes): next outbound seq = seq + 1;
* ``I`` the next expected inbound seq; ``N`` the next outbound seq set explicitly.

Opening replays the records and stops at the first one that is incomplete or fails
its CRC (a crash in the middle of a write); the file is truncated there so later
appends stay readable. A reset writes a fresh file (temp file + ``os.replace``).

fsync policy (``fsync=``): ``"always"`` fsyncs every record before the message goes
on the wire, so even a power loss loses nothing that was sent; an integer ``n``
fsyncs every n records (a power loss may lose up to the last n-1 records);
``"never"`` leaves it to the OS. A killed *process* loses nothing in any mode:
each record reached the kernel with its single ``write()``; only an OS crash or
power loss can leave the unsynced tail, which the CRC check then discards.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

FILE_HEADER = b"calarb FIX store v1\n"
RECORD = struct.Struct(">BcIII")
MAGIC = 0xF1


class StoreError(RuntimeError):
    """A store file that is not a calarb FIX store, or an impossible store operation."""


class MemoryStore:
    """The store interface, in memory (tests, throwaway sessions)."""

    def __init__(self) -> None:
        self.messages: dict[int, bytes] = {}
        self.next_sender_seq = 1
        self.next_target_seq = 1

    def save(self, seq: int, raw: bytes) -> None:
        """Keep outbound message ``seq`` (before it is sent); the next outbound seq becomes seq + 1."""
        self.messages[seq] = raw
        self.next_sender_seq = seq + 1

    def set_next_target(self, seq: int) -> None:
        self.next_target_seq = seq

    def set_next_sender(self, seq: int) -> None:
        self.next_sender_seq = seq

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored outbound messages with begin <= seq <= end, in order."""
        return [(s, self.messages[s]) for s in sorted(self.messages) if begin <= s <= end]

    def reset(self) -> None:
        """Forget every message; both sequence numbers back to 1."""
        self.messages.clear()
        self.next_sender_seq = self.next_target_seq = 1

    def close(self) -> None:
        pass


class FileStore(MemoryStore):
    """The store in an append-only file (see the module docstring for format and fsync policy)."""

    def __init__(self, path: str | Path, fsync: str | int = "always") -> None:
        super().__init__()
        if not (fsync in ("always", "never") or (isinstance(fsync, int) and fsync >= 1)):
            raise StoreError(f"fsync must be 'always', 'never' or a positive record count, not {fsync!r}")
        self.path = Path(path)
        self.fsync = fsync
        self._unsynced = 0
        self.discarded_bytes = 0
        self._fd = -1
        if not self.path.exists() or self.path.stat().st_size < len(FILE_HEADER):
            self._create()
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(FILE_HEADER)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _load(self) -> None:
        data = self.path.read_bytes()
        if not data.startswith(FILE_HEADER):
            raise StoreError(f"{self.path}: not a calarb FIX store (header {data[:len(FILE_HEADER)]!r})")
        pos, n = len(FILE_HEADER), len(data)
        while pos < n:
            if pos + RECORD.size > n:
                break
            magic, kind, seq, length, crc = RECORD.unpack_from(data, pos)
            end = pos + RECORD.size + length
            if magic != MAGIC or end > n:
                break
            payload = data[pos + RECORD.size:end]
            if zlib.crc32(payload, zlib.crc32(data[pos + 1:pos + 10])) != crc:
                break
            self._apply(kind, seq, payload)
            pos = end
        if pos < n:
            self.discarded_bytes = n - pos
            log.warning("%s: discarding %d bytes of an unfinished record at offset %d", self.path, n - pos, pos)
            os.truncate(self.path, pos)

    def _apply(self, kind: bytes, seq: int, payload: bytes) -> None:
        if kind == b"O":
            MemoryStore.save(self, seq, payload)
        elif kind == b"I":
            self.next_target_seq = seq
        elif kind == b"N":
            self.next_sender_seq = seq
        else:
            raise StoreError(f"{self.path}: unknown record kind {kind!r}")

    def _append(self, kind: bytes, seq: int, payload: bytes = b"") -> None:
        head = RECORD.pack(MAGIC, kind, seq, len(payload), 0)
        crc = zlib.crc32(payload, zlib.crc32(head[1:10]))
        os.write(self._fd, RECORD.pack(MAGIC, kind, seq, len(payload), crc) + payload)
        if self.fsync == "always":
            os.fsync(self._fd)
        elif self.fsync != "never":
            self._unsynced += 1
            if self._unsynced >= self.fsync:
                os.fsync(self._fd)
                self._unsynced = 0

    def save(self, seq: int, raw: bytes) -> None:
        self._append(b"O", seq, raw)
        super().save(seq, raw)

    def set_next_target(self, seq: int) -> None:
        if seq != self.next_target_seq:
            self._append(b"I", seq)
        super().set_next_target(seq)

    def set_next_sender(self, seq: int) -> None:
        if seq != self.next_sender_seq:
            self._append(b"N", seq)
        super().set_next_sender(seq)

    def reset(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._create()
        super().reset()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
