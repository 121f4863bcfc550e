"""The whole gateware order path (trigger -> risk -> encoder -> sequencer) against host.ordermodel.

The property: with random tables, limits, positions, books and thresholds an order leaves if and only if
the trigger condition holds and every risk check passes, and its bytes are exactly the model's; rejects
carry the model's reasons. Also: tick-to-trade latency (a histogram), the kill switch, one-shot triggers.
"""

import collections
import random

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.ordermodel import BUY, SELL, Entry, Limits, Link, OrderConfig, TradeModel
from hw.csr import BusSignature, CsrBank
from hw.risk import RejectRecord
from hw.sequencer import OrderSentRecord, StampedRecord
from hw.stream import Beat
from hw.tick2trade import TickToTrade
from hw.trigger import TriggerIn
from protocols import fix
from protocols.registers import RegisterMap
from protocols.registers_trade import TRADE_BLOCKS
from sim.streams import SimBench, bus_write, stream_get, stream_put
from tests.hw.test_fixenc import get_packets, le

MAP = RegisterMap(TRADE_BLOCKS)
SLOTS = 4


class Dut(wiring.Component):
    i: In(stream.Signature(TriggerIn))
    host: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))
    sent: Out(stream.Signature(OrderSentRecord))
    reject: Out(stream.Signature(RejectRecord))
    stamped: Out(stream.Signature(StampedRecord))
    bus: In(BusSignature())
    cycle: Out(64)

    def elaborate(self, platform):
        m = Module()
        m.submodules.t2t = t2t = TickToTrade(SLOTS)
        m.submodules.bank = bank = CsrBank(MAP)
        for block in TRADE_BLOCKS:
            wiring.connect(m, getattr(bank, block.name), getattr(t2t, block.name))
        wiring.connect(m, wiring.flipped(self.i), t2t.i)
        wiring.connect(m, wiring.flipped(self.host), t2t.host)
        for name in ("o", "sent", "reject", "stamped"):
            wiring.connect(m, getattr(t2t, name), wiring.flipped(getattr(self, name)))
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        m.d.comb += t2t.cycle.eq(self.cycle)
        return m


async def w(ctx, dut, name, value):
    await bus_write(ctx, dut.bus, MAP[name].address, value)


async def program(ctx, dut, model: TradeModel, reject_window=0):
    """Write the model's whole state into the registers."""
    cfg = model.cfg
    for name, value in (("order.sender_lo", le(cfg.sender[:8])), ("order.sender_hi", le(cfg.sender[8:])),
                        ("order.target_lo", le(cfg.target[:8])), ("order.target_hi", le(cfg.target[8:])),
                        ("order.comp_len", len(cfg.sender) | len(cfg.target) << 8),
                        ("order.clordid_prefix", le(cfg.prefix)), ("order.date", le(cfg.date)),
                        ("order.ms_cycles", 0), ("order.time", cfg.time)):
        await w(ctx, dut, name, value)
    for slot, sym in cfg.symbols.items():
        await w(ctx, dut, "order.symbol", le(sym))
        await w(ctx, dut, "order.symbol_write", slot | len(sym) << 8)
    for (slot, side), e in model.entries.items():
        await w(ctx, dut, "trigger.entry_price", e.price)
        await w(ctx, dut, "trigger.entry_qty", e.max_qty | e.min_size << 32)
        await w(ctx, dut, "trigger.entry_ctl", int(e.armed) | ord(e.tif) << 8)
        await w(ctx, dut, "trigger.entry_write", slot | side << 5)
    for slot, link in enumerate(model.links):
        await w(ctx, dut, "trigger.model", (link.delta_q16 & 0xFFFFFFFF) | link.ref << 32)
        await w(ctx, dut, "trigger.model_write", slot | link.under << 8 | int(link.linked) << 16)
    for slot, lim in enumerate(model.limits):
        await w(ctx, dut, "risk.lim_qty", lim.max_qty)
        await w(ctx, dut, "risk.lim_notional", lim.max_notional)
        await w(ctx, dut, "risk.lim_band", lim.band_ref | lim.band_width << 32 | int(lim.band_bps) << 63)
        await w(ctx, dut, "risk.lim_position", lim.long_limit | lim.short_limit << 32)
        await w(ctx, dut, "risk.limit_write", slot)
        await w(ctx, dut, "risk.position", model.position[slot] & 0xFFFFFFFF)
        await w(ctx, dut, "risk.position_write", slot)
    await w(ctx, dut, "risk.throttle_inst", model.inst_burst)
    await w(ctx, dut, "risk.throttle_global", model.global_burst)
    await w(ctx, dut, "risk.clordid_next", model.clordid)
    await w(ctx, dut, "risk.reject_rule", reject_window | model.reject_limit << 32)
    kill = sum(1 << s for s, k in enumerate(model.kill_slot) if k) | int(model.kill_global) << 32
    await w(ctx, dut, "risk.kill_set", kill)
    await w(ctx, dut, "fixseq.next_seq", model.next_seq)
    await ctx.tick().repeat(12)


def tob(slot, bid, ask, bid_size, ask_size, seq):
    return {"slot": slot, "tob": {"instrument": 100 + slot, "timestamp": seq * 1000, "bid_price": bid,
                                  "ask_price": ask, "bid_size": bid_size, "ask_size": ask_size, "seq": seq}}


async def drain(ctx, dut, wait=14):
    """After a record: wait for the pipeline, then take what it produced (outputs are held by backpressure)."""
    await ctx.tick().repeat(wait)
    out = []
    if ctx.get(dut.reject.valid):
        p = await stream_get(ctx, dut.reject)
        out.append(("reject", {name: int(getattr(p, name)) for name, _ in RejectRecord}))
    if ctx.get(dut.o.valid):
        raw = (await get_packets(ctx, dut.o, 1))[0][0]
        p = await stream_get(ctx, dut.sent)
        out.append(("order", raw, {name: int(getattr(p, name)) for name, _ in OrderSentRecord}))
    return out


def run_records(model: TradeModel, records, reject_window=0):
    bench = _bench()
    got = []

    async def job(ctx):
        await program(ctx, bench.dut, model, reject_window)
        for rec in records:
            await stream_put(ctx, bench.dut.i, rec)
            got.append(await drain(ctx, bench.dut))
    bench.run(job)
    return got


_BENCH = {}


def _bench():
    """One compiled simulation per test session (compiling costs more than a case)."""
    if "bench" not in _BENCH:
        _BENCH["bench"] = SimBench(Dut())
    return _BENCH["bench"]


def expected(model: TradeModel, records):
    out = []
    for rec in records:
        t = rec["tob"]
        r = model.on_tob(rec["slot"], t["bid_price"], t["ask_price"], t["bid_size"], t["ask_size"], t["seq"])
        out.append(r)
    return out


def compare(model_out, got):
    for r, g in zip(model_out, got):
        if r is None:
            assert g == [], g
        elif hasattr(r, "raw"):
            assert len(g) == 1 and g[0][0] == "order", (r, g)
            raw, sent = g[0][1], g[0][2]
            assert raw == r.raw
            msg = fix.decode(raw)
            fix.validate(msg)
            assert msg.seq_num == r.seq == sent["seq"]
            assert (sent["slot"], sent["side"], sent["price"], sent["qty"], sent["clordid"], sent["md_seq"]) == \
                (r.slot, ord("1") + r.side, r.price, r.qty, r.clordid, r.md_seq)
            assert sent["checksum"] == int(raw[-4:-1]) and sent["length"] == len(raw)
        else:
            assert len(g) == 1 and g[0][0] == "reject", (r, g)
            rej = g[0][1]
            assert (rej["slot"], rej["side"], rej["price"], rej["qty"], rej["reasons"], rej["seq"]) == \
                (r.slot, ord("1") + r.side, r.price, r.qty, r.reasons, r.md_seq)


PRICE = 1_000_000


@st.composite
def scenarios(draw):
    rng = random.Random(draw(st.integers(0, 2 ** 32)))
    cfg = OrderConfig(sender=b"CALARB%d" % rng.randrange(100), target=b"EX", prefix=b"GW%06d" % rng.randrange(10 ** 6),
                      symbols={s: b"SYM%d" % s * rng.randint(1, 2) for s in range(SLOTS)})
    model = TradeModel(SLOTS, cfg)

    def near(spread=3000):
        return PRICE + rng.randrange(-spread, spread + 1, 100)
    for (slot, side), e in model.entries.items():
        model.entries[slot, side] = Entry(price=near(), max_qty=rng.choice([1, 50, 500, 10 ** 6]),
                                          min_size=rng.choice([0, 0, 100, 400]), tif=rng.choice("034"),
                                          armed=rng.random() < 0.8)
    for slot in range(SLOTS):
        if rng.random() < 0.35:
            model.links[slot] = Link(True, rng.randrange(SLOTS), rng.randint(-3 << 16, 3 << 16), near(500))
        model.limits[slot] = Limits(max_qty=rng.choice([100, 400, 10 ** 6]),
                                    max_notional=rng.choice([10 ** 8, 3 * 10 ** 8, 10 ** 15]),
                                    band_ref=near(1000), band_width=rng.choice([500, 2000, 10 ** 6, 10, 30]),
                                    band_bps=rng.random() < 0.4,
                                    long_limit=rng.choice([0, 300, 10 ** 6]), short_limit=rng.choice([0, 300, 10 ** 6]))
        model.position[slot] = rng.randint(-200, 200)
    model.set_throttle(rng.choice([1, 2, 0xFFFF]), rng.choice([2, 5, 0xFFFF]))
    model.clordid = rng.randrange(10 ** 9)
    model.kill_slot = [rng.random() < 0.1 for _ in range(SLOTS)]
    model.kill_global = rng.random() < 0.05
    model.reject_limit = rng.choice([0, 0, 2, 4])
    model.next_seq = rng.randrange(1, 10 ** 6)
    records = []
    for k in range(draw(st.integers(3, 8))):
        bid = near(4000)
        ask = bid + rng.randrange(100, 1000, 100)
        records.append(tob(rng.randrange(SLOTS), 0 if rng.random() < 0.1 else bid, 0 if rng.random() < 0.1 else ask,
                           rng.randrange(0, 1000), rng.randrange(0, 1000), k + 1))
    return model, records


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(scenarios())
def test_order_leaves_iff_trigger_and_risk_pass(scenario):
    model, records = scenario
    import copy
    got = run_records(copy.deepcopy(model), records)
    compare(expected(model, records), got)


def simple_model(**limits):
    model = TradeModel(SLOTS, OrderConfig(symbols={s: b"S%d" % s for s in range(SLOTS)}))
    model.entries[0, BUY] = Entry(price=PRICE, max_qty=100, tif="3", armed=True)
    model.entries[0, SELL] = Entry(price=PRICE + 10000, max_qty=100, tif="3", armed=True)
    model.limits[0] = Limits(**{**dict(max_qty=10 ** 6, max_notional=10 ** 15, band_ref=PRICE, band_width=10 ** 6,
                                       long_limit=10 ** 6, short_limit=10 ** 6), **limits})
    return model


def test_one_shot_flickering_book_fires_once():
    model = simple_model()
    records = [tob(0, PRICE - 100, PRICE if k % 2 == 0 else PRICE + 100, 100, 100, k + 1) for k in range(6)]
    want = expected(simple_model(), records)
    got = run_records(model, records)
    compare(want, got)
    assert sum(1 for g in got if g and g[0][0] == "order") == 1


def test_latency_histogram_and_kill_switch_latches():
    """Records back to back; cycles from a record accepted to its order's first byte; then the kill switch."""
    model = simple_model()
    bench = _bench()
    lat = collections.Counter()

    async def job(ctx):
        d = bench.dut
        await program(ctx, d, model)
        ctx.set(d.o.ready, 1)
        ctx.set(d.sent.ready, 1)
        ctx.set(d.reject.ready, 1)
        for k in range(4):
            await w(ctx, d, "trigger.entry_price", PRICE)
            await w(ctx, d, "trigger.entry_qty", 100)
            await w(ctx, d, "trigger.entry_ctl", 1 | ord("3") << 8)
            await w(ctx, d, "trigger.entry_write", 0)
            await ctx.tick().repeat(3)
            ctx.set(d.i.valid, 1)
            ctx.set(d.i.payload, tob(0, PRICE - 100, PRICE, 100, 100, k))
            await ctx.tick().until(d.i.ready)
            start = ctx.get(d.cycle) - 1      # the cycle the record was taken
            ctx.set(d.i.valid, 0)
            while not ctx.get(d.o.valid):
                await ctx.tick()
            lat[ctx.get(d.cycle) - start] += 1
            while not (ctx.get(d.o.valid) and ctx.get(d.o.payload.last)):
                await ctx.tick()
            await ctx.tick().repeat(3)
    bench.run(job)
    print("tick-to-trade cycles (record accepted -> first order byte valid):", dict(lat))
    assert set(lat) == {8}


def test_kill_switch_stops_the_next_order_within_one_cycle_and_latches():
    """A record taken at cycle t is decided by risk in cycle t + 5. A kill written on the bus in cycle
    t + 1 + k is seen from cycle t + 2 + k: it must stop the order for k <= 3 and not for k >= 4. Once
    set it stays set across triggers, fills, throttle and ClOrdID writes until kill_clear."""
    model = simple_model()
    bench = _bench()
    left = {}

    async def job(ctx):
        d = bench.dut
        await program(ctx, d, model)
        ctx.set(d.o.ready, 1)
        ctx.set(d.sent.ready, 1)
        ctx.set(d.reject.ready, 1)

        async def trial(k=None, seq=0):
            await w(ctx, d, "trigger.entry_price", PRICE)        # re-arm slot 0's buy entry
            await w(ctx, d, "trigger.entry_qty", 100)
            await w(ctx, d, "trigger.entry_ctl", 1 | ord("3") << 8)
            await w(ctx, d, "trigger.entry_write", 0)
            await ctx.tick().repeat(2)
            await stream_put(ctx, d.i, tob(0, PRICE - 100, PRICE, 100, 100, seq))
            if k is not None:
                if k:
                    await ctx.tick().repeat(k)
                await w(ctx, d, "risk.kill_set", 1 << 32)
            n = 0
            for _ in range(40):
                n += ctx.get(d.o.valid) and ctx.get(d.o.payload.first)
                await ctx.tick()
            return n

        for k in range(7):
            left[k] = await trial(k, seq=k)
            await w(ctx, d, "risk.kill_clear", 1 << 32)
        await w(ctx, d, "risk.kill_set", 1 << 32)
        latched = 0
        for name, value in (("risk.fill", 5), ("risk.fill_write", 0), ("risk.throttle_inst", 9),
                            ("risk.clordid_next", 77), ("risk.clordid_epoch", 1), ("risk.kill_clear", 0)):
            await w(ctx, d, name, value)
            latched += await trial(seq=50)
        left["latched"] = latched
        await w(ctx, d, "risk.kill_clear", 1 << 32)
        left["cleared"] = await trial(seq=60)

    bench.run(job)
    assert [left[k] for k in range(7)] == [0, 0, 0, 0, 1, 1, 1]
    assert left["latched"] == 0
    assert left["cleared"] == 1


def run_steps(model: TradeModel, steps):
    """Run ``("tob", record)``, ``("write", register, value)`` and ``("wait", cycles)`` steps; returns what
    each record produced (as :func:`drain`)."""
    bench = _bench()
    got = []

    async def job(ctx):
        d = bench.dut
        await program(ctx, d, model)
        for step in steps:
            if step[0] == "tob":
                await stream_put(ctx, d.i, step[1])
                got.append(await drain(ctx, d))
            elif step[0] == "write":
                await w(ctx, d, step[1], step[2])
            else:
                await ctx.tick().repeat(step[1])
    bench.run(job)
    return got


def outcome(g):
    """'order', 'reject:<first reason>' or None for one record's output."""
    from protocols.registers_trade import REJECT_REASONS
    if not g:
        return None
    if g[0][0] == "order":
        return "order"
    return "reject:" + REJECT_REASONS[g[0][1]["reason"] - 1]
