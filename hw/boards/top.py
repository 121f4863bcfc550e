"""The top of a real board: PLL, clock domains and resets, pins, then :class:`~hw.boards.core.BoardCore`.

Clock domains: ``sync`` is the core (625 MHz / ``core_div``), ``eth_tx`` the
125 MHz transmit clock, ``eth_tx90`` the same 2 ns later (TXC on boards whose
FPGA delays it); each MAC's receive domain runs on its PHY's RXC. Every
domain is held in reset until the PLL locks. The received clocks get a
125 MHz constraint from the MAC so nextpnr times them.
"""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from hw.boards import BoardSpec
from hw.boards.core import BoardCore, default_board_address
from hw.boards.pll import ehxplll
from hw.top import build_top


class BoardTop(Elaboratable):
    """A board from its :class:`~hw.boards.BoardSpec`."""

    def __init__(self, spec: BoardSpec, *, board_mac=None, board_ip=None):
        self.spec = spec
        mac, ip = default_board_address()
        self.board_mac = board_mac or mac
        self.board_ip = board_ip or ip

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        clk_res = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_res)
        pll, eth, eth90, core, lock = ehxplll(spec.pll, clk_buf.i, core_div=spec.core_div)
        m.submodules.pll = pll
        for name, clk, hz in (("sync", core, spec.core_hz), ("eth_tx", eth, 125e6), ("eth_tx90", eth90, 125e6)):
            m.domains += ClockDomain(name)
            m.d.comb += ClockSignal(name).eq(clk)
            platform.add_clock_constraint(clk, hz)
            m.submodules[f"{name}_rst"] = ResetSynchronizer(~lock, domain=name)
        pads = [platform.request("eth_rgmii", n, dir="-") for n in range(spec.ports)]
        m.submodules.board = BoardCore(build_top(spec.book_params()), pads=pads, mac_args=spec.mac_args,
                                       board_mac=self.board_mac, board_ip=self.board_ip)
        return m
