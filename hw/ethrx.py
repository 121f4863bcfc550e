"""Ethernet II / IPv4 / UDP receive stage: check the headers, strip them, forward the payload.

The stage is cut-through: every header field is checked by the time the
fifth beat (bytes 32 to 39) has arrived, before the first payload byte could
leave, so a frame is either forwarded or dropped whole and counted under one
reason. The UDP payload starts at byte 42, lane 2 of beat 5; the stage
re-aligns it to lane 0 by keeping the upper six bytes of each beat. Ethernet
padding after the UDP datagram is discarded. IPv4 options (IHL above 5) are not
used by market data feeds and are dropped under ``drop_ip_header``; the UDP
checksum is not verified (the Ethernet FCS protects the frame, and checking it
would need the whole datagram before the first byte leaves).

A frame whose last beat carries ``abort`` (the MAC found a bad FCS, RX_ER, a
runt or an overflow) is counted under ``drop_aborted`` whatever its headers
said. If none of its payload has left yet it is dropped whole; if some has
(cut-through), the payload ends with an ``abort`` beat, which the MoldUDP64
stage treats as a packet cut short. A UDP payload under 18 bytes that is
padded out to the Ethernet minimum leaves whole before the frame's end and so
cannot be aborted any more; it is still counted under ``drop_aborted``
(MoldUDP64 never sends one: its header alone is 20 bytes).
"""


import enum

from amaranth import Module, Signal, Cat, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.stream import Beat
from protocols.registers import ETH

PAYLOAD_OFFSET = 42
"""Byte offset of the UDP payload in a frame without IPv4 options."""


class Verdict(enum.IntEnum):
    """Why a frame is dropped; the counter it increments is ``eth.drop_<name>``."""

    OK = 0
    RUNT = 1
    ETHERTYPE = 2
    IP_HEADER = 3
    IP_CHECKSUM = 4
    IP_LENGTH = 5
    FRAGMENT = 6
    PROTOCOL = 7
    FILTER = 8


def _be16(data, lane):
    """The big-endian 16-bit field starting at ``lane`` of a 64-bit beat."""
    return Cat(data[8 * lane + 8:8 * lane + 16], data[8 * lane:8 * lane + 8])


class EthRx(wiring.Component):
    """Check Ethernet/IPv4/UDP headers and forward UDP payloads.

    Attributes
    ----------
    i : stream of Beat
        Ethernet frames without FCS, first byte in lane 0.
    o : stream of Beat
        The UDP payload of every accepted frame (an empty payload is one beat
        with ``n == 0``), truncated frames forwarded as far as they go.
    csr : registers of the ``eth`` block
    aborted : out
        One-cycle pulse per frame that ended with ``abort`` (the ``eth.drop_aborted``
        increment; also driven into ``csr.drop_aborted`` once the ``eth`` block has it).
    """

    i: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))
    csr: In(block_signature(ETH))
    aborted: Out(1)

    def elaborate(self, platform):
        m = Module()
        beat = self.i.payload
        d = beat.data

        idx = Signal(range(8))              # beat index within the frame, saturating at 7
        frame_bytes = Signal(16)            # bytes of the frame before this beat
        ethertype = Signal(16)
        ver_ihl = Signal(8)
        total_len = Signal(16)
        frag = Signal(16)
        proto = Signal(8)
        dst_ip = Signal(32)
        csum = Signal(20)                   # ones'-complement partial sum of the IPv4 header
        verdict = Signal(Verdict)
        udp_len_r = Signal(16)
        remaining = Signal(16)              # payload bytes still to forward
        forwarding = Signal()
        hold = Signal(48)                   # lanes 2..7 of the previous beat
        started = Signal()                  # an output beat of this payload has left

        residue_pending = Signal()
        residue_n = Signal(4)

        o_free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(o_free)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # A residue (the last up-to-6 payload bytes held back) leaves in the cycle
        # after the beat that completed the payload; that cycle's input beat is a
        # header or padding beat, which never produces output itself.
        with m.If(residue_pending & o_free):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(hold),
                self.o.payload.n.eq(residue_n),
                self.o.payload.first.eq(~started),
                self.o.payload.last.eq(1),
                self.o.payload.abort.eq(0),
                residue_pending.eq(0),
            ]

        def words(lanes):
            return sum(d[16 * w:16 * w + 16] for w in lanes)

        def fold(value):
            s1 = value[:16] + value[16:]
            return (s1[:16] + s1[16:])[:16]

        accept = self.i.valid & self.i.ready
        n = beat.n
        with m.If(accept):
            m.d.sync += frame_bytes.eq(frame_bytes + n)
            with m.If(idx != 7):
                m.d.sync += idx.eq(idx + 1)
            with m.Switch(idx):
                with m.Case(0):
                    m.d.sync += forwarding.eq(0)
                with m.Case(1):
                    m.d.sync += [
                        ethertype.eq(_be16(d, 4)),
                        ver_ihl.eq(d[48:56]),
                        csum.eq(words([3])),
                    ]
                with m.Case(2):
                    m.d.sync += [
                        total_len.eq(_be16(d, 0)),
                        frag.eq(_be16(d, 4)),
                        proto.eq(d[56:64]),
                        csum.eq(csum + words([0, 1, 2, 3])),
                    ]
                with m.Case(3):
                    m.d.sync += [
                        dst_ip.eq(Cat(d[56:64], d[48:56], dst_ip[16:])),
                        csum.eq(csum + words([0, 1, 2, 3])),
                    ]
                with m.Case(4):
                    full_dst_ip = Cat(d[8:16], d[0:8], dst_ip[0:16])
                    dst_port = _be16(d, 4)
                    udp_len = _be16(d, 6)
                    checksum_ok = fold(csum + words([0])) == 0xFFFF
                    filt = self.csr.filter
                    new_verdict = Signal(Verdict)
                    with m.If(ethertype != 0x0800):
                        m.d.comb += new_verdict.eq(Verdict.ETHERTYPE)
                    with m.Elif(ver_ihl != 0x45):
                        m.d.comb += new_verdict.eq(Verdict.IP_HEADER)
                    with m.Elif(~checksum_ok):
                        m.d.comb += new_verdict.eq(Verdict.IP_CHECKSUM)
                    with m.Elif((total_len < 28) | (udp_len < 8) | (udp_len + 20 > total_len)):
                        m.d.comb += new_verdict.eq(Verdict.IP_LENGTH)
                    with m.Elif(frag[:14] != 0):
                        m.d.comb += new_verdict.eq(Verdict.FRAGMENT)
                    with m.Elif(proto != 17):
                        m.d.comb += new_verdict.eq(Verdict.PROTOCOL)
                    with m.Elif((filt[0] & (full_dst_ip != self.csr.ip_dst)) |
                                (filt[1] & (dst_port != self.csr.udp_port))):
                        m.d.comb += new_verdict.eq(Verdict.FILTER)
                    with m.Else():
                        m.d.comb += new_verdict.eq(Verdict.OK)
                    m.d.sync += [
                        verdict.eq(new_verdict),
                        udp_len_r.eq(udp_len),
                        remaining.eq(udp_len - 8),
                        forwarding.eq(new_verdict == Verdict.OK),
                        started.eq(0),
                    ]
                with m.Case(5):
                    # Payload bytes 0..5 are lanes 2..7: hold them.
                    have = Mux(n > 2, n - 2, 0)
                    m.d.sync += hold.eq(d[16:])
                    with m.If(forwarding & ((remaining <= have) | beat.last)):
                        m.d.sync += [
                            # nothing has left yet: an aborted frame is dropped whole
                            residue_pending.eq((n >= 2) & ~(beat.last & beat.abort)),
                            residue_n.eq(Mux(remaining < have, remaining, have)),
                            forwarding.eq(0),
                        ]
                with m.Default():
                    # Beat 6 onwards: six held bytes and lanes 0..1 form the next output beat.
                    avail = Signal(4)
                    m.d.comb += avail.eq(6 + Mux(n < 2, n, 2))
                    emit_n = Mux(remaining < avail, remaining, avail)
                    after = remaining - emit_n
                    have = Mux(n > 2, n - 2, 0)
                    aborting = beat.last & beat.abort
                    with m.If(forwarding & aborting & ~started):
                        m.d.sync += forwarding.eq(0)         # nothing has left: drop it whole
                    with m.Elif(forwarding):
                        # An aborted frame ends here, with whatever bytes this beat completes.
                        out_last = (remaining <= avail) | (beat.last & (n <= 2)) | aborting
                        m.d.sync += [
                            self.o.valid.eq(1),
                            self.o.payload.data.eq(Cat(hold, d[:16])),
                            self.o.payload.n.eq(emit_n),
                            self.o.payload.first.eq(~started),
                            self.o.payload.last.eq(out_last),
                            self.o.payload.abort.eq(aborting),
                            started.eq(1),
                            hold.eq(d[16:]),
                            remaining.eq(after),
                        ]
                        with m.If(out_last):
                            m.d.sync += forwarding.eq(0)
                        with m.Elif((after <= have) | beat.last):
                            m.d.sync += [
                                residue_pending.eq(1),
                                residue_n.eq(Mux(after < have, after, have)),
                                forwarding.eq(0),
                            ]

            with m.If(beat.last):
                m.d.sync += [idx.eq(0), frame_bytes.eq(0)]
                frame_len = frame_bytes + n
                runt = (idx < 5) | ((idx == 5) & (n < 2))
                dropped = runt | (verdict != Verdict.OK) | beat.abort
                m.d.comb += self.csr.frames.eq(1)
                with m.If(beat.abort):
                    m.d.comb += self.aborted.eq(1)
                    if any(r.name == "drop_aborted" for r in ETH.registers):
                        m.d.comb += self.csr.drop_aborted.eq(1)
                with m.Elif(runt):
                    m.d.comb += self.csr.drop_runt.eq(1)
                with m.Else():
                    with m.Switch(verdict):
                        with m.Case(Verdict.OK):
                            m.d.comb += self.csr.forwarded.eq(1)
                            # A frame that ends while payload bytes are still due is truncated.
                            m.d.comb += self.csr.truncated.eq(frame_len < udp_len_r + (PAYLOAD_OFFSET - 8))
                        for v in Verdict:
                            if v not in (Verdict.OK, Verdict.RUNT):
                                with m.Case(v):
                                    m.d.comb += getattr(self.csr, "drop_" + v.name.lower()).eq(1)
                with m.If(dropped):
                    m.d.comb += self.csr.dropped_bytes.eq(frame_len)
        return m
