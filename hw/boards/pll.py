"""The ECP5 PLL (``EHXPLLL``) of a board top: the 125 MHz Ethernet clocks and the core clock.

Every board here runs the VCO at 625 MHz: ``CLKOP`` 125 MHz (divide by 5, also
the feedback), ``CLKOS`` 125 MHz 90 degrees later (2 ns: one VCO period and
two eighths, ``CPHASE`` 5, ``FPHASE`` 2) for boards whose FPGA delays TXC,
and ``CLKOS2`` the core clock, 625 MHz divided by ``core_div``.
"""

from dataclasses import dataclass

from amaranth import Const, Instance, Signal

VCO_HZ = 625e6
ETH_DIV = 5


@dataclass(frozen=True)
class PllPlan:
    """Input divider and feedback divider taking the board clock to 125 MHz at ``CLKOP``."""

    clkin_hz: float
    clki_div: int
    fb_div: int

    def __post_init__(self):
        out = self.clkin_hz * self.fb_div / self.clki_div
        if abs(out - VCO_HZ / ETH_DIV) > 1:
            raise ValueError(f"PLL plan gives {out / 1e6} MHz at CLKOP, not 125 MHz")


def core_hz(core_div: int) -> float:
    return VCO_HZ / core_div


def ehxplll(plan: PllPlan, clkin, *, core_div: int):
    """The PLL instance and its outputs ``(eth, eth90, core, lock)``."""
    eth, eth90 = Signal(name="pll_eth"), Signal(name="pll_eth90")
    core, lock = Signal(name="pll_core"), Signal(name="pll_lock")
    mhz = lambda hz: str(round(hz / 1e6, 3))
    pll = Instance(
        "EHXPLLL",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=plan.clki_div, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=plan.fb_div,
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=ETH_DIV, p_CLKOP_CPHASE=ETH_DIV - 1, p_CLKOP_FPHASE=0,
        p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=ETH_DIV, p_CLKOS_CPHASE=ETH_DIV, p_CLKOS_FPHASE=2,
        p_CLKOS2_ENABLE="ENABLED", p_CLKOS2_DIV=core_div, p_CLKOS2_CPHASE=core_div - 1, p_CLKOS2_FPHASE=0,
        i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clkin, i_CLKFB=eth, i_PHASESEL0=Const(0),
        i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
        i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), i_ENCLKOS=Const(0), i_ENCLKOS2=Const(0),
        o_CLKOP=eth, o_CLKOS=eth90, o_CLKOS2=core, o_LOCK=lock,
        a_FREQUENCY_PIN_CLKI=mhz(plan.clkin_hz), a_FREQUENCY_PIN_CLKOP="125",
        a_FREQUENCY_PIN_CLKOS="125", a_FREQUENCY_PIN_CLKOS2=mhz(core_hz(core_div)),
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
    )
    return pll, eth, eth90, core, lock
