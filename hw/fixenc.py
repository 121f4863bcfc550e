"""FIX 4.4 NewOrderSingle encoder: an approved order in, the message's bytes out as beats.

The message follows ``protocols.registers_trade.NOS_TEMPLATE`` byte for byte
(the golden model is ``host.ordermodel.encode_order``). At elaboration the
template is cut into *chunks* of up to 8 bytes, each byte a constant, a byte
of a fixed-width field or a byte of a string (CompIDs, Symbol, whose length
comes from registers); a chunk packer shifts chunks into 8-byte beats, so the
strings cost no per-byte logic. The first beat (``8=FIX.4.``, constant)
leaves the cycle after the order arrives; the decimal fields (quantity,
price, ClOrdID) are converted from binary by double-dabble units, 4 bits a
cycle, while the header beats go out, and a chunk that needs a digit waits
for it (it never has to with this template). MsgSeqNum is a zero placeholder
and CheckSum ``000``: ``hw/sequencer.py`` stamps both.

The UTC clock (:class:`UtcClock`) keeps the time of day in BCD, ticking every
``order.ms_cycles`` cycles; the host sets it with ``order.time`` (which also
loads ``order.date``) and leaves the next day's date in ``order.date_next``
for midnight. SendingTime and TransactTime are the clock when the order
arrives.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.stream import BEAT_FIELDS
from protocols.registers_trade import (CLORDID_DIGITS, NOS_TEMPLATE, ORDER, ORDER_SENT_LAYOUT, PRICE_INT_DIGITS,
                                       QTY_DIGITS, body_length)

RiskOrder = data.StructLayout({"slot": 5, "side": 1, "price": 32, "qty": 32, "tif": 8, "md_seq": 64,
                               "clordid": 32})
"""An order that passed risk: slot, side (0 buy, 1 sell), price4, quantity, TimeInForce (ASCII), the market
data sequence number that triggered it and its ClOrdID counter."""

OrderInfo = data.StructLayout({name: width for name, width in ORDER_SENT_LAYOUT
                               if name not in ("checksum", "length", "cycle")})
"""What the encoder tells the sequencer about the order it emits (fields of ORDER_SENT it knows)."""

EncBeat = data.StructLayout({**BEAT_FIELDS, "info": OrderInfo})
"""A message beat with the order's description (meaningful on the first beat)."""


def dabble(m: Module, bcd: list, bits, name: str = "dd") -> list:
    """Double dabble: shift ``bits`` (MSB first, 1-bit values) into the BCD digits ``bcd`` (least
    significant first): per bit, add 3 to every digit >= 5, then shift left by one. Returns the new
    digits (Amaranth expressions); the top digit's carry out is dropped (size ``bcd`` for the value)."""
    for k, bit in enumerate(bits):
        adj = []
        for i, d in enumerate(bcd):      # a signal per step keeps the expression a DAG, not a tree
            a = Signal(4, name=f"{name}_{k}_{i}")
            m.d.comb += a.eq(Mux(d >= 5, d + 3, d))
            adj.append(a)
        bcd = [Cat(bit if i == 0 else adj[i - 1][3], adj[i][:3]) for i in range(len(adj))]
    return bcd


class BinToBcd(wiring.Component):
    """Binary to BCD, ``step`` bits a cycle: pulse ``start`` with ``value``; ``done`` rises
    ``ceil(width / step)`` cycles later with ``digits`` (least significant first) valid."""

    def __init__(self, width: int, digits: int, step: int = 4):
        self.width, self.ndigits, self.step = width, digits, step
        super().__init__({"start": In(1), "value": In(width), "done": Out(1),
                          "digits": Out(data.ArrayLayout(4, digits))})

    def elaborate(self, platform):
        m = Module()
        steps = -(-self.width // self.step)
        padded = steps * self.step
        shift = Signal(padded)
        count = Signal(range(steps + 1))
        bcd = [Signal(4, name=f"d{i}") for i in range(self.ndigits)]
        m.d.comb += [self.digits[i].eq(bcd[i]) for i in range(self.ndigits)]
        m.d.comb += self.done.eq(count == 0)
        with m.If(self.start):
            m.d.sync += [shift.eq(self.value), count.eq(steps)] + [d.eq(0) for d in bcd]
        with m.Elif(count != 0):
            top = [shift[padded - 1 - k] for k in range(self.step)]
            new = dabble(m, bcd, top)
            m.d.sync += [shift.eq(shift << self.step), count.eq(count - 1)] + [d.eq(n) for d, n in zip(bcd, new)]
        return m


class UtcClock(wiring.Component):
    """Time of day in BCD (HHMMSSmmm, hours' tens first), ticking every ``ms_cycles`` cycles, and the date."""

    ms_cycles: In(32)
    set: In(1)
    set_time: In(36)
    set_date: In(64)
    next_date: In(64)
    time: Out(36)
    date: Out(64)

    def elaborate(self, platform):
        m = Module()
        pre = Signal(32)
        tick = Signal()
        with m.If((self.ms_cycles != 0) & (pre + 1 >= self.ms_cycles)):
            m.d.sync += pre.eq(0)
            m.d.comb += tick.eq(1)
        with m.Elif(self.ms_cycles != 0):
            m.d.sync += pre.eq(pre + 1)
        digits = [self.time[4 * i:4 * i + 4] for i in range(9)]     # ms ones first ... hours tens last
        limits = [9, 9, 9, 9, 5, 9, 5]
        new = []
        carry = tick
        for d, lim in zip(digits[:7], limits):
            new.append(Mux(carry, Mux(d == lim, 0, d + 1), d))
            carry = carry & (d == lim)
        h1, h10 = digits[7], digits[8]
        midnight = carry & (h10 == 2) & (h1 == 3)
        new.append(Mux(carry, Mux(midnight | (h1 == 9), 0, h1 + 1), h1))
        new.append(Mux(carry, Mux(midnight, 0, Mux(h1 == 9, h10 + 1, h10)), h10))
        with m.If(self.set):
            m.d.sync += [self.time.eq(self.set_time), self.date.eq(self.set_date), pre.eq(0)]
        with m.Else():
            m.d.sync += self.time.eq(Cat(*[n[:4] for n in new]))
            with m.If(midnight):
                m.d.sync += self.date.eq(self.next_date)
        return m


def _chunks():
    """Cut the template into chunks: (list of byte sources, string or None).

    A byte source is ``("c", byte)``, ``("f", field, index)`` or ``("v", string, index)``; a chunk of a
    string carries bytes ``8k .. 8k+7`` of it and its count comes from the string's length."""
    chunks, cur = [], []
    for seg in NOS_TEMPLATE:
        if seg[0] == "var":
            if cur:
                chunks.append((cur, None))
                cur = []
            for k in range(-(-seg[2] // 8)):
                chunks.append(([("v", seg[1], 8 * k + i) for i in range(8)], (seg[1], k)))
            continue
        items = [("c", b) for b in seg[1]] if seg[0] == "const" else [("f", seg[1], i) for i in range(seg[2])]
        for item in items:
            cur.append(item)
            if len(cur) == 8:
                chunks.append((cur, None))
                cur = []
    if cur:
        chunks.append((cur, None))
    return chunks


CHUNKS = _chunks()
CONVERTED = ("qty", "price", "clordid")


class OrderEncoder(wiring.Component):
    """NewOrderSingle encoder.

    Attributes
    ----------
    i : stream of RiskOrder
        Orders that passed risk (one message each; ``ready`` while idle).
    o : stream of EncBeat
        The message, 8 bytes a beat, ``info`` on the first beat.
    csr : registers of the ``order`` block
    """

    def __init__(self, slots: int = 32):
        self.slots = slots
        super().__init__({"i": In(stream.Signature(RiskOrder)), "o": Out(stream.Signature(EncBeat)),
                          "csr": In(block_signature(ORDER))})

    def elaborate(self, platform):
        m = Module()
        csr = self.csr
        assert all(src[0] == "c" for src in CHUNKS[0][0]) and len(CHUNKS[0][0]) == 8

        m.submodules.clock = clock = UtcClock()
        m.d.comb += [clock.ms_cycles.eq(csr.ms_cycles), clock.set.eq(csr.time_w), clock.set_time.eq(csr.time),
                     clock.set_date.eq(csr.date), clock.next_date.eq(csr.date_next), csr.time_now.eq(clock.time)]

        # symbol table (slot -> 8 bytes and a length)
        sym = Array(Signal(64, name=f"sym{i}") for i in range(self.slots))
        sym_len = Array(Signal(4, name=f"sym_len{i}") for i in range(self.slots))
        with m.If(csr.symbol_write_w & (csr.symbol_write[:5] < self.slots)):
            m.d.sync += [sym[csr.symbol_write[:5]].eq(csr.symbol), sym_len[csr.symbol_write[:5]].eq(csr.symbol_write[8:12])]

        order = Signal(RiskOrder)
        time = Signal(36)
        date = Signal(64)
        busy = Signal()
        idx = Signal(range(len(CHUNKS) + 1))
        acc = Signal(128)
        acc_n = Signal(4)
        flush = Signal()

        convs = {"qty": BinToBcd(32, QTY_DIGITS), "price": BinToBcd(32, PRICE_INT_DIGITS + 4),
                 "clordid": BinToBcd(32, CLORDID_DIGITS)}
        for name, conv in convs.items():
            m.submodules[f"bcd_{name}"] = conv
        start = self.i.valid & self.i.ready
        m.d.comb += [convs["qty"].value.eq(self.i.payload.qty), convs["price"].value.eq(self.i.payload.price),
                     convs["clordid"].value.eq(self.i.payload.clordid)]
        m.d.comb += [c.start.eq(start) for c in convs.values()]
        ready_all = Cat(*[c.done for c in convs.values()]).all()

        # string sources: (bytes signal, length)
        sym_bytes = Signal(64)
        sym_n = Signal(4)
        m.d.comb += [sym_bytes.eq(sym[order.slot]), sym_n.eq(sym_len[order.slot])]
        strings = {"sender": (Cat(csr.sender_lo, csr.sender_hi), csr.comp_len[:5]),
                   "target": (Cat(csr.target_lo, csr.target_hi), csr.comp_len[8:13]),
                   "symbol": (sym_bytes, sym_n)}

        # fixed-width fields as lists of byte expressions
        blen = Signal(10)
        m.d.comb += blen.eq(body_length(0, 0, 0) + strings["sender"][1] + strings["target"][1] + sym_n)
        blen_bcd = dabble(m, [Const(0, 4)] * 4, [blen[i] for i in reversed(range(10))])

        def ascii(d):
            return Cat(d[:4], Const(0x3, 4))

        def digits_msb(conv, n):
            return [ascii(conv.digits[n - 1 - k]) for k in range(n)]

        t = [time[4 * (8 - k):4 * (8 - k) + 4] for k in range(9)]    # H H M M S S m m m
        time_bytes = ([date[8 * k:8 * k + 8] for k in range(8)] + [Const(ord("-"), 8)] + [ascii(t[0]), ascii(t[1])]
                      + [Const(ord(":"), 8)] + [ascii(t[2]), ascii(t[3])] + [Const(ord(":"), 8)]
                      + [ascii(t[4]), ascii(t[5])] + [Const(ord("."), 8)] + [ascii(x) for x in t[6:9]])
        price_digits = digits_msb(convs["price"], PRICE_INT_DIGITS + 4)
        fields = {
            "body_length": [ascii(blen_bcd[2]), ascii(blen_bcd[1]), ascii(blen_bcd[0])],
            "seq": [Const(0x30, 8)] * 9,
            "time": time_bytes,
            "prefix": [csr.clordid_prefix[8 * k:8 * k + 8] for k in range(8)],
            "clordid": digits_msb(convs["clordid"], CLORDID_DIGITS),
            "side": [Mux(order.side, Const(ord("2"), 8), Const(ord("1"), 8))],
            "qty": digits_msb(convs["qty"], QTY_DIGITS),
            "price": price_digits[:PRICE_INT_DIGITS] + [Const(ord("."), 8)] + price_digits[PRICE_INT_DIGITS:],
            "tif": [order.tif],
        }

        # the chunk the packer takes this cycle
        c_data = Signal(64)
        c_n = Signal(4)
        c_wait = Signal()
        with m.Switch(idx):
            for k, (sources, string) in enumerate(CHUNKS):
                with m.Case(k):
                    parts = []
                    needs = False
                    for src in sources:
                        if src[0] == "c":
                            parts.append(Const(src[1], 8))
                        elif src[0] == "f":
                            parts.append(fields[src[1]][src[2]])
                            needs |= src[1] in CONVERTED
                        else:
                            parts.append(strings[src[1]][0][8 * src[2]:8 * src[2] + 8])
                    m.d.comb += c_data.eq(Cat(*parts))
                    if string is None:
                        m.d.comb += c_n.eq(len(sources))
                    else:
                        length = strings[string[0]][1]
                        rest = length - 8 * string[1]
                        m.d.comb += c_n.eq(Mux(length <= 8 * string[1], 0, Mux(rest >= 8, 8, rest)))
                    if needs:
                        m.d.comb += c_wait.eq(~ready_all)

        o = self.o
        adv = ~o.valid | o.ready
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        m.d.comb += self.i.ready.eq(~busy & adv)
        last_chunk = idx == len(CHUNKS) - 1
        combined = Signal(128)
        m.d.comb += combined.eq(acc | (c_data << (acc_n * 8)))
        total = Signal(5)
        m.d.comb += total.eq(acc_n + c_n)
        with m.If(start):
            # the first chunk is constant: it leaves now, while the order's fields are latched
            m.d.sync += [order.eq(self.i.payload), time.eq(clock.time), date.eq(clock.date), busy.eq(1),
                         idx.eq(1), acc.eq(0), acc_n.eq(0), flush.eq(0),
                         o.valid.eq(1), o.payload.data.eq(Cat(*[Const(s[1], 8) for s in CHUNKS[0][0]])),
                         o.payload.n.eq(8), o.payload.first.eq(1), o.payload.last.eq(0), o.payload.abort.eq(0)]
            p = self.i.payload
            m.d.sync += [o.payload.info.clordid.eq(p.clordid), o.payload.info.slot.eq(p.slot),
                         o.payload.info.side.eq(Mux(p.side, ord("2"), ord("1"))), o.payload.info.tif.eq(p.tif),
                         o.payload.info.price.eq(p.price), o.payload.info.qty.eq(p.qty),
                         o.payload.info.md_seq.eq(p.md_seq), o.payload.info.time.eq(clock.time),
                         o.payload.info.date.eq(clock.date)]
        with m.Elif(busy & adv & flush):
            m.d.sync += [o.valid.eq(1), o.payload.data.eq(acc[:64]), o.payload.n.eq(acc_n), o.payload.first.eq(0),
                         o.payload.last.eq(1), busy.eq(0), flush.eq(0), acc_n.eq(0)]
        with m.Elif(busy & adv & ~c_wait):
            m.d.sync += idx.eq(idx + 1)
            with m.If(total >= 8):
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(combined[:64]), o.payload.n.eq(8),
                             o.payload.first.eq(0), o.payload.last.eq(last_chunk & (total == 8)),
                             acc.eq(combined[64:]), acc_n.eq(total - 8)]
                with m.If(last_chunk):
                    with m.If(total == 8):
                        m.d.sync += busy.eq(0)
                    with m.Else():
                        m.d.sync += flush.eq(1)
            with m.Else():
                m.d.sync += [acc.eq(combined), acc_n.eq(total)]
                with m.If(last_chunk):
                    m.d.sync += [o.valid.eq(1), o.payload.data.eq(combined[:64]), o.payload.n.eq(total),
                                 o.payload.first.eq(0), o.payload.last.eq(1), busy.eq(0)]
        m.d.comb += csr.orders.eq(start)
        return m
