"""host.ordermodel: the golden model's encoder makes valid FIX 4.4 with a constant BodyLength per CompID and
symbol lengths, its thresholds are host.arming's, its sequencer model agrees with protocols.fix.stamp."""

from hypothesis import given, settings
from hypothesis import strategies as st

from host.arming import ArmedThreshold, effective_thresholds, would_trigger
from host.ordermodel import (BUY, SELL, Entry, Link, OrderConfig, TradeModel, bcd_time, encode_order,
                             pack_order_sent, pack_risk_reject, restamp, time_bcd, unpack_order_sent,
                             unpack_risk_reject)
from protocols import fix
from protocols.registers_trade import body_length

ids = st.binary(min_size=1, max_size=16).map(lambda b: bytes(65 + x % 26 for x in b))
symbols = st.binary(min_size=1, max_size=8).map(lambda b: bytes(65 + x % 26 for x in b))


@settings(max_examples=200, deadline=None)
@given(sender=ids, target=ids, symbol=symbols, side=st.sampled_from([BUY, SELL]), price=st.integers(0, 2 ** 32 - 1),
       qty=st.integers(1, 2 ** 32 - 1), tif=st.sampled_from("034"), clordid=st.integers(0, 2 ** 32 - 1),
       seq=st.integers(1, 10 ** 9 - 1), ms=st.integers(0, 86_399_999))
def test_gateware_order_is_valid_fix44(sender, target, symbol, side, price, qty, tif, clordid, seq, ms):
    cfg = OrderConfig(sender=sender, target=target, symbols={0: symbol}, time=time_bcd(ms))
    raw = encode_order(cfg, slot=0, side=side, price=price, qty=qty, tif=tif, clordid=clordid, seq=seq)
    msg = fix.decode(raw)
    fix.validate(msg)
    assert (msg.seq_num, msg.price_e4, msg.order_qty, msg.side, msg.symbol, msg.time_in_force) == \
        (seq, price, qty, "12"[side], symbol.decode(), tif)
    assert msg.sender_comp_id == sender.decode() and msg.target_comp_id == target.decode()
    assert int(msg[9] if 9 in msg else raw.split(b"\x01")[1][2:]) == body_length(len(sender), len(target), len(symbol))
    assert abs(msg.sending_time % 86400 - ms / 1000) < 1e-6 and bcd_time(time_bcd(ms)) == ms


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(1, 10 ** 9 - 1), text=st.binary(min_size=1, max_size=40).map(lambda b: bytes(33 + x % 90 for x in b if x % 90 != 28) or b"x"))
def test_restamp_agrees_with_the_host_sequencer_model(seq, text):
    template = fix.frame("1", [(34, b"0" * fix.SEQ_WIDTH), (49, b"A"), (56, b"B"), (52, b"20240101-00:00:00.000"),
                              (112, text.replace(b"=", b"-"))])
    assert restamp(template, seq) == fix.stamp(template, seq)


@settings(max_examples=300, deadline=None)
@given(limit_b=st.integers(1, 2 * 10 ** 6), limit_s=st.integers(1, 2 * 10 ** 6), delta=st.integers(-(4 << 16), 4 << 16),
       ref=st.integers(1, 2 * 10 ** 6), mid=st.integers(1, 2 * 10 ** 6), bid=st.integers(0, 2 * 10 ** 6),
       ask=st.integers(0, 2 * 10 ** 6))
def test_model_thresholds_are_the_arming_thresholds(limit_b, limit_s, delta, ref, mid, bid, ask):
    model = TradeModel(2)
    model.entries[0, BUY] = Entry(price=limit_b, max_qty=1, armed=True)
    model.entries[0, SELL] = Entry(price=limit_s, max_qty=1, armed=True)
    model.links[0] = Link(True, 1, delta, ref)
    model.mid[1], model.mid_valid[1] = mid, True
    armed = ArmedThreshold("X", limit_b, limit_s, 1, delta, ref)
    assert model.thresholds(0) == effective_thresholds(armed, mid)
    out = model.on_tob(0, bid, ask, 1, 1)
    side = 0 if out is None else (1 if out.side == BUY else -1)
    assert side == would_trigger(armed, bid, ask, mid)


def test_event_records_round_trip():
    sent = dict(clordid=7, slot=3, side=ord("2"), tif=ord("0"), price=1234500, qty=100, checksum=99, length=183,
                cycle=123456, md_seq=42, time=0x123456789, date=int.from_bytes(b"20240102", "little"))
    assert unpack_order_sent(pack_order_sent(sent)) == sent
    rej = dict(slot=1, side=ord("1"), reason=3, reasons=0b1100, price=5, qty=6, cycle=7)
    assert unpack_risk_reject(pack_risk_reject(rej)) == rej
