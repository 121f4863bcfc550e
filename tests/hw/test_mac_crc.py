"""CRC-32 of the MAC (``hw/mac/crc.py``) against ``zlib.crc32``, in amaranth.sim."""

import zlib

import pytest
from hypothesis import given, settings, strategies as st

from hw.mac.crc import Crc32, fcs
from sim.streams import SimBench

pytestmark = pytest.mark.sim
BENCH = SimBench(Crc32())


def rtl_crc(data: bytes) -> list[tuple[int, int]]:
    """(crc, match) after each byte of ``data``."""
    dut, out = BENCH.dut, []

    async def job(ctx):
        for k, byte in enumerate(data):
            ctx.set(dut.valid, 1)
            ctx.set(dut.start, k == 0)
            ctx.set(dut.data, byte)
            await ctx.tick()
            out.append((ctx.get(dut.crc), ctx.get(dut.match)))
        ctx.set(dut.valid, 0)
    BENCH.run(job)
    return out


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=80))
def test_crc_matches_zlib(data):
    got = rtl_crc(data)
    assert [c for c, _ in got] == [zlib.crc32(data[:k + 1]) for k in range(len(data))]


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.data())
def test_residue_detects_good_and_bad_fcs(data, draw):
    frame = data + fcs(data)
    assert rtl_crc(frame)[-1][1] == 1
    pos = draw.draw(st.integers(0, len(frame) - 1))
    bit = draw.draw(st.integers(0, 7))
    bad = frame[:pos] + bytes([frame[pos] ^ (1 << bit)]) + frame[pos + 1:]
    assert rtl_crc(bad)[-1][1] == 0


def test_restart_between_frames():
    """``start`` forgets the previous frame: two frames back to back, each checked on its own."""
    a, b = b"first frame", b"second"
    got = rtl_crc(a + b"")
    assert got[-1][0] == zlib.crc32(a)
    assert rtl_crc(b)[-1][0] == zlib.crc32(b)
