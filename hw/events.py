"""The event stream to the host: one packet per event, laid out as ``protocols/events.py`` says.

Gap events always go to the host; MoldUDP64 messages only while
``events.control`` bit 0 asks for them, decoded ITCH records while bit 1 does,
the book's TOB, BOOK_LOST and LEVEL records while bits 2, 3 and 4 do
(otherwise they are consumed here).
A packet starts with two header beats (kind and the cycle counter, then the
first argument); message bytes follow unchanged, so the event stream adds two
cycles per message. Arbitration happens between packets: gaps, then book records (lost, TOB,
level), then ITCH records, then messages.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.book import LevelRecord, LostRecord, TobRecord
from hw.itch import ItchRecord
from hw.moldudp64 import GapEvent, MessageBeat
from hw.stream import Beat
from protocols.events import LEVEL_LAYOUT, LOST_LAYOUT, TIMESTAMP_BITS, TOB_LAYOUT, EventKind, layout_bits
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
    tob: In(stream.Signature(TobRecord))
    lost: In(stream.Signature(LostRecord))
    level: In(stream.Signature(LevelRecord))
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
        book_kinds = (  # (input, event kind, control bit, layout, counter)
            (self.lost, EventKind.BOOK_LOST, 3, LOST_LAYOUT, "lost_events"),
            (self.tob, EventKind.TOB, 2, TOB_LAYOUT, "tob_events"),
            (self.level, EventKind.LEVEL, 4, LEVEL_LAYOUT, "level_events"),
        )
        sizes = [DECODED_BITS] + [layout_bits(k[3]) for k in book_kinds]
        record = Signal(max(sizes))
        max_beats = (max(sizes) + 63) // 64
        beats_left = Signal(range(max_beats + 1))    # record beats still to send, the current one included
        last_bytes = Signal(4)

        def header_beat(value, first, last):
            m.d.comb += [self.o.valid.eq(1), o.data.eq(value), o.n.eq(8), o.first.eq(first), o.last.eq(last)]

        with m.FSM():
            with m.State("Idle"):
                with m.If(self.gap.valid):
                    m.d.comb += self.gap.ready.eq(1)
                    m.d.sync += [kind.eq(EventKind.GAP), stamp.eq(self.cycle),
                                 arg0.eq(self.gap.payload.expected), arg1.eq(self.gap.payload.seq)]
                    m.next = "Header"
                for port, ek, bit, layout, _ in book_kinds:
                    with m.Elif(port.valid):
                        m.d.comb += port.ready.eq(1)
                        with m.If(self.csr.control[bit]):
                            bits = layout_bits(layout)
                            m.d.sync += [kind.eq(ek), stamp.eq(self.cycle), arg0.eq(port.payload.seq),
                                         record.eq(port.payload.as_value()[:bits]),
                                         beats_left.eq((bits + 63) // 64),
                                         last_bytes.eq((bits - 64 * ((bits + 63) // 64 - 1) + 7) // 8)]
                            m.next = "Header"
                with m.Elif(self.itch.valid):
                    m.d.comb += self.itch.ready.eq(1)
                    with m.If(self.csr.control[1]):
                        record_beats = (DECODED_BITS + 63) // 64
                        m.d.sync += [kind.eq(EventKind.ITCH), stamp.eq(self.cycle),
                                     arg0.eq(self.itch.payload.seq), record.eq(self.itch.payload.as_value()),
                                     beats_left.eq(record_beats),
                                     last_bytes.eq((DECODED_BITS - 64 * (record_beats - 1) + 7) // 8)]
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
                    with m.Elif(kind != EventKind.MESSAGE):
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
                is_last = beats_left == 1
                m.d.comb += [self.o.valid.eq(1), o.data.eq(record[:64]), o.first.eq(0), o.last.eq(is_last),
                             o.n.eq(Mux(is_last, last_bytes, 8))]
                with m.If(self.o.ready):
                    m.d.sync += [record.eq(record[64:]), beats_left.eq(beats_left - 1)]
                    with m.If(is_last):
                        m.d.comb += self.csr.events.eq(1)
                        with m.If(kind == EventKind.ITCH):
                            m.d.comb += self.csr.itch_events.eq(1)
                        for _, ek, _, _, counter in book_kinds:
                            with m.If(kind == ek):
                                m.d.comb += getattr(self.csr, counter).eq(1)
                        m.next = "Idle"
            with m.State("Discard"):
                m.d.comb += self.msg.ready.eq(1)
                with m.If(self.msg.valid & self.msg.payload.last):
                    m.next = "Idle"
        return m
