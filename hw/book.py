"""The order book stage: order table, price-level windows, top of book; one book operation per cycle.

Input: decoded ITCH records (``hw/itch.py``). Records of stock locates that are
in the instrument slot table (``book.slot``, up to ``slots`` entries, compared in
parallel) and of types A F E C X D U become book operations; everything else is
consumed at once. A ``U`` becomes two operations (retire the original, then add
the new reference with the original's side) and takes two cycles at the input:
the one documented stall. Every other message takes one cycle, including
back-to-back operations on the same order, level and instrument.

Pipeline (every memory is read one cycle before it is written, with transparent
read ports, so the next operation's read sees this operation's write: forwarding,
no stalls):

* **p0** (input register, no book state): slot lookup, ``price // 100`` by a
  constant multiply.
* **c0**: the record becomes one operation (two for a ``U``); order table read of
  every way of the set the reference folds to (``hw/ordertable.py``).
* **r1**: tag check of every way in parallel and the policy: add (kept in the
  lowest free way, duplicate, rejected, collision when every way is live,
  outside the window), reduce, delete; write of one way; per book side a
  live-order count and the window base (registers). A book side's window is
  ``window`` ticks from its base; an add outside it into an EMPTY side moves the
  window (base = price tick - window/2, at least 0, counted in ``recentred``);
  otherwise the order is lost (``BOOK_LOST``, reason window). Reads the level at
  (book side, price index) and the side's occupancy bitmap. Emits ``lost``.
* **r2**: level update (aggregate shares, order count) and bitmap update;
  a priority encoder finds the best occupied index (highest for bids, lowest
  for asks), whose level is read through a second read port. Emits ``level``
  (the level's new state: the host can rebuild every level of every window,
  hence the exact top N, from these).
* **r3**: new best (price, size) of the side, merged with the instrument's
  other side (a per-slot memory); the state before the message is kept across
  the two operations of a ``U``; on the message's last operation a ``tob``
  record leaves if the best bid or ask price or size changed.

Reset: block RAM keeps its contents across a reset, so after one the book
sweeps every memory to zero (``max(sets, books * window, slots)`` cycles, the
input not ready meanwhile) before it takes the first record.

Latency: a record accepted in cycle t is written to the ``tob`` FIFO at the end
of cycle t+4 and is on the ``tob`` output in cycle t+6 (``tests/hw/test_book.py``). Outputs go through FIFOs; the
input is accepted only while every FIFO has room for everything in flight, so
backpressure from the event stream stalls the book and never drops.
``host/bookrx.py`` is the golden model of exactly these policies.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.itch import ItchRecord
from hw.ordertable import BookParams, entry_layout, fold
from protocols.events import LEVEL_LAYOUT, LOST_LAYOUT, TOB_LAYOUT
from protocols.registers import BOOK

TobRecord = data.StructLayout({**dict(TOB_LAYOUT), "seq": 64})
LostRecord = data.StructLayout({**dict(LOST_LAYOUT), "seq": 64})
LevelRecord = data.StructLayout({**dict(LEVEL_LAYOUT), "seq": 64})

TICK = 100
DIV100_MUL = 5497558139     # ceil(2**39 / 100): (n * DIV100_MUL) >> 39 == n // 100 for every 32-bit n
DIV100_SHIFT = 39
FIFO_DEPTH = 16
IN_FLIGHT = 6               # operations that may still write a FIFO after the input is accepted

ADD, REDUCE, DELETE, UDEL, UADD = range(5)


def lowest_set(bits: Value) -> tuple[Value, Value]:
    """(any bit set, index of the lowest set bit) of ``bits`` as a tree of 2:1 muxes, log2 deep.

    A chain of ``with m.If`` over 128 bits is 128 muxes deep: slow, and deep enough to exhaust Yosys' stack.
    """
    n = len(bits)
    if n == 1:
        return bits[0], Const(0, 1)
    half = 1 << ((n - 1).bit_length() - 1)       # the largest power of two below n
    lo_any, lo_idx = lowest_set(bits[:half])
    hi_any, hi_idx = lowest_set(bits[half:])
    width = (n - 1).bit_length()
    return lo_any | hi_any, Mux(lo_any, lo_idx, hi_idx + half)[:width]


def clear_cycles(p: BookParams) -> int:
    """Cycles the book takes after a reset to sweep its memories (its input is not ready meanwhile)."""
    return max(p.sets, p.books * p.window, p.slots)


class Book(wiring.Component):
    """The book stage (see the module doc).

    Attributes
    ----------
    i : stream of ItchRecord
    tob : stream of TobRecord
        Top-of-book changes.
    lost : stream of LostRecord
        Orders the book could not keep.
    level : stream of LevelRecord
        Level states after each operation.
    csr : registers of the ``book`` block
    """

    def __init__(self, params: BookParams = BookParams()):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(ItchRecord)),
            "tob": Out(stream.Signature(TobRecord)),
            "lost": Out(stream.Signature(LostRecord)),
            "level": Out(stream.Signature(LevelRecord)),
            "csr": In(block_signature(BOOK)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, OB, SB, NW = p.window, p.set_bits, p.slot_bits, p.ways
        csr = self.csr
        m.d.comb += csr.config.eq(p.config)
        Entry = entry_layout(p)
        uop_layout = data.StructLayout({
            "kind": 3, "ref": 64, "addr": OB, "slot": SB, "locate": 16, "side": 8, "price": 32,
            "pt": 32, "on_grid": 1, "shares": 32, "first": 1, "last": 1, "seq": 64, "timestamp": 48,
        })

        # -- outputs through FIFOs ------------------------------------------------------------
        fifos = {}
        for name, layout in (("tob", TobRecord), ("lost", LostRecord), ("level", LevelRecord)):
            f = fifos[name] = SyncFIFOBuffered(width=layout.size, depth=FIFO_DEPTH)
            m.submodules[name + "_fifo"] = f
            out = getattr(self, name)
            m.d.comb += [out.payload.eq(f.r_data), out.valid.eq(f.r_rdy), f.r_en.eq(out.ready)]
        # After reset every memory is swept to zero (free entries, empty levels and quotes) before the first
        # record: block RAM keeps its contents across a reset, stale orders would make the book silently wrong.
        clear_depth = clear_cycles(p)
        clearing = Signal(init=1)
        clr = Signal(range(clear_depth))
        with m.If(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == clear_depth - 1):
                m.d.sync += clearing.eq(0)
        space = Signal()
        m.d.comb += space.eq(Cat(*[f.level <= FIFO_DEPTH - IN_FLIGHT for f in fifos.values()]).all() & ~clearing)

        # -- slot table (registers, host-written) --------------------------------------------
        slot_valid = Signal(p.slots)
        slot_locate = [Signal(16, name=f"slot_locate{i}") for i in range(p.slots)]
        orders = [Signal(p.level_count_bits, name=f"orders{b}") for b in range(p.books)]
        base = [Signal(32, name=f"base{b}") for b in range(p.books)]

        # -- p0: a register stage before c0 (no book state): price // 100, the slot lookup -----------
        rec = Signal(ItchRecord)
        pre_valid = Signal()
        pt = Signal(32)
        hit = Signal()
        slot = Signal(SB)
        c0_ready = Signal()
        in_pt = Signal(32)
        in_hit = Signal()
        in_slot = Signal(SB)
        m.d.comb += in_pt.eq((self.i.payload.price * DIV100_MUL) >> DIV100_SHIFT)
        slot_match = Cat(*[slot_valid[i] & (slot_locate[i] == self.i.payload.stock_locate) for i in range(p.slots)])
        match_any, match_idx = lowest_set(slot_match)          # the lowest matching slot wins
        m.d.comb += [in_hit.eq(match_any), in_slot.eq(match_idx)]
        m.d.comb += self.i.ready.eq(~pre_valid | c0_ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [rec.eq(self.i.payload), pre_valid.eq(1), pt.eq(in_pt), hit.eq(in_hit), slot.eq(in_slot)]
        with m.Elif(c0_ready):
            m.d.sync += pre_valid.eq(0)

        # -- c0: the record becomes an operation ------------------------------------------------
        code = rec.type
        is_add = (code == ord("A")) | (code == ord("F"))
        is_reduce = (code == ord("E")) | (code == ord("C")) | (code == ord("X"))
        is_del = code == ord("D")
        is_u = code == ord("U")
        book_msg = hit & (is_add | is_reduce | is_del | is_u)
        u_second = Signal()            # the U's retire was issued; now issue its add
        uop = Signal(uop_layout)
        uop_valid = Signal()
        go = pre_valid & space
        ref = Mux(is_u & u_second, rec.new_order_ref, rec.order_ref)
        m.d.comb += [
            uop.ref.eq(ref), uop.addr.eq(fold(ref, OB)), uop.slot.eq(slot), uop.locate.eq(rec.stock_locate),
            uop.side.eq(rec.side), uop.price.eq(rec.price), uop.pt.eq(pt), uop.on_grid.eq(pt * TICK == rec.price),
            uop.shares.eq(rec.shares), uop.seq.eq(rec.seq), uop.timestamp.eq(rec.timestamp),
            uop.first.eq(~(is_u & u_second)), uop.last.eq(~(is_u & ~u_second)),
            uop.kind.eq(Mux(is_add, ADD, Mux(is_reduce, REDUCE, Mux(is_del, DELETE, Mux(u_second, UADD, UDEL))))),
            uop_valid.eq(go & book_msg),
        ]
        with m.If(is_u & book_msg & ~u_second):
            m.d.comb += c0_ready.eq(0)
            with m.If(go):
                m.d.sync += u_second.eq(1)
        with m.Else():
            m.d.comb += c0_ready.eq(space)
            with m.If(go):
                m.d.sync += u_second.eq(0)
                m.d.comb += csr.messages.eq(book_msg)

        # One memory per way, all read at the set's address; a write goes to one way.
        t_wrs, t_rds = [], []
        for w in range(NW):
            way = Memory(shape=Entry, depth=p.sets, init=[])
            m.submodules[f"way{w}"] = way
            t_wrs.append(way.write_port())
            t_rds.append(way.read_port(transparent_for=(t_wrs[-1],)))
            m.d.comb += t_rds[-1].addr.eq(uop.addr)
        t_wr = Signal(data.StructLayout({"en": 1, "way": range(NW), "data": Entry}))
        t_addr = Signal(OB)
        for w in range(NW):
            m.d.comb += [t_wrs[w].en.eq(t_wr.en & (t_wr.way == w)), t_wrs[w].data.eq(t_wr.data),
                         t_wrs[w].addr.eq(t_addr)]

        # -- r1: the order table and the policy -------------------------------------------------
        u1 = Signal(uop_layout)
        v1 = Signal()
        m.d.sync += [u1.eq(uop), v1.eq(uop_valid)]
        ways = [Signal(Entry, name=f"e1_way{w}") for w in range(NW)]
        live_w = Signal(NW)
        hit_w = Signal(NW)
        for w in range(NW):
            m.d.comb += [ways[w].eq(t_rds[w].data), live_w[w].eq(ways[w].shares != 0),
                         hit_w[w].eq(live_w[w] & (ways[w].tag == u1.ref[OB:]))]
        e1 = Signal(Entry)                   # the entry of the order (the lowest hit: there is at most one)
        hit_way = Signal(range(NW))
        free_way = Signal(range(NW))         # the lowest free way
        for w in reversed(range(NW)):
            with m.If(hit_w[w]):
                m.d.comb += [e1.eq(ways[w]), hit_way.eq(w)]
            with m.If(~live_w[w]):
                m.d.comb += free_way.eq(w)
        match = hit_w.any()
        full = live_w.all()
        udel_found = Signal()
        udel_side = Signal()
        adding = (u1.kind == ADD) | (u1.kind == UADD)
        add_side_ok = Signal()
        add_side = Signal()                  # 1 = sell
        with m.If(u1.kind == UADD):
            m.d.comb += [add_side_ok.eq(1), add_side.eq(udel_side)]
        with m.Else():
            m.d.comb += [add_side_ok.eq((u1.side == ord("B")) | (u1.side == ord("S"))),
                         add_side.eq(u1.side == ord("S"))]
        book_add = Cat(add_side, u1.slot)
        book_entry = Cat(e1.side, e1.slot)
        book = Signal(range(p.books))
        m.d.comb += book.eq(Mux(adding, book_add, book_entry))
        cur_orders = Signal.like(orders[0])      # of the add's book side (not behind the tag check)
        cur_base = Signal(32)
        entry_base = Signal(32)                  # of the order's book side
        m.d.comb += [cur_orders.eq(Array(orders)[book_add]), cur_base.eq(Array(base)[book_add]),
                     entry_base.eq(Array(base)[book_entry])]
        off = Signal(33)
        m.d.comb += off.eq(u1.pt - cur_base)
        inside = u1.on_grid & (u1.pt >= cur_base) & (off < W)
        recentre = Signal()
        new_base = Signal(32)
        m.d.comb += [recentre.eq((cur_orders == 0) & u1.on_grid & ~inside),
                     new_base.eq(Mux(u1.pt < W // 2, 0, u1.pt - W // 2))]
        base1 = Signal(32)                   # the book side's base after this operation
        m.d.comb += base1.eq(Mux(adding, Mux(recentre, new_base, cur_base), entry_base))

        lvl_op = Signal()
        idx = Signal(p.window_bits)
        dshares = Signal(p.level_shares_bits)  # added (mod 2**n): negative deltas are two's complement
        dcount = Signal(p.level_count_bits)
        lost_reason = Signal(2)
        inc = Signal()
        dec = Signal()
        rem_shares = Signal(32)
        m.d.comb += rem_shares.eq(Mux(u1.kind == REDUCE, u1.shares, e1.shares))
        m.d.comb += idx.eq(Mux(adding, u1.pt - base1, e1.idx))   # read even when nothing is written
        with m.If(v1):
            with m.If(adding):
                with m.If((u1.kind == UADD) & ~udel_found):
                    pass                       # the original was unknown: the replace does nothing
                with m.Elif(~add_side_ok | (u1.shares == 0)):
                    m.d.comb += csr.rejected.eq(1)
                with m.Elif(match):
                    m.d.comb += csr.duplicate.eq(1)
                with m.Elif(full):
                    m.d.comb += [csr.lost_collision.eq(1), lost_reason.eq(1)]
                with m.Elif(~inside & ~recentre):
                    m.d.comb += [csr.lost_window.eq(1), lost_reason.eq(2)]
                with m.Else():
                    m.d.comb += [csr.adds.eq(1), csr.recentred.eq(recentre), lvl_op.eq(1), inc.eq(1),
                                 dshares.eq(u1.shares), dcount.eq(1),
                                 t_wr.en.eq(1), t_wr.way.eq(free_way),
                                 t_wr.data.shares.eq(u1.shares), t_wr.data.tag.eq(u1.ref[OB:]),
                                 t_wr.data.slot.eq(u1.slot), t_wr.data.side.eq(add_side),
                                 t_wr.data.idx.eq(u1.pt - base1)]
            with m.Elif(~match | (e1.slot != u1.slot)):
                m.d.comb += csr.unknown.eq(1)
            with m.Else():
                m.d.comb += [lvl_op.eq(1), t_wr.en.eq(1), t_wr.way.eq(hit_way)]
                with m.If(rem_shares >= e1.shares):
                    m.d.comb += [csr.overfill.eq(rem_shares > e1.shares), dec.eq(1),
                                 dshares.eq(-e1.shares), dcount.eq(-1), t_wr.data.eq(0)]
                with m.Else():
                    m.d.comb += [dshares.eq(-rem_shares), t_wr.data.eq(e1),
                                 t_wr.data.shares.eq(e1.shares - rem_shares)]
            with m.If(u1.kind == UDEL):
                m.d.sync += [udel_found.eq(match & (e1.slot == u1.slot)), udel_side.eq(e1.side)]
        m.d.comb += t_addr.eq(u1.addr)

        # Live-order counts and window bases per book side; host window writes.
        wbook = csr.window[32:38]
        refused = Signal()
        with m.If(csr.window_w):
            with m.If((wbook < p.books) & (Array(orders)[wbook] == 0) & ~(v1 & (book == wbook))):
                m.d.sync += Array(base)[wbook].eq(csr.window[:32])
            with m.Else():
                m.d.comb += refused.eq(1)
        for b in range(p.books):
            with m.If(book == b):
                with m.If(inc):
                    m.d.sync += orders[b].eq(orders[b] + 1)
                    with m.If(recentre):
                        m.d.sync += base[b].eq(new_base)
                with m.Elif(dec):
                    m.d.sync += orders[b].eq(orders[b] - 1)
        # Host slot writes (refused while the slot holds orders).
        wslot = csr.slot[16:16 + SB]
        with m.If(csr.slot_w):
            busy = (Array(orders)[Cat(Const(0, 1), wslot)] != 0) | (Array(orders)[Cat(Const(1, 1), wslot)] != 0)
            with m.If(busy | (csr.slot[16:21] >= p.slots)):
                m.d.comb += refused.eq(1)
            with m.Else():
                m.d.sync += [Array(slot_locate)[wslot].eq(csr.slot[:16]), slot_valid.bit_select(wslot, 1).eq(csr.slot[24])]
        m.d.comb += csr.refused.eq(refused)

        # BOOK_LOST records.
        lost = Signal(LostRecord)
        m.d.comb += [
            lost.order_ref.eq(u1.ref), lost.instrument.eq(u1.locate), lost.reason.eq(lost_reason),
            lost.side.eq(Mux(add_side, ord("S"), ord("B"))), lost.price.eq(u1.price), lost.seq.eq(u1.seq),
            fifos["lost"].w_data.eq(lost), fifos["lost"].w_en.eq(lost_reason != 0),
        ]

        # Level memory (two read ports: the operation's level, and the new best level) and bitmaps.
        LevelWord = data.StructLayout({"shares": p.level_shares_bits, "count": p.level_count_bits})
        m.submodules.levels = levels = Memory(shape=LevelWord, depth=p.books * W, init=[])
        l_wr = levels.write_port()
        l_rd = levels.read_port(transparent_for=(l_wr,))
        l_best = levels.read_port(transparent_for=(l_wr,))
        m.submodules.bitmaps = bitmaps = Memory(shape=W, depth=p.books, init=[])
        b_wr = bitmaps.write_port()
        b_rd = bitmaps.read_port(transparent_for=(b_wr,))
        m.d.comb += [l_rd.addr.eq(Cat(idx, book)), b_rd.addr.eq(book)]

        # -- r2: level and bitmap update, best index ---------------------------------------------
        r2_layout = data.StructLayout({
            "lvl_op": 1, "book": range(p.books), "idx": p.window_bits, "dshares": p.level_shares_bits,
            "dcount": p.level_count_bits, "base": 32, "slot": SB, "locate": 16, "first": 1, "last": 1,
            "seq": 64, "timestamp": 48})
        u2 = Signal(r2_layout)
        v2 = Signal()
        m.d.sync += [
            v2.eq(v1), u2.lvl_op.eq(lvl_op), u2.book.eq(book), u2.idx.eq(idx), u2.dshares.eq(dshares),
            u2.dcount.eq(dcount), u2.base.eq(base1), u2.slot.eq(u1.slot), u2.locate.eq(u1.locate),
            u2.first.eq(u1.first), u2.last.eq(u1.last), u2.seq.eq(u1.seq), u2.timestamp.eq(u1.timestamp),
        ]
        lv = Signal(LevelWord)
        m.d.comb += [lv.shares.eq(l_rd.data.shares + u2.dshares), lv.count.eq(l_rd.data.count + u2.dcount)]
        bitmap = Signal(W)
        m.d.comb += bitmap.eq(b_rd.data)
        with m.If(v2 & u2.lvl_op):
            m.d.comb += bitmap.bit_select(u2.idx, 1).eq(lv.count != 0)
            m.d.comb += [l_wr.en.eq(1), l_wr.addr.eq(Cat(u2.idx, u2.book)), l_wr.data.eq(lv),
                         b_wr.en.eq(1), b_wr.addr.eq(u2.book), b_wr.data.eq(bitmap)]
        is_ask = u2.book[0]
        best_idx = Signal(p.window_bits)     # the lowest set bit for asks, the highest for bids
        scan = Signal(W)
        m.d.comb += scan.eq(Mux(is_ask, bitmap, Cat(*reversed([bitmap[i] for i in range(W)]))))
        _, scan_idx = lowest_set(scan)
        m.d.comb += best_idx.eq(Mux(is_ask, scan_idx, (W - 1) - scan_idx))
        m.d.comb += l_best.addr.eq(Cat(best_idx, u2.book))
        level = Signal(LevelRecord)
        m.d.comb += [
            level.price.eq((u2.base + u2.idx) * TICK), level.instrument.eq(u2.locate), level.orders.eq(lv.count),
            level.shares.eq(lv.shares), level.side.eq(Mux(is_ask, ord("S"), ord("B"))), level.seq.eq(u2.seq),
            fifos["level"].w_data.eq(level), fifos["level"].w_en.eq(v2 & u2.lvl_op),
        ]
        Quote = data.StructLayout({"bid_price": 32, "bid_size": p.level_shares_bits,
                                   "ask_price": 32, "ask_size": p.level_shares_bits})
        m.submodules.quotes = quotes = Memory(shape=Quote, depth=p.slots, init=[])
        q_wr = quotes.write_port()
        q_rd = quotes.read_port(transparent_for=(q_wr,))
        m.d.comb += q_rd.addr.eq(u2.slot)

        # -- r3: best of the side, the instrument's quote, TOB -----------------------------------
        u3 = Signal(r2_layout)
        v3 = Signal()
        best3 = Signal(p.window_bits)
        nonempty3 = Signal()
        m.d.sync += [u3.eq(u2), v3.eq(v2), best3.eq(best_idx), nonempty3.eq(bitmap.any())]
        best_price = Signal(32)
        best_size = Signal(p.level_shares_bits)
        with m.If(nonempty3):
            m.d.comb += [best_price.eq((u3.base + best3) * TICK), best_size.eq(l_best.data.shares)]
        old = Signal(Quote)
        new = Signal(Quote)
        m.d.comb += [old.eq(q_rd.data), new.eq(old)]
        with m.If(u3.lvl_op):
            with m.If(u3.book[0]):
                m.d.comb += [new.ask_price.eq(best_price), new.ask_size.eq(best_size)]
            with m.Else():
                m.d.comb += [new.bid_price.eq(best_price), new.bid_size.eq(best_size)]
        before_reg = Signal(Quote)
        before = Signal(Quote)
        m.d.comb += before.eq(Mux(u3.first, old, before_reg))
        with m.If(v3):
            m.d.sync += before_reg.eq(before)
            m.d.comb += [q_wr.en.eq(u3.lvl_op), q_wr.addr.eq(u3.slot), q_wr.data.eq(new)]
        tob = Signal(TobRecord)
        m.d.comb += [
            tob.instrument.eq(u3.locate), tob.timestamp.eq(u3.timestamp), tob.seq.eq(u3.seq),
            tob.bid_price.eq(new.bid_price), tob.bid_size.eq(new.bid_size),
            tob.ask_price.eq(new.ask_price), tob.ask_size.eq(new.ask_size),
            fifos["tob"].w_data.eq(tob),
            fifos["tob"].w_en.eq(v3 & u3.last & (new.as_value() != before.as_value())),
            csr.tob.eq(fifos["tob"].w_en),
        ]
        with m.If(clearing):                 # overrides the writes above (nothing is in flight)
            for port in (*t_wrs, l_wr, b_wr, q_wr):
                m.d.comb += [port.en.eq(1), port.addr.eq(clr), port.data.eq(0)]
        return m
