"""RGMII at 1000 Mb/s: the PHY-facing DDR I/O, turning 4-bit DDR pins into one byte per clock.

RGMII carries a byte per 125 MHz clock: bits 3:0 and ``DV``/``EN`` on the
rising edge, bits 7:4 and ``DV xor ER``/``EN xor ER`` on the falling edge.
:class:`RgmiiIO` converts between the pins and a GMII-like byte interface
(``dv, er, data`` in, ``en, er, data`` out) in the receive and transmit
clock domains.

On a board (``pads`` is a platform resource) the DDR registers are
``amaranth.lib.io.DDRBuffer``, so the vendor primitives (ECP5 ``IDDRX1F`` /
``ODDRX1F``) come from the platform. Amaranth 0.5 has no simulation model of
DDR buffers, so with ``pads=None`` the same registers are modelled in plain,
synthesizable logic (:class:`DdrModel`): a rising-edge and a falling-edge
register per input bit, and for outputs a rising- and a falling-edge register
selected by the clock level. That model is what Verilator runs against
cocotbext-eth's RGMII PHY model and what ``amaranth.sim`` runs in unit tests.

Clock-to-data skew. RGMII sends clock and data edge-aligned; someone must
delay the clock by about 2 ns (a quarter period) before it samples data. For
transmit, either the PHY adds the delay (``txc_domain`` equal to the transmit
domain: TXC is forwarded in phase) or the FPGA does, by forwarding TXC from a
clock 90 degrees behind the data clock (``txc_domain`` a PLL output at 90
degrees). For receive, either the PHY delays RXC (``rx_delay_taps=None``,
the default) or the FPGA delays the received clock through an ECP5 ``DELAYG``
(``rx_delay_taps`` of about 25 ps each). Which one each board needs is in
``docs/boards.md``.
"""

from amaranth import ClockDomain, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import data, io, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["GmiiRxSignature", "GmiiTxSignature", "RgmiiPadSignature", "DdrModel", "RgmiiIO"]


class GmiiRxSignature(wiring.Signature):
    """One received byte per clock, as the PHY I/O drives it: ``dv``, ``er``, ``data``."""

    def __init__(self):
        super().__init__({"dv": Out(1), "er": Out(1), "data": Out(8)})


class GmiiTxSignature(wiring.Signature):
    """One byte to transmit per clock, as the MAC drives it: ``en``, ``er``, ``data``."""

    def __init__(self):
        super().__init__({"en": Out(1), "er": Out(1), "data": Out(8)})


class RgmiiPadSignature(wiring.Signature):
    """The RGMII pins as plain signals, from the MAC's side (simulation and Verilator)."""

    def __init__(self):
        super().__init__({
            "rx_clk": In(1), "rx_ctl": In(1), "rx_data": In(4),
            "tx_clk": Out(1), "tx_ctl": Out(1), "tx_data": Out(4),
        })


class DdrModel(wiring.Component):
    """A generic DDR register pair with the ports and timing of ``io.DDRBuffer``, on a plain signal.

    Input: ``i[0]`` is the value at a rising edge, ``i[1]`` at the falling edge
    half a period later; both appear together after the next rising edge.
    Output: ``o[0]`` is driven for the high half of the clock period after the
    rising edge that samples it, ``o[1]`` for the low half.
    """

    def __init__(self, direction, width: int, *, domain: str):
        self._direction = io.Direction(direction)
        self._domain = domain
        pair = data.ArrayLayout(width, 2)
        if self._direction is io.Direction.Input:
            members = {"pad": In(width), "i": Out(pair)}
        elif self._direction is io.Direction.Output:
            members = {"o": In(pair), "pad": Out(width)}
        else:
            raise ValueError("DdrModel models input or output buffers, not bidirectional ones")
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.fall = ClockDomain(clk_edge="neg", local=True, reset_less=True)
        m.d.comb += ClockSignal("fall").eq(ClockSignal(self._domain))
        width = len(self.pad)
        if self._direction is io.Direction.Input:
            rise, fall = Signal(width, reset_less=True), Signal(width, reset_less=True)
            m.d[self._domain] += [rise.eq(self.pad), self.i[0].eq(rise), self.i[1].eq(fall)]
            m.d.fall += fall.eq(self.pad)
        else:
            d0, d1, d1n = (Signal(width, reset_less=True) for _ in range(3))
            m.d[self._domain] += [d0.eq(self.o[0]), d1.eq(self.o[1])]
            m.d.fall += d1n.eq(d1)
            m.d.comb += self.pad.eq(Mux(ClockSignal(self._domain), d0, d1n))
        return m


def _subsignal(pads, *names):
    for name in names:
        if hasattr(pads, name):
            return getattr(pads, name)
    raise AttributeError(f"RGMII resource has none of the subsignals {', '.join(names)}")


class RgmiiIO(wiring.Component):
    """RGMII pins <-> one byte per clock.

    Parameters
    ----------
    pads : platform resource or None
        ``platform.request("eth_rgmii", n, dir="-")`` (subsignals ``rx_clk``,
        ``rx_ctl`` or ``rx_ctrl``, ``rx_data``, ``tx_clk``, ``tx_ctl`` or
        ``tx_ctrl``, ``tx_data``), or None for the generic model with a
        ``pads`` port.
    rx_domain : str
        Domain that ``rx_clk`` (the received clock) must drive; the parent
        creates it from the ``rx_clk`` output of this component.
    tx_domain, txc_domain : str
        Transmit data domain (125 MHz) and the domain forwarded as TXC.
    rx_delay_taps : int or None
        ECP5 ``DELAYG`` taps on the received clock, None if the PHY delays RXC.

    Attributes
    ----------
    rx_clk : out
        The received clock, to drive ``rx_domain``.
    rx : GMII receive byte in ``rx_domain`` (two cycles after the pins).
    tx : GMII transmit byte in ``tx_domain``.
    pads : RGMII pins (only with ``pads=None``).
    """

    def __init__(self, pads=None, *, rx_domain="eth_rx", tx_domain="eth_tx", txc_domain="eth_tx90",
                 rx_delay_taps=None):
        self._pads = pads
        self._rx_domain, self._tx_domain, self._txc_domain = rx_domain, tx_domain, txc_domain
        self._rx_delay_taps = rx_delay_taps
        members = {"rx_clk": Out(1), "rx": Out(GmiiRxSignature()), "tx": In(GmiiTxSignature())}
        if pads is None:
            members["pads"] = Out(RgmiiPadSignature())
        super().__init__(members)

    def _buffers(self, m):
        """DDR buffers (or their models) for rx (ctl+data), tx (ctl+data) and TXC."""
        rx_dom, tx_dom, txc_dom = self._rx_domain, self._tx_domain, self._txc_domain
        if self._pads is None:
            pads = self.pads
            rx = DdrModel("i", 5, domain=rx_dom)
            tx = DdrModel("o", 5, domain=tx_dom)
            txc = DdrModel("o", 1, domain=txc_dom)
            m.d.comb += [rx.pad.eq(pads.rx_ctl | (pads.rx_data << 1)), pads.tx_ctl.eq(tx.pad[0]),
                         pads.tx_data.eq(tx.pad[1:]), pads.tx_clk.eq(txc.pad), self.rx_clk.eq(pads.rx_clk)]
        else:
            pads = self._pads
            rx_pins = _subsignal(pads, "rx_ctl", "rx_ctrl") + pads.rx_data
            tx_pins = _subsignal(pads, "tx_ctl", "tx_ctrl") + pads.tx_data
            rx = io.DDRBuffer("i", rx_pins, i_domain=rx_dom)
            tx = io.DDRBuffer("o", tx_pins, o_domain=tx_dom)
            txc = io.DDRBuffer("o", pads.tx_clk, o_domain=txc_dom)
            m.submodules.rx_clk_buf = clk_buf = io.Buffer("i", pads.rx_clk)
            if self._rx_delay_taps is None:
                m.d.comb += self.rx_clk.eq(clk_buf.i)
            else:   # ECP5 input delay, about 25 ps per tap (DEL_VALUE 0..127)
                m.submodules.rx_clk_delay = Instance(
                    "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=int(self._rx_delay_taps),
                    i_A=clk_buf.i, o_Z=self.rx_clk)
        m.submodules.rx_ddr, m.submodules.tx_ddr, m.submodules.txc_ddr = rx, tx, txc
        return rx, tx, txc

    def elaborate(self, platform):
        m = Module()
        rx, tx, txc = self._buffers(m)
        # Bit 0 of each DDR word is the control line, bits 1-4 the data nibble.
        rise, fall = rx.i[0], rx.i[1]
        m.d.comb += [
            self.rx.dv.eq(rise[0]),
            self.rx.er.eq(rise[0] ^ fall[0]),
            self.rx.data.eq(rise[1:] | (fall[1:] << 4)),
            tx.o[0].eq(self.tx.en | (self.tx.data[0:4] << 1)),
            tx.o[1].eq((self.tx.en ^ self.tx.er) | (self.tx.data[4:8] << 1)),
            txc.o[0].eq(1),
            txc.o[1].eq(0),
        ]
        return m
