"""protocols/fix.py: framing, BodyLength/CheckSum, typed access, dictionary validation,
stream resynchronisation, downstream stamping; against simplefix and QuickFIX where installed."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import fix, fix44
from protocols.fix import FixError, Message

SOH = b"\x01"


def nos(seq=7, cl="ORD-1", parties=True) -> Message:
    fields = [(34, seq), (49, "CALARB"), (52, "20240102-14:30:00.123"), (56, "EXCH"), (11, cl)]
    if parties:
        fields += [(453, 2), (448, "DESK1"), (447, "D"), (452, 1), (448, "TRADER7"), (452, 11)]
    fields += [(21, "1"), (55, "AAPL"), (54, "1"), (60, "20240102-14:30:00.120"), (38, 100), (40, "2"),
               (44, Decimal("150.25")), (59, "0")]
    return Message("D", fields)


def er(seq=9) -> Message:
    return Message("8", [(34, seq), (49, "EXCH"), (52, "20240102-14:30:00.200"), (56, "CALARB"), (37, "O1"),
                         (11, "ORD-1"), (17, "E1"), (150, "F"), (39, "1"), (55, "AAPL"), (54, "1"), (38, 100),
                         (32, 40), (31, Decimal("150.25")), (151, 60), (14, 40), (6, Decimal("150.25")),
                         (60, "20240102-14:30:00.199")])


def independent_frame(msg_type: str, pairs) -> bytes:
    """BodyLength and CheckSum written out from the standard's definitions, separately from the codec."""
    body = b"".join(b"%d=%s\x01" % (t, v if isinstance(v, bytes) else str(v).encode())
                    for t, v in [(35, msg_type.encode())] + list(pairs))
    head = b"8=FIX.4.4\x019=" + str(len(body)).encode() + SOH
    total = 0
    for byte in head + body:
        total = (total + byte) % 256
    return head + body + b"10=" + str(total).zfill(3).encode() + SOH


def reframe(raw: bytes) -> bytes:
    """A frame with its BodyLength and CheckSum made right again after an edit."""
    body = raw[raw.index(b"\x019=") + 1:]
    body = body[body.index(SOH) + 1:body.rindex(b"10=")]
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def test_encode_matches_the_standards_arithmetic():
    m = nos()
    assert m.encode() == independent_frame("D", m.fields)
    assert fix.checksum(b"8=FIX.4.4\x01") == sum(b"8=FIX.4.4\x01") % 256


def test_round_trip_and_typed_accessors():
    m = fix.decode(er().encode())
    assert m == er()
    assert (m.msg_type, m.seq_num, m.sender_comp_id, m.exec_type, m.ord_status) == ("8", 9, "EXCH", "F", "1")
    assert (m.order_qty, m.last_qty, m.cum_qty, m.leaves_qty) == (100, 40, 40, 60)
    assert m.last_px_e4 == 1_502_500 and m.get_decimal(6) == Decimal("150.25")
    assert m.sending_time == pytest.approx(1704205800.2)
    assert m.value(14) == 40 and m.value(31) == Decimal("150.25") and m.value(55) == "AAPL"
    with pytest.raises(KeyError, match="tag 999"):
        m[999]


def test_repeating_group_from_dictionary():
    m = fix.decode(nos().encode())
    parties = m.group(453)
    assert [(p.get(448), p.get(447), p.get_int(452)) for p in parties] == [("DESK1", "D", 1), ("TRADER7", None, 11)]
    fix.validate(m)


def test_message_by_names():
    m = fix.message("NewOrderSingle", ClOrdID="c1", Symbol="MSFT", Side="2", OrderQty=5, OrdType="1")
    assert m.msg_type == "D" and m.fields == [(11, b"c1"), (55, b"MSFT"), (54, b"2"), (38, b"5"), (40, b"1")]
    with pytest.raises(KeyError, match="NoSuchField"):
        fix.message("D", NoSuchField=1)


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b.replace(b"10=", b"10=9", 1)[:-1], "CheckSum"),
    (lambda b: b[:-4] + b"%03d\x01" % ((int(b[-4:-1]) + 1) % 256), "CheckSum mismatch"),
    (lambda b: b.replace(b"9=", b"9=1", 1), "BodyLength"),
    (lambda b: reframe(b.replace(b"\x0135=D", b"\x0111=D", 1)), "MsgType"),
    (lambda b: b[1:], "BeginString"),
    (lambda b: b[:30], "BodyLength"),
])
def test_bad_frames_raise_fix_error(mutate, reason):
    with pytest.raises(FixError, match=reason):
        fix.decode(mutate(nos().encode()))


def test_empty_value_and_bad_tag_are_rejectable():
    raw = independent_frame("D", [(34, 3), (49, "A"), (56, "B"), (52, "20240102-14:30:00"), (11, b"")])
    with pytest.raises(FixError) as e:
        fix.decode(raw)
    assert e.value.reject_reason == fix.REJECT_NO_VALUE and e.value.tag == 11
    assert fix.peek(raw) == ("D", 3)


@pytest.mark.parametrize("edit, code, tag", [
    (lambda f: [x for x in f if x[0] != 11], fix.REJECT_REQUIRED_MISSING, 11),
    (lambda f: [(t, b"Z" if t == 54 else v) for t, v in f], fix.REJECT_VALUE_OUT_OF_RANGE, 54),
    (lambda f: [(t, b"3" if t == 453 else v) for t, v in f], fix.REJECT_GROUP_COUNT, 453),
    (lambda f: f + [(9999, b"x")], fix.REJECT_INVALID_TAG, 9999),
    (lambda f: f + [(150, b"F")], fix.REJECT_TAG_NOT_DEFINED, 150),
    (lambda f: f + [(55, b"MSFT")], fix.REJECT_DUPLICATE_TAG, 55),
    (lambda f: [(t, b"1x0" if t == 38 else v) for t, v in f], fix.REJECT_BAD_FORMAT, 38),
    (lambda f: [(t, b"2024-01-02" if t == 60 else v) for t, v in f], fix.REJECT_BAD_FORMAT, 60),
])
def test_validate_names_reason_and_tag(edit, code, tag):
    m = nos()
    m.fields = edit(m.fields)
    with pytest.raises(FixError) as e:
        fix.validate(m)
    assert (e.value.reject_reason, e.value.tag) == (code, tag)


def test_unknown_msg_type():
    with pytest.raises(FixError) as e:
        fix.validate(Message("ZZ", [(34, 1)]))
    assert e.value.reject_reason == fix.REJECT_INVALID_MSGTYPE


def test_raw_data_may_hold_soh():
    m = Message("A", [(34, 1), (49, "A"), (52, "20240102-14:30:00"), (56, "B"), (98, 0), (108, 30),
                      (95, 5), (96, b"a\x01b=c")])
    back = fix.decode(m.encode())
    assert back.raw(96) == b"a\x01b=c" and back == m


def test_stamp_matches_engine_encoding():
    template = Message("D", [(34, b"0" * fix.SEQ_WIDTH)] + nos().fields[1:]).encode()
    for seq in (1, 42, 999_999_999):
        want = Message("D", [(34, b"%09d" % seq)] + nos().fields[1:]).encode()
        assert fix.stamp(template, seq) == want
        assert fix.decode(want).seq_num == seq
    with pytest.raises(FixError, match="does not fit"):
        fix.stamp(template, 10 ** 9)


def test_stream_parser_resyncs_after_garbage_and_truncation():
    a, b, c = nos(1).encode(), er(2).encode(), nos(3, "x").encode()
    stream = b"junk" + a + b"8=FIX.4.4\x019=9999\x0135=D" + b + a[:40] + c + b"\xff" * 3
    p = fix.StreamParser()
    out = []
    for i in range(0, len(stream), 7):
        out += p.feed(stream[i:i + 7])
    out += p.close()
    frames = [x for x in out if isinstance(x, bytes)]
    errors = [x for x in out if isinstance(x, FixError)]
    assert frames == [a, b, c]
    assert errors and errors[0].offset == 0 and "garbage" in errors[0].reason
    assert any("BodyLength" in e.reason for e in errors)


def test_stream_parser_refuses_oversized():
    p = fix.StreamParser(max_message=200)
    big = Message("B", [(148, "x" * 500)]).encode()
    ok = er().encode()
    out = p.feed(big + ok)
    assert [x for x in out if isinstance(x, bytes)] == [ok]
    assert "oversized" in str([x for x in out if isinstance(x, FixError)][0])


# ------------------------------------------------------------------------------------------ hypothesis

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_decode_raises_only_fix_error(data):
    try:
        m = fix.decode(data)
        fix.validate(m)
        for t, _ in m.fields:
            m.value(t)
    except FixError:
        pass


def _mutations():
    base = [nos(1).encode(), er(2).encode()]
    return st.tuples(st.sampled_from(base), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                      max_size=6), st.integers(0, 400))


@settings(max_examples=300, deadline=None)
@given(_mutations())
def test_fuzz_mutated_messages_raise_only_fix_error(case):
    raw, flips, cut = case
    b = bytearray(raw)
    for pos, val in flips:
        if pos < len(b):
            b[pos] = val
    for data in (bytes(b), bytes(b[:cut])):
        try:
            m = fix.decode(data)
            fix.validate(m)
            m.group(453)
            for t, _ in m.fields:
                m.value(t)
        except FixError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=40).filter(lambda g: b"8=F" not in g)), max_size=8),
       st.integers(1, 50))
def test_fuzz_stream_recovers_every_message_between_garbage(items, chunk):
    msgs = [nos(i + 1, f"c{i}").encode() if good else None for i, (good, _) in enumerate(items)]
    stream = b"".join((m or b"") + g for m, (_, g) in zip(msgs, items))
    p = fix.StreamParser()
    out = []
    for i in range(0, len(stream), chunk):
        out += p.feed(stream[i:i + chunk])
    out += p.close()
    assert all(isinstance(x, (bytes, FixError)) for x in out)
    assert [x for x in out if isinstance(x, bytes)] == [m for m in msgs if m]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_fuzz_stream_parser_never_raises(data, chunk):
    p = fix.StreamParser(max_message=256)
    for i in range(0, len(data), chunk):
        for item in p.feed(data[i:i + chunk]):
            assert isinstance(item, (bytes, FixError))
    p.close()


# ------------------------------------------------------------------------------------------ peers

def test_simplefix_encodes_the_same_bytes():
    simplefix = pytest.importorskip("simplefix", reason="simplefix not installed (pip install simplefix)")
    for m in (nos(), er()):
        sm = simplefix.FixMessage()
        sm.append_pair(8, "FIX.4.4", header=True)
        sm.append_pair(35, m.msg_type, header=True)
        for t, v in m.fields:
            sm.append_pair(t, v)
        assert sm.encode() == m.encode()
        parser = simplefix.FixParser()
        parser.append_buffer(m.encode())
        back = parser.get_message()
        assert back.get(44 if m.msg_type == "D" else 31) == b"150.25"


@pytest.fixture(scope="module")
def qf_dd():
    quickfix = pytest.importorskip("quickfix", reason="quickfix not installed (pip install quickfix==1.16.0)")
    return quickfix, quickfix.DataDictionary(str(fix44.SPEC))


def test_quickfix_parses_and_validates_our_messages(qf_dd):
    quickfix, dd = qf_dd
    for m in (nos(), er()):
        raw = m.encode()
        q = quickfix.Message(raw.decode(), dd, True)
        dd.validate(q)
        back = fix.decode(q.toString().encode())     # QuickFIX orders fields its own way; same content
        assert back.msg_type == q.getHeader().getField(35) == m.msg_type
        assert sorted(back.fields) == sorted(m.fields)
        assert [p.fields for p in back.group(453)] == [p.fields for p in m.group(453)]


def test_we_parse_quickfix_messages(qf_dd):
    quickfix, dd = qf_dd
    import quickfix44
    q = quickfix44.NewOrderSingle()
    q.getHeader().setField(quickfix.SenderCompID("A"))
    q.getHeader().setField(quickfix.TargetCompID("B"))
    q.getHeader().setField(quickfix.MsgSeqNum(5))
    q.getHeader().setField(quickfix.SendingTime())
    q.setField(quickfix.ClOrdID("q1"))
    g = quickfix44.NewOrderSingle.NoPartyIDs()
    for pid in ("P1", "P2"):
        g.setField(quickfix.PartyID(pid))
        g.setField(quickfix.PartyRole(3))
        q.addGroup(g)
    q.setField(quickfix.Symbol("AAPL"))
    q.setField(quickfix.Side(quickfix.Side_BUY))
    q.setField(quickfix.TransactTime())
    q.setField(quickfix.OrderQty(100))
    q.setField(quickfix.OrdType(quickfix.OrdType_LIMIT))
    q.setField(quickfix.Price(150.25))
    m = fix.decode(q.toString().encode())
    fix.validate(m)
    assert (m.cl_ord_id, m.order_qty, m.price_e4, m.seq_num) == ("q1", 100, 1_502_500, 5)
    assert [p.get(448) for p in m.group(453)] == ["P1", "P2"]


def test_dictionary_agrees_with_quickfix(qf_dd):
    _, dd = qf_dd
    d = fix44.dictionary()
    rng = random.Random(3)
    for mt, md in d.messages.items():
        assert dd.isMsgType(mt)
        for tag in md.tags:
            assert dd.isMsgField(mt, tag), (mt, tag)
            assert dd.isRequiredField(mt, tag) == (tag in md.required), (mt, tag)
            assert dd.isGroup(mt, tag) == (tag in md.groups), (mt, tag)
        for tag in rng.sample(sorted(d.fields), 20):
            assert dd.isMsgField(mt, tag) == (tag in md.tags), (mt, tag)
    for tag, f in d.fields.items():
        assert dd.getFieldName(tag, "") == (True, f.name) or dd.isField(tag)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_byte_sum_is_the_plain_sum(data):
    assert fix.byte_sum(data) == sum(data)
    assert fix.checksum(data) == sum(data) % 256
