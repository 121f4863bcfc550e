"""Market-by-price book: the top levels of each option series from FAST price-level updates.

FAST incremental refreshes are level-based (like CME MDP): an entry says
*insert at level i* (``new``: the levels from i down shift one deeper, the
last falls off), *replace level i* (``change``) or *remove level i*
(``delete``: deeper levels shift up). The book keeps, per option series in
its slot table and per side, ``depth`` levels (valid, price4, size) in one
block-RAM row per series, and emits a top-of-book record
(``protocols.events.TOB_LAYOUT``, as the ITCH book's) whenever an update
changes the best bid or ask price or size.

The slot table (``slots`` security ids, compared in parallel) fills in order
of first appearance; updates of further securities are counted and dropped.
Updates with level 0 or beyond ``depth``, or an action other than
new/change/delete, are counted and ignored. ``host/mbpbook.py`` is the
golden model of exactly these rules.

Pipeline: c0 takes the update, finds or allocates its slot and reads the
row (the read port is transparent to the write port, so the previous
update's write is seen: back-to-back updates of one series need no stall);
c1 applies the operation, writes the row back and compares the best levels.
One update per cycle; a TOB record enters the output FIFO at the end of c1.
TOB fields: ``instrument`` = security id bits 0-15, ``timestamp`` =
SendingTime bits 0-47, ``seq`` = the message's MsgSeqNum; sizes are kept as
32 bits.
"""

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.fast import UpdateRecord
from protocols.events import TOB_LAYOUT
from protocols.fast.levels import CHANGE, DELETE, NEW
from protocols.registers_fast import MBP

TobRecord = data.StructLayout({**dict(TOB_LAYOUT), "seq": 64})
Level = data.StructLayout({"valid": 1, "price": 32, "size": 32})
FIFO_DEPTH = 8


@dataclass(frozen=True)
class MbpParams:
    """Option series tracked and levels kept per side."""

    slots: int = 64
    depth: int = 5


class MbpBook(wiring.Component):
    """The market-by-price book (see the module doc).

    Attributes
    ----------
    i : stream of UpdateRecord
    tob : stream of TobRecord
    csr : registers of the ``mbp`` block
    """

    def __init__(self, params: MbpParams = MbpParams()):
        self.params = params
        super().__init__({
            "i": In(stream.Signature(UpdateRecord)),
            "tob": Out(stream.Signature(TobRecord)),
            "csr": In(block_signature(MBP)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        N = p.depth
        Side = data.ArrayLayout(Level, N)
        Row = data.StructLayout({"bid": Side, "ask": Side})
        m.submodules.rows = rows = Memory(shape=Row, depth=p.slots, init=[])
        wr = rows.write_port()
        rd = rows.read_port(transparent_for=(wr,))
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=TobRecord.size, depth=FIFO_DEPTH)
        m.d.comb += [self.tob.payload.eq(fifo.r_data), self.tob.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.tob.ready)]

        # -- c0: slot lookup / allocation, row read --
        u = self.i.payload
        ready = Signal()
        m.d.comb += [ready.eq(fifo.level <= FIFO_DEPTH - 3), self.i.ready.eq(ready)]
        accept = self.i.valid & ready
        sid = [Signal(32, name=f"sid{k}") for k in range(p.slots)]
        used = Signal(p.slots)
        nfree = Signal(range(p.slots + 1))
        hit = Signal()
        slot = Signal(range(p.slots))
        for k in range(p.slots):
            with m.If(used[k] & (sid[k] == u.security_id)):
                m.d.comb += [hit.eq(1), slot.eq(k)]
        with m.If(~hit):
            m.d.comb += slot.eq(nfree)
        full = Signal()
        m.d.comb += full.eq(nfree == p.slots)
        m.d.comb += [rd.addr.eq(slot), rd.en.eq(accept)]
        op = Signal(UpdateRecord)
        op_slot = Signal.like(slot)
        op_valid = Signal()
        m.d.sync += op_valid.eq(0)
        with m.If(accept):
            with m.If(~hit & full):
                m.d.comb += self.csr.untracked.eq(1)
            with m.Else():
                m.d.sync += [op.eq(u), op_slot.eq(slot), op_valid.eq(1)]
                with m.If(~hit):
                    m.d.sync += [sid[k].eq(u.security_id) for k in range(0)]
                    for k in range(p.slots):
                        with m.If(nfree == k):
                            m.d.sync += [sid[k].eq(u.security_id), used[k].eq(1)]
                    m.d.sync += nfree.eq(nfree + 1)

        # -- c1: apply, write back, compare the best levels --
        row = Signal(Row)
        new_row = Signal(Row)
        m.d.comb += [row.eq(rd.data), new_row.eq(row)]
        lvl = Signal(range(N + 1))
        in_range = Signal()
        m.d.comb += [in_range.eq((op.level >= 1) & (op.level <= N)), lvl.eq(op.level - 1)]
        known = Signal()
        m.d.comb += known.eq((op.action == NEW) | (op.action == CHANGE) | (op.action == DELETE))
        entry = Signal(Level)
        m.d.comb += [entry.valid.eq(1), entry.price.eq(op.price4), entry.size.eq(op.size[:32])]
        for side_bit, name in ((0, "bid"), (1, "ask")):
            cur, nxt = getattr(row, name), getattr(new_row, name)
            with m.If(op.side == side_bit):
                for j in range(N):
                    with m.Switch(op.action):
                        with m.Case(NEW):
                            with m.If(lvl == j):
                                m.d.comb += nxt[j].eq(entry)
                            if j > 0:
                                with m.If(lvl < j):
                                    m.d.comb += nxt[j].eq(cur[j - 1])
                        with m.Case(CHANGE):
                            with m.If(lvl == j):
                                m.d.comb += nxt[j].eq(entry)
                        with m.Case(DELETE):
                            with m.If(lvl <= j):
                                m.d.comb += nxt[j].eq(cur[j + 1] if j + 1 < N else 0)
        apply = op_valid & in_range & known
        m.d.comb += [wr.addr.eq(op_slot), wr.data.eq(new_row), wr.en.eq(apply),
                     self.csr.updates.eq(apply), self.csr.ignored.eq(op_valid & ~(in_range & known))]

        def best(side):
            top = side[0]
            return Mux(top.valid, top.price, 0), Mux(top.valid, top.size, 0)

        ob, obs = best(row.bid)
        oa, oas = best(row.ask)
        nb, nbs = best(new_row.bid)
        na, nas = best(new_row.ask)
        changed = Signal()
        m.d.comb += changed.eq(apply & ((ob != nb) | (obs != nbs) | (oa != na) | (oas != nas)))
        rec = Signal(TobRecord)
        m.d.comb += [rec.instrument.eq(op.security_id[:16]), rec.timestamp.eq(op.sending_time[:48]),
                     rec.bid_price.eq(nb), rec.ask_price.eq(na), rec.bid_size.eq(nbs), rec.ask_size.eq(nas),
                     rec.seq.eq(op.msg_seq)]
        m.d.comb += [fifo.w_data.eq(rec), fifo.w_en.eq(changed), self.csr.tob.eq(changed)]
        return m


class TobMerge(wiring.Component):
    """Two TOB streams (the ITCH book's and this book's) into the one the event stream and the trigger
    take: round robin when both are valid, a record at most one cycle in each input's skid register."""

    a: In(stream.Signature(TobRecord))
    b: In(stream.Signature(TobRecord))
    o: Out(stream.Signature(TobRecord))

    def elaborate(self, platform):
        m = Module()
        prefer_b = Signal()
        take_b = Signal()
        m.d.comb += take_b.eq(self.b.valid & (prefer_b | ~self.a.valid))
        free = ~self.o.valid | self.o.ready
        m.d.comb += [self.a.ready.eq(free & ~take_b), self.b.ready.eq(free & take_b)]
        with m.If(free):
            m.d.sync += self.o.valid.eq(self.a.valid | self.b.valid)
            with m.If(take_b):
                m.d.sync += [self.o.payload.eq(self.b.payload), prefer_b.eq(0)]
            with m.Elif(self.a.valid):
                m.d.sync += [self.o.payload.eq(self.a.payload), prefer_b.eq(1)]
        return m
