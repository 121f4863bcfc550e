"""The gateware end of the host link (hw/hostlink.py) against its golden model (protocols.hostlink.BoardModel).

The same frames go to both: requests of every kind, duplicates, frames that are
not for the link (wrong port, address, checksum, version, kind, length,
truncated, aborted by the MAC) and pushes before and after a host is known;
the frames the gateware sends back must equal the model's byte for byte (the
MAC pads to 60 bytes), and so must the frames passed to the market port and
every ``hostlink`` counter.
"""

import random
import struct

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect
from amaranth.sim import Simulator

from hw.csr import CsrBank
from hw.hostlink import HostLink
from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols import hostlink as link
from protocols.net import ip_to_int, mac_to_bytes
from protocols.registers import TOP, RegisterMap
from sim.streams import const_to_dict

CORE_MAP = RegisterMap((TOP,))
BOARD_MAP = RegisterMap((link.HOSTLINK,))
MAGIC = 0xCA1A4B00
BOARD = link.Endpoint(mac_to_bytes("02:ca:1a:4b:00:01"), ip_to_int("10.0.0.2"), link.PORT)
HOST_A = link.Endpoint(mac_to_bytes("02:00:00:00:00:0a"), ip_to_int("10.0.0.1"), 40000)
HOST_B = link.Endpoint(mac_to_bytes("02:00:00:00:00:0b"), ip_to_int("10.0.0.9"), 5555)


class LinkHarness(wiring.Component):
    """The link with a core register bank (the ``top`` block) and a board bank (``hostlink``)."""

    rx: In(stream.Signature(Beat))
    tx: Out(stream.Signature(Beat))
    events: In(stream.Signature(Beat))
    orders: In(stream.Signature(Beat))
    market: Out(stream.Signature(Beat))

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = lk = HostLink(mac=BOARD.mac, ip=BOARD.ip, port=BOARD.port)
        m.submodules.core = core = CsrBank(CORE_MAP)
        m.submodules.board = board = CsrBank(BOARD_MAP)
        connect(m, lk.core_bus, core.bus)
        connect(m, lk.board_bus, board.bus)
        connect(m, board.hostlink, lk.csr)
        m.d.comb += core.top.magic.eq(MAGIC)
        for name in ("rx", "events", "orders"):
            connect(m, wiring.flipped(getattr(self, name)), getattr(lk, name))
        for name in ("tx", "market"):
            connect(m, getattr(lk, name), wiring.flipped(getattr(self, name)))
        return m


class Registers:
    """The model's view of the two banks: ``top`` (magic, scratch, cycle held at 0) and ``hostlink``."""

    def __init__(self):
        self.scratch = 0
        self.model = None

    def read(self, addr):
        if addr & link.ADDR_SPACE_BOARD:
            for mapped in BOARD_MAP:
                if mapped.address == addr & 0x3FF:
                    name = mapped.register.name
                    if name == "peer_ip":
                        return self.model.peer.ip if self.model.peer else 0
                    if name == "peer_port":
                        return self.model.peer.port if self.model.peer else 0
                    return self.model.counters[name]
            return 0
        if addr == CORE_MAP["top.magic"].address:
            return MAGIC
        if addr == CORE_MAP["top.scratch"].address:
            return self.scratch
        return 0

    def write(self, addr, value):
        if addr == CORE_MAP["top.scratch"].address:
            self.scratch = value


def request_frame(d: link.Datagram, host=HOST_A) -> bytes:
    return link.frame(d.encode(), host, BOARD)


def mangle(rng, kind):
    """A frame that is not a valid request, and how: (bytes, aborted)."""
    good = request_frame(link.read_request(rng.randrange(1 << 32), 0))
    if kind == "port":
        return link.frame(link.read_request(1, 0).encode(), HOST_A, link.Endpoint(BOARD.mac, BOARD.ip, 1234)), False
    if kind == "ip":
        return link.frame(link.read_request(1, 0).encode(), HOST_A,
                          link.Endpoint(BOARD.mac, BOARD.ip + 1, BOARD.port)), False
    if kind == "checksum":
        return good[:24] + bytes([good[24] ^ 0x10]) + good[25:], False
    if kind == "version":
        return good[:43] + bytes([0x20]) + good[44:], False
    if kind == "kind":
        return request_frame(link.Datagram(link.Kind.EVENT, 3, bytes(8))), False
    if kind == "length":
        return request_frame(link.Datagram(link.Kind.READ, 3, bytes(9))), False
    if kind == "truncated":
        return good[:rng.randrange(1, 56)], False
    if kind == "ethertype":
        return good[:12] + b"\x86\xdd" + good[14:], False
    if kind == "aborted":
        return good, True
    if kind == "aborted_send":
        return request_frame(link.send_request(9, rng.randbytes(100))), True
    if kind == "truncated_send":
        return request_frame(link.send_request(9, rng.randbytes(100)))[:rng.randrange(60, 140)], False
    raise ValueError(kind)


BAD = ["port", "ip", "checksum", "version", "kind", "length", "truncated", "ethertype", "aborted",
       "aborted_send", "truncated_send"]


def scenario(seed: int, n: int = 120):
    """A list of steps: ("rx", frame, aborted, host) or ("push", kind, body, aborted)."""
    rng = random.Random(seed)
    steps = [("push", link.Kind.EVENT, rng.randbytes(40), False)]         # before any host: dropped
    seq = 0
    last_write = None
    for _ in range(n):
        r = rng.random()
        host = HOST_B if rng.random() < 0.1 else HOST_A
        seq += 1
        if r < 0.2:
            addr = rng.choice([CORE_MAP["top.magic"].address, CORE_MAP["top.scratch"].address, 0x155,
                               link.ADDR_SPACE_BOARD | rng.randrange(len(BOARD_MAP))])
            steps.append(("rx", request_frame(link.read_request(seq, addr), host), False))
        elif r < 0.35:
            last_write = link.write_request(seq, CORE_MAP["top.scratch"].address, rng.randrange(1 << 64))
            steps.append(("rx", request_frame(last_write, host), False))
        elif r < 0.42 and last_write is not None:                      # a retry of the last write
            steps.append(("rx", request_frame(last_write, host), False))
        elif r < 0.5:
            steps.append(("rx", request_frame(link.send_request(seq, rng.randbytes(rng.randrange(14, 300))),
                                              host), False))
        elif r < 0.65:
            frame, aborted = mangle(rng, rng.choice(BAD))
            steps.append(("rx", frame, aborted))
        else:
            kind = link.Kind.ORDER if rng.random() < 0.3 else link.Kind.EVENT
            size = rng.choice([16, 17, 40, 48, 63, 120, 1024, 1025, 1100]) if rng.random() < 0.3 \
                else rng.randrange(16, 90)
            steps.append(("push", kind, rng.randbytes(size), rng.random() < 0.1))
    # Read every counter at the end (the model says what the gateware's must be).
    for mapped in BOARD_MAP:
        seq += 1
        steps.append(("rx", request_frame(link.read_request(seq, link.ADDR_SPACE_BOARD | mapped.address)),
                      False))
    return steps


def model_run(steps):
    regs = Registers()
    model = link.BoardModel(BOARD, read=regs.read, write=regs.write)
    regs.model = model
    out, marks = [], []
    for step in steps:
        if step[0] == "rx":
            out += model.receive(step[1], step[2])
        else:
            frame = model.push(step[1], step[2], step[3])
            if frame is not None:
                out.append(frame)
        marks.append(len(out))
    return out, model.market, marks


def rtl_run(steps, seed: int, stall: float = 0.3):
    dut = LinkHarness()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    got = {"tx": [], "market": []}
    _, _, marks = model_run(steps)
    expected_tx = marks[-1]

    async def drive(ctx):
        for step, mark in zip(steps, marks):
            if step[0] == "rx":
                beats = packet_to_beats(step[1])
                beats[-1]["abort"] = int(step[2])
                port = dut.rx
            else:
                beats = packet_to_beats(step[2])
                beats[-1]["abort"] = int(step[3])
                port = dut.orders if step[1] == link.Kind.ORDER else dut.events
            for beat in beats:
                ctx.set(port.valid, 1)
                ctx.set(port.payload, beat)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
                while rng.random() < 0.2:
                    await ctx.tick()
            # One datagram at a time, as a host waiting for each answer: let the frames it causes leave
            # (answers go before queued pushes, so the order would otherwise depend on timing).
            while len([b for b in got["tx"] if b["last"]]) < mark:
                await ctx.tick()
            for _ in range(8):
                await ctx.tick()
        while len([b for b in got["tx"] if b["last"]]) < expected_tx:
            await ctx.tick()
        for _ in range(200):
            await ctx.tick()

    def collector(name):
        async def collect(ctx):
            port = getattr(dut, name)
            local = random.Random(seed + len(name))
            while True:
                ready = local.random() >= stall
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid and ready:
                    got[name].append(const_to_dict(payload))
        return collect

    sim.add_testbench(drive)
    sim.add_testbench(collector("tx"), background=True)
    sim.add_testbench(collector("market"), background=True)
    sim.run()
    tx = [p for p, last in beats_to_packets(got["tx"])]
    market = [(p, bool(last["abort"])) for p, last in beats_to_packets(got["market"])]
    return tx, market


@pytest.mark.sim
@pytest.mark.parametrize("seed", [1, 2])
def test_hostlink_matches_model(seed):
    steps = scenario(seed)
    want_tx, want_market, _ = model_run(steps)
    got_tx, got_market = rtl_run(steps, seed)
    assert len(got_tx) == len(want_tx)
    for i, (g, w) in enumerate(zip(got_tx, want_tx)):
        assert g.ljust(60, b"\0") == w, f"frame {i}: {g.hex()} != {w.hex()}"
    assert [p for p, aborted in got_market if not aborted] == want_market
    # The last len(BOARD_MAP) answers are the counters: the scenario exercised every one of them.
    counters = {}
    for mapped, frame in zip(BOARD_MAP, want_tx[-len(BOARD_MAP):]):
        counters[mapped.register.name] = link.addr_value(link.decode(frame[42:42 + 6 + 16]))[1]
    for name in ("requests", "duplicates", "ignored", "events", "orders", "push_dropped", "sent"):
        assert counters[name] > 0, name


def test_hostlink_codec_rejects_bad_datagrams():
    with pytest.raises(link.LinkError, match="version"):
        link.decode(struct.pack("<BBI", 1, 0x20, 0) + bytes(8))
    with pytest.raises(link.LinkError, match="kind"):
        link.decode(struct.pack("<BBI", 0x44, 0x10, 0) + bytes(8))
    with pytest.raises(link.LinkError, match="body"):
        link.decode(struct.pack("<BBI", 2, 0x10, 0) + bytes(8))
