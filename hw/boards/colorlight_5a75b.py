"""The Colorlight 5A-75B R7.0 platform with its second Ethernet port usable beside the first.

amaranth-boards 0.0.21 (``Colorlight_5A75B_R70Platform``, pinout from the
chubby75 project) declares both ``eth_rgmii`` ports with the PHY reset, MDC
and MDIO, which the two B50612D PHYs share (pins P5, P3, T2); Amaranth refuses
to request the same pin twice. Here port 1 is declared with its RGMII pins
only; the shared management pins come with port 0 (one ``Mdio`` serves both
PHYs at different addresses).
"""

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

__all__ = ["Colorlight5A75BPlatform"]


class Colorlight5A75BPlatform(Colorlight_5A75B_R70Platform):
    resources = [r for r in Colorlight_5A75B_R70Platform.resources
                 if not (r.name == "eth_rgmii" and r.number == 1)] + [
        Resource("eth_rgmii", 1,
                 Subsignal("tx_clk", Pins("M12", dir="o")),
                 Subsignal("tx_ctl", Pins("R15", dir="o")),
                 Subsignal("tx_data", Pins("T14 R12 R13 R14", dir="o")),
                 Subsignal("rx_clk", Pins("M16", dir="i")),
                 Subsignal("rx_ctl", Pins("L15", dir="i")),
                 Subsignal("rx_data", Pins("P13 N13 P14 M15", dir="i")),
                 Attrs(IO_TYPE="LVCMOS33")),
    ]
