"""The Ethernet frame check sequence (CRC-32, IEEE 802.3) one byte per cycle.

The hardware is Amaranth's own ``amaranth.lib.crc`` processor with the
``CRC32_ETHERNET`` algorithm (reflected polynomial 0x04C11DB7, initial and final
XOR 0xFFFFFFFF), the same function as ``zlib.crc32``. The FCS goes on the wire
least significant byte first, so ``fcs(frame) == zlib.crc32(frame).to_bytes(4, "little")``,
and the CRC over a frame *including* its FCS always ends in the same residue,
which is what the receiver checks (``match``).
"""

import zlib

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

PARAMETERS = catalog.CRC32_ETHERNET(data_width=8)
"""CRC-32 as Ethernet computes it, 8 data bits per step."""


def fcs(frame: bytes) -> bytes:
    """The 4 FCS bytes that follow ``frame`` on the wire."""
    return zlib.crc32(frame).to_bytes(4, "little")


class Crc32(wiring.Component):
    """Running CRC-32 of a byte stream.

    Attributes
    ----------
    start : in
        Restart: the byte given with ``valid`` in the same cycle is the first.
    data, valid : in
        One byte per cycle while ``valid``.
    crc : out
        The CRC-32 of the bytes so far (``zlib.crc32`` of them), the cycle after.
    match : out
        The bytes so far end in their own correct FCS.
    """

    start: In(1)
    data: In(8)
    valid: In(1)
    crc: Out(32)
    match: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.proc = proc = PARAMETERS.create()
        m.d.comb += [
            proc.start.eq(self.start), proc.data.eq(self.data), proc.valid.eq(self.valid),
            self.crc.eq(proc.crc), self.match.eq(proc.match_detected),
        ]
        return m
