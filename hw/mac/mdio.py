"""PHY management: IEEE 802.3 clause 22 MDIO reads and writes through registers, and the PHY reset.

A transaction is 64 MDC periods: 32 preamble ones, start ``01``, opcode
(``01`` write, ``10`` read), PHY address and register address (5 bits each,
most significant first), turnaround (``10`` driven by us for a write; for a
read we release MDIO and the PHY drives ``0`` in the second bit), then 16 data
bits. We change MDIO while MDC is low and the PHY samples at the rising edge;
read bits are sampled just before each rising edge (the PHY drives each one
after the previous rising edge). One MDIO bus may serve several PHYs (both
ports of the Colorlight 5A-75B share it), so the master is separate from the MACs.

The PHY reset output is held for ``reset_cycles`` after the core's reset (the
PHYs want 10 ms or more) and while the host sets ``phy_reset``.
"""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from protocols.registers import RegisterBlock, counter, ro, rw

PREAMBLE_BITS = 32
FRAME_BITS = 64
READ, WRITE = 0b10, 0b01

MDIO = RegisterBlock("mdio", "PHY management (`hw/mac/mdio.py`): clause 22 MDIO and the PHY reset, shared by "
                     "the PHYs on one management bus.", (
    rw("command", 27, "A write starts a transaction (ignored while `status` bit 16 says busy): bits 15-0 data "
       "to write, 20-16 register, 25-21 PHY address, bit 26 read (1) or write (0).", strobe=True),
    ro("status", 18, "Bits 15-0: data of the last read; bit 16: a transaction is in progress; bit 17: the PHY "
       "reset is asserted."),
    rw("divider", 8, "MDC is the core clock divided by 2 x (divider + 1); 31 gives 1.95 MHz at 125 MHz "
       "(clause 22 allows up to 2.5 MHz).", reset=31),
    rw("phy_reset", 1, "Bit 0: hold the PHY(s) in reset."),
    counter("transactions", "MDIO transactions completed."),
    counter("ignored", "Commands written while a transaction was in progress (ignored)."),
))


class MdioPinSignature(wiring.Signature):
    """MDC, MDIO (as output, output enable and input) and the PHY reset, from the master's side."""

    def __init__(self):
        super().__init__({"mdc": Out(1), "mdio_o": Out(1), "mdio_oe": Out(1), "mdio_i": In(1),
                          "phy_rst": Out(1)})


def frame_bits(read: bool, phy: int, reg: int, value: int = 0) -> list[int]:
    """The 64 bits a master sends (read: the last 18 bits are the PHY's, shown here as ones)."""
    op = READ if read else WRITE
    head = (0b01 << 12) | (op << 10) | (phy << 5) | reg
    bits = [1] * PREAMBLE_BITS + [(head >> (13 - i)) & 1 for i in range(14)]
    bits += [1, 1] if read else [1, 0]
    bits += [1] * 16 if read else [(value >> (15 - i)) & 1 for i in range(16)]
    return bits


class Mdio(wiring.Component):
    """Clause 22 MDIO master and PHY reset.

    Attributes
    ----------
    csr : registers of the ``mdio`` block
    pins : MDC, MDIO and PHY reset (connect through ``io.Buffer`` on a board, see :func:`connect_pins`)
    """

    csr: In(block_signature(MDIO))
    pins: Out(MdioPinSignature())

    def __init__(self, *, reset_cycles: int = 1 << 21):
        self.reset_cycles = reset_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        csr, pins = self.csr, self.pins

        # PHY reset: a power-on timer, then the host's bit.
        por = Signal(range(self.reset_cycles + 1), init=self.reset_cycles)
        with m.If(por != 0):
            m.d.sync += por.eq(por - 1)
        m.d.comb += pins.phy_rst.eq((por != 0) | csr.phy_reset)

        mdio_i = Signal()
        m.submodules.mdio_sync = FFSynchronizer(pins.mdio_i, mdio_i)

        shift = Signal(FRAME_BITS)         # bits to send, most significant first
        drive = Signal(FRAME_BITS)         # 1 where we drive MDIO
        read_data = Signal(16)
        busy = Signal()
        bit = Signal(range(FRAME_BITS + 1))
        tick = Signal(8)
        high = Signal()                    # MDC phase
        m.d.comb += [
            csr.status.eq(Cat(read_data, busy, pins.phy_rst)),
            pins.mdc.eq(high),
            pins.mdio_o.eq(shift[-1]),
            pins.mdio_oe.eq(busy & drive[-1]),
        ]

        cmd = csr.command
        reading = Signal()
        is_read = cmd[26]
        ta = Cat(Const(0, 1), Const(1, 1))               # "10", most significant first
        frame = Cat(cmd[0:16], ta, cmd[16:21], cmd[21:26], Cat(~is_read, is_read), Const(0b01, 2),
                    Const((1 << PREAMBLE_BITS) - 1, PREAMBLE_BITS))
        ours = Cat((~is_read).replicate(18), Const((1 << 46) - 1, 46))   # we release TA and data of a read
        with m.If(csr.command_w):
            with m.If(busy):
                m.d.comb += csr.ignored.eq(1)
            with m.Else():
                m.d.sync += [shift.eq(frame), drive.eq(ours), reading.eq(is_read), busy.eq(1),
                             bit.eq(0), tick.eq(0), high.eq(0)]

        with m.If(busy):
            m.d.sync += tick.eq(tick + 1)
            with m.If(tick == csr.divider):
                m.d.sync += [tick.eq(0), high.eq(~high)]
                with m.If(~high):                  # MDC rises: the PHY samples, we sample read data
                    with m.If(reading & (bit >= FRAME_BITS - 16)):
                        m.d.sync += read_data.eq(Cat(mdio_i, read_data[:-1]))
                with m.Else():                     # MDC falls: next bit
                    m.d.sync += [shift.eq(shift << 1), drive.eq(drive << 1), bit.eq(bit + 1)]
                    with m.If(bit == FRAME_BITS - 1):
                        m.d.sync += busy.eq(0)
                        m.d.comb += csr.transactions.eq(1)
        return m


def connect_pins(m, mdio: "Mdio", pads) -> None:
    """Wire ``mdio.pins`` to a board's ``eth_rgmii`` resource (``mdc``, ``mdio``, ``rst`` subsignals)."""
    from amaranth.lib import io

    m.submodules.mdc_buf = mdc = io.Buffer("o", pads.mdc)
    m.submodules.mdio_buf = dio = io.Buffer("io", pads.mdio)
    m.submodules.phy_rst_buf = rst = io.Buffer("o", pads.rst)
    m.d.comb += [mdc.o.eq(mdio.pins.mdc), dio.o.eq(mdio.pins.mdio_o), dio.oe.eq(mdio.pins.mdio_oe),
                 mdio.pins.mdio_i.eq(dio.i), rst.o.eq(mdio.pins.phy_rst)]
