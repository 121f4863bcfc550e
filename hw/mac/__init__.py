"""A 1000BASE-T RGMII Ethernet MAC between the PHY pins and the core's 64-bit beat streams.

::

    RGMII pins ─► RgmiiIO ─► MacRx ─► BytesToBeats ─► AsyncFIFO ─► rx (Beat, sync)
      (DDR)        eth_rx     bytes     eth_rx                         verdicts ─► counters
    RGMII pins ◄─ RgmiiIO ◄─ MacTx ◄─ BeatsToBytes ◄─ AsyncFIFO ◄─ tx (Beat, sync)
                   eth_tx

The receive side runs in ``eth_rx``, a domain local to the MAC driven by the
PHY's receive clock (so two MACs never share it); the transmit side runs in
the parent's 125 MHz ``tx_domain`` and forwards ``txc_domain`` as TXC.
Frames reach the core without preamble and FCS, cut-through: a frame that
turns out bad (FCS, RX_ER, runt, oversize, FIFO overflow) ends with ``abort``
on its last beat and is counted under one ``rx_drop_*`` counter. The core's
frames to send get preamble, padding, FCS and the inter-frame gap.
Management (MDIO, PHY reset) is :mod:`hw.mac.mdio`, separate because one
MDIO bus may serve several PHYs.
"""

from amaranth import ClockDomain, DomainRenamer, Module, ResetSignal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from hw.csr import block_signature
from hw.mac.convert import BeatsToBytes, BytesToBeats
from hw.mac.mac_rx import MacRx, RxVerdict
from hw.mac.mac_tx import MacTx, TxVerdict
from hw.mac.mdio import MDIO, Mdio
from hw.mac.rgmii import RgmiiIO, RgmiiPadSignature
from hw.stream import Beat
from protocols.registers import RegisterBlock, counter

__all__ = ["Mac", "MAC", "MDIO", "Mdio", "mac_block"]

_RX_COUNTERS = {
    RxVerdict.GOOD: ("rx_good", "Frames passed to the core whole, FCS correct."),
    RxVerdict.ERROR: ("rx_drop_error", "Frames dropped: the PHY signalled a receive error (RX_ER) in them."),
    RxVerdict.PREAMBLE: ("rx_drop_preamble", "Frames dropped: no start-of-frame delimiter after the preamble."),
    RxVerdict.OVERSIZE: ("rx_drop_oversize", "Frames dropped: longer than the MAC's maximum (1522 bytes with "
                         "FCS by default); cut at the limit."),
    RxVerdict.RUNT: ("rx_drop_runt", "Frames dropped: shorter than 64 bytes with FCS."),
    RxVerdict.FCS: ("rx_drop_fcs", "Frames dropped: wrong FCS."),
    RxVerdict.OVERFLOW: ("rx_drop_overflow", "Frames dropped: the FIFO to the core was full (whole, or cut "
                         "and aborted)."),
}
_TX_COUNTERS = {
    TxVerdict.SENT: ("tx_frames", "Frames sent complete."),
    TxVerdict.UNDERRUN: ("tx_underrun", "Frames cut by an underrun (the next beat came too late) and ended "
                         "with TX_ER."),
    TxVerdict.ABORTED: ("tx_aborted", "Frames the core aborted (ended with TX_ER, or not started)."),
}


def mac_block(name: str = "mac") -> RegisterBlock:
    """The register block of one MAC port, named ``name`` on the bus (``mac0``, ``mac1`` for two ports)."""
    regs = [counter("rx_frames", "Frames seen on the wire (every DV assertion), each also counted under "
                    "exactly one of `rx_good` and `rx_drop_*`.")]
    regs += [counter(reg, doc) for reg, doc in _RX_COUNTERS.values()]
    regs += [counter(reg, doc) for reg, doc in _TX_COUNTERS.values()]
    return RegisterBlock(name, "Ethernet MAC (`hw/mac/`): 1000BASE-T RGMII, FCS checked and stripped on "
                         "receive, added on transmit.", tuple(regs))


MAC = mac_block("mac")


class Mac(wiring.Component):
    """RGMII MAC.

    Parameters
    ----------
    pads : platform resource or None
        ``platform.request("eth_rgmii", n, dir="-")``, or None for the generic
        DDR model with a ``pads`` port (simulation, Verilator).
    tx_domain, txc_domain : str
        125 MHz transmit domain, and the domain forwarded as TXC (the same one
        if the PHY delays TXC, a 90-degree copy if the FPGA must).
    rx_delay_taps : int or None
        ECP5 ``DELAYG`` taps on the received clock (None: the PHY delays RXC).
    max_frame : int
        Longest frame accepted, with FCS.
    fifo_depth : int
        Beats of each asynchronous FIFO.

    Attributes
    ----------
    rx : stream of Beat
        Received frames without FCS (``sync``); bad ones end with ``abort``.
    tx : stream of Beat
        Frames to send, without FCS (``sync``).
    csr : registers of a :func:`mac_block`
    pads : RGMII pins (only with ``pads=None``)
    """

    def __init__(self, pads=None, *, tx_domain="eth_tx", txc_domain="eth_tx90", rx_delay_taps=None,
                 max_frame=1522, fifo_depth=32):
        self._pads = pads
        self._tx_domain, self._txc_domain = tx_domain, txc_domain
        self._rx_delay_taps = rx_delay_taps
        self._max_frame = max_frame
        self._fifo_depth = fifo_depth
        members = {
            "rx": Out(stream.Signature(Beat)),
            "tx": In(stream.Signature(Beat)),
            "csr": In(block_signature(MAC)),
        }
        if pads is None:
            members["pads"] = Out(RgmiiPadSignature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        tx_dom = self._tx_domain
        m.submodules.phy_io = phy_io = RgmiiIO(self._pads, rx_domain="eth_rx", tx_domain=tx_dom,
                                               txc_domain=self._txc_domain, rx_delay_taps=self._rx_delay_taps)
        if self._pads is None:
            connect(m, wiring.flipped(self.pads), phy_io.pads)

        # Receive: the PHY's clock, a reset released in step with it, bytes -> beats -> FIFO.
        m.domains.eth_rx = cd_rx = ClockDomain(local=True)
        m.d.comb += cd_rx.clk.eq(phy_io.rx_clk)
        if self._pads is not None and hasattr(platform, "add_clock_constraint"):
            # RXC is 125 MHz (1000BASE-T): constrain the pin and the clock net behind the buffer
            # (and delay), so nextpnr times eth_rx whichever name survives synthesis.
            rx_clk_port = getattr(self._pads.rx_clk, "io", None)
            if rx_clk_port is not None:
                platform.add_clock_constraint(rx_clk_port, 125e6)
            platform.add_clock_constraint(phy_io.rx_clk, 125e6)
        m.submodules.rx_reset = ResetSynchronizer(ResetSignal("sync"), domain="eth_rx")
        m.submodules.mac_rx = mac_rx = DomainRenamer("eth_rx")(MacRx(max_frame=self._max_frame))
        m.submodules.rx_pack = pack = DomainRenamer("eth_rx")(BytesToBeats())
        m.submodules.rx_fifo = rx_fifo = AsyncFIFO(width=Beat.size, depth=self._fifo_depth,
                                                   w_domain="eth_rx", r_domain="sync")
        m.submodules.rx_verdicts = rx_verdicts = AsyncFIFO(width=3, depth=8, w_domain="eth_rx",
                                                           r_domain="sync")
        connect(m, phy_io.rx, mac_rx.gmii)
        connect(m, mac_rx.o, pack.i)
        m.d.comb += [
            rx_fifo.w_data.eq(pack.w.w_data), rx_fifo.w_en.eq(pack.w.w_en), pack.w.w_rdy.eq(rx_fifo.w_rdy),
            self.rx.payload.eq(rx_fifo.r_data), self.rx.valid.eq(rx_fifo.r_rdy), rx_fifo.r_en.eq(self.rx.ready),
            rx_verdicts.w_en.eq(mac_rx.verdict.valid),
            rx_verdicts.w_data.eq(mac_rx.verdict.payload),
        ]
        # A good frame that did not fit the FIFO is an overflow; a bad one keeps its own reason.
        with m.If((mac_rx.verdict.payload == RxVerdict.GOOD) & pack.dropping):
            m.d.comb += rx_verdicts.w_data.eq(RxVerdict.OVERFLOW)
        m.d.comb += rx_verdicts.r_en.eq(1)
        with m.If(rx_verdicts.r_rdy):
            m.d.comb += self.csr.rx_frames.eq(1)
            for verdict, (reg, _) in _RX_COUNTERS.items():
                m.d.comb += getattr(self.csr, reg).eq(rx_verdicts.r_data == verdict)

        # Transmit: FIFO -> bytes -> MAC, in the transmit domain.
        m.submodules.tx_fifo = tx_fifo = AsyncFIFO(width=Beat.size, depth=self._fifo_depth,
                                                   w_domain="sync", r_domain=tx_dom)
        # A small buffer whose read side is a register: the byte serialiser's ready logic then no
        # longer runs into the asynchronous FIFO's read pointer and memory (the transmit clock's
        # critical path), whose read enable comes from a flip-flop-level 'not full' instead.
        m.submodules.tx_buf = tx_buf = DomainRenamer(tx_dom)(SyncFIFOBuffered(width=Beat.size, depth=3))
        m.submodules.tx_unpack = unpack = DomainRenamer(tx_dom)(BeatsToBytes())
        m.submodules.mac_tx = mac_tx = DomainRenamer(tx_dom)(MacTx())
        m.submodules.tx_verdicts = tx_verdicts = AsyncFIFO(width=2, depth=8, w_domain=tx_dom, r_domain="sync")
        m.d.comb += [
            tx_fifo.w_data.eq(self.tx.payload), tx_fifo.w_en.eq(self.tx.valid), self.tx.ready.eq(tx_fifo.w_rdy),
            tx_buf.w_data.eq(tx_fifo.r_data), tx_buf.w_en.eq(tx_fifo.r_rdy), tx_fifo.r_en.eq(tx_buf.w_rdy),
            unpack.i.payload.eq(tx_buf.r_data), unpack.i.valid.eq(tx_buf.r_rdy), tx_buf.r_en.eq(unpack.i.ready),
            tx_verdicts.w_en.eq(mac_tx.verdict.valid), tx_verdicts.w_data.eq(mac_tx.verdict.payload),
            tx_verdicts.r_en.eq(1),
        ]
        connect(m, unpack.o, mac_tx.i)
        connect(m, mac_tx.gmii, phy_io.tx)
        with m.If(tx_verdicts.r_rdy):
            for verdict, (reg, _) in _TX_COUNTERS.items():
                m.d.comb += getattr(self.csr, reg).eq(tx_verdicts.r_data == verdict)
        return m
