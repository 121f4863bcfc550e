"""The core: every pipeline stage that exists, wired, with the register bank.

Today: frames in -> Ethernet/IPv4/UDP -> MoldUDP64 -> messages out, gap
events out, and the register bus. The core runs in one ``sync`` domain; board
tops and the simulated NIC wrap it.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.csr import BusSignature, CsrBank
from hw.ethrx import EthRx
from hw.moldudp64 import GapEvent, MessageBeat, MoldUdp64
from hw.stream import Beat
from protocols.registers import REGISTER_MAP

MAGIC = 0xCA1A4B00


class Top(wiring.Component):
    """The calarb core.

    Attributes
    ----------
    rx : stream of Beat
        Ethernet frames from the network (no FCS).
    msg : stream of MessageBeat
        MoldUDP64 messages, one packet each, with their sequence numbers.
    gap : stream of GapEvent
        Sequence gaps detected on the feed.
    bus : register bus (see ``docs/registers.md``)
    """

    rx: In(stream.Signature(Beat))
    msg: Out(stream.Signature(MessageBeat))
    gap: Out(stream.Signature(GapEvent))
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
        connect(m, mold.o, wiring.flipped(self.msg))
        connect(m, mold.gap, wiring.flipped(self.gap))

        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += [csr.top.magic.eq(MAGIC), csr.top.cycle.eq(cycle)]
        return m


def build_top() -> Top:
    """The core as ``make synth`` and the simulations build it."""
    return Top()
