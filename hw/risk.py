"""Pre-trade risk: every check of ``REJECT_REASONS`` in parallel, three cycles, before a byte leaves.

Pipeline from an order accepted to an order (or a reject) out:

* **A** (on accept): the slot's limits; ``dev = |price - band reference|``.
* **B**: DSP products ``price * qty`` (notional), ``dev * 10000`` and
  ``width * reference`` (the basis-point band, exact: no division).
* **C** (decision): the compares, and the checks on state -- kill switches,
  position plus open orders against the long/short limits, token buckets,
  duplicate ClOrdID -- read live, so an order passed in one cycle is seen by
  the next (open quantity, tokens, ClOrdID) and a kill switch written by the
  host stops the order decided in the cycle its write strobe is seen.

A pass adds the quantity to the side's open quantity, takes a token from the
slot's and the global bucket, and gives the order the next ClOrdID; a
reject is counted under its first failing check and reported (RISK_REJECT).
Host writes of fills, positions, buckets and ClOrdIDs hold the decision for
their cycle (no two updates of the same state meet). The kill switch latches
(host ``kill_set``, or the reject rule: ``limit`` rejects within a window of
cycles) and only ``kill_clear`` releases it.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.fixenc import RiskOrder
from hw.trigger import TriggerOrder
from protocols.registers_trade import REJECT_REASONS, RISK, RISK_REJECT_LAYOUT

RejectRecord = data.StructLayout({**dict(RISK_REJECT_LAYOUT), "seq": 64})
"""RISK_REJECT as the event stream takes it (``seq``: the market data sequence number)."""


class Risk(wiring.Component):
    """Pre-trade risk checks.

    Attributes
    ----------
    i : stream of TriggerOrder
    o : stream of RiskOrder
        Orders that passed, with their ClOrdID counter.
    reject : stream of RejectRecord
    cycle : the free-running cycle counter
    csr : registers of the ``risk`` block
    """

    def __init__(self, slots: int = 32):
        assert 1 <= slots <= 32
        self.slots = slots
        super().__init__({"i": In(stream.Signature(TriggerOrder)), "o": Out(stream.Signature(RiskOrder)),
                          "reject": Out(stream.Signature(RejectRecord)), "cycle": In(64),
                          "csr": In(block_signature(RISK))})

    def elaborate(self, platform):
        m = Module()
        n, csr = self.slots, self.csr

        def table(name, shape, init=0):
            return Array(Signal(shape, name=f"{name}{i}", init=init) for i in range(n))

        lim_qty, lim_notional = table("lim_qty", 32), table("lim_notional", 64)
        band_ref, band_width, band_bps = table("band_ref", 32), table("band_width", 31), table("band_bps", 1)
        long_lim, short_lim = table("long_lim", 32), table("short_lim", 32)
        pos = table("pos", signed(34))
        open_b, open_s = table("open_b", signed(34)), table("open_s", signed(34))
        tokens = table("tokens", 16, 0xFFFF)
        g_tokens = Signal(16, init=0xFFFF)
        killed = Signal(n)
        killed_g = Signal()
        tripped = Signal()
        clordid = Signal(32)
        hwm = Signal(32)
        hwm_ok = Signal()
        m.d.comb += [csr.killed.eq(Cat(killed, Const(0, 32 - n), killed_g)), csr.tripped.eq(tripped),
                     csr.clordid.eq(clordid)]

        o, rej = self.o, self.reject
        host_busy = (csr.fill_write_w | csr.position_write_w | csr.throttle_inst_w | csr.throttle_global_w |
                     csr.clordid_next_w | csr.clordid_epoch_w)
        adv = (~o.valid | o.ready) & (~rej.valid | rej.ready) & ~host_busy
        m.d.comb += self.i.ready.eq(adv)
        take = self.i.valid & adv
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(rej.valid & rej.ready):
            m.d.sync += rej.valid.eq(0)

        # -- stage A
        ip = self.i.payload
        a_valid = Signal()
        a = Signal(TriggerOrder)
        a_lim = {k: Signal(s, name=f"a_{k}") for k, s in (("qty", 32), ("notional", 64), ("ref", 32), ("width", 31),
                                                          ("bps", 1))}
        a_dev = Signal(33)
        s = ip.slot
        with m.If(adv):
            m.d.sync += [a_valid.eq(take), a.eq(ip), a_lim["qty"].eq(lim_qty[s]), a_lim["notional"].eq(lim_notional[s]),
                         a_lim["ref"].eq(band_ref[s]), a_lim["width"].eq(band_width[s]), a_lim["bps"].eq(band_bps[s]),
                         a_dev.eq(Mux(ip.price >= band_ref[s], ip.price - band_ref[s], band_ref[s] - ip.price))]

        # -- stage B: products
        b_valid = Signal()
        b = Signal(TriggerOrder)
        b_notional = Signal(64)
        b_max_notional = Signal(64)
        b_lhs = Signal(47)
        b_rhs = Signal(63)
        b_qty_bad = Signal()
        b_dev = Signal(33)
        b_width = Signal(31)
        b_bps = Signal()
        with m.If(adv):
            m.d.sync += [b_valid.eq(a_valid), b.eq(a), b_notional.eq(a.price * a.qty), b_lhs.eq(a_dev * 10000),
                         b_rhs.eq(a_lim["width"] * a_lim["ref"]), b_qty_bad.eq(a.qty > a_lim["qty"]),
                         b_max_notional.eq(a_lim["notional"]), b_dev.eq(a_dev), b_width.eq(a_lim["width"]),
                         b_bps.eq(a_lim["bps"])]

        # -- stage C: decision
        c = b.slot
        kill_now = (killed_g | (csr.kill_set_w & csr.kill_set[32]) | killed.bit_select(c, 1) |
                    (csr.kill_set_w & csr.kill_set.bit_select(c, 1)))
        qty = Cat(b.qty, Const(0, 4)).as_signed()
        bad = Signal(len(REJECT_REASONS))
        m.d.comb += bad.eq(Cat(
            kill_now,
            b_qty_bad,
            b_notional > b_max_notional,
            Mux(b_bps, b_lhs > b_rhs, b_dev > b_width),
            ~b.side & (pos[c] + open_b[c] + qty > long_lim[c]),
            b.side & (open_s[c] + qty - pos[c] > short_lim[c]),
            (tokens[c] == 0) | (g_tokens == 0),
            hwm_ok & (clordid <= hwm),
        ))
        decide = b_valid & adv
        passed = decide & (bad == 0)
        rejected = decide & (bad != 0)
        m.d.comb += [csr.checked.eq(decide), csr.passed.eq(passed)]
        first = Signal(range(len(REJECT_REASONS) + 1))
        for k in reversed(range(len(REJECT_REASONS))):
            with m.If(bad[k]):
                m.d.comb += first.eq(k + 1)
        for k, name in enumerate(REJECT_REASONS):
            m.d.comb += getattr(csr, "rej_" + name).eq(rejected & (first == k + 1))
        with m.If(passed):
            m.d.sync += [o.valid.eq(1), o.payload.slot.eq(b.slot), o.payload.side.eq(b.side),
                         o.payload.price.eq(b.price), o.payload.qty.eq(b.qty), o.payload.tif.eq(b.tif),
                         o.payload.md_seq.eq(b.md_seq), o.payload.clordid.eq(clordid),
                         clordid.eq(clordid + 1), hwm.eq(clordid), hwm_ok.eq(1)]
            with m.If(b.side):
                m.d.sync += open_s[c].eq(open_s[c] + qty)
            with m.Else():
                m.d.sync += open_b[c].eq(open_b[c] + qty)
        with m.If(rejected):
            m.d.sync += [rej.valid.eq(1), rej.payload.slot.eq(b.slot), rej.payload.side.eq(Mux(b.side, ord("2"), ord("1"))),
                         rej.payload.reason.eq(first), rej.payload.reasons.eq(bad), rej.payload.price.eq(b.price),
                         rej.payload.qty.eq(b.qty), rej.payload.cycle.eq(self.cycle), rej.payload.seq.eq(b.md_seq)]

        # -- token buckets: refill every period, one token per passed order
        def bucket_period(reg):
            return reg[16:48]
        ipre, gpre = Signal(32), Signal(32)
        itick, gtick = Signal(), Signal()
        for pre, tick, reg in ((ipre, itick, csr.throttle_inst), (gpre, gtick, csr.throttle_global)):
            period = bucket_period(reg)
            with m.If((period != 0) & (pre + 1 >= period)):
                m.d.sync += pre.eq(0)
                m.d.comb += tick.eq(1)
            with m.Elif(period != 0):
                m.d.sync += pre.eq(pre + 1)
        iburst, gburst = csr.throttle_inst[:16], csr.throttle_global[:16]
        for i in range(n):
            up = itick & (tokens[i] < iburst)
            down = passed & (c == i)
            with m.If(csr.throttle_inst_w):
                m.d.sync += tokens[i].eq(iburst)
            with m.Else():
                m.d.sync += tokens[i].eq(tokens[i] + up - down)
        with m.If(csr.throttle_global_w):
            m.d.sync += g_tokens.eq(gburst)
        with m.Else():
            m.d.sync += g_tokens.eq(g_tokens + (gtick & (g_tokens < gburst)) - passed)

        # -- kill switches and the reject rule
        window = Signal(32)
        count = Signal(16)
        window_len, limit = csr.reject_rule[:32], csr.reject_rule[32:48]
        boundary = (window_len != 0) & (window + 1 >= window_len)
        m.d.sync += window.eq(Mux(boundary, 0, window + 1))
        trip = rejected & (limit != 0) & (count + 1 >= limit)
        m.d.sync += count.eq(Mux(boundary, 0, count) + rejected)
        with m.If(csr.kill_clear_w):
            m.d.sync += [killed.eq(killed & ~csr.kill_clear[:n])]
            with m.If(csr.kill_clear[32]):
                m.d.sync += [killed_g.eq(0), tripped.eq(0)]
        with m.If(csr.kill_set_w):
            m.d.sync += killed.eq(Mux(csr.kill_clear_w, killed & ~csr.kill_clear[:n], killed) | csr.kill_set[:n])
            with m.If(csr.kill_set[32]):
                m.d.sync += killed_g.eq(1)
        with m.If(trip):
            m.d.sync += [killed_g.eq(1), tripped.eq(1)]

        # -- host writes
        with m.If(csr.limit_write_w & (csr.limit_write < n)):
            w = csr.limit_write
            m.d.sync += [lim_qty[w].eq(csr.lim_qty), lim_notional[w].eq(csr.lim_notional),
                         band_ref[w].eq(csr.lim_band[:32]), band_width[w].eq(csr.lim_band[32:63]),
                         band_bps[w].eq(csr.lim_band[63]), long_lim[w].eq(csr.lim_position[:32]),
                         short_lim[w].eq(csr.lim_position[32:])]
        fw = csr.fill_write[:5]
        filled, released = csr.fill[:32], csr.fill[32:]
        with m.If(csr.fill_write_w & (fw < n)):
            with m.If(csr.fill_write[5]):
                m.d.sync += [open_s[fw].eq(open_s[fw] - filled - released), pos[fw].eq(pos[fw] - filled)]
            with m.Else():
                m.d.sync += [open_b[fw].eq(open_b[fw] - filled - released), pos[fw].eq(pos[fw] + filled)]
        pw = csr.position_write
        with m.If(csr.position_write_w & (pw < n)):
            m.d.sync += [pos[pw].eq(csr.position.as_signed()), open_b[pw].eq(0), open_s[pw].eq(0)]
        with m.If(csr.clordid_next_w):
            m.d.sync += clordid.eq(csr.clordid_next)
        with m.If(csr.clordid_epoch_w):
            m.d.sync += hwm_ok.eq(0)
        return m
