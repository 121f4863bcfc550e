"""The whole board top on Verilator: MACs (generic DDR model), core and host link (see ``cocotb_board.py``).

The same ITCH feed goes into the simulated NIC (``sim.gatewarenic``, the core
alone) and, as RGMII frames, into port 0 of the board; the board NIC
(``host.boardnic.BoardNic``), talking to port 1 through cocotbext-eth's PHY
model, must receive the same top-of-book events (timestamps aside: the clocks
differ).
"""

import json
import os
from pathlib import Path

import pytest
from amaranth import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out, connect

from hw.boards.core import BoardCore, default_board_address
from hw.mac.rgmii import RgmiiPadSignature
from hw.top import build_top

HERE = Path(__file__).parent
INSTRUMENTS = 3
MESSAGES = int(os.environ.get("CALARB_BOARD_MESSAGES", "120"))


class SimBoard(wiring.Component):
    """The board core with both ports' pins as ports; the testbench drives the 125 MHz clocks."""

    pads0: Out(RgmiiPadSignature())
    pads1: Out(RgmiiPadSignature())
    eth_tx_clk: In(1)
    eth_tx90_clk: In(1)

    def elaborate(self, platform):
        m = Module()
        for name, clk in (("eth_tx", self.eth_tx_clk), ("eth_tx90", self.eth_tx90_clk)):
            m.domains += ClockDomain(name)
            m.d.comb += ClockSignal(name).eq(clk)
            m.submodules[f"{name}_reset"] = ResetSynchronizer(ResetSignal("sync"), domain=name)
        mac, ip = default_board_address()
        m.submodules.board = board = BoardCore(build_top(), pads=None, ports=2,
                                               mac_args=(dict(txc_domain="eth_tx90", fifo_depth=512),
                                                         dict(txc_domain="eth_tx90")),
                                               board_mac=mac, board_ip=ip, mdio_reset_cycles=16)
        connect(m, board.pads0, wiring.flipped(self.pads0))
        connect(m, board.pads1, wiring.flipped(self.pads1))
        return m


def feed_frames(messages: int = MESSAGES, seed: int = 12):
    from protocols import moldudp64 as mold
    from sim import moldfeed
    from sim.itchfeed import generate_itch

    msgs = generate_itch(messages, INSTRUMENTS, seed=seed)
    packets = mold.packetise(msgs, session=moldfeed.SESSION, max_payload=400)
    return [moldfeed._frame(mold.encode_packet(p)) for p in packets]


def settings():
    """Register writes that make the NIC report top-of-book changes of every instrument."""
    return [("events.control", 4)] + [("book.slot", loc | slot << 16 | 1 << 24)
                                      for slot, loc in enumerate(range(1, INSTRUMENTS + 1))]


def strip(event) -> dict:
    j = event.as_json()
    j.pop("cycle", None)
    return j


@pytest.mark.sim
def test_board_on_verilator_matches_the_simulated_nic(tmp_path):
    from sim import runner
    from sim.gatewarenic import GatewareNic

    frames = feed_frames()
    with GatewareNic() as nic:
        for name, value in settings():
            nic.write(name, value)
        nic.deliver(frames)
        want = [strip(e) for e in nic.poll()]
    assert len(want) > 20
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"frames": [f.hex() for f in frames], "settings": settings(), "want": want}))
    runner.run(SimBoard(), "calarb_board", "cocotb_board", test_dir=HERE,
               env={"CALARB_BOARD_CASE": str(case)})
