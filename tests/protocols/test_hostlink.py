"""The host link codec (protocols/hostlink.py): round trips, the frame layout and refusals."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import hostlink as link
from protocols.net import ip_to_int, parse_udp_frame

kinds = st.sampled_from(list(link.Kind))


@st.composite
def datagrams(draw):
    kind = draw(kinds)
    size = {link.Kind.READ: 8, link.Kind.WRITE: 16, link.Kind.READ_ACK: 16, link.Kind.WRITE_ACK: 16}.get(kind)
    body = draw(st.binary(min_size=size or 0, max_size=size or 300))
    return link.Datagram(kind, draw(st.integers(0, link.SEQ_MASK)), body, draw(st.booleans()))


@settings(max_examples=300)
@given(datagrams())
def test_datagram_round_trip(d):
    raw = d.encode()
    assert len(raw) == link.HEADER_LEN + len(d.body)
    assert link.decode(raw) == d


@given(st.integers(0, 0xFFFF), st.integers(0, (1 << 64) - 1), st.integers(0, link.SEQ_MASK))
def test_write_request_layout(addr, value, seq):
    raw = link.write_request(seq, addr, value).encode()
    # kind, version 1 in the high nibble of flags, seq little-endian, then addr and value little-endian
    assert raw == struct.pack("<BBIQQ", 2, 0x10, seq, addr, value)
    assert link.addr_value(link.decode(raw)) == (addr, value)


def test_body_starts_on_a_beat_boundary():
    board = link.Endpoint(bytes(6), ip_to_int("10.0.0.2"), link.PORT)
    host = link.Endpoint(b"\x02" + bytes(5), ip_to_int("10.0.0.1"), 40000)
    frame = link.frame(link.read_request(7, 3).encode(), host, board)
    assert link.FRAME_HEADER_LEN == 48
    assert frame[48:56] == (3).to_bytes(8, "little")
    udp = parse_udp_frame(frame)
    assert (udp.dst_port, udp.src_port, udp.payload[:1]) == (link.PORT, 40000, b"\x01")


@pytest.mark.parametrize("raw, field", [
    (b"\x01\x10\0\0", "header"),
    (struct.pack("<BBI", 1, 0x00, 0) + bytes(8), "version"),
    (struct.pack("<BBI", 0x7F, 0x10, 0) + bytes(8), "kind"),
    (struct.pack("<BBI", 1, 0x10, 0) + bytes(16), "body"),
])
def test_decode_names_the_bad_field(raw, field):
    with pytest.raises(link.LinkError) as err:
        link.decode(raw)
    assert err.value.field == field and "offset" in str(err.value)


def test_model_pushes_nothing_before_a_host_and_numbers_pushes_after():
    board = link.Endpoint(bytes(6), ip_to_int("10.0.0.2"), link.PORT)
    host = link.Endpoint(b"\x02" + bytes(5), ip_to_int("10.0.0.1"), 40000)
    model = link.BoardModel(board, read=lambda a: 0, write=lambda a, v: None)
    assert model.push(link.Kind.EVENT, bytes(16)) is None
    model.receive(link.frame(link.read_request(1, 0).encode(), host, board))
    seqs = [link.decode(parse_udp_frame(model.push(link.Kind.EVENT, bytes(20))).payload).seq for _ in range(3)]
    assert seqs == [0, 1, 2]
    assert model.push(link.Kind.ORDER, bytes(link.MAX_BODY + 1)) is None
    assert model.counters["push_dropped"] == 2 and model.counters["events"] == 3
