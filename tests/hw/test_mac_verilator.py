"""The RGMII MAC on Verilator against cocotbext-eth's RGMII PHY model (see ``tests/hw/cocotb_mac.py``)."""

import os
from pathlib import Path

import pytest
from amaranth import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out, connect

from hw.csr import BusSignature, CsrBank
from hw.mac import MAC, Mac
from hw.mac.rgmii import RgmiiPadSignature
from hw.stream import Beat
from protocols.registers import RegisterMap

HERE = Path(__file__).parent
MAC_MAP = RegisterMap((MAC,))


class MacHarness(wiring.Component):
    """The MAC with its register bank; the testbench drives the transmit clocks (TXC forwarded from ``eth_tx90``)."""

    rx: Out(stream.Signature(Beat))
    tx: In(stream.Signature(Beat))
    bus: In(BusSignature())
    pads: Out(RgmiiPadSignature())
    eth_tx_clk: In(1)
    eth_tx90_clk: In(1)

    def __init__(self, **mac_args):
        self._mac_args = mac_args
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        for name, clk in (("eth_tx", self.eth_tx_clk), ("eth_tx90", self.eth_tx90_clk)):
            m.domains += ClockDomain(name)
            m.d.comb += ClockSignal(name).eq(clk)
            m.submodules[f"{name}_reset"] = ResetSynchronizer(ResetSignal("sync"), domain=name)
        m.submodules.csr = csr = CsrBank(MAC_MAP)
        m.submodules.mac = mac = Mac(**self._mac_args)
        connect(m, wiring.flipped(self.bus), csr.bus)
        connect(m, csr.mac, mac.csr)
        connect(m, mac.rx, wiring.flipped(self.rx))
        connect(m, wiring.flipped(self.tx), mac.tx)
        connect(m, mac.pads, wiring.flipped(self.pads))
        return m


@pytest.mark.sim
def test_mac_on_verilator():
    from sim import runner
    runner.run(MacHarness(fifo_depth=16), "calarb_mac", "cocotb_mac", test_dir=HERE,
               env={"CALARB_SEED": os.environ.get("CALARB_SEED", "2026"),
                    "CALARB_MAC_FRAMES": os.environ.get("CALARB_MAC_FRAMES", "300")})
