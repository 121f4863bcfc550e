"""Tests for protocols/moldudp64.py: a hand-assembled known answer, round trips,
packetise invariants, every strict decode error with its offset, and the
lenient walk over damaged packets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.moldudp64 import (
    END_OF_SESSION,
    HEADER_LEN,
    SESSION_LEN,
    MoldError,
    MoldPacket,
    MoldRequest,
    decode_packet,
    decode_request,
    encode_packet,
    encode_request,
    end_of_session,
    heartbeat,
    iter_messages_lenient,
    packetise,
)

sessions = st.binary(max_size=10) | st.text(st.characters(max_codepoint=127), max_size=10)
seqs = st.integers(0, 2**64 - 1)
message_lists = st.lists(st.binary(max_size=300), max_size=40)


@st.composite
def packets(draw, min_messages=0):
    """Downstream packets with 0..40 messages of 0..300 bytes."""
    msgs = draw(st.lists(st.binary(max_size=300), min_size=min_messages, max_size=40))
    seq = draw(st.integers(0, 2**64 - 1 - len(msgs)))
    return MoldPacket(draw(sessions), seq, tuple(msgs))


def block_offsets(pkt: MoldPacket) -> list[int]:
    """Start of each message block, from the format description."""
    offs, off = [], 20
    for m in pkt.messages:
        offs.append(off)
        off += 2 + len(m)
    return offs


def decode_error(data: bytes) -> tuple[str, int]:
    """The (reason, offset) decode_packet rejects ``data`` with."""
    with pytest.raises(MoldError) as ei:
        decode_packet(data)
    assert ei.value.reason in str(ei.value)
    return ei.value.reason, ei.value.offset


# --------------------------------------------------------------------------- #
# Known answers
# --------------------------------------------------------------------------- #


def test_known_answer_packet():
    wire = bytes.fromhex(
        "544553543030303030 31"    # "TEST000001"
        "000000000000002a"        # seq 42
        "0002"                    # two messages
        "0003 414243"             # "ABC"
        "0000"                    # empty message
        .replace(" ", "")
    )
    pkt = MoldPacket(b"TEST000001", 42, (b"ABC", b""))
    assert encode_packet(pkt) == wire
    assert decode_packet(wire) == pkt
    assert (pkt.count, pkt.next_seq, pkt.is_heartbeat) == (2, 44, False)


def test_known_answer_heartbeat_end_of_session_and_request():
    assert encode_packet(heartbeat("S1", 7)) == b"S1        " + (7).to_bytes(8, "big") + b"\0\0"
    assert encode_packet(end_of_session("S1", 7)) == \
        b"S1        " + (7).to_bytes(8, "big") + b"\xff\xff"
    assert encode_request(MoldRequest("S1", 2**64 - 1, 500)) == \
        b"S1        " + b"\xff" * 8 + (500).to_bytes(2, "big")


def test_session_normalisation():
    assert MoldPacket("AB", 1).session == b"AB        "
    assert MoldPacket(b"0123456789", 1).session == b"0123456789"
    for bad in ("ABCDEFGHIJK", b"ABCDEFGHIJK", "caf\u00e9"):
        with pytest.raises(MoldError) as ei:
            MoldPacket(bad, 1)
        assert (ei.value.reason, ei.value.offset) == ("session", 0)
    with pytest.raises(MoldError) as ei:
        packetise([b"x"], session="ABCDEFGHIJK")
    assert ei.value.reason == "session"


def test_sequence_range():
    for bad in (-1, 2**64):
        with pytest.raises(MoldError) as ei:
            MoldPacket("S", bad)
        assert (ei.value.reason, ei.value.offset) == ("sequence", 10)


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@settings(max_examples=150, deadline=None)
@given(packets())
def test_round_trip(pkt):
    wire = encode_packet(pkt)
    assert len(wire) == HEADER_LEN + sum(2 + len(m) for m in pkt.messages)
    assert wire[:SESSION_LEN] == pkt.session and len(pkt.session) == SESSION_LEN
    assert int.from_bytes(wire[10:18], "big") == pkt.seq
    assert int.from_bytes(wire[18:20], "big") == len(pkt.messages)
    assert decode_packet(wire) == pkt
    assert pkt.next_seq == pkt.seq + len(pkt.messages)


@settings(max_examples=50, deadline=None)
@given(sessions, seqs)
def test_heartbeat_and_end_of_session_round_trip(session, seq):
    hb, eos = heartbeat(session, seq), end_of_session(session, seq)
    assert (hb.count, hb.is_heartbeat, hb.end_of_session, hb.next_seq) == (0, True, False, seq)
    assert (eos.count, eos.is_heartbeat, eos.end_of_session, eos.next_seq) == \
        (END_OF_SESSION, False, True, seq)
    assert decode_packet(encode_packet(hb)) == hb
    assert decode_packet(encode_packet(eos)) == eos
    assert len(encode_packet(eos)) == HEADER_LEN


@settings(max_examples=50, deadline=None)
@given(sessions, seqs, st.integers(0, 0xFFFF))
def test_request_round_trip(session, seq, count):
    req = MoldRequest(session, seq, count)
    wire = encode_request(req)
    assert len(wire) == 20 and decode_request(wire) == req


def test_request_errors():
    wire = encode_request(MoldRequest("S", 1, 2))
    for k in range(20):
        with pytest.raises(MoldError) as ei:
            decode_request(wire[:k])
        assert (ei.value.reason, ei.value.offset) == ("short_header", 0)
    with pytest.raises(MoldError) as ei:
        decode_request(wire + b"\0")
    assert (ei.value.reason, ei.value.offset) == ("trailing_bytes", 20)
    with pytest.raises(MoldError) as ei:
        MoldRequest("S", 1, 0x10000)
    assert (ei.value.reason, ei.value.offset) == ("count", 18)


def test_encode_limits():
    with pytest.raises(MoldError) as ei:
        encode_packet(MoldPacket("S", 1, (b"a", bytes(65536))))
    assert (ei.value.reason, ei.value.offset) == ("message_too_long", 23)
    assert decode_packet(encode_packet(MoldPacket("S", 1, (bytes(65535),)))).messages == \
        (bytes(65535),)
    with pytest.raises(MoldError) as ei:
        encode_packet(MoldPacket("S", 1, (b"",) * 0xFFFF))
    assert ei.value.reason == "too_many_messages"
    with pytest.raises(MoldError) as ei:
        MoldPacket("S", 1, (b"x",), end_of_session=True)
    assert ei.value.reason == "trailing_bytes"


# --------------------------------------------------------------------------- #
# Strict decode errors
# --------------------------------------------------------------------------- #


@settings(max_examples=30, deadline=None)
@given(packets(), st.data())
def test_short_header(pkt, data):
    k = data.draw(st.integers(0, HEADER_LEN - 1))
    assert decode_error(encode_packet(pkt)[:k]) == ("short_header", 0)


@settings(max_examples=60, deadline=None)
@given(packets(min_messages=1), st.data())
def test_truncated_length(pkt, data):
    # Cut at a block start or one byte into its length prefix.
    j = data.draw(st.integers(0, len(pkt.messages) - 1))
    start = block_offsets(pkt)[j]
    cut = start + data.draw(st.integers(0, 1))
    assert decode_error(encode_packet(pkt)[:cut]) == ("truncated_length", start)


@settings(max_examples=60, deadline=None)
@given(packets(min_messages=1).filter(lambda p: any(p.messages)), st.data())
def test_truncated_message(pkt, data):
    j = data.draw(st.sampled_from([i for i, m in enumerate(pkt.messages) if m]))
    start = block_offsets(pkt)[j]
    cut = data.draw(st.integers(start + 2, start + 2 + len(pkt.messages[j]) - 1))
    assert decode_error(encode_packet(pkt)[:cut]) == ("truncated_message", start)


@settings(max_examples=30, deadline=None)
@given(packets(), st.binary(min_size=1, max_size=30))
def test_trailing_bytes(pkt, extra):
    wire = encode_packet(pkt)
    assert decode_error(wire + extra) == ("trailing_bytes", len(wire))


@settings(max_examples=30, deadline=None)
@given(packets(), st.integers(1, 5))
def test_count_larger_than_messages(pkt, more):
    wire = bytearray(encode_packet(pkt))
    wire[18:20] = (len(pkt.messages) + more).to_bytes(2, "big")
    assert decode_error(bytes(wire)) == ("truncated_length", len(wire))


@settings(max_examples=30, deadline=None)
@given(sessions, seqs, st.binary(min_size=1, max_size=30))
def test_end_of_session_carries_no_messages(session, seq, extra):
    wire = encode_packet(end_of_session(session, seq))
    assert decode_error(wire + extra) == ("trailing_bytes", HEADER_LEN)


# --------------------------------------------------------------------------- #
# Lenient walk
# --------------------------------------------------------------------------- #


@settings(max_examples=60, deadline=None)
@given(packets())
def test_lenient_on_good_packets_matches_strict(pkt):
    r = iter_messages_lenient(encode_packet(pkt))
    assert (r.session, r.seq, r.count, r.messages) == (pkt.session, pkt.seq, pkt.count,
                                                       pkt.messages)
    assert (r.error, r.offset, r.lost) == (None, None, 0)
    assert list(r) == list(enumerate(pkt.messages))


@settings(max_examples=100, deadline=None)
@given(packets(min_messages=1), st.data())
def test_lenient_keeps_complete_messages_of_truncated_packets(pkt, data):
    wire = encode_packet(pkt)
    cut = data.draw(st.integers(HEADER_LEN, len(wire) - 1))
    offs = block_offsets(pkt)
    kept = sum(1 for o, m in zip(offs, pkt.messages) if o + 2 + len(m) <= cut)
    r = iter_messages_lenient(wire[:cut])
    assert r.messages == pkt.messages[:kept]
    assert list(r) == list(enumerate(pkt.messages[:kept]))
    assert r.lost == len(pkt.messages) - kept
    assert r.offset == offs[kept]
    assert r.error == ("truncated_length" if cut < offs[kept] + 2 else "truncated_message")
    with pytest.raises(MoldError) as ei:
        decode_packet(wire[:cut])
    assert (ei.value.reason, ei.value.offset) == (r.error, r.offset)


def test_lenient_trailing_bytes_and_end_of_session():
    r = iter_messages_lenient(encode_packet(MoldPacket("S", 5, (b"ab",))) + b"zz")
    assert (r.messages, r.lost, r.error, r.offset) == ((b"ab",), 0, "trailing_bytes", 24)
    r = iter_messages_lenient(encode_packet(end_of_session("S", 9)))
    assert (r.end_of_session, r.lost, r.error, len(r)) == (True, 0, None, 0)
    with pytest.raises(MoldError) as ei:
        iter_messages_lenient(b"short")
    assert ei.value.reason == "short_header"


# --------------------------------------------------------------------------- #
# packetise
# --------------------------------------------------------------------------- #


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=200),
    st.integers(322, 1500),
    st.integers(1, 50),
    st.integers(0, 2**63),
    sessions,
)
def test_packetise_invariants(msgs, max_payload, max_messages, first_seq, session):
    pkts = packetise(msgs, session=session, first_seq=first_seq,
                     max_payload=max_payload, max_messages=max_messages)
    assert [m for p in pkts for m in p.messages] == msgs
    assert all(p.messages for p in pkts)
    seq = first_seq
    for p in pkts:
        assert p.seq == seq and p.session == MoldPacket(session, 0).session
        seq = p.next_seq
        wire = encode_packet(p)
        assert len(wire) <= max_payload and p.count <= max_messages
        assert decode_packet(wire) == p
    # Greedy: no packet could have taken the first message of the next one.
    for p, nxt in zip(pkts, pkts[1:]):
        assert (len(encode_packet(p)) + 2 + len(nxt.messages[0]) > max_payload
                or p.count == max_messages)


def test_packetise_message_too_large():
    assert packetise([bytes(1378)], session="S", max_payload=1400)[0].count == 1
    with pytest.raises(MoldError) as ei:
        packetise([b"a", bytes(1379)], session="S", max_payload=1400)
    assert ei.value.reason == "message_too_large" and "message 1" in str(ei.value)
    with pytest.raises(MoldError) as ei:
        packetise([bytes(65536)], session="S", max_payload=70000)
    assert ei.value.reason == "message_too_large"
    assert packetise([], session="S") == []
