"""Everything of a board top but its clocks and pins: the core, one or two MACs, the host link.

::

    port 0 (market) ─► Mac ─► Top.rx ... Top.tx ─► Mac ─► port 0
                                 Top.events ─► HostLink ─► Mac ─► port 1 (host)
                   Top.host_tx ◄─ HostLink (SEND) ◄─ Mac ◄─ port 1
                        Top.bus ◄─ HostLink ─► board registers (MACs, MDIO, link)

On a board with one Ethernet port the host link shares it: every received
frame goes to both the core and the link (each keeps what is addressed to it:
the link only its UDP port, the core what ``eth.filter`` lets through), and
the two transmit streams are merged a whole frame at a time.

The core runs in ``sync``; the MACs need ``eth_tx`` (125 MHz) and the TXC
domain named by the board; the parent makes them. With ``pads=None`` the MACs
use the generic DDR model and the pins are ports (Verilator).
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.csr import CsrBank
from hw.hostlink import HostLink
from hw.mac import Mac
from hw.mac.mdio import Mdio, connect_pins
from hw.mac.rgmii import RgmiiPadSignature
from hw.stream import Beat
from protocols import hostlink as link

from hw.boards.registers import BOARD_REGISTER_MAP


class FrameMerge(wiring.Component):
    """Two frame streams into one, a whole frame at a time (``a`` first when both wait)."""

    a: In(stream.Signature(Beat))
    b: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))

    def elaborate(self, platform):
        m = Module()
        busy, sel = Signal(), Signal()
        pick = Signal()                 # the frame being passed is b's
        with m.If(~busy):
            m.d.comb += pick.eq(~self.a.valid & self.b.valid)
        with m.Else():
            m.d.comb += pick.eq(sel)
        with m.If(pick):
            m.d.comb += [self.o.payload.eq(self.b.payload), self.o.valid.eq(self.b.valid),
                         self.b.ready.eq(self.o.ready)]
        with m.Else():
            m.d.comb += [self.o.payload.eq(self.a.payload), self.o.valid.eq(self.a.valid),
                         self.a.ready.eq(self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [busy.eq(~self.o.payload.last), sel.eq(pick)]
        return m


class Fork(wiring.Component):
    """One frame stream to two sinks; a beat leaves when both have taken it."""

    i: In(stream.Signature(Beat))
    a: Out(stream.Signature(Beat))
    b: Out(stream.Signature(Beat))

    def elaborate(self, platform):
        m = Module()
        a_done, b_done = Signal(), Signal()
        m.d.comb += [self.a.payload.eq(self.i.payload), self.b.payload.eq(self.i.payload),
                     self.a.valid.eq(self.i.valid & ~a_done), self.b.valid.eq(self.i.valid & ~b_done)]
        a_fin = a_done | self.a.ready
        b_fin = b_done | self.b.ready
        m.d.comb += self.i.ready.eq(a_fin & b_fin)
        with m.If(self.i.valid & a_fin & b_fin):
            m.d.sync += [a_done.eq(0), b_done.eq(0)]
        with m.Elif(self.i.valid):
            m.d.sync += [a_done.eq(a_fin), b_done.eq(b_fin)]
        return m


class BoardCore(wiring.Component):
    """The core with its MACs, host link and board registers.

    Parameters
    ----------
    top : the core (``hw.top.Top``)
    pads : list of one or two ``eth_rgmii`` resources, or None for two modelled ports
    mac_args : ``Mac`` keyword arguments per port (TXC domain, receive delay)
    board_mac, board_ip : the host link's Ethernet and IPv4 address
    mdio_reset_cycles : PHY reset after power-up, in core cycles
    """

    def __init__(self, top, *, pads=None, ports: int = 2, mac_args=({}, {}), board_mac, board_ip: int,
                 mdio_reset_cycles: int = 1 << 21):
        self.top = top
        self._pads = pads
        self.ports = len(pads) if pads is not None else ports
        self._mac_args = mac_args
        self.board_mac, self.board_ip = board_mac, board_ip
        self._mdio_reset_cycles = mdio_reset_cycles
        members = {}
        if pads is None:
            for n in range(self.ports):
                members[f"pads{n}"] = Out(RgmiiPadSignature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.board_csr = bank = CsrBank(BOARD_REGISTER_MAP)
        m.submodules.link = lk = HostLink(mac=self.board_mac, ip=self.board_ip)
        m.submodules.mdio = mdio = Mdio(reset_cycles=self._mdio_reset_cycles)
        connect(m, lk.core_bus, top.bus)
        connect(m, lk.board_bus, bank.bus)
        connect(m, bank.hostlink, lk.csr)
        connect(m, bank.mdio, mdio.csr)
        connect(m, top.events, lk.events)
        m.d.comb += lk.orders.valid.eq(0)          # no order encoder in the core yet
        connect(m, lk.market, top.host_tx)

        macs = []
        for n in range(self.ports):
            pads = None if self._pads is None else self._pads[n]
            mac = Mac(pads, **self._mac_args[n])
            m.submodules[f"mac{n}"] = mac
            connect(m, getattr(bank, f"mac{n}"), mac.csr)
            if pads is None:
                connect(m, mac.pads, wiring.flipped(getattr(self, f"pads{n}")))
            macs.append(mac)
        if self._pads is not None:
            connect_pins(m, mdio, self._pads[0])

        if self.ports == 2:
            connect(m, macs[0].rx, top.rx)
            connect(m, top.tx, macs[0].tx)
            connect(m, macs[1].rx, lk.rx)
            connect(m, lk.tx, macs[1].tx)
        else:
            m.submodules.fork = fork = Fork()
            m.submodules.merge = merge = FrameMerge()
            connect(m, macs[0].rx, fork.i)
            connect(m, fork.a, top.rx)
            connect(m, fork.b, lk.rx)
            connect(m, lk.tx, merge.a)
            connect(m, top.tx, merge.b)
            connect(m, merge.o, macs[0].tx)
        return m


def default_board_address():
    """The host link's default addresses: a locally administered MAC and 10.1.0.2 (host 10.1.0.1)."""
    from protocols.net import ip_to_int, mac_to_bytes
    return mac_to_bytes("02:ca:1a:4b:00:01"), ip_to_int("10.1.0.2")


__all__ = ["BoardCore", "Fork", "FrameMerge", "default_board_address", "link"]
