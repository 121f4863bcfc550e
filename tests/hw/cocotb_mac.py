"""cocotb tests of the RGMII MAC (``hw/mac``) on Verilator against cocotbext-eth's RgmiiPhy.

Run from pytest by ``tests/hw/test_mac_verilator.py``. The PHY model drives
RXC at 125 MHz and sends frames (with preamble, SFD, FCS, RX_ER where asked);
it samples TXD/TX_CTL on both edges of the TXC the MAC forwards. The core side
runs at 100 MHz, unrelated to both PHY clocks.
"""

import logging
import os
import random
import zlib

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Timer
from cocotbext.eth import GmiiFrame, RgmiiPhy

from hw.mac.mac_rx import FCS_BYTES, MIN_FRAME, RxVerdict
from hw.mac.mac_tx import IFG_BYTES
from hw.stream import Beat, beats_to_packets, packet_to_beats
from sim.cocotb_streams import start_core
from tests.hw.test_mac_verilator import MAC_MAP

SEED = int(os.environ.get("CALARB_SEED", "2026"))
FRAMES = int(os.environ.get("CALARB_MAC_FRAMES", "300"))
MAX_FRAME = 1522
BYTE_NS = 8
COUNTER = {v: f"mac.rx_drop_{v.name.lower()}" for v in RxVerdict}
COUNTER[RxVerdict.GOOD] = "mac.rx_good"


def fcs(frame: bytes) -> bytes:
    return zlib.crc32(frame).to_bytes(4, "little")


def reference_rx(wire: bytes, error: bool, max_frame: int = MAX_FRAME):
    """Golden receive model: (bytes the core gets or None, abort, verdict) for the bytes under DV, preamble on."""
    start = len(wire) - len(wire.lstrip(b"\x55"))
    if start == len(wire) or wire[start] != 0xD5:
        return None, True, RxVerdict.ERROR if error else RxVerdict.PREAMBLE
    raw = wire[start + 1:]
    if len(raw) > max_frame:
        return raw[:max_frame - FCS_BYTES], True, RxVerdict.ERROR if error else RxVerdict.OVERSIZE
    if error:
        verdict = RxVerdict.ERROR
    elif len(raw) < MIN_FRAME:
        verdict = RxVerdict.RUNT
    elif zlib.crc32(raw) != 0x2144DF1C:            # CRC residue of a frame followed by its own FCS
        verdict = RxVerdict.FCS
    else:
        verdict = RxVerdict.GOOD
    out = raw[:-FCS_BYTES] if len(raw) > FCS_BYTES else None
    return out, verdict != RxVerdict.GOOD, verdict


PREAMBLE = b"\x55" * 7 + b"\xd5"


def random_frames(rng: random.Random, count: int):
    """(bytes under DV, index of an RX_ER byte or None), of every kind the MAC must tell apart."""
    frames = []
    for _ in range(count):
        kind = rng.choices(["good", "small", "max", "runt", "tiny", "fcs", "error", "oversize", "preamble"],
                           [40, 20, 3, 8, 3, 10, 8, 3, 3])[0]
        if kind == "good":
            body = rng.randbytes(rng.randint(60, 1518 - 4 if rng.random() < 0.1 else 200))
        elif kind == "small":
            body = rng.randbytes(60)
        elif kind == "max":
            body = rng.randbytes(MAX_FRAME - 4)
        elif kind == "runt":
            body = rng.randbytes(rng.randint(1, 59))
        elif kind == "tiny":
            frames.append((PREAMBLE + rng.randbytes(rng.randint(0, 4)), None))
            continue
        elif kind == "preamble":           # a damaged or missing start-of-frame delimiter
            wire = b"\x55" * rng.randint(0, 7) + bytes([rng.choice([0x5D, 0x00, 0xD4, 0xF5])]) + rng.randbytes(70)
            frames.append((wire, None))
            continue
        elif kind == "oversize":
            body = rng.randbytes(rng.randint(MAX_FRAME - 3, MAX_FRAME + 40))
        else:
            body = rng.randbytes(rng.randint(60, 300))
        raw = body + fcs(body)
        if kind == "fcs":
            pos = rng.randrange(len(raw))
            raw = raw[:pos] + bytes([raw[pos] ^ (1 << rng.randrange(8))]) + raw[pos + 1:]
        frames.append((PREAMBLE + raw, rng.randrange(len(PREAMBLE), len(PREAMBLE) + len(raw))
                       if kind == "error" else None))
    return frames


async def start(dut):
    """PHY model, transmit clocks (TXC 2 ns behind the data clock), core clock and reset."""
    phy = RgmiiPhy(dut.pads__tx_data, dut.pads__tx_ctl, dut.pads__tx_clk,
                   dut.pads__rx_data, dut.pads__rx_ctl, dut.pads__rx_clk, speed=1000e6)
    Clock(dut.eth_tx_clk, BYTE_NS, unit="ns").start()
    await Timer(BYTE_NS // 4, unit="ns")
    Clock(dut.eth_tx90_clk, BYTE_NS, unit="ns").start()
    for name in ("pads__tx_data", "pads__rx_data"):
        logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
    bench, bus = await start_core(dut, MAC_MAP, ())
    for _ in range(20):          # let the resets of the PHY-side domains go
        await bench.step()
    return phy, bench, bus


async def send_raw(phy, frames):
    for wire, err in frames:
        frame = GmiiFrame(bytearray(wire))
        frame.normalize()                     # fills in the per-byte error flags
        if err is not None:
            frame.error[err] = 1
        await phy.rx.send(frame)


@cocotb.test()
async def rx_differential(dut):
    """Good, runt, tiny, bad-FCS, RX_ER and oversize frames back to back (12-byte gaps) against the golden model."""
    rng = random.Random(SEED)
    frames = random_frames(rng, FRAMES)
    expected = [reference_rx(raw, err is not None) for raw, err in frames]
    want = [(out, abort) for out, abort, _ in expected if out is not None]
    phy, bench, bus = await start(dut)
    sink = bench.sink("rx", Beat)
    cocotb.start_soon(send_raw(phy, frames))
    await bench.run(until=lambda: sink.packets >= len(want), idle=100)
    got = [(data, bool(last["abort"])) for data, last in beats_to_packets(sink.items)]
    assert len(got) == len(want), f"{len(got)} frames out, {len(want)} expected"
    for i, (w, g) in enumerate(zip(want, got)):
        if w[1]:   # aborted: the bytes up to the point of abort must match
            assert g[1] and g[0] == w[0], f"frame {i}: expected abort after {len(w[0])} bytes, got {g}"
        else:
            assert g == w, f"frame {i}: expected {len(w[0])} good bytes, got {len(g[0])} abort={g[1]}"
    regs = await bus.read_all()
    assert regs["mac.rx_frames"] == len(frames)
    for verdict in RxVerdict:
        n = sum(v == verdict for _, _, v in expected)
        assert regs[COUNTER[verdict]] == n, f"{COUNTER[verdict]}: {regs[COUNTER[verdict]]}, expected {n}"
    dut._log.info("rx: %d frames, verdicts %s", len(frames),
                  {COUNTER[v]: regs[COUNTER[v]] for v in RxVerdict})


@cocotb.test()
async def rx_overflow(dut):
    """A core that stalls for long stretches: frames that do not fit are dropped whole or aborted, and counted."""
    rng = random.Random(SEED + 1)
    bodies = [rng.randbytes(rng.randint(60, 400)) for _ in range(60)]
    frames = [(PREAMBLE + b + fcs(b), None) for b in bodies]
    phy, bench, bus = await start(dut)
    sink = bench.sink("rx", Beat, seed=SEED, stall=0.9)
    await send_raw(phy, frames)              # queues them all in the PHY model
    while not (phy.rx.idle() and phy.rx.empty()):
        await bench.step()
    sink.stall = 0.0
    for _ in range(200):
        await bench.step()
    packets = beats_to_packets(sink.items)
    good = [data for data, last in packets if not last["abort"]]
    # Frames that arrive whole are the sent ones, in order (a subsequence).
    it = iter(bodies)
    assert all(any(g == b for b in it) for g in good), "a delivered frame is not one of the sent ones, in order"
    regs = await bus.read_all()
    assert regs["mac.rx_frames"] == len(frames)
    assert regs["mac.rx_good"] == len(good)
    assert regs["mac.rx_drop_overflow"] == len(frames) - len(good) > 0
    aborted = sum(1 for _, last in packets if last["abort"])
    assert aborted <= regs["mac.rx_drop_overflow"]
    dut._log.info("overflow: %d of %d frames whole, %d aborted", len(good), len(frames), aborted)


@cocotb.test()
async def tx_line_rate(dut):
    """Frames from the core leave with preamble, padding and FCS, back to back with a 12-byte gap."""
    rng = random.Random(SEED + 2)
    payloads = [rng.randbytes(rng.choice([1, 14, 59, 60, 61, rng.randint(62, 1514)])) for _ in range(80)]
    phy, bench, bus = await start(dut)
    src = bench.source("tx", Beat, [b for p in payloads for b in packet_to_beats(p)], seed=SEED, gap=0.1)
    received = []

    async def collect():
        while True:
            received.append(await phy.tx.recv())
    cocotb.start_soon(collect())
    await bench.run(until=lambda: len(received) >= len(payloads), idle=50)
    assert len(received) == len(payloads)
    for i, (p, f) in enumerate(zip(payloads, received)):
        assert f.get_preamble() == b"\x55" * 7 + b"\xd5", f"frame {i}: preamble {f.get_preamble().hex()}"
        assert not any(f.error or ()), f"frame {i}: TX_ER set"
        padded = p + bytes(max(0, 60 - len(p)))
        assert f.get_payload() == padded, f"frame {i}: payload differs"
        assert f.check_fcs(), f"frame {i}: bad FCS"
    # Line rate: after the first frames the FIFO stays ahead, so each gap is the minimum.
    gaps = [round((b.sim_time_start - a.sim_time_end) / 1000) // BYTE_NS
            for a, b in zip(received, received[1:])]
    dut._log.info("tx gaps (byte times): %s", sorted(set(gaps)))
    assert min(gaps) >= IFG_BYTES - 1
    regs = await bus.read_all()
    assert regs["mac.tx_frames"] == len(payloads)
    assert regs["mac.tx_underrun"] == 0 and regs["mac.tx_aborted"] == 0
    del src
