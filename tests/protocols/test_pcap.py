"""Tests for protocols/pcap.py: round trips at both resolutions, dpkt.pcap as the
independent reader and writer, hand-assembled files in both byte orders, every
error reason, and the atomic-write guarantee."""

from __future__ import annotations

import io
import os
import struct
from decimal import ROUND_HALF_EVEN, Decimal

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.pcap import PcapError, PcapRecord, PcapWriter, read_pcap, write_pcap

NS = 10**9
MAX_TS_NS = (2**32 - 1) * NS  # the last representable second, with headroom for rounding

records = st.lists(
    st.tuples(st.integers(0, MAX_TS_NS), st.binary(max_size=200)), max_size=12
)


def round_us(ts_ns: int) -> int:
    """Nearest microsecond, halves up (what a microsecond file can hold)."""
    return (ts_ns + 500) // 1000 * 1000


def hand_file(endian: str, magic: int, recs, *, snaplen=65535, linktype=1) -> bytes:
    """A pcap file assembled directly from the format description."""
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data, orig in recs:
        out += struct.pack(endian + "IIII", sec, frac, len(data), orig) + data
    return out


def error(src) -> PcapError:
    """The PcapError raised while reading all of ``src``."""
    with pytest.raises(PcapError) as ei:
        list(read_pcap(src))
    assert ei.value.reason in str(ei.value)
    return ei.value


# --------------------------------------------------------------------------- #
# Round trips and layout
# --------------------------------------------------------------------------- #


@settings(max_examples=40, deadline=None)
@given(records, st.booleans())
def test_round_trip(tmp_path_factory, recs, nanosecond):
    path = tmp_path_factory.mktemp("rt") / "x.pcap"
    assert write_pcap(path, recs, nanosecond=nanosecond) == len(recs)
    want = [PcapRecord(ts if nanosecond else round_us(ts), data, len(data)) for ts, data in recs]
    assert list(read_pcap(path)) == want
    assert list(read_pcap(path.read_bytes())) == want
    assert os.listdir(path.parent) == ["x.pcap"]


def test_file_header_layout(tmp_path):
    for nanosecond, magic in ((True, "4d3cb2a1"), (False, "d4c3b2a1")):
        p = tmp_path / f"{nanosecond}.pcap"
        write_pcap(p, [(1_500_000_000_123_456_789, b"abc")], nanosecond=nanosecond)
        raw = p.read_bytes()
        assert raw[:24].hex() == magic + "02000400" + "00" * 8 + "ffff0000" + "01000000"
        frac = 123_456_789 if nanosecond else 123_457
        assert raw[24:40] == struct.pack("<IIII", 1_500_000_000, frac, 3, 3)
        assert raw[40:] == b"abc"


def test_microsecond_rounding_carries_into_seconds(tmp_path):
    p = tmp_path / "us.pcap"
    write_pcap(p, [(1_999_999_600, b""), (1_000_000_499, b""), (1_000_000_500, b"")],
               nanosecond=False)
    assert [r.ts_ns for r in read_pcap(p)] == [2 * NS, NS, NS + 1000]


def test_snaplen_truncates_and_keeps_orig_len(tmp_path):
    p = tmp_path / "snap.pcap"
    with PcapWriter(p, snaplen=64) as w:
        w.write(5, bytes(range(100)))
        w.write(6, b"short", orig_len=60)
    assert list(read_pcap(p)) == [PcapRecord(5, bytes(range(64)), 100),
                                  PcapRecord(6, b"short", 60)]
    with open(p, "rb") as f:
        r = dpkt.pcap.Reader(f)
        assert r.snaplen == 64
        assert [bytes(b) for _, b in r] == [bytes(range(64)), b"short"]


def test_writer_rejects_bad_timestamps_and_use_after_close(tmp_path):
    w = PcapWriter(tmp_path / "t.pcap")
    for ts in (-1, 2**32 * NS):
        with pytest.raises(PcapError) as ei:
            w.write(ts, b"")
        assert (ei.value.reason, ei.value.offset) == ("timestamp", 24)
    w.close()
    with pytest.raises(PcapError) as ei:
        w.write(0, b"")
    assert ei.value.reason == "closed"
    assert list(read_pcap(tmp_path / "t.pcap")) == []


# --------------------------------------------------------------------------- #
# dpkt as the peer
# --------------------------------------------------------------------------- #


def test_dpkt_reader_knows_nanosecond_magic():
    # Guard for the peer tests below: dpkt >= 1.9.8 reads 0xa1b23c4d.
    assert dpkt.pcap.TCPDUMP_MAGIC_NANO == 0xA1B23C4D


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_TS_NS), st.binary(max_size=200)), max_size=12))
def test_dpkt_reads_our_nanosecond_files(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("ns") / "x.pcap"
    write_pcap(path, recs, nanosecond=True)
    with open(path, "rb") as f:
        got = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    # dpkt returns a Decimal for nanosecond files: exact.
    assert [(int(ts * NS), buf) for ts, buf in got] == [(ts, d) for ts, d in recs]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31 * NS), st.binary(max_size=200)), max_size=12))
def test_dpkt_reads_our_microsecond_files(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("us") / "x.pcap"
    write_pcap(path, recs, nanosecond=False)
    with open(path, "rb") as f:
        got = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    # dpkt returns a float: below 2**31 s it is within half a microsecond.
    us = [int((Decimal(ts) * 10**6).to_integral_value(ROUND_HALF_EVEN)) for ts, _ in got]
    assert [u * 1000 for u in us] == [round_us(ts) for ts, _ in recs]
    assert [buf for _, buf in got] == [d for _, d in recs]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_TS_NS), st.binary(max_size=200)), max_size=12),
       st.booleans())
def test_we_read_dpkt_files(recs, nano):
    f = io.BytesIO()
    w = dpkt.pcap.Writer(f, snaplen=65535, nano=nano)
    for ts, data in recs:
        ts_dec = Decimal(ts) / NS if nano else Decimal(ts // 1000) / 10**6
        w.writepkt(data, ts=ts_dec)
    want = [PcapRecord(ts if nano else ts // 1000 * 1000, d, len(d)) for ts, d in recs]
    assert list(read_pcap(f.getvalue())) == want


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("magic,unit", [(0xA1B2C3D4, 1000), (0xA1B23C4D, 1)])
def test_hand_built_files_both_byte_orders(endian, magic, unit):
    recs = [(1, 2, b"\x01\x02\x03", 3), (4_000_000_000, 999_999, b"", 0), (7, 0, b"x" * 70, 1500)]
    got = list(read_pcap(hand_file(endian, magic, recs)))
    assert got == [PcapRecord(sec * NS + frac * unit, data, orig) for sec, frac, data, orig in recs]


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #

GOOD = hand_file("<", 0xA1B23C4D, [(1, 2, b"abcd", 4), (3, 4, b"efghij", 6)])
REC2 = 24 + 16 + 4  # offset of the second record


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=4, max_size=4).filter(
    lambda b: int.from_bytes(b, "little") not in (0xA1B2C3D4, 0xA1B23C4D)
    and int.from_bytes(b, "big") not in (0xA1B2C3D4, 0xA1B23C4D)))
def test_bad_magic(magic):
    e = error(magic + GOOD[4:])
    assert (e.reason, e.offset) == ("bad_magic", 0)


def test_errors_in_the_file_header_raise_before_iterating():
    for k in range(24):
        with pytest.raises(PcapError) as ei:
            read_pcap(GOOD[:k])
        assert (ei.value.reason, ei.value.offset) == ("truncated_header", 0)
    with pytest.raises(PcapError) as ei:
        read_pcap(b"\x0a\x0d\x0d\x0a" + bytes(40))  # a pcapng file
    assert ei.value.reason == "bad_magic"


def test_truncated_record_header():
    for k in range(1, 16):
        e = error(GOOD[:REC2 + k])
        assert (e.reason, e.offset) == ("truncated_header", REC2)


def test_truncated_record_after_good_ones():
    for cut in range(REC2 + 16, len(GOOD)):
        it = read_pcap(GOOD[:cut])
        assert next(it) == PcapRecord(NS + 2, b"abcd", 4)
        with pytest.raises(PcapError) as ei:
            next(it)
        assert (ei.value.reason, ei.value.offset) == ("truncated_record", REC2)


def test_oversize_record():
    over = hand_file("<", 0xA1B2C3D4, []) + struct.pack("<IIII", 0, 0, 262145, 262145)
    e = error(over)
    assert (e.reason, e.offset) == ("oversize_record", 24)
    # Above snaplen but within libpcap's maximum is tolerated, as tcpdump does.
    big = hand_file(">", 0xA1B2C3D4, [(0, 0, bytes(70000), 70000)], snaplen=1500)
    assert [len(r.data) for r in read_pcap(big)] == [70000]
    # A snaplen above the maximum raises the limit to the snaplen.
    huge = hand_file(">", 0xA1B2C3D4, [(0, 0, bytes(300000), 300000)], snaplen=400000)
    assert [len(r.data) for r in read_pcap(huge)] == [300000]
    e = error(hand_file("<", 0xA1B2C3D4, [], snaplen=400000)
              + struct.pack("<IIII", 0, 0, 400001, 400001))
    assert (e.reason, e.offset) == ("oversize_record", 24)


def test_linktype(tmp_path):
    p = tmp_path / "raw.pcap"
    write_pcap(p, [(0, b"\x45")], linktype=101)  # the writer may record any link type
    with pytest.raises(PcapError) as ei:
        read_pcap(p)
    assert (ei.value.reason, ei.value.offset) == ("linktype", 20)
    e = error(hand_file(">", 0xA1B2C3D4, [], linktype=0x10000001))  # FCS bits set
    assert e.reason == "linktype"


# --------------------------------------------------------------------------- #
# Atomic writes
# --------------------------------------------------------------------------- #


class Boom(Exception):
    """Stands for a crash inside a capture."""


def test_nothing_visible_under_final_name_until_close(tmp_path):
    p = tmp_path / "cap.pcap"
    with PcapWriter(p) as w:
        w.write(1, b"x")
        assert not p.exists()
        (tmp,) = os.listdir(tmp_path)
        assert tmp.startswith(".cap.pcap.") and tmp.endswith(".tmp")
    assert os.listdir(tmp_path) == ["cap.pcap"]
    assert list(read_pcap(p)) == [PcapRecord(1, b"x", 1)]


def test_exception_leaves_no_file(tmp_path):
    p = tmp_path / "cap.pcap"
    with pytest.raises(Boom):
        with PcapWriter(p) as w:
            w.write(1, b"x" * 1000)
            raise Boom
    assert os.listdir(tmp_path) == []


def test_exception_leaves_existing_file_untouched(tmp_path):
    p = tmp_path / "cap.pcap"
    write_pcap(p, [(7, b"old")])
    before = p.read_bytes()

    def failing_source():
        yield 1, b"new"
        yield 2, b"new"
        raise Boom

    with pytest.raises(Boom):
        write_pcap(p, failing_source())
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["cap.pcap"]
    write_pcap(p, [(8, b"new")])  # a clean close does replace it
    assert list(read_pcap(p)) == [PcapRecord(8, b"new", 3)]


def test_abort_and_idempotent_close(tmp_path):
    p = tmp_path / "cap.pcap"
    w = PcapWriter(p)
    w.write(1, b"x")
    w.abort()
    w.abort()
    w.close()
    assert w.closed and os.listdir(tmp_path) == []
