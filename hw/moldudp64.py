"""MoldUDP64 stage: check the session, track sequence numbers, split messages.

The stage sees one UDP payload per packet. It keeps a 24-byte window of the
packet's bytes, takes the 20-byte header in three steps (8, 8 and 4 bytes) and
then splits the payload into one output packet per message, each realigned to
lane 0 and stamped with its sequence number. A message's length prefix and its
first up-to-8 bytes leave in the same cycle, so a message of ``L`` bytes takes
``ceil(L / 8)`` cycles (one for an empty message), plus three header cycles per
packet. Its ``L + 2`` bytes arrive in ``(L + 2) / 8`` beats, so the stage keeps
pace with a saturated input when ``L % 8`` is 0, 6 or 7 and otherwise
backpressures (36-byte messages: 5 cycles for 4.75 beats). That is the price
of one lane-0-aligned packet per message; at 8 bytes a cycle the stage still
has several times the bandwidth of a 1 Gb/s feed.

Sequencing follows the MoldUDP64 specification: duplicates (whole packets, or
the leading messages of a partly repeated packet) are dropped and counted; a
packet beyond the expected sequence number raises a gap event carrying the
missing range ``[expected, seq)`` and, under the skip policy, is delivered,
or under the hold policy is dropped until retransmissions close the gap.
Bad input never hangs the stage: a packet shorter than its header or whose
messages run past its end is dropped from that point to its end, a message
cut short leaves with ``abort`` set, and every byte is accounted for in the
counters (see ``protocols/registers.py``).
"""


from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.stream import Beat, beat_layout
from protocols.moldudp64 import END_OF_SESSION, HEADER_LEN
from protocols.registers import MOLD

MessageBeat = beat_layout(seq=64)
"""A beat of one MoldUDP64 message, with the message's sequence number on every beat."""

GapEvent = data.StructLayout({"expected": 64, "seq": 64})
"""Messages ``expected .. seq - 1`` were not received."""

WINDOW_BYTES = 24


def _be(bytes_):
    """Big-endian value of a list of byte signals (first byte most significant)."""
    return Cat(*reversed(bytes_))


class MoldUdp64(wiring.Component):
    """Sequence MoldUDP64 packets and split them into messages.

    Attributes
    ----------
    i : stream of Beat
        One UDP payload per packet.
    o : stream of MessageBeat
        One packet per delivered message.
    gap : stream of GapEvent
        One event per detected gap.
    csr : registers of the ``mold`` block
    """

    i: In(stream.Signature(Beat))
    o: Out(stream.Signature(MessageBeat))
    gap: Out(stream.Signature(GapEvent))
    csr: In(block_signature(MOLD))

    def elaborate(self, platform):
        m = Module()
        csr = self.csr

        # --- the byte window ------------------------------------------------
        win = Signal(8 * WINDOW_BYTES)
        level = Signal(range(WINDOW_BYTES + 1))
        tail = Signal()                          # the current packet's last beat is in the window
        tail_pos = Signal.like(level)            # ... and it ends this many bytes into the window
        next_tail = Signal()                     # the next packet's last beat is in the window too
        avail = Signal.like(level)               # bytes of the current packet in the window
        wb = [win[8 * k:8 * k + 8] for k in range(WINDOW_BYTES)]
        consume = Signal(range(11))
        frame_done = Signal()

        accept = Signal()
        m.d.comb += [
            self.i.ready.eq((level <= WINDOW_BYTES - 8) & ~next_tail),
            avail.eq(Mux(tail, tail_pos, level)),
            accept.eq(self.i.valid & self.i.ready),
        ]
        n_in = self.i.payload.n
        in_mask = Cat(*((n_in > k).replicate(8) for k in range(8)))
        level_after = Signal.like(level)
        m.d.comb += level_after.eq(level - consume)
        shifted = win >> Cat(Const(0, 3), consume)
        level_next = Signal.like(level)
        accept_last = accept & self.i.payload.last
        with m.If(accept):
            m.d.comb += level_next.eq(level_after + n_in)
            m.d.sync += win.eq(shifted | ((self.i.payload.data & in_mask) << Cat(Const(0, 3), level_after)))
        with m.Else():
            m.d.comb += level_next.eq(level_after)
            m.d.sync += win.eq(shifted)
        m.d.sync += level.eq(level_next)
        # Packet boundaries: the window may hold the end of the current packet and the
        # start (even the end) of the next, so a new packet streams in while the last
        # one finishes.
        with m.If(frame_done):
            m.d.sync += [tail.eq(next_tail | accept_last), tail_pos.eq(level_next), next_tail.eq(0)]
        with m.Elif(tail):
            m.d.sync += tail_pos.eq(tail_pos - consume)
            with m.If(accept_last):
                m.d.sync += next_tail.eq(1)
        with m.Elif(accept_last):
            m.d.sync += [tail.eq(1), tail_pos.eq(level_next)]
        m.d.comb += csr.packets.eq(accept & self.i.payload.first)

        # --- sequencing state ------------------------------------------------
        expected = Signal(64, init=1)
        floor_seq = Signal(64)                   # expected may not fall below this on truncation
        learn_pending = Signal(init=1)
        learned = Signal()
        learned_session = Signal(80)
        eos_seen = Signal()
        learn_mode = csr.control[0]
        hold_policy = csr.control[1]
        with m.If(csr.next_seq_w):
            m.d.sync += [
                expected.eq(csr.next_seq),
                learn_pending.eq(1),
                learned.eq(0),
                eos_seen.eq(0),
            ]
        session_in_force = Mux(learn_mode, learned_session, Cat(csr.session_lo, csr.session_hi))
        m.d.comb += [
            csr.expected.eq(expected),
            csr.session_seen_hi.eq(session_in_force[64:]),
            csr.session_seen_lo.eq(session_in_force[:64]),
            csr.status.eq(Cat(learned, eos_seen)),
        ]

        # --- per-packet state -------------------------------------------------
        hdr = Signal(8 * 16)                     # header bytes 0..15
        hdr_bytes = Signal(range(17))
        pkt_seq = Signal(64)
        count = Signal(16)
        index = Signal(16)                       # message index within the packet
        skip_count = Signal(16)                  # leading duplicate messages to drop
        msg_len = Signal(16)
        rem = Signal(16)                         # message bytes still to consume
        started = Signal()                       # an output beat of this message has left
        trailer_seen = Signal()

        o_free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.gap.valid & self.gap.ready):
            m.d.sync += self.gap.valid.eq(0)

        skipping = index < skip_count
        msg_seq = pkt_seq + index

        def emit(src, nbytes, first, last, abort=0):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(src),
                self.o.payload.n.eq(nbytes),
                self.o.payload.first.eq(first),
                self.o.payload.last.eq(last),
                self.o.payload.abort.eq(abort),
                self.o.payload.seq.eq(msg_seq),
            ]

        def finish(consumed, otherwise):
            """Leave the packet: at once if this cycle consumes its last byte, else via ``otherwise``.

            Finishing in the same cycle saves the packet a drain cycle, so back-to-back
            packets stream without a bubble.
            """
            with m.If(tail & (avail == consumed)):
                m.d.comb += frame_done.eq(1)
                m.next = "Hdr0"
            with m.Else():
                m.next = otherwise

        def message_done(consumed):
            m.d.sync += index.eq(index + 1)
            with m.If(~skipping):
                m.d.comb += csr.messages.eq(1)
            with m.If(index + 1 == count):
                finish(consumed, "Drain")

        def truncate(dropped):
            """The packet ends inside message ``index``: account and finish it."""
            m.d.comb += [
                csr.truncated.eq(1),
                csr.lost_messages.eq(count - index),
                csr.dropped_bytes.eq(dropped),
                consume.eq(avail),
                frame_done.eq(1),
            ]
            with m.If(pkt_seq + index > floor_seq):
                m.d.sync += expected.eq(pkt_seq + index)
            with m.Else():
                m.d.sync += expected.eq(floor_seq)
            m.next = "Hdr0"

        def short_packet(header_bytes):
            m.d.comb += [
                csr.drop_short.eq(1),
                csr.dropped_bytes.eq(header_bytes + avail),
                consume.eq(avail),
                frame_done.eq(1),
            ]
            m.next = "Hdr0"

        with m.FSM():
            with m.State("Hdr0"):
                m.d.sync += [trailer_seen.eq(0), hdr_bytes.eq(0)]
                with m.If(avail >= 8):
                    m.d.comb += consume.eq(8)
                    m.d.sync += [hdr[:64].eq(win[:64]), hdr_bytes.eq(8)]
                    m.next = "Hdr1"
                with m.Elif(tail):
                    short_packet(0)
            with m.State("Hdr1"):
                with m.If(avail >= 8):
                    m.d.comb += consume.eq(8)
                    m.d.sync += [hdr[64:].eq(win[:64]), hdr_bytes.eq(16)]
                    m.next = "Hdr2"
                with m.Elif(tail):
                    short_packet(8)
            with m.State("Hdr2"):
                hb = [hdr[8 * k:8 * k + 8] for k in range(16)] + wb[:4]
                session = _be(hb[0:10])
                seq = _be(hb[10:18])
                cnt = _be(hb[18:20])
                learning = learn_mode & learn_pending
                exp = Mux(learning, seq, expected)
                session_ok = learning | (session == session_in_force)
                beyond = seq > exp
                gap_needed = session_ok & beyond & (cnt != END_OF_SESSION)
                with m.If((avail >= 4) & ~(gap_needed & self.gap.valid)):
                    m.d.comb += consume.eq(4)
                    m.d.sync += [pkt_seq.eq(seq), count.eq(cnt), index.eq(0)]
                    with m.If(~session_ok):
                        m.d.comb += [csr.drop_session.eq(1), csr.dropped_bytes.eq(HEADER_LEN)]
                        finish(4, "Drop")
                    with m.Else():
                        with m.If(learning):
                            m.d.sync += [learned_session.eq(session), learn_pending.eq(0), learned.eq(1)]
                        with m.If(gap_needed):
                            m.d.sync += [
                                self.gap.valid.eq(1),
                                self.gap.payload.expected.eq(exp),
                                self.gap.payload.seq.eq(seq),
                            ]
                            m.d.comb += [csr.gaps.eq(1), csr.gap_messages.eq(seq - exp)]
                        with m.If(cnt == END_OF_SESSION):
                            m.d.comb += csr.end_of_session.eq(1)
                            m.d.sync += [eos_seen.eq(1), expected.eq(exp)]
                            finish(4, "Drain")
                        with m.Elif(cnt == 0):
                            m.d.comb += csr.heartbeats.eq(1)
                            m.d.sync += expected.eq(Mux(beyond & ~hold_policy, seq, exp))
                            finish(4, "Drain")
                        with m.Elif(beyond & hold_policy):
                            m.d.comb += [csr.held_packets.eq(1), csr.dropped_bytes.eq(HEADER_LEN)]
                            m.d.sync += expected.eq(exp)
                            finish(4, "Drop")
                        with m.Elif(seq + cnt <= exp):
                            m.d.comb += [
                                csr.dup_packets.eq(1),
                                csr.dup_messages.eq(cnt),
                                csr.dropped_bytes.eq(HEADER_LEN),
                            ]
                            m.d.sync += expected.eq(exp)
                            finish(4, "Drop")
                        with m.Else():
                            skip = Mux(beyond, 0, exp - seq)
                            m.d.comb += csr.dup_messages.eq(skip)
                            m.d.sync += [
                                skip_count.eq(skip),
                                expected.eq(seq + cnt),
                                floor_seq.eq(Mux(beyond, seq, exp)),
                            ]
                            m.next = "Len"
                with m.Elif(tail & (avail < 4)):
                    short_packet(16)

            with m.State("Len"):
                length = _be(wb[0:2])
                need = Mux(length < 8, length, 8)
                with m.If(avail >= 2):
                    m.d.sync += [msg_len.eq(length), started.eq(0)]
                    with m.If(skipping):
                        m.d.comb += [consume.eq(2), csr.dropped_bytes.eq(2)]
                        m.d.sync += rem.eq(length)
                        with m.If(length == 0):
                            message_done(2)
                        with m.Else():
                            m.next = "Body"
                    with m.Elif(o_free & (length == 0)):
                        m.d.comb += consume.eq(2)
                        emit(0, 0, 1, 1)
                        message_done(2)
                    with m.Elif(o_free & (avail >= need + 2)):
                        m.d.comb += consume.eq(need + 2)
                        emit(win[16:80], need, 1, length <= 8)
                        m.d.sync += [rem.eq(length - need), started.eq(1)]
                        with m.If(length <= 8):
                            message_done(need + 2)
                        with m.Else():
                            m.next = "Body"
                    with m.Elif(length != 0):
                        m.d.comb += consume.eq(2)
                        m.d.sync += rem.eq(length)
                        m.next = "Body"
                with m.Elif(tail):
                    truncate(avail)

            with m.State("Body"):
                need = Mux(rem < 8, rem, 8)
                with m.If(avail >= need):
                    with m.If(skipping):
                        m.d.comb += [consume.eq(need), csr.dropped_bytes.eq(need)]
                        m.d.sync += rem.eq(rem - need)
                        with m.If(rem <= 8):
                            message_done(need)
                            with m.If(index + 1 != count):
                                m.next = "Len"
                    with m.Elif(o_free):
                        m.d.comb += consume.eq(need)
                        emit(win[:64], need, ~started, rem <= 8)
                        m.d.sync += [rem.eq(rem - need), started.eq(1)]
                        with m.If(rem <= 8):
                            message_done(need)
                            with m.If(index + 1 != count):
                                m.next = "Len"
                with m.Elif(tail):
                    with m.If(skipping):
                        truncate(avail)
                    with m.Elif(o_free):
                        emit(win[:64], avail, ~started, 1, abort=1)
                        truncate(2 + (msg_len - rem) + avail)

            # After the last message: anything left is a trailer. Drop: the rest of a dropped packet.
            for state, counts_trailer in (("Drain", True), ("Drop", False)):
                with m.State(state):
                    take = Mux(avail < 8, avail, 8)
                    m.d.comb += [consume.eq(take), csr.dropped_bytes.eq(take)]
                    if counts_trailer:
                        with m.If((take != 0) & ~trailer_seen):
                            m.d.comb += csr.trailing.eq(1)
                            m.d.sync += trailer_seen.eq(1)
                    with m.If(tail & (avail <= 8)):
                        m.d.comb += frame_done.eq(1)
                        m.next = "Hdr0"
        return m
