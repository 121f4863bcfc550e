"""FIX outbound sequencer: one MsgSeqNum sequence for gateware and host messages.

Mechanism (the one the host's ``stamping="downstream"`` mode expects): every
outbound message of the session, gateware order (``a``) or host message
(``b``, from ``host.fix.session`` with a fixed-width zero ``34=`` placeholder),
passes here whole; messages are never interleaved, gateware orders win
arbitration between messages. The stamper writes the next MsgSeqNum into the
digits after the first ``<SOH>34=`` (as wide as the placeholder, at most
9 digits, with leading zeros), recomputes the CheckSum from the bytes it
sends and writes it after ``<SOH>10=`` -- so the template's own CheckSum does
not matter (``host.ordermodel.restamp`` is the model; for a template with a
correct CheckSum it equals ``protocols.fix.stamp``). It needs no length and
holds no beat back: byte patterns are found with a 4-byte look-behind across
beats, one registered stage, one cycle of latency.

Each stamped message is reported at its last beat: a gateware order as an
ORDER_SENT record (``sent``), a host message as FIX_STAMPED (``stamped``), so
the host's resend store holds every message of the sequence. A message with
no ``34=`` passes unstamped and consumes no number (``fixseq.unstamped``).
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.fixenc import BinToBcd, EncBeat
from hw.stream import Beat
from protocols.registers_trade import FIX_STAMPED_LAYOUT, FIXSEQ, ORDER_SENT_LAYOUT

OrderSentRecord = data.StructLayout({**dict(ORDER_SENT_LAYOUT), "seq": 64})
"""ORDER_SENT as the event stream takes it (``seq``: the MsgSeqNum, the event's first argument)."""
StampedRecord = data.StructLayout({**dict(FIX_STAMPED_LAYOUT), "seq": 64})
"""FIX_STAMPED (``seq``: the MsgSeqNum)."""

DIGITS = 9
SEQ_PAT = b"\x0134="
CS_PAT = b"\x0110="


class Sequencer(wiring.Component):
    """Arbitrate, stamp MsgSeqNum and CheckSum, report.

    Attributes
    ----------
    a : stream of EncBeat
        Gateware orders (``hw/fixenc.py``).
    b : stream of Beat
        Host messages (downstream-stamped templates).
    o : stream of Beat
        Stamped messages for the FIX TCP connection.
    sent : stream of OrderSentRecord
    stamped : stream of StampedRecord
    cycle : the free-running cycle counter
    csr : registers of the ``fixseq`` block
    """

    a: In(stream.Signature(EncBeat))
    b: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))
    sent: Out(stream.Signature(OrderSentRecord))
    stamped: Out(stream.Signature(StampedRecord))
    cycle: In(64)
    csr: In(block_signature(FIXSEQ))

    def elaborate(self, platform):
        m = Module()
        csr, o = self.csr, self.o

        # the sequence number, binary and BCD (the BCD is reloaded by a converter after a host write)
        seq = Signal(30, init=1)
        bcd = [Signal(4, name=f"seq_d{i}", init=int(i == 0)) for i in range(DIGITS)]
        m.submodules.conv = conv = BinToBcd(30, DIGITS)
        loading = Signal()
        m.d.comb += [conv.start.eq(csr.next_seq_w), conv.value.eq(csr.next_seq), csr.seq.eq(seq)]

        in_msg = Signal()
        src_a = Signal()           # the message in progress comes from a
        idle_ok = ~in_msg & ~loading & ~csr.next_seq_w
        pick_a = Signal()
        m.d.comb += pick_a.eq(Mux(in_msg, src_a, self.a.valid))
        beat = Signal(Beat)
        valid = Signal()
        m.d.comb += [beat.eq(Mux(pick_a, self.a.payload.as_value()[:Beat.size], self.b.payload.as_value())),
                     valid.eq(Mux(pick_a, self.a.valid, self.b.valid) & (in_msg | idle_ok))]

        # state of the message in progress
        prev = Signal(32)          # last 4 input bytes of the previous beat
        seq_seen = Signal()
        seq_idx = Signal(range(DIGITS + 2))   # next digit index to write, DIGITS+1 = not writing
        cs_seen = Signal()
        cs_idx = Signal(range(5))
        cs_digits = Signal(24)
        csum = Signal(8)
        length = Signal(16)
        info = Signal.like(self.a.payload.info)
        first_cycle = Signal(64)

        rep_ready = Mux(pick_a, self.sent.ready | ~self.sent.valid, self.stamped.ready | ~self.stamped.valid)
        adv = (~o.valid | o.ready)
        take = valid & adv & (~beat.last | rep_ready)
        m.d.comb += [self.a.ready.eq(pick_a & adv & (in_msg | idle_ok) & (~beat.last | rep_ready)),
                     self.b.ready.eq(~pick_a & adv & (in_msg | idle_ok) & (~beat.last | rep_ready))]
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(self.sent.valid & self.sent.ready):
            m.d.sync += self.sent.valid.eq(0)
        with m.If(self.stamped.valid & self.stamped.ready):
            m.d.sync += self.stamped.valid.eq(0)

        first = beat.first & ~in_msg
        p_prev = Mux(first, 0, prev)
        p_seq_seen = Mux(first, 0, seq_seen)
        p_seq_idx = Mux(first, DIGITS + 1, seq_idx)
        p_cs_seen = Mux(first, 0, cs_seen)
        p_cs_idx = Mux(first, 4, cs_idx)
        p_csum = Mux(first, 0, csum)
        window = Cat(p_prev, beat.data)        # bytes -4 .. 7
        wb = [window[8 * k:8 * k + 8] for k in range(12)]
        lanes_ok = [beat.n > j for j in range(8)]

        def hit(pat, j):
            return Cat(*[wb[j + 4 - 3 + k] == pat[k] for k in range(4)]).all() & lanes_ok[j]

        seq_hits = [hit(SEQ_PAT, j) & ~p_seq_seen for j in range(8)]
        # digit index of each lane: from a hit in this beat (first one) or continuing from earlier beats
        digit_of = [Signal(range(DIGITS + 9), name=f"dig{j}") for j in range(8)]
        for j in range(8):
            expr = Mux(p_seq_idx <= DIGITS, p_seq_idx + j, DIGITS + 8)
            for k in reversed(range(j)):
                expr = Mux(seq_hits[k] & ~Cat(*seq_hits[:k]).any() if k else seq_hits[0], j - k - 1, expr)
            m.d.comb += digit_of[j].eq(expr)
        seq_bytes = Array([Cat(bcd[DIGITS - 1 - k], Const(3, 4)) for k in range(DIGITS)] +
                          [Const(0, 8)] * 9)
        out = [Signal(8, name=f"out{j}") for j in range(8)]
        for j in range(8):
            m.d.comb += out[j].eq(Mux(digit_of[j] < DIGITS, seq_bytes[digit_of[j]], wb[j + 4]))
        any_seq_hit = Cat(*seq_hits).any()
        first_seq_hit = Signal(range(8))
        for k in reversed(range(8)):
            with m.If(seq_hits[k]):
                m.d.comb += first_seq_hit.eq(k)

        # checksum: running sum of output bytes; at "<SOH>10=" the sum so far minus "10=" is the CheckSum
        prefix = []
        acc = p_csum
        for j in range(8):
            acc = (acc + Mux(lanes_ok[j], out[j], 0))[:8]
            s = Signal(8, name=f"psum{j}")
            m.d.comb += s.eq(acc)
            prefix.append(s)
        cs_hits = [hit(CS_PAT, j) & ~p_cs_seen for j in range(8)]
        any_cs_hit = Cat(*cs_hits).any()
        cs_at = Signal(range(8))
        for k in reversed(range(8)):
            with m.If(cs_hits[k]):
                m.d.comb += cs_at.eq(k)
        cs_value = Signal(8)
        m.d.comb += cs_value.eq(Array(prefix)[cs_at] - (ord("1") + ord("0") + ord("=")))
        table = Array([Const(int.from_bytes(b"%03d" % v, "big"), 24) for v in range(256)])
        cs_now = Signal(24)
        m.d.comb += cs_now.eq(table[cs_value])
        cs_text = Mux(any_cs_hit, cs_now, cs_digits)    # big-endian: byte 0 (hundreds) in bits 16-23
        final = [Signal(8, name=f"fin{j}") for j in range(8)]
        for j in range(8):
            # index of this lane within the CheckSum digits
            idx = Mux(any_cs_hit, j - cs_at - 1, p_cs_idx + j)
            ok = Mux(any_cs_hit, j > cs_at, p_cs_idx < 3) & (idx < 3) & (idx >= 0)
            sel = Array([cs_text[16:24], cs_text[8:16], cs_text[0:8]])[idx[:2]]
            m.d.comb += final[j].eq(Mux(ok, sel, out[j]))

        with m.If(take):
            m.d.sync += [o.valid.eq(1), o.payload.data.eq(Cat(*final)), o.payload.n.eq(beat.n),
                         o.payload.first.eq(beat.first), o.payload.last.eq(beat.last), o.payload.abort.eq(beat.abort),
                         in_msg.eq(~beat.last), prev.eq(beat.data[32:64]),
                         length.eq(Mux(first, 0, length) + beat.n)]
            # prev holds the last 4 bytes of this beat (a full beat; a short beat is the last one anyway)
            with m.If(first):
                m.d.sync += [src_a.eq(pick_a), info.eq(self.a.payload.info), first_cycle.eq(self.cycle + 1)]
            # MsgSeqNum progress
            with m.If(any_seq_hit):
                m.d.sync += [seq_seen.eq(1), seq_idx.eq(Mux(first_seq_hit + DIGITS + 1 <= 7, DIGITS + 1,
                                                           7 - first_seq_hit))]
            with m.Elif(p_seq_idx <= DIGITS):
                m.d.sync += [seq_seen.eq(p_seq_seen), seq_idx.eq(Mux(p_seq_idx + 8 >= DIGITS, DIGITS + 1, p_seq_idx + 8))]
            with m.Else():
                m.d.sync += [seq_seen.eq(p_seq_seen), seq_idx.eq(DIGITS + 1)]
            # CheckSum progress
            with m.If(any_cs_hit):
                m.d.sync += [cs_seen.eq(1), cs_digits.eq(cs_now), cs_idx.eq(Mux(cs_at + 4 <= 7, 4, 7 - cs_at))]
            with m.Else():
                m.d.sync += [cs_seen.eq(p_cs_seen), cs_idx.eq(Mux(p_cs_idx < 3, Mux(p_cs_idx + 8 >= 3, 4, p_cs_idx + 8), 4)),
                             csum.eq(prefix[7])]
            with m.If(beat.last):
                stamped_now = p_seq_seen | any_seq_hit
                total = Mux(first, 0, length) + beat.n
                chk_value = Signal(8)
                m.d.comb += chk_value.eq(Mux(any_cs_hit, cs_value, csum_of(cs_digits)))
                src = Mux(first, pick_a, src_a)
                with m.If(stamped_now):
                    m.d.sync += [seq.eq(seq + 1)] + [d.eq(n) for d, n in zip(bcd, bcd_increment(bcd))]
                    with m.If(src):
                        m.d.sync += [self.sent.valid.eq(1), self.sent.payload.seq.eq(seq),
                                     self.sent.payload.checksum.eq(chk_value), self.sent.payload.length.eq(total),
                                     self.sent.payload.cycle.eq(Mux(first, self.cycle + 1, first_cycle))]
                        for name, width in ORDER_SENT_LAYOUT:
                            if name not in ("checksum", "length", "cycle"):
                                m.d.sync += getattr(self.sent.payload, name).eq(
                                    Mux(first, getattr(self.a.payload.info, name), getattr(info, name)))
                    with m.Else():
                        m.d.sync += [self.stamped.valid.eq(1), self.stamped.payload.seq.eq(seq),
                                     self.stamped.payload.checksum.eq(chk_value), self.stamped.payload.length.eq(total),
                                     self.stamped.payload.cycle.eq(Mux(first, self.cycle + 1, first_cycle))]
                m.d.comb += [csr.gateware.eq(stamped_now & src), csr.host.eq(stamped_now & ~src),
                             csr.unstamped.eq(~stamped_now)]

        # host write of the next sequence number: reload binary now, BCD when the converter is done
        with m.If(csr.next_seq_w):
            m.d.sync += [seq.eq(csr.next_seq), loading.eq(1)]
        with m.Elif(loading & conv.done):
            m.d.sync += [loading.eq(0)] + [d.eq(conv.digits[i]) for i, d in enumerate(bcd)]
        return m


def csum_of(digits24):
    """The binary value of three ASCII digits (big-endian in 24 bits)."""
    h, t, u = digits24[16:20], digits24[8:12], digits24[0:4]
    return (h * 100 + t * 10 + u)[:8]


def bcd_increment(digits):
    """BCD digits (least significant first) plus one, wrapping at 10^n."""
    out, carry = [], Const(1, 1)
    for d in digits:
        out.append(Mux(carry, Mux(d == 9, 0, d + 1), d))
        carry = carry & (d == 9)
    return out
