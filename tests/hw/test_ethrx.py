"""Corner cases of the Ethernet/IPv4/UDP stage (hw/ethrx.py) against the model (host.rxpath.EthRx).

Each case runs the gateware (the stage plus a register bank holding the ``eth``
block, programmed and read over the bus) and the model on the same frames and
asserts they agree on the forwarded payloads and on every ``eth`` counter; it
also checks the outcome worked out from how the frames were built, so a fault
shared by model and gateware is caught too.
"""

import functools
import random
from collections import Counter
from dataclasses import dataclass

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from host.rxpath import EthRx as EthRxModel
from host.rxpath import EthRxConfig
from hw.csr import BusSignature, CsrBank
from hw.ethrx import EthRx
from hw.stream import Beat, beats_to_packets, packet_to_beats
from protocols.net import build_udp_frame, ip_to_int, ipv4_checksum
from protocols.registers import ETH, RegisterMap
from sim.streams import SimBench as Bench
from sim.streams import bus_read as sim_bus_read
from sim.streams import bus_write as sim_bus_write

ETH_MAP = RegisterMap((ETH,))
COUNTERS = tuple(r.name for r in ETH.counters)

DST_IP = "233.54.12.1"
DST_PORT = 26400
CFG_ON = EthRxConfig(filter=3, ip_dst=ip_to_int(DST_IP), udp_port=DST_PORT)


class EthHarness(wiring.Component):
    """The stage with its ``eth`` register bank: frames in, payloads out, registers on the bus."""

    i: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))
    bus: In(BusSignature())
    aborted: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = CsrBank(ETH_MAP)
        m.submodules.eth = eth = EthRx()
        connect(m, wiring.flipped(self.bus), csr.bus)
        connect(m, csr.eth, eth.csr)
        connect(m, wiring.flipped(self.i), eth.i)
        connect(m, eth.o, wiring.flipped(self.o))
        m.d.comb += self.aborted.eq(eth.aborted)
        return m


@dataclass(frozen=True)
class Flow:
    """Handshake pressure: probability of an idle input cycle and of a stalled output cycle."""

    gap: float = 0.0
    stall: float = 0.0
    seed: int = 0


IDEAL = Flow()
FLOWS = [pytest.param(IDEAL, id="ideal"), pytest.param(Flow(0.3, 0.4, seed=7), id="random")]


@dataclass
class Result:
    payloads: list[bytes]
    counters: dict[str, int]
    in_beats: int = 0
    in_stalls: int = 0          # cycles the input offered a beat and ready was low
    cycles: int = 0             # cycles from the first offered beat to the last accepted one
    packets: list = None        # (payload bytes, aborted) for every packet that left
    aborted: int = 0            # frames the stage reported under ``aborted``


def ref_eth(frames: list[bytes], cfg: EthRxConfig = EthRxConfig()) -> Result:
    model = EthRxModel(cfg)
    payloads = [p for p in map(model.receive, frames) if p is not None]
    return Result(payloads, {name: model.counters[name] for name in COUNTERS})


@functools.cache
def eth_bench() -> Bench:
    return Bench(EthHarness())


def rtl_eth(frames: list[bytes], cfg: EthRxConfig = EthRxConfig(), flow: Flow = IDEAL, *,
            beats: list[dict] | None = None, allow_abort: bool = False) -> Result:
    """Run the gateware on ``frames`` (or raw ``beats``); one testbench drives, sinks and reads, cycle by cycle."""
    bench = eth_bench()
    dut = bench.dut
    rng = random.Random(flow.seed)
    if beats is None:
        beats = [b for f in frames for b in packet_to_beats(f)]
    res = Result([], {})

    async def bus_write(ctx, name, value):
        await sim_bus_write(ctx, dut.bus, ETH_MAP[f"eth.{name}"].address, value)

    async def bus_read(ctx, name):
        return await sim_bus_read(ctx, dut.bus, ETH_MAP[f"eth.{name}"].address)

    async def tb(ctx):
        await bus_write(ctx, "ip_dst", cfg.ip_dst)
        await bus_write(ctx, "udp_port", cfg.udp_port)
        await bus_write(ctx, "filter", cfg.filter)
        out_beats = []
        k, offering, idle, cycle, first_cycle = 0, False, 0, 0, None
        while k < len(beats) or idle < 16:
            if not offering and k < len(beats):
                offering = not (flow.gap and rng.random() < flow.gap)
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, beats[k])
                if first_cycle is None:
                    first_cycle = cycle
            ready = not (flow.stall and rng.random() < flow.stall)
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_payload, aborted = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload, dut.aborted)
            res.aborted += aborted
            cycle += 1
            if offering:
                if i_ready:
                    k += 1
                    offering = False
                    res.cycles = cycle - first_cycle
                else:
                    res.in_stalls += 1
            if o_valid and ready:
                out_beats.append({name: int(getattr(o_payload, name)) for name, _ in Beat})
            idle = 0 if o_valid or k < len(beats) else idle + 1
        ctx.set(dut.i.valid, 0)
        for name in COUNTERS:
            res.counters[name] = await bus_read(ctx, name)
        assert allow_abort or not any(b["abort"] for b in out_beats)
        res.packets = [(p, bool(last["abort"])) for p, last in beats_to_packets(out_beats)]
        res.payloads = [p for p, _ in res.packets]

    bench.run(tb)
    res.in_beats = len(beats)
    return res


def check(frames, cfg=EthRxConfig(), flow=IDEAL, *, payloads=None, counters=None) -> Result:
    """Gateware == model; and, when given, both equal the expectation from the construction."""
    got, ref = rtl_eth(frames, cfg, flow), ref_eth(frames, cfg)
    assert got.payloads == ref.payloads
    assert got.counters == ref.counters
    if payloads is not None:
        assert ref.payloads == payloads
    if counters is not None:
        assert ref.counters == {name: counters.get(name, 0) for name in COUNTERS}
    return got


# --------------------------------------------------------------------------- #
# Frame builders
# --------------------------------------------------------------------------- #

def pattern(n: int, salt: int = 0) -> bytes:
    """``n`` recognisable payload bytes (no zeros, so lost padding or lanes show)."""
    return bytes((salt * 37 + k * 7 + 1) % 255 + 1 for k in range(n))


def frame(payload: bytes, *, dst_ip: str = DST_IP, dst_port: int = DST_PORT, **kw) -> bytes:
    return build_udp_frame(payload, dst_ip=dst_ip, src_ip="10.0.0.2", dst_port=dst_port, src_port=40000, **kw)


def with_ip_fields(f: bytes, **fields) -> bytes:
    """Rewrite IPv4 header bytes (``offset=value`` as ``_<offset>``, 1 or 2 bytes) and fix the checksum."""
    b = bytearray(f)
    for key, (value, size) in fields.items():
        off = int(key[1:])
        b[off:off + size] = value.to_bytes(size, "big")
    ihl = (b[14] & 0x0F) * 4 if b[14] >> 4 == 4 else 20
    b[24:26] = b"\0\0"
    b[24:26] = ipv4_checksum(bytes(b[14:14 + ihl])).to_bytes(2, "big")
    return bytes(b)


def with_udp_len(f: bytes, udp_len: int) -> bytes:
    return f[:38] + udp_len.to_bytes(2, "big") + f[40:]


def good_counters(n: int, truncated: int = 0) -> dict:
    return {"frames": n, "forwarded": n, "truncated": truncated}


# --------------------------------------------------------------------------- #
# Payload lengths, padding, truncation
# --------------------------------------------------------------------------- #

# The payload starts in lane 2 of beat 5: 6, 14, 22... bytes end exactly on a beat.
LENGTHS = sorted(set(range(21)) | {21, 22, 23, 29, 30, 31, 37, 38, 39, 64, 100, 1472})


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_ethrx_payload_lengths_and_beat_boundaries(flow):
    payloads = [pattern(n, salt=n) for n in LENGTHS]
    frames = [frame(p) for p in payloads]
    check(frames, CFG_ON, flow, payloads=payloads, counters=good_counters(len(frames)))


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_ethrx_padding_removed(flow):
    """Payloads under 18 bytes make 60-byte frames whose padding must not be forwarded."""
    payloads = [pattern(n, salt=3) for n in (0, 1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17)]
    frames = [frame(p) for p in payloads]
    assert all(len(f) == 60 for f in frames)
    # Padding that looks like payload: non-zero bytes after the datagram.
    frames += [frame(p)[:42 + len(p)] + b"\xee" * (18 - len(p)) for p in payloads]
    check(frames, CFG_ON, flow, payloads=payloads * 2, counters=good_counters(len(frames)))


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("length", [5, 30], ids=["padded60", "unpadded72"])
def test_ethrx_truncated_at_every_byte_40_to_60(flow, length):
    """Cut at ``c``: below 42 bytes a runt; else the payload as far as it went, truncated if short."""
    p = pattern(length, salt=9)
    full = frame(p)
    cuts = list(range(40, 61)) + [0, 1, 8, 14, 33, 34, 39]
    frames, payloads, counters = [], [], Counter()
    for c in cuts:
        frames.append(full[:c])
        counters["frames"] += 1
        if c < 42:
            counters["drop_runt"] += 1
            counters["dropped_bytes"] += c
        else:
            payloads.append(p[:c - 42])
            counters["forwarded"] += 1
            counters["truncated"] += c < 42 + length
        frames.append(full)                      # the stage recovers: the next frame is whole
        payloads.append(p)
        counters["frames"] += 1
        counters["forwarded"] += 1
    check(frames, CFG_ON, flow, payloads=payloads, counters=counters)


# --------------------------------------------------------------------------- #
# Drop reasons
# --------------------------------------------------------------------------- #

P = pattern(26, salt=5)
GOOD = frame(P)


def _drop_cases():
    mf = 0x2000
    return {
        "runt": ("drop_runt", GOOD[:41]),
        "ethertype_ipv6": ("drop_ethertype", GOOD[:12] + b"\x86\xdd" + GOOD[14:]),
        "ethertype_vlan": ("drop_ethertype", GOOD[:12] + b"\x81\x00" + GOOD[14:]),
        "ip_version6": ("drop_ip_header", with_ip_fields(GOOD, _14=(0x65, 1))),
        "ip_options": ("drop_ip_header", frame(P, ip_options=b"\x01\x01\x01\x00")),
        "ip_checksum": ("drop_ip_checksum", GOOD[:24] + bytes([GOOD[24] ^ 0x01]) + GOOD[25:]),
        "ip_total_len_under_28": ("drop_ip_length", with_ip_fields(GOOD, _16=(27, 2))),
        "udp_len_under_8": ("drop_ip_length", with_udp_len(GOOD, 7)),
        "udp_len_over_ip": ("drop_ip_length", with_udp_len(GOOD, 8 + len(P) + 1)),
        "fragment_mf": ("drop_fragment", with_ip_fields(GOOD, _20=(mf, 2))),
        "fragment_offset": ("drop_fragment", with_ip_fields(GOOD, _20=(0x0001, 2))),
        "protocol_tcp": ("drop_protocol", with_ip_fields(GOOD, _23=(6, 1))),
        "filter_address": ("drop_filter", frame(P, dst_ip="233.54.12.2")),
        "filter_port": ("drop_filter", frame(P, dst_port=DST_PORT + 1)),
    }


DROP_CASES = _drop_cases()


@pytest.mark.sim
@pytest.mark.parametrize("case", list(DROP_CASES))
def test_ethrx_drop_reason(case):
    """Each bad frame is dropped whole under its one reason; the good frames around it pass."""
    reason, bad = DROP_CASES[case]
    frames = [GOOD, bad, GOOD, bad, bad, GOOD]
    counters = {"frames": 6, "forwarded": 3, reason: 3, "dropped_bytes": 3 * len(bad)}
    check(frames, CFG_ON, Flow(0.2, 0.2, seed=len(case)), payloads=[P] * 3, counters=counters)


@pytest.mark.sim
def test_ethrx_accepts_df_and_udp_shorter_than_ip():
    """DF alone is not a fragment; an IPv4 datagram longer than its UDP length forwards UDP's bytes."""
    df_only = with_ip_fields(GOOD, _20=(0x4000, 2))
    short_udp = with_udp_len(GOOD, 8 + len(P) - 3)
    frames = [df_only, short_udp, GOOD]
    check(frames, CFG_ON, payloads=[P, P[:-3], P], counters=good_counters(3))


@pytest.mark.sim
@pytest.mark.parametrize("filt", [0, 1, 2, 3])
def test_ethrx_filter_bits(filt):
    cfg = EthRxConfig(filter=filt, ip_dst=CFG_ON.ip_dst, udp_port=CFG_ON.udp_port)
    cases = [  # (frame, address matches, port matches)
        (frame(P), True, True),
        (frame(P, dst_ip="233.54.12.2"), False, True),
        (frame(P, dst_port=DST_PORT + 1), True, False),
        (frame(P, dst_ip="10.1.2.3", dst_port=1), False, False),
    ]
    frames, payloads, counters = [], [], Counter(frames=len(cases))
    for f, addr_ok, port_ok in cases:
        frames.append(f)
        if (filt & 1 and not addr_ok) or (filt & 2 and not port_ok):
            counters["drop_filter"] += 1
            counters["dropped_bytes"] += len(f)
        else:
            payloads.append(P)
            counters["forwarded"] += 1
    check(frames, cfg, payloads=payloads, counters=counters)


# --------------------------------------------------------------------------- #
# Throughput and handshake pressure
# --------------------------------------------------------------------------- #

@pytest.mark.sim
def test_ethrx_back_to_back_minimum_frames_no_bubbles():
    """200 back-to-back 60-byte frames, valid and ready held high: ready never drops."""
    payloads = [pattern(k % 19, salt=k) for k in range(200)]
    frames = [frame(p) for p in payloads]
    assert {len(f) for f in frames} == {60}
    got = check(frames, CFG_ON, payloads=payloads, counters=good_counters(200))
    assert got.in_beats == 200 * 8
    assert got.in_stalls == 0
    assert got.cycles == got.in_beats


@pytest.mark.sim
@pytest.mark.parametrize("seed", [11, 12])
def test_ethrx_random_mix_under_backpressure(seed):
    """A seeded mix of good, truncated and bad frames with random valid gaps and ready stalls."""
    rng = random.Random(seed)
    bad = [f for _, f in DROP_CASES.values()]
    frames = []
    for k in range(60):
        roll = rng.random()
        p = rng.randbytes(rng.choice([0, 1, 6, 7, 14, 15, rng.randint(0, 120)]))
        f = frame(p)
        if roll < 0.2:
            frames.append(rng.choice(bad))
        elif roll < 0.35:
            frames.append(f[:rng.randint(0, len(f) - 1)])
        else:
            frames.append(f)
    got = check(frames, CFG_ON, Flow(0.35, 0.5, seed=seed))
    assert got.counters["frames"] == len(frames)
    assert sum(got.counters[n] for n in COUNTERS if n.startswith("drop_")) + got.counters["forwarded"] == len(frames)


# --------------------------------------------------------------------------- #
# Frames the MAC aborted (bad FCS, RX_ER, runt, overflow)
# --------------------------------------------------------------------------- #

def aborted_beats(f: bytes, cut: int, empty: bool) -> list[dict]:
    """``f`` cut after ``cut`` bytes and marked bad: ``abort`` on its last beat, or (``empty``) on an
    extra beat with no bytes, as the MAC closes a frame that overflowed its FIFO."""
    beats = packet_to_beats(f[:cut])
    if empty:
        beats[-1]["last"] = 0 if beats[-1]["n"] == 8 else beats[-1]["last"]
        if beats[-1]["last"]:         # a partial last beat cannot be followed: mark it instead
            beats[-1]["abort"] = 1
        else:
            beats.append(dict(data=0, n=0, first=0, last=1, abort=1))
    else:
        beats[-1]["abort"] = 1
    return beats


@pytest.mark.sim
@pytest.mark.parametrize("flow", FLOWS)
def test_ethrx_aborted_frames_are_dropped_or_aborted_and_counted(flow):
    """Aborted frames cut at every length: dropped whole before any payload left, else the payload
    ends with ``abort`` and a prefix of the true bytes; good frames around them pass untouched."""
    rng = random.Random(11)
    beats, want, n_frames, n_abort, dropped_bytes = [], [], 0, 0, 0
    for i, cut in enumerate(list(range(1, 90)) + [rng.randrange(90, 300) for _ in range(20)]):
        payload = pattern(rng.randrange(20, 300), salt=i)
        f = frame(payload)
        cut = min(cut, len(f) - (i % 2))      # the MAC's empty abort beat only follows lost bytes
        beats += aborted_beats(f, cut, empty=bool(i % 2))
        n_abort += 1
        dropped_bytes += cut
        # The output starts with the beat after the sixth (payload bytes 0-7); an abort before it drops all.
        if (cut + 7) // 8 > 7 or ((cut + 7) // 8 == 7 and i % 2 and cut % 8 == 0):
            want.append(("aborted", payload))
        good = pattern(rng.randrange(0, 100), salt=1000 + i)
        beats += packet_to_beats(frame(good))
        want.append(("good", good))
        n_frames += 2
    got = rtl_eth([], CFG_ON, flow, beats=beats, allow_abort=True)
    assert len(got.packets) == len(want)
    for k, ((data, aborted), (kind, payload)) in enumerate(zip(got.packets, want)):
        if kind == "good":
            assert (data, aborted) == (payload, False), k
        else:
            assert aborted and payload.startswith(data) and len(data) >= 8, (k, len(data))
    assert got.aborted == n_abort
    c = got.counters
    assert c["frames"] == n_frames and c["forwarded"] == n_frames - n_abort
    assert c["dropped_bytes"] == dropped_bytes
    assert sum(v for k, v in c.items() if k.startswith("drop_")) == c.get("drop_aborted", 0)
