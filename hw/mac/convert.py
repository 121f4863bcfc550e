"""Width conversion between the MAC's byte stream and the core's 64-bit beats.

:class:`BytesToBeats` (receive side, in the receive clock domain) packs bytes
into beats and writes them straight into the asynchronous FIFO to the core.
The wire cannot wait, so when the FIFO is full a frame is dropped: whole if
none of it was written yet, else the rest is discarded and, as soon as there is
room, an empty ``abort`` beat closes the part already written.

:class:`BeatsToBytes` (transmit side, in the transmit clock domain) reads beats
from the FIFO head and hands out one byte per cycle without bubbles, the next
beat being taken in the cycle its predecessor's last byte leaves.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.mac.mac_rx import RxByte
from hw.mac.mac_tx import TxByte
from hw.stream import BEAT_BYTES, Beat


class FifoWriteSignature(wiring.Signature):
    """A FIFO write port from the writer's side, as ``amaranth.lib.fifo`` names it."""

    def __init__(self, width: int):
        super().__init__({"w_data": Out(width), "w_en": Out(1), "w_rdy": In(1)})


class BytesToBeats(wiring.Component):
    """Receive bytes -> beats into a FIFO, dropping what does not fit.

    Attributes
    ----------
    i : stream of RxByte, always ready
    w : FIFO write port of Beat
    dropping : out
        The frame the current byte belongs to is (being) dropped; valid in the
        cycle of every byte, including the last.
    """

    i: In(stream.Signature(RxByte, always_ready=True))
    w: Out(FifoWriteSignature(Beat.size))
    dropping: Out(1)

    def elaborate(self, platform):
        m = Module()
        buf = Signal(8 * (BEAT_BYTES - 1))     # bytes 0..6 of the beat being filled
        count = Signal(range(BEAT_BYTES))      # bytes in buf
        first = Signal(init=1)                 # the next byte starts a frame
        first_beat = Signal(init=1)            # no beat of this frame is written yet
        discard = Signal()                     # the rest of this frame goes nowhere
        pending = Signal()                     # a written part of a frame still needs its abort beat
        beat = Signal(Beat)

        byte = self.i.payload
        m.d.comb += self.w.w_data.eq(beat.as_value())
        # The closing abort beat, when there is room and nothing else is written.
        m.d.comb += [beat.n.eq(0), beat.last.eq(1), beat.abort.eq(1)]
        with m.If(pending & self.w.w_rdy):
            m.d.comb += self.w.w_en.eq(1)
            m.d.sync += pending.eq(0)

        with m.If(self.i.valid):
            m.d.sync += first.eq(byte.last)
            starts_dropped = first & pending             # the previous frame's abort is not out yet
            with m.If(discard | starts_dropped):
                m.d.comb += self.dropping.eq(1)
                m.d.sync += discard.eq(~byte.last)
            with m.Elif((count == BEAT_BYTES - 1) | byte.last):
                m.d.comb += [
                    beat.data.eq(buf | (byte.data << (8 * count))),
                    beat.n.eq(count + 1), beat.first.eq(first_beat), beat.last.eq(byte.last),
                    beat.abort.eq(byte.abort),
                ]
                m.d.sync += [count.eq(0), buf.eq(0)]
                with m.If(self.w.w_rdy):
                    m.d.comb += self.w.w_en.eq(1)
                    m.d.sync += first_beat.eq(0)
                with m.Else():
                    m.d.comb += self.dropping.eq(1)
                    m.d.sync += [discard.eq(~byte.last), pending.eq(~first_beat)]
            with m.Else():
                m.d.sync += [buf.eq(buf | (byte.data << (8 * count))), count.eq(count + 1)]
            with m.If(byte.last):
                m.d.sync += [count.eq(0), buf.eq(0), first_beat.eq(1)]
        return m


class BeatsToBytes(wiring.Component):
    """Beats -> one byte per cycle.

    A beat with ``abort`` (its bytes are dropped) or with no bytes becomes one
    ``abort`` item; a frame that ends normally has ``last`` on its final byte.

    Attributes
    ----------
    i : stream of Beat
    o : stream of TxByte
    """

    i: In(stream.Signature(Beat))
    o: Out(stream.Signature(TxByte))

    def elaborate(self, platform):
        m = Module()
        # The byte leaves from a register: the FIFO's memory read and the 8:1 byte select
        # end here instead of running on into the MAC (the transmit clock's critical path).
        index = Signal(range(BEAT_BYTES))
        beat = self.i.payload
        end = index == beat.n - 1
        empty = beat.abort | (beat.n == 0)
        load = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(load & self.i.valid):
            m.d.sync += self.o.valid.eq(1)
            with m.If(empty):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += [self.o.payload.data.eq(0), self.o.payload.abort.eq(1), self.o.payload.last.eq(1),
                             index.eq(0)]
            with m.Else():
                m.d.comb += self.i.ready.eq(end)
                m.d.sync += [self.o.payload.data.eq(beat.data.word_select(index, 8)),
                             self.o.payload.last.eq(beat.last & end), self.o.payload.abort.eq(0),
                             index.eq(Mux(end, 0, index + 1))]
        return m
