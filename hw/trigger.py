"""Trigger: top-of-book records in, one-shot orders out, against a host-written threshold table.

Per slot and side the table holds a limit price, a maximum quantity, a
minimum displayed size, a TimeInForce and an arm bit; per slot an optional
model link (underlying slot, delta Q16.16 signed, reference mid). A
per-slot mid register file, updated from the same stream (``(bid + ask) >> 1``
when both sides are non-empty), gives the underlying's live mid.

Pipeline, three cycles from a record accepted to an order out:

* **A** (on accept): the slot's entries and link, ``diff = mid[under] - ref``
  (33 bits signed); the record's own mid is written (a record sees the mids
  of the records before it).
* **B**: ``p = delta * diff`` (one DSP multiply, registered).
* **C** (decision, into the output register): ``buy = limit + (p >> 16)``
  (floor), ``sell = limit - ((-p) >> 16)`` (ceiling) -- both rounded away
  from fair value, exactly ``host.arming.effective_thresholds``; buy when
  armed, the buy limit is not 0, ``0 < ask <= buy`` and ``ask_size >= min size``, else sell when
  armed, ``0 < bid`` and ``bid >= sell`` and ``bid_size >= min size``. The
  arm bit is read here, live, so a fire disarms the entry for the very next
  record (one-shot against a flickering book). The order takes the touch
  price and ``min(size, max_qty)``.

``host.ordermodel.TradeModel`` is the golden model.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.book import TobRecord
from hw.csr import block_signature
from protocols.registers_trade import TRIGGER

TriggerIn = data.StructLayout({"tob": TobRecord, "slot": 5})
"""A top-of-book record with the book's instrument slot (0-31)."""

TriggerOrder = data.StructLayout({"slot": 5, "side": 1, "price": 32, "qty": 32, "tif": 8, "md_seq": 64})
"""An order the trigger fired: slot, side (0 buy, 1 sell), touch price4, quantity, TimeInForce (ASCII) and
the sequence number of the market data message behind the record."""


class Trigger(wiring.Component):
    """The trigger table and its comparator.

    Attributes
    ----------
    i : stream of TriggerIn
    o : stream of TriggerOrder
    csr : registers of the ``trigger`` block
    """

    def __init__(self, slots: int = 32):
        assert 1 <= slots <= 32
        self.slots = slots
        super().__init__({"i": In(stream.Signature(TriggerIn)), "o": Out(stream.Signature(TriggerOrder)),
                          "csr": In(block_signature(TRIGGER))})

    def elaborate(self, platform):
        m = Module()
        n, csr = self.slots, self.csr

        def table(name, width, count=n, shape=None):
            return Array(Signal(shape if shape is not None else width, name=f"{name}{i}") for i in range(count))

        # per (slot, side): index 2 * slot + side
        price, max_qty, min_size, tif = (table("price", 32, 2 * n), table("max_qty", 32, 2 * n),
                                         table("min_size", 32, 2 * n), table("tif", 8, 2 * n))
        armed = Signal(2 * n)
        linked, under = table("linked", 1), table("under", 5)
        delta, ref = table("delta", 0, shape=signed(32)), table("ref", 32)
        mid, mid_ok = table("mid", 32), Signal(n)
        m.d.comb += csr.armed.eq(armed)

        o = self.o
        adv = ~o.valid | o.ready
        m.d.comb += self.i.ready.eq(adv)
        take = self.i.valid & adv
        rec = self.i.payload
        m.d.comb += csr.tob.eq(take)

        # -- stage A
        a_valid = Signal()
        a = Signal(TriggerIn)
        a_e = {k: Signal(32, name=f"a_{k}") for k in ("pb", "ps", "qb", "qs", "mb", "ms")}
        a_tif = [Signal(8, name="a_tifb"), Signal(8, name="a_tifs")]
        a_diff = Signal(signed(33))
        a_delta = Signal(signed(32))
        a_linked = Signal()
        a_nomid = Signal()
        slot = rec.slot
        s2 = Cat(Const(0, 1), slot)
        s2s = Cat(Const(1, 1), slot)
        u = under[slot]
        with m.If(adv):
            m.d.sync += [a_valid.eq(take), a.eq(rec)]
            m.d.sync += [a_e["pb"].eq(price[s2]), a_e["ps"].eq(price[s2s]), a_e["qb"].eq(max_qty[s2]),
                         a_e["qs"].eq(max_qty[s2s]), a_e["mb"].eq(min_size[s2]), a_e["ms"].eq(min_size[s2s]),
                         a_tif[0].eq(tif[s2]), a_tif[1].eq(tif[s2s]),
                         a_diff.eq(mid[u] - ref[slot]), a_delta.eq(delta[slot]), a_linked.eq(linked[slot]),
                         a_nomid.eq(linked[slot] & ~mid_ok.bit_select(u, 1))]
        tob = rec.tob
        with m.If(take & (tob.bid_price != 0) & (tob.ask_price != 0)):
            m.d.sync += [mid[slot].eq((tob.bid_price + tob.ask_price) >> 1), mid_ok.bit_select(slot, 1).eq(1)]

        # -- stage B: the multiply
        b_valid = Signal()
        b = Signal(TriggerIn)
        b_e = {k: Signal(32, name=f"b_{k}") for k in a_e}
        b_tif = [Signal(8, name="b_tifb"), Signal(8, name="b_tifs")]
        b_p = Signal(signed(65))
        b_nomid = Signal()
        with m.If(adv):
            m.d.sync += [b_valid.eq(a_valid), b.eq(a), b_nomid.eq(a_nomid),
                         b_p.eq(Mux(a_linked, a_delta * a_diff, 0))]
            m.d.sync += [b_e[k].eq(a_e[k]) for k in a_e] + [b_tif[i].eq(a_tif[i]) for i in range(2)]

        # -- stage C: thresholds, decision
        buy_thr = Signal(signed(50))
        sell_thr = Signal(signed(50))
        m.d.comb += [buy_thr.eq(b_e["pb"] + (b_p >> 16)), sell_thr.eq(b_e["ps"] - ((-b_p) >> 16))]
        t = b.tob
        bslot = b.slot
        arm_b = armed.bit_select(Cat(Const(0, 1), bslot), 1)
        arm_s = armed.bit_select(Cat(Const(1, 1), bslot), 1)
        fire_b = Signal()
        fire_s = Signal()
        m.d.comb += [
            fire_b.eq(b_valid & ~b_nomid & arm_b & (b_e["pb"] != 0) & (t.ask_price != 0) & (t.ask_price <= buy_thr)
                      & (t.ask_size >= b_e["mb"])),
            fire_s.eq(b_valid & ~b_nomid & arm_s & ~fire_b & (t.bid_price != 0) & (t.bid_price >= sell_thr)
                      & (t.bid_size >= b_e["ms"])),
        ]
        m.d.comb += csr.no_mid.eq(adv & b_valid & b_nomid)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        disarm = Signal(2 * n)
        with m.If(adv & (fire_b | fire_s)):
            size = Mux(fire_b, t.ask_size, t.bid_size)
            qmax = Mux(fire_b, b_e["qb"], b_e["qs"])
            m.d.sync += [o.valid.eq(1), o.payload.slot.eq(bslot), o.payload.side.eq(fire_s),
                         o.payload.price.eq(Mux(fire_b, t.ask_price, t.bid_price)),
                         o.payload.qty.eq(Mux(size < qmax, size, qmax)),
                         o.payload.tif.eq(Mux(fire_b, b_tif[0], b_tif[1])), o.payload.md_seq.eq(t.seq)]
            m.d.comb += [disarm.eq(1 << Cat(fire_s, bslot)), csr.fired.eq(1)]

        # -- host writes
        arm_set = Signal(2 * n)
        arm_clr = Signal(2 * n)
        w = csr.entry_write
        with m.If(csr.entry_write_w & (w[:5] < n)):
            idx = Cat(w[5], w[:5])
            m.d.sync += [price[idx].eq(csr.entry_price), max_qty[idx].eq(csr.entry_qty[:32]),
                         min_size[idx].eq(csr.entry_qty[32:]), tif[idx].eq(csr.entry_ctl[8:16])]
            m.d.comb += [arm_set.eq(Mux(csr.entry_ctl[0], 1 << idx, 0)), arm_clr.eq(1 << idx)]
        mw = csr.model_write
        with m.If(csr.model_write_w & (mw[:5] < n)):
            m.d.sync += [linked[mw[:5]].eq(mw[16]), under[mw[:5]].eq(mw[8:13]), delta[mw[:5]].eq(csr.model[:32]),
                         ref[mw[:5]].eq(csr.model[32:])]
        m.d.sync += armed.eq((armed & ~disarm & ~arm_clr) | arm_set)
        return m
