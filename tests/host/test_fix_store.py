"""host/fix/store.py: persistence across reopen, crash safety at every byte of the last record,
and a process killed while writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.fix.store import FILE_HEADER, FileStore, MemoryStore, StoreError

ROOT = Path(__file__).resolve().parents[2]


def msg(seq: int) -> bytes:
    return b"8=FIX.4.4\x019=5\x0135=0\x01payload-%d\x0110=000\x01" % seq


def test_survives_reopen(tmp_path):
    s = FileStore(tmp_path / "s")
    for seq in range(1, 6):
        s.save(seq, msg(seq))
    s.set_next_target(42)
    s.close()
    r = FileStore(tmp_path / "s")
    assert (r.next_sender_seq, r.next_target_seq) == (6, 42)
    assert r.get(2, 3) == [(2, msg(2)), (3, msg(3))]
    r.set_next_sender(100)
    r.close()
    assert FileStore(tmp_path / "s").next_sender_seq == 100


def test_reset_starts_over(tmp_path):
    s = FileStore(tmp_path / "s")
    s.save(1, msg(1))
    s.set_next_target(9)
    s.reset()
    s.save(1, msg(7))
    s.close()
    r = FileStore(tmp_path / "s")
    assert (r.next_sender_seq, r.next_target_seq, r.get(1, 10)) == (2, 1, [(1, msg(7))])


@pytest.mark.parametrize("last", ["save", "target"])
def test_truncated_at_every_byte_of_last_record(tmp_path, last):
    path = tmp_path / "s"
    s = FileStore(path, fsync="never")
    for seq in range(1, 4):
        s.save(seq, msg(seq))
    s.set_next_target(5)
    before = path.stat().st_size
    if last == "save":
        s.save(4, msg(4))
    else:
        s.set_next_target(6)
    s.close()
    full = path.read_bytes()
    for cut in range(before, len(full) + 1):
        path.write_bytes(full[:cut])
        r = FileStore(path)
        complete = cut == len(full)
        assert r.get(1, 10) == [(q, msg(q)) for q in range(1, 5 if complete and last == "save" else 4)]
        assert r.next_target_seq == (6 if complete and last == "target" else 5)
        assert r.discarded_bytes == (0 if complete else cut - before)
        r.save(r.next_sender_seq, b"after")                # appends after recovery stay readable
        r.close()
        again = FileStore(path)
        assert again.get(again.next_sender_seq - 1, again.next_sender_seq - 1)[0][1] == b"after"
        again.close()


def test_corrupt_record_is_discarded_with_its_tail(tmp_path):
    path = tmp_path / "s"
    s = FileStore(path)
    for seq in range(1, 4):
        s.save(seq, msg(seq))
    s.close()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF                                     # flip a byte inside the last payload
    path.write_bytes(bytes(data))
    r = FileStore(path)
    assert [q for q, _ in r.get(1, 9)] == [1, 2] and r.next_sender_seq == 3


def test_truncated_file_header_and_foreign_file(tmp_path):
    path = tmp_path / "s"
    path.write_bytes(FILE_HEADER[:5])
    assert FileStore(path).next_sender_seq == 1
    path.write_bytes(b"not a store at all, really not")
    with pytest.raises(StoreError, match="not a calarb FIX store"):
        FileStore(path)
    with pytest.raises(StoreError, match="fsync"):
        FileStore(tmp_path / "x", fsync="sometimes")


def test_memory_store_same_interface():
    s = MemoryStore()
    s.save(1, b"a")
    s.save(2, b"b")
    assert s.get(2, 0 or 99) == [(2, b"b")] and s.next_sender_seq == 3


WRITER = """
import sys
from host.fix.store import FileStore
s = FileStore(sys.argv[1], fsync=sys.argv[2] if sys.argv[2] != "1" else 1)
seq = 1
while True:
    s.save(seq, b"x" * (seq % 300) + b"%d" % seq)
    s.set_next_target(seq + 1)
    if seq == 200:
        print("ready", flush=True)
    seq += 1
"""


@pytest.mark.parametrize("fsync", ["never", "1"])
def test_killed_writer_leaves_readable_store(tmp_path, fsync):
    path = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), fsync], cwd=ROOT, stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    r = FileStore(path)
    n = r.next_sender_seq - 1
    assert n >= 200
    assert r.get(1, n) == [(q, b"x" * (q % 300) + b"%d" % q) for q in range(1, n + 1)]
    assert r.next_target_seq in (n, n + 1)
