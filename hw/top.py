"""The core: every pipeline stage that exists, wired, with the register bank.

Four interfaces, as a NIC has them: frames in from the network (``rx``),
frames out to the network (``tx``, today the frames the host sends through
``host_tx``), events to the host (``events``, see ``protocols/events.py``)
and the register bus (``bus``). Inside: Ethernet/IPv4/UDP -> MoldUDP64 -> ITCH
decoder -> order book (``hw/book.py``) -> event stream, and a free-running cycle counter that timestamps every event.
The core runs in one ``sync`` domain; board tops and the simulated NIC wrap it.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.csr import BusSignature, CsrBank
from hw.ethrx import EthRx
from amaranth.lib.fifo import SyncFIFOBuffered

from hw.book import Book
from hw.events import EventMux
from hw.ordertable import BookParams
from hw.itch import ItchDecoder, ItchRecord
from hw.moldudp64 import MoldUdp64
from hw.stream import Beat
from protocols.registers import REGISTER_MAP

MAGIC = 0xCA1A4B00


class Top(wiring.Component):
    """The calarb core.

    Attributes
    ----------
    rx : stream of Beat
        Ethernet frames from the network (no FCS).
    tx : stream of Beat
        Ethernet frames to the network.
    host_tx : stream of Beat
        Frames the host asks the NIC to send.
    events : stream of Beat
        Event packets to the host.
    bus : register bus (see ``docs/registers.md``)
    """

    rx: In(stream.Signature(Beat))
    tx: Out(stream.Signature(Beat))
    host_tx: In(stream.Signature(Beat))
    events: Out(stream.Signature(Beat))
    bus: In(BusSignature())

    def __init__(self, book: BookParams = BookParams()):
        self.book_params = book
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = CsrBank(REGISTER_MAP)
        m.submodules.eth = eth = EthRx()
        m.submodules.mold = mold = MoldUdp64()

        connect(m, wiring.flipped(self.bus), csr.bus)
        connect(m, csr.eth, eth.csr)
        connect(m, csr.mold, mold.csr)
        connect(m, wiring.flipped(self.rx), eth.i)
        connect(m, eth.o, mold.i)
        m.submodules.itch = itch = ItchDecoder()
        connect(m, csr.itch, itch.csr)
        m.submodules.events = events = EventMux()
        connect(m, csr.events, events.csr)
        connect(m, mold.gap, events.gap)
        # Each message goes to the decoder and to the event stream (as a MESSAGE event if asked).
        m.d.comb += [
            events.msg.payload.eq(mold.o.payload),
            itch.i.payload.eq(mold.o.payload),
            events.msg.valid.eq(mold.o.valid & itch.i.ready),
            itch.i.valid.eq(mold.o.valid & events.msg.ready),
            mold.o.ready.eq(events.msg.ready & itch.i.ready),
        ]
        # Decoded records wait in a small FIFO, then go to the book and (if asked) to the event stream.
        m.submodules.records = records = SyncFIFOBuffered(width=ItchRecord.size, depth=4)
        m.submodules.book = book = Book(self.book_params)
        connect(m, csr.book, book.csr)
        to_events = csr.events.control[1]
        book_done, ev_done = Signal(), Signal()     # a fork: each side takes the record once
        book_fin, ev_fin = Signal(), Signal()
        m.d.comb += [
            records.w_data.eq(itch.o.payload.as_value()), records.w_en.eq(itch.o.valid),
            itch.o.ready.eq(records.w_rdy),
            events.itch.payload.eq(records.r_data), book.i.payload.eq(records.r_data),
            book.i.valid.eq(records.r_rdy & ~book_done),
            events.itch.valid.eq(records.r_rdy & to_events & ~ev_done),
            book_fin.eq(book_done | (book.i.valid & book.i.ready)),
            ev_fin.eq(ev_done | ~to_events | (events.itch.valid & events.itch.ready)),
            records.r_en.eq(book_fin & ev_fin),
        ]
        with m.If(records.r_rdy & book_fin & ev_fin):
            m.d.sync += [book_done.eq(0), ev_done.eq(0)]
        with m.Else():
            m.d.sync += [book_done.eq(book_fin), ev_done.eq(ev_done | (events.itch.valid & events.itch.ready))]
        connect(m, book.tob, events.tob)
        connect(m, book.lost, events.lost)
        connect(m, book.level, events.level)
        connect(m, events.o, wiring.flipped(self.events))
        connect(m, wiring.flipped(self.host_tx), wiring.flipped(self.tx))
        m.d.comb += csr.tx.frames.eq(self.host_tx.valid & self.host_tx.ready & self.host_tx.payload.last)

        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += [csr.top.magic.eq(MAGIC), csr.top.cycle.eq(cycle), events.cycle.eq(cycle)]
        return m


def build_top(book: BookParams = BookParams()) -> Top:
    """The core as ``make synth`` and the simulations build it."""
    return Top(book)


SMALL_BOOK = BookParams(set_bits=9, ways=8, window_bits=6, slots=16)
"""Book parameters for the LFE5U-25F (56 EBR): 4,096 orders (512 sets of 8 ways), 64-tick windows, 16 instruments."""


def build_top_25f() -> Top:
    """The core with the smaller book that fits the LFE5U-25F."""
    return Top(SMALL_BOOK)
