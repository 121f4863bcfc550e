"""The receive MAC: preamble and SFD, FCS check and strip, size checks, one verdict per frame.

It runs in the receive clock domain (written for ``sync``; the MAC renames it)
at one byte per clock and cannot be stalled: the wire does not wait. Bytes
leave cut-through, four bytes behind the wire (the FCS is held back and never
leaves), so the core starts parsing before the frame has ended; the verdict
arrives with the last byte, as ``abort`` on it. A frame that breaks a rule is
counted under exactly one :class:`RxVerdict`, in this order: ``ERROR`` (the
PHY signalled RX_ER), ``PREAMBLE`` (no start-of-frame delimiter after the
preamble), ``OVERSIZE`` (longer than ``max_frame`` with FCS; cut at the limit),
``RUNT`` (shorter than 64 bytes with FCS), ``FCS``.
"""

import enum

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.mac.crc import Crc32
from hw.mac.rgmii import GmiiRxSignature

PREAMBLE_BYTE = 0x55
SFD = 0xD5
MIN_FRAME = 64
"""Shortest frame on the wire, destination address to FCS."""
FCS_BYTES = 4


class RxVerdict(enum.IntEnum):
    """How a received frame ended; the counter it increments is ``rx_good`` or ``rx_drop_<name>``."""

    GOOD = 0
    ERROR = 1
    PREAMBLE = 2
    OVERSIZE = 3
    RUNT = 4
    FCS = 5
    OVERFLOW = 6
    """Set by the MAC, not here: the frame did not fit the FIFO to the core."""


RxByte = data.StructLayout({"data": 8, "last": 1, "abort": 1})
"""A received byte; ``abort`` (on the last byte only) means the frame is bad."""


class MacRx(wiring.Component):
    """Receive MAC.

    Attributes
    ----------
    gmii : GMII receive byte from the PHY I/O.
    o : stream of RxByte, always ready
        The frame without preamble and FCS; ``last`` on its final byte.
        Frames of four bytes or fewer produce no bytes (only a verdict).
    verdict : stream of RxVerdict, always ready
        One per frame (anything that raised DV), two cycles after DV falls,
        in the cycle of the frame's last byte (if it has any).
    """

    def __init__(self, *, max_frame: int = 1522):
        if not MIN_FRAME <= max_frame < 1 << 16:
            raise ValueError(f"max_frame {max_frame} not in {MIN_FRAME}..65535")
        self.max_frame = max_frame
        super().__init__({
            "gmii": In(GmiiRxSignature()),
            "o": Out(stream.Signature(RxByte, always_ready=True)),
            "verdict": Out(stream.Signature(RxVerdict, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = Crc32()
        # Both outputs leave from registers, in step (the verdict with the last byte): the
        # byte counter, FCS match and verdict logic end here, not in the FIFO writer behind.
        o_c = stream.Signature(RxByte, always_ready=True).create(path=("o_c",))
        v_c = stream.Signature(RxVerdict, always_ready=True).create(path=("v_c",))
        m.d.sync += [self.o.valid.eq(o_c.valid), self.o.payload.eq(o_c.payload),
                     self.verdict.valid.eq(v_c.valid), self.verdict.payload.eq(v_c.payload)]
        dv, er, byte = self.gmii.dv, self.gmii.er, self.gmii.data

        line = [Signal(8, name=f"line{i}") for i in range(FCS_BYTES + 1)]   # line[-1] is the oldest
        count = Signal(range(self.max_frame + 2))    # bytes after the SFD so far
        error = Signal()                             # RX_ER seen in this frame
        reason = Signal(RxVerdict)                   # why a discarded frame is bad

        def finish(verdict):
            m.d.comb += [v_c.valid.eq(1), v_c.payload.eq(verdict)]
            m.next = "Idle"

        with m.FSM():
            with m.State("Idle"):
                m.d.sync += [count.eq(0), error.eq(er)]
                with m.If(dv):
                    with m.If(byte == SFD):
                        m.next = "Data"
                    with m.Elif(byte == PREAMBLE_BYTE):
                        m.next = "Preamble"
                    with m.Else():
                        m.d.sync += reason.eq(RxVerdict.PREAMBLE)
                        m.next = "Discard"
            with m.State("Preamble"):
                m.d.sync += error.eq(error | er)
                with m.If(~dv):
                    finish(RxVerdict.PREAMBLE)
                with m.Elif(byte == SFD):
                    m.next = "Data"
                with m.Elif(byte != PREAMBLE_BYTE):
                    m.d.sync += reason.eq(RxVerdict.PREAMBLE)
                    m.next = "Discard"
            with m.State("Data"):
                m.d.comb += o_c.payload.data.eq(line[-1])
                with m.If(dv):
                    m.d.comb += [crc.valid.eq(1), crc.start.eq(count == 0), crc.data.eq(byte)]
                    m.d.sync += [Cat(*line).eq(Cat(byte, *line[:-1])), count.eq(count + 1), error.eq(error | er)]
                    m.d.comb += o_c.valid.eq(count > FCS_BYTES)
                    with m.If(count == self.max_frame):    # one byte more than the limit
                        m.d.comb += [o_c.payload.last.eq(1), o_c.payload.abort.eq(1)]
                        m.d.sync += reason.eq(RxVerdict.OVERSIZE)
                        m.next = "Discard"
                with m.Else():
                    verdict = Signal(RxVerdict)
                    with m.If(error):
                        m.d.comb += verdict.eq(RxVerdict.ERROR)
                    with m.Elif(count < MIN_FRAME):
                        m.d.comb += verdict.eq(RxVerdict.RUNT)
                    with m.Elif(~crc.match):
                        m.d.comb += verdict.eq(RxVerdict.FCS)
                    with m.Else():
                        m.d.comb += verdict.eq(RxVerdict.GOOD)
                    m.d.comb += [o_c.valid.eq(count > FCS_BYTES), o_c.payload.last.eq(1),
                                 o_c.payload.abort.eq(verdict != RxVerdict.GOOD)]
                    finish(verdict)
            with m.State("Discard"):
                m.d.sync += error.eq(error | er)
                with m.If(~dv & error):
                    finish(RxVerdict.ERROR)
                with m.Elif(~dv):
                    finish(reason)
        return m
