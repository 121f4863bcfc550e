"""The core: every pipeline stage that exists, wired, with the register bank.

Four interfaces, as a NIC has them: frames in from the network (``rx``),
frames out to the network (``tx``, today the frames the host sends through
``host_tx``), events to the host (``events``, see ``protocols/events.py``)
and the register bus (``bus``). Inside: Ethernet/IPv4/UDP -> MoldUDP64 -> ITCH
decoder -> event stream, and a free-running cycle counter that timestamps every event.
The core runs in one ``sync`` domain; board tops and the simulated NIC wrap it.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.csr import BusSignature, CsrBank
from hw.ethrx import EthRx
from amaranth.lib.fifo import SyncFIFOBuffered

from hw.events import EventMux
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
        # Decoded records wait in a small FIFO while the event stream finishes a packet.
        m.submodules.records = records = SyncFIFOBuffered(width=ItchRecord.size, depth=4)
        m.d.comb += [
            records.w_data.eq(itch.o.payload.as_value()), records.w_en.eq(itch.o.valid),
            itch.o.ready.eq(records.w_rdy),
            events.itch.payload.eq(records.r_data), events.itch.valid.eq(records.r_rdy),
            records.r_en.eq(events.itch.ready),
        ]
        connect(m, events.o, wiring.flipped(self.events))
        connect(m, wiring.flipped(self.host_tx), wiring.flipped(self.tx))
        m.d.comb += csr.tx.frames.eq(self.host_tx.valid & self.host_tx.ready & self.host_tx.payload.last)

        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += [csr.top.magic.eq(MAGIC), csr.top.cycle.eq(cycle), events.cycle.eq(cycle)]
        return m


def build_top() -> Top:
    """The core as ``make synth`` and the simulations build it."""
    return Top()
