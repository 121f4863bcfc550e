"""cocotb test of the whole board top (``tests/hw/test_board.py``): feed on port 0, BoardNic on port 1.

Two cocotbext-eth RGMII PHY models stand for the PHYs. The board NIC runs
unchanged in a thread (``cocotb.bridge``); its transport turns each UDP
payload into a frame from the host into port 1 and waits, in simulated time,
for the frames port 1 sends back. The test writes the settings through the
link, sends the feed into port 0, polls events until the expected number
arrived, and compares them (cycle timestamps aside) with the simulated NIC's.
"""

import collections
import json
import logging
import os
import zlib

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, First, Timer
from cocotbext.eth import GmiiFrame, RgmiiPhy

try:
    from cocotb import bridge, resume
except ImportError:                      # cocotb 2.1 keeps them in cocotb.task
    from cocotb.task import bridge, resume

from host.boardnic import BoardNic
from hw.boards.core import default_board_address
from hw.boards.registers import BOARD_REGISTER_MAP
from protocols import hostlink as link
from protocols.net import ip_to_int, mac_to_bytes, parse_udp_frame

BYTE_NS = 8
PREAMBLE = b"\x55" * 7 + b"\xd5"
HOST = link.Endpoint(mac_to_bytes("02:00:00:00:00:0a"), ip_to_int("10.1.0.1"), 40000)
WAIT_NS = 400_000                        # simulated time a receive may wait for the board
FRAME_GAP_NS = 12_000                    # between feed frames (see feed())


def wire(frame: bytes) -> GmiiFrame:
    f = GmiiFrame(bytearray(PREAMBLE + frame + zlib.crc32(frame).to_bytes(4, "little")))
    f.normalize()
    return f


class SimTransport:
    """The host link transport on the simulated port 1 (called from the BoardNic's thread)."""

    def __init__(self, phy, board: link.Endpoint):
        self.phy, self.board = phy, board
        self.inbox = collections.deque()
        self.arrived = Event()
        self.frames_out = 0

    async def collect(self):
        while True:
            frame = await self.phy.tx.recv()
            raw = bytes(frame.get_payload())
            assert frame.check_fcs(), "port 1 sent a frame with a bad FCS"
            self.frames_out += 1
            self.inbox.append(parse_udp_frame(raw, verify_udp_checksum=False).payload)
            self.arrived.set()

    @resume
    async def send(self, payload: bytes) -> None:
        await self.phy.rx.send(wire(link.frame(payload, HOST, self.board)))

    @resume
    async def recv(self, timeout: float):
        if not self.inbox and timeout > 0:
            self.arrived.clear()
            await First(self.arrived.wait(), Timer(WAIT_NS, unit="ns"))
        return self.inbox.popleft() if self.inbox else None


async def start(dut):
    phys = [RgmiiPhy(getattr(dut, f"pads{n}__tx_data"), getattr(dut, f"pads{n}__tx_ctl"),
                     getattr(dut, f"pads{n}__tx_clk"), getattr(dut, f"pads{n}__rx_data"),
                     getattr(dut, f"pads{n}__rx_ctl"), getattr(dut, f"pads{n}__rx_clk"), speed=1000e6)
            for n in range(2)]
    Clock(dut.eth_tx_clk, BYTE_NS, unit="ns").start()
    await Timer(BYTE_NS // 4, unit="ns")
    Clock(dut.eth_tx90_clk, BYTE_NS, unit="ns").start()
    Clock(dut.clk, 10, unit="ns").start()
    for n in range(2):
        for name in ("tx_data", "rx_data"):
            logging.getLogger(f"cocotb.{dut._name}.pads{n}__{name}").setLevel(logging.WARNING)
    dut.rst.value = 1
    await Timer(50, unit="ns")
    dut.rst.value = 0
    await Timer(500, unit="ns")
    return phys


@cocotb.test()
async def board_matches_simulated_nic(dut):
    case = json.loads(open(os.environ["CALARB_BOARD_CASE"]).read())
    frames = [bytes.fromhex(f) for f in case["frames"]]
    want = case["want"]
    phys = await start(dut)
    mac, ip = default_board_address()
    transport = SimTransport(phys[1], link.Endpoint(mac, ip, link.PORT))
    cocotb.start_soon(transport.collect())
    market_out = []

    async def watch_market():
        while True:
            f = await phys[0].tx.recv()
            market_out.append(bytes(f.get_payload()))
    cocotb.start_soon(watch_market())

    @resume
    async def feed():
        # Paced: a top-of-book event costs about 100 bytes on the host link, more than the
        # messages that cause it, so a line-rate burst would stall the core until the market
        # MAC drops frames (counted under mac0.rx_drop_overflow, seen by the host as a gap).
        for f in frames:
            await phys[0].rx.send(wire(f))
            await Timer(FRAME_GAP_NS, unit="ns")

    @bridge
    def host():
        nic = BoardNic(transport, board_map=BOARD_REGISTER_MAP, timeout=60.0, retries=2, seq=1000)
        assert nic.read("top.magic") == 0xCA1A4B00
        for name, value in case["settings"]:
            nic.write(name, value)
        assert nic.read("events.control") == 4
        feed()
        got = []
        while len(got) < len(want):
            new = nic.poll(wait=1.0)
            if not new:
                break
            got += new
        sent = bytes(range(64)) + b"calarb"
        nic.send([sent])
        counters = {name: nic.read(name) for name in ("mac0.rx_frames", "mac0.rx_good", "eth.forwarded",
                                                     "mac0.rx_drop_overflow",
                                                     "hostlink.events", "hostlink.ignored", "mac1.rx_good")}
        return got, nic.stats, counters, sent

    got, stats, counters, sent = await host()
    got = [{k: v for k, v in e.as_json().items() if k != "cycle"} for e in got]
    dut._log.info("board: %d events (want %d), link %s, counters %s", len(got), len(want), stats, counters)
    first_diff = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    assert got == want, (f"{len(got)} events, {len(want)} expected; first difference at {first_diff}: "
                         f"{got[first_diff:first_diff + 2]} != {want[first_diff:first_diff + 2]}")
    assert stats.lost == 0 and stats.retries == 0
    assert counters["mac0.rx_frames"] == counters["mac0.rx_good"] == counters["eth.forwarded"] == len(frames)
    assert counters["hostlink.events"] == len(want) and counters["hostlink.ignored"] == 0
    for _ in range(200):
        if market_out:
            break
        await Timer(100, unit="ns")
    assert market_out and market_out[0][:len(sent)] == sent
