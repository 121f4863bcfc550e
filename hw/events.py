"""The event stream to the host: one packet per event, laid out as ``protocols/events.py`` says.

Gap events always go to the host; MoldUDP64 messages only while
``events.control`` bit 0 asks for them, decoded ITCH records while bit 1 does
(otherwise they are consumed here).
A packet starts with two header beats (kind and the cycle counter, then the
first argument); message bytes follow unchanged, so the event stream adds two
cycles per message. Arbitration happens between packets: gaps, then ITCH records, then messages.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.itch import ItchRecord
from hw.moldudp64 import GapEvent, MessageBeat
from hw.stream import Beat
from protocols.events import TIMESTAMP_BITS, EventKind
from protocols.itch import DECODED_BITS
from protocols.registers import EVENTS


class EventMux(wiring.Component):
    """Turn stage outputs into event packets for the host.

    Attributes
    ----------
    msg : stream of MessageBeat
    gap : stream of GapEvent
    o : stream of Beat
        Event packets.
    cycle : the free-running cycle counter (timestamps)
    csr : registers of the ``events`` block
    """

    msg: In(stream.Signature(MessageBeat))
    gap: In(stream.Signature(GapEvent))
    itch: In(stream.Signature(ItchRecord))
    o: Out(stream.Signature(Beat))
    cycle: In(64)
    csr: In(block_signature(EVENTS))

    def elaborate(self, platform):
        m = Module()
        o = self.o.payload
        kind = Signal(8)
        stamp = Signal(TIMESTAMP_BITS)
        arg0 = Signal(64)
        arg1 = Signal(64)
        record = Signal(DECODED_BITS)
        record_beats = (DECODED_BITS + 63) // 64
        beat_no = Signal(range(record_beats))

        def header_beat(value, first, last):
            m.d.comb += [self.o.valid.eq(1), o.data.eq(value), o.n.eq(8), o.first.eq(first), o.last.eq(last)]

        with m.FSM():
            with m.State("Idle"):
                with m.If(self.gap.valid):
                    m.d.comb += self.gap.ready.eq(1)
                    m.d.sync += [kind.eq(EventKind.GAP), stamp.eq(self.cycle),
                                 arg0.eq(self.gap.payload.expected), arg1.eq(self.gap.payload.seq)]
                    m.next = "Header"
                with m.Elif(self.itch.valid):
                    m.d.comb += self.itch.ready.eq(1)
                    with m.If(self.csr.control[1]):
                        m.d.sync += [kind.eq(EventKind.ITCH), stamp.eq(self.cycle),
                                     arg0.eq(self.itch.payload.seq), record.eq(self.itch.payload.as_value()),
                                     beat_no.eq(0)]
                        m.next = "Header"
                with m.Elif(self.msg.valid):
                    with m.If(self.csr.control[0]):
                        m.d.sync += [kind.eq(EventKind.MESSAGE), stamp.eq(self.cycle),
                                     arg0.eq(self.msg.payload.seq)]
                        m.next = "Header"
                    with m.Else():
                        m.d.comb += self.msg.ready.eq(1)
                        with m.If(~self.msg.payload.last):
                            m.next = "Discard"
            with m.State("Header"):
                header_beat(Cat(kind, stamp), 1, 0)
                with m.If(self.o.ready):
                    m.next = "Arg"
            with m.State("Arg"):
                header_beat(arg0, 0, 0)
                with m.If(self.o.ready):
                    with m.If(kind == EventKind.GAP):
                        m.next = "GapSeq"
                    with m.Elif(kind == EventKind.ITCH):
                        m.next = "Record"
                    with m.Else():
                        m.next = "Body"
            with m.State("GapSeq"):
                header_beat(arg1, 0, 1)
                with m.If(self.o.ready):
                    m.d.comb += [self.csr.events.eq(1), self.csr.gap_events.eq(1)]
                    m.next = "Idle"
            with m.State("Body"):
                p = self.msg.payload
                m.d.comb += [
                    self.o.valid.eq(self.msg.valid), self.msg.ready.eq(self.o.ready),
                    o.data.eq(p.data), o.n.eq(p.n), o.first.eq(0), o.last.eq(p.last), o.abort.eq(p.abort),
                ]
                with m.If(self.msg.valid & self.o.ready & p.last):
                    m.d.comb += [self.csr.events.eq(1), self.csr.message_events.eq(1)]
                    m.next = "Idle"
            with m.State("Record"):
                last_bytes = (DECODED_BITS - 64 * (record_beats - 1) + 7) // 8
                is_last = beat_no == record_beats - 1
                m.d.comb += [self.o.valid.eq(1), o.data.eq(record[:64]), o.first.eq(0), o.last.eq(is_last),
                             o.n.eq(Mux(is_last, last_bytes, 8))]
                with m.If(self.o.ready):
                    m.d.sync += [record.eq(record[64:]), beat_no.eq(beat_no + 1)]
                    with m.If(is_last):
                        m.d.comb += [self.csr.events.eq(1), self.csr.itch_events.eq(1)]
                        m.next = "Idle"
            with m.State("Discard"):
                m.d.comb += self.msg.ready.eq(1)
                with m.If(self.msg.valid & self.msg.payload.last):
                    m.next = "Idle"
        return m
