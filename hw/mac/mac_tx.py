"""The transmit MAC: preamble and SFD, padding to the minimum size, FCS, inter-frame gap.

It runs in the transmit clock domain (written for ``sync``; the MAC renames
it) and sends one byte per clock. Frames go out cut-through: transmission
starts when the first byte is available, and the FIFO in front of the MAC
fills during the eight preamble bytes. If the next byte is missing in the
middle of a frame (underrun) or the frame is aborted, the MAC sends one byte
with TX_ER, which the PHY turns into an error symbol so the link partner
drops the frame; the rest of the frame is discarded. Every frame ends in one
:class:`TxVerdict`.
"""

import enum

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.mac.crc import Crc32
from hw.mac.rgmii import GmiiTxSignature
from hw.mac.mac_rx import FCS_BYTES, MIN_FRAME, PREAMBLE_BYTE, SFD

PREAMBLE_BYTES = 7
IFG_BYTES = 12
"""Minimum inter-frame gap, in byte times."""


class TxVerdict(enum.IntEnum):
    """How a transmitted frame ended; the counter is ``tx_frames``, ``tx_underrun`` or ``tx_aborted``."""

    SENT = 0
    UNDERRUN = 1
    ABORTED = 2


TxByte = data.StructLayout({"data": 8, "last": 1, "abort": 1})
"""A byte to send; an ``abort`` item carries no byte and ends the frame as bad."""


class MacTx(wiring.Component):
    """Transmit MAC.

    Attributes
    ----------
    i : stream of TxByte
        Frames without FCS, one byte per transfer; ``last`` on the final byte.
    gmii : GMII transmit byte to the PHY I/O (registered).
    verdict : stream of TxVerdict, always ready
        One per frame, when it has left (or was dropped).
    """

    i: In(stream.Signature(TxByte))
    gmii: Out(GmiiTxSignature())
    verdict: Out(stream.Signature(TxVerdict, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = Crc32()
        en, er, byte = Signal(), Signal(), Signal(8)
        m.d.sync += [self.gmii.en.eq(en), self.gmii.er.eq(er), self.gmii.data.eq(byte)]
        count = Signal(range(max(MIN_FRAME, IFG_BYTES) + 1))
        head = self.i.payload

        def verdict(v):
            m.d.comb += [self.verdict.valid.eq(1), self.verdict.payload.eq(v)]

        with m.FSM():
            with m.State("Idle"):
                m.d.sync += count.eq(0)
                with m.If(self.i.valid & head.abort):
                    m.d.comb += self.i.ready.eq(1)
                    verdict(TxVerdict.ABORTED)
                with m.Elif(self.i.valid):
                    m.next = "Preamble"
            with m.State("Preamble"):
                m.d.comb += [en.eq(1), byte.eq(PREAMBLE_BYTE)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == PREAMBLE_BYTES):
                    m.d.comb += byte.eq(SFD)
                    m.d.sync += count.eq(0)
                    m.next = "Data"
            with m.State("Data"):
                m.d.comb += [en.eq(1), self.i.ready.eq(1)]
                with m.If(~self.i.valid):
                    m.d.comb += er.eq(1)
                    verdict(TxVerdict.UNDERRUN)
                    m.next = "Drain"
                with m.Elif(head.abort):
                    m.d.comb += er.eq(1)
                    m.d.sync += count.eq(0)
                    verdict(TxVerdict.ABORTED)
                    m.next = "Gap"
                with m.Else():
                    m.d.comb += [byte.eq(head.data), crc.valid.eq(1), crc.data.eq(head.data),
                                 crc.start.eq(count == 0)]
                    with m.If(count < MIN_FRAME - FCS_BYTES):
                        m.d.sync += count.eq(count + 1)
                    with m.If(head.last):
                        with m.If(count + 1 < MIN_FRAME - FCS_BYTES):
                            m.next = "Pad"
                        with m.Else():
                            m.d.sync += count.eq(0)
                            m.next = "Fcs"
            with m.State("Pad"):
                m.d.comb += [en.eq(1), byte.eq(0), crc.valid.eq(1), crc.data.eq(0)]
                m.d.sync += count.eq(count + 1)
                with m.If(count + 1 == MIN_FRAME - FCS_BYTES):
                    m.d.sync += count.eq(0)
                    m.next = "Fcs"
            with m.State("Fcs"):
                m.d.comb += [en.eq(1), byte.eq(crc.crc.word_select(count[:2], 8))]
                m.d.sync += count.eq(count + 1)
                with m.If(count == FCS_BYTES - 1):
                    m.d.sync += count.eq(0)
                    verdict(TxVerdict.SENT)
                    m.next = "Gap"
            with m.State("Drain"):       # discard the rest of an underrun frame
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += count.eq(0)
                with m.If(self.i.valid & (head.last | head.abort)):
                    m.next = "Gap"
            with m.State("Gap"):         # with the Idle cycle after it, IFG_BYTES idle bytes
                m.d.sync += count.eq(count + 1)
                with m.If(count == IFG_BYTES - 2):
                    m.next = "Idle"
        return m
