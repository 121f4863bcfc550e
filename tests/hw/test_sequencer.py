"""The FIX sequencer in amaranth.sim: host templates and gateware orders interleave whole, each stamped
exactly as protocols.fix.stamp / host.ordermodel.restamp say, one MsgSeqNum sequence, every message reported."""

import random

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from host.ordermodel import OrderConfig, encode_order, restamp
from hw.csr import BusSignature, CsrBank
from hw.fixenc import EncBeat
from hw.sequencer import OrderSentRecord, Sequencer, StampedRecord
from hw.stream import Beat, packet_to_beats
from protocols import fix
from protocols.registers import RegisterMap
from protocols.registers_trade import FIXSEQ
from sim.streams import SimBench, bus_write, stream_get, stream_put
from tests.hw.test_fixenc import get_packets

MAP = RegisterMap((FIXSEQ,))


class Dut(wiring.Component):
    a: In(stream.Signature(EncBeat))
    b: In(stream.Signature(Beat))
    o: Out(stream.Signature(Beat))
    sent: Out(stream.Signature(OrderSentRecord))
    stamped: Out(stream.Signature(StampedRecord))
    bus: In(BusSignature())

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = Sequencer()
        m.submodules.bank = bank = CsrBank(MAP)
        wiring.connect(m, bank.fixseq, seq.csr)
        for name in ("a", "b"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(seq, name))
        for name in ("o", "sent", "stamped"):
            wiring.connect(m, getattr(seq, name), wiring.flipped(getattr(self, name)))
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += seq.cycle.eq(cycle)
        return m


def host_template(rng, msg_type="0"):
    """A downstream-stamped template as host.fix.session builds it (zero 34= placeholder, valid CheckSum)."""
    fields = [(34, b"0" * fix.SEQ_WIDTH), (49, b"CALARB"), (56, b"EXCH"), (52, b"20240102-09:30:00.%03d" % rng.randrange(1000))]
    if msg_type == "D":
        fields += [(11, b"H%d" % rng.randrange(10 ** rng.randint(1, 12))), (55, b"MSFT"), (54, b"1"),
                   (60, b"20240102-09:30:00.000"), (38, b"%d" % rng.randint(1, 10 ** 6)), (40, b"2"),
                   (44, b"%d.%d" % (rng.randint(1, 999), rng.randint(0, 99))), (59, b"0")]
    elif msg_type == "1":
        fields += [(112, b"T" * rng.randint(1, 30))]
    return fix.frame(msg_type, fields)


def run_mix(rng, host_msgs, orders, next_seq=None, stall=0.3):
    dut = Dut()
    bench = SimBench(dut)
    out, sent, stamped = [], [], []
    total = len(host_msgs) + len(orders)

    async def job(ctx):
        if next_seq is not None:
            await bus_write(ctx, dut.bus, MAP["fixseq.next_seq"].address, next_seq)
        # one testbench: feed both sources beat by beat, round-robin, then collect
        pending_b = [b for raw in host_msgs for b in packet_to_beats(raw)]
        pending_a = [{**b, "info": info} for raw, info in orders for b in packet_to_beats(raw)]
        ctx.set(dut.o.ready, 0)
        got_beats = []
        cyc = 0
        while len(out) < total and cyc < 20000:
            cyc += 1
            if pending_a:
                ctx.set(dut.a.valid, 1)
                ctx.set(dut.a.payload, pending_a[0])
            else:
                ctx.set(dut.a.valid, 0)
            if pending_b:
                ctx.set(dut.b.valid, 1)
                ctx.set(dut.b.payload, pending_b[0])
            else:
                ctx.set(dut.b.valid, 0)
            ctx.set(dut.o.ready, int(rng.random() > stall))
            ctx.set(dut.sent.ready, int(rng.random() > stall))
            ctx.set(dut.stamped.ready, int(rng.random() > stall))
            a_take = ctx.get(dut.a.valid) and ctx.get(dut.a.ready)
            b_take = ctx.get(dut.b.valid) and ctx.get(dut.b.ready)
            o_take = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
            s_take = ctx.get(dut.sent.valid) and ctx.get(dut.sent.ready)
            h_take = ctx.get(dut.stamped.valid) and ctx.get(dut.stamped.ready)
            if o_take:
                p = ctx.get(dut.o.payload)
                beat = {k: int(getattr(p, k)) for k in ("data", "n", "first", "last", "abort")}
                got_beats.append(beat)
                if beat["last"]:
                    out.append(1)
            if s_take:
                p = ctx.get(dut.sent.payload)
                sent.append({name: int(getattr(p, name)) for name, _ in OrderSentRecord})
            if h_take:
                p = ctx.get(dut.stamped.payload)
                stamped.append({name: int(getattr(p, name)) for name, _ in StampedRecord})
            await ctx.tick()
            if a_take:
                pending_a.pop(0)
            if b_take:
                pending_b.pop(0)
        for _ in range(5):
            ctx.set(dut.sent.ready, 1)
            ctx.set(dut.stamped.ready, 1)
            if ctx.get(dut.sent.valid):
                p = ctx.get(dut.sent.payload)
                sent.append({name: int(getattr(p, name)) for name, _ in OrderSentRecord})
            if ctx.get(dut.stamped.valid):
                p = ctx.get(dut.stamped.payload)
                stamped.append({name: int(getattr(p, name)) for name, _ in StampedRecord})
            await ctx.tick()
        from hw.stream import beats_to_packets
        out[:] = [raw for raw, _ in beats_to_packets(got_beats)]

    bench.run(job)
    return out, sent, stamped


def order_msgs(rng, n):
    cfg = OrderConfig(symbols={s: b"SYM%d" % s for s in range(4)})
    msgs = []
    for k in range(n):
        o = dict(slot=rng.randrange(4), side=rng.randrange(2), price=rng.randrange(1, 10 ** 7), qty=rng.randrange(1, 10 ** 5),
                 tif="3", clordid=k)
        raw = encode_order(cfg, **o)
        info = dict(clordid=k, slot=o["slot"], side=ord("1") + o["side"], tif=ord("3"), price=o["price"], qty=o["qty"],
                    md_seq=1000 + k)
        msgs.append((raw, info))
    return msgs


def test_interleaved_messages_are_stamped_in_one_sequence():
    rng = random.Random(3)
    host_msgs = [host_template(rng, rng.choice("01D")) for _ in range(5)]
    orders = order_msgs(rng, 3)
    out, sent, stamped = run_mix(rng, host_msgs, orders)
    assert len(out) == len(host_msgs) + len(orders)
    seqs = []
    host_left, orders_left = list(host_msgs), [raw for raw, _ in orders]
    for raw in out:
        msg = fix.decode(raw)           # framing, BodyLength and CheckSum
        seq = msg.seq_num
        seqs.append(seq)
        if msg.msg_type == "D" and msg.cl_ord_id.startswith("CA"):
            assert raw == restamp(orders_left.pop(0), seq)
        else:
            assert raw == fix.stamp(host_left.pop(0), seq)    # the host's own model of the sequencer
    assert seqs == list(range(1, len(out) + 1))
    assert not host_left and not orders_left
    # every stamped message is reported, with its MsgSeqNum, CheckSum and length
    reports = sorted([("a", r["seq"], r["checksum"], r["length"]) for r in sent] +
                     [("b", r["seq"], r["checksum"], r["length"]) for r in stamped], key=lambda r: r[1])
    assert [r[1] for r in reports] == seqs
    for r, raw in zip(reports, out):
        assert r[2] == int(raw[-4:-1]) and r[3] == len(raw)
    assert [r["clordid"] for r in sent] == list(range(len(orders)))
    assert [r["md_seq"] for r in sent] == [1000 + k for k in range(len(orders))]


def test_next_seq_write_restarts_the_sequence():
    rng = random.Random(5)
    host_msgs = [host_template(rng) for _ in range(2)]
    out, _, stamped = run_mix(rng, host_msgs, [], next_seq=999999998)
    assert [fix.decode(raw).seq_num for raw in out] == [999999998, 999999999]
    assert [r["seq"] for r in stamped] == [999999998, 999999999]
