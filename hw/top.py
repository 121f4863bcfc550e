"""The core: every pipeline stage that exists, wired, with the register bank.

Four interfaces, as a NIC has them: frames in from the network (``rx``),
frames out to the network (``tx``, today the frames the host sends through
``host_tx``), events to the host (``events``, see ``protocols/events.py``)
and the register bus (``bus``). Inside: Ethernet/IPv4/UDP -> MoldUDP64 ->
event stream, and a free-running cycle counter that timestamps every event.
The core runs in one ``sync`` domain; board tops and the simulated NIC wrap it.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.csr import BusSignature, CsrBank
from hw.ethrx import EthRx
from hw.events import EventMux
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
        m.submodules.events = events = EventMux()
        connect(m, csr.events, events.csr)
        connect(m, mold.o, events.msg)
        connect(m, mold.gap, events.gap)
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
