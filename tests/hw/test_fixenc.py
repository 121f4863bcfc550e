"""The NewOrderSingle encoder in amaranth.sim against host.ordermodel.encode_order, and its UTC clock."""

import random

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from host.ordermodel import OrderConfig, encode_order, restamp, time_bcd
from hw.csr import BusSignature, CsrBank
from hw.fixenc import EncBeat, OrderEncoder, RiskOrder
from protocols import fix
from protocols.registers import RegisterMap
from protocols.registers_trade import ORDER
from hw.stream import beats_to_packets
from sim.streams import SimBench, bus_read, bus_write, stream_get, stream_put

MAP = RegisterMap((ORDER,))
SLOTS = 4


class Dut(wiring.Component):
    i: In(stream.Signature(RiskOrder))
    o: Out(stream.Signature(EncBeat))
    bus: In(BusSignature())

    def elaborate(self, platform):
        m = Module()
        m.submodules.enc = enc = OrderEncoder(SLOTS)
        m.submodules.bank = bank = CsrBank(MAP)
        wiring.connect(m, bank.order, enc.csr)
        wiring.connect(m, wiring.flipped(self.i), enc.i)
        wiring.connect(m, enc.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        return m


async def get_packets(ctx, stream, count, *, rng=None, stall=0.0):
    """Collect ``count`` messages from a beat stream whose payload may carry extra struct fields;
    returns ``(bytes, last beat dict)``; the first beat's fields are under ``"head"``."""
    beats, done = [], 0
    while done < count:
        while rng is not None and rng.random() < stall:
            ctx.set(stream.ready, 0)
            await ctx.tick()
        p = await stream_get(ctx, stream)
        beat = {k: int(getattr(p, k)) for k in ("data", "n", "first", "last", "abort")}
        beat["payload"] = p
        beats.append(beat)
        done += beat["last"]
    packets = beats_to_packets(beats)
    heads = [b["payload"] for b in beats if b["first"]]
    return [(raw, {**last, "head": head}) for (raw, last), head in zip(packets, heads)]


def le(b: bytes) -> int:
    return int.from_bytes(b.ljust(8, b"\0")[:8], "little")


async def configure(ctx, bus, cfg: OrderConfig, ms_cycles=0):
    async def w(name, value):
        await bus_write(ctx, bus, MAP[name].address, value)
    await w("order.sender_lo", le(cfg.sender[:8]))
    await w("order.sender_hi", le(cfg.sender[8:]))
    await w("order.target_lo", le(cfg.target[:8]))
    await w("order.target_hi", le(cfg.target[8:]))
    await w("order.comp_len", len(cfg.sender) | len(cfg.target) << 8)
    await w("order.clordid_prefix", le(cfg.prefix))
    for slot, sym in cfg.symbols.items():
        await w("order.symbol", le(sym))
        await w("order.symbol_write", slot | len(sym) << 8)
    await w("order.date", le(cfg.date))
    await w("order.ms_cycles", ms_cycles)
    await w("order.time", cfg.time)
    await ctx.tick().repeat(2)     # the strobe reaches the clock


def random_config(rng):
    def word(lo, hi):
        return bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(rng.randint(lo, hi)))
    return OrderConfig(sender=word(1, 16), target=word(1, 16), prefix=word(8, 8),
                       symbols={s: word(1, 8) for s in range(SLOTS)}, date=b"2024%02d%02d" % (rng.randint(1, 12),
                                                                                       rng.randint(1, 28)),
                       time=time_bcd(rng.randrange(86_400_000)))


def test_encoder_matches_model():
    rng = random.Random(7)
    bench = SimBench(Dut())
    dut = bench.dut
    for case in range(6):
        cfg = random_config(rng)
        orders = [dict(slot=rng.randrange(SLOTS), side=rng.randrange(2), price=rng.randrange(1 << 32),
                       qty=rng.randrange(1 << 32), tif=rng.choice("034"), clordid=rng.randrange(1 << 32),
                       md_seq=rng.randrange(1 << 64)) for _ in range(3)]
        got = []
        bench.run(lambda ctx: _run(ctx, dut, cfg, orders, got, rng))
        assert len(got) == len(orders)
        for (raw, last), o in zip(got, orders):
            want = encode_order(cfg, slot=o["slot"], side=o["side"], price=o["price"], qty=o["qty"], tif=o["tif"],
                                clordid=o["clordid"])
            assert raw == want, (raw, want)
            msg = fix.decode(restamp(raw, 1))
            fix.validate(msg)
            assert msg.price_e4 == o["price"] and msg.order_qty == o["qty"]


async def _run(ctx, dut, cfg, orders, got, rng):
    await configure(ctx, dut.bus, cfg)
    for o in orders:      # the encoder takes one order at a time: put one, collect its message
        await stream_put(ctx, dut.i, {**o, "tif": ord(o["tif"])})
        got.extend(await get_packets(ctx, dut.o, 1, rng=rng, stall=0.3))


def test_first_beat_one_cycle_after_order():
    bench = SimBench(Dut())
    dut = bench.dut
    cfg = OrderConfig(symbols={0: b"AAPL"})
    seen = {}

    async def job(ctx):
        await configure(ctx, dut.bus, cfg)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, dict(slot=0, side=0, price=1, qty=1, tif=ord("3"), clordid=1, md_seq=0))
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        seen["valid_next"] = ctx.get(dut.o.valid)
    bench.run(job)
    assert seen["valid_next"] == 1


def test_clock_ticks_and_rolls_over_at_midnight():
    bench = SimBench(Dut())
    dut = bench.dut
    cfg = OrderConfig(date=b"20241231", time=time_bcd(86_400_000 - 3), symbols={0: b"X"})
    seen = {}

    async def job(ctx):
        await configure(ctx, dut.bus, cfg)
        await bus_write(ctx, dut.bus, MAP["order.date_next"].address, le(b"20250101"))
        await bus_write(ctx, dut.bus, MAP["order.ms_cycles"].address, 2)
        await bus_write(ctx, dut.bus, MAP["order.time"].address, cfg.time)
        for _ in range(9):
            await ctx.tick()
        seen["time"] = await bus_read(ctx, dut.bus, MAP["order.time_now"].address)
        await stream_put(ctx, dut.i, dict(slot=0, side=1, price=5, qty=5, tif=ord("0"), clordid=0, md_seq=0))
        seen["msg"] = (await get_packets(ctx, dut.o, 1))[0][0]
    bench.run(job)
    stamp = fix.decode(restamp(seen["msg"], 1)).raw(52)
    assert stamp.startswith(b"20250101-00:00:00.00"), stamp
    assert time_bcd(1) <= seen["time"] <= time_bcd(4)
