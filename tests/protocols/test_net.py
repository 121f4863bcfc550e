"""Tests for protocols/net.py: round trips, one test per malformation reason, and
dpkt as the independent peer (it parses our frames, recomputes our checksums,
and builds frames we must parse and reproduce byte for byte)."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.net import (
    NetError,
    UdpDatagram,
    build_datagram_frame,
    build_udp_frame,
    bytes_to_mac,
    int_to_ip,
    ip_to_int,
    ipv4_checksum,
    mac_to_bytes,
    parse_udp_frame,
)

ETH = 14

# --------------------------------------------------------------------------- #
# Strategies and independent helpers
# --------------------------------------------------------------------------- #

ips = st.one_of(
    st.integers(0, 2**32 - 1),
    st.integers(0xE0000000, 0xEFFFFFFF),  # multicast groups
)
ports = st.integers(0, 0xFFFF)
macs = st.binary(min_size=6, max_size=6)
options = st.integers(0, 10).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k))


@st.composite
def frame_args(draw, max_payload=1472, options=options, udp_checksum=st.booleans()):
    """Keyword arguments for build_udp_frame (payload under 'payload')."""
    return dict(
        payload=draw(st.binary(max_size=max_payload)),
        dst_ip=draw(ips),
        src_ip=draw(ips),
        dst_port=draw(ports),
        src_port=draw(ports),
        dst_mac=draw(st.none() | macs),
        src_mac=draw(macs),
        ttl=draw(st.integers(0, 255)),
        ident=draw(ports),
        udp_checksum=draw(udp_checksum),
        ip_options=draw(options),
    )


def build(args: dict) -> bytearray:
    """build_udp_frame from a frame_args() draw, as a mutable frame."""
    a = dict(args)
    return bytearray(build_udp_frame(a.pop("payload"), **a))


def expected_dst_mac(args: dict) -> bytes:
    """RFC 1112 mapping, written out independently of the codec."""
    if args["dst_mac"] is not None:
        return args["dst_mac"]
    ip = args["dst_ip"]
    if ip >> 28 == 0xE:
        return bytes([0x01, 0x00, 0x5E, (ip >> 16) & 0x7F, (ip >> 8) & 0xFF, ip & 0xFF])
    return bytes.fromhex("020000000001")


def ihl_bytes(frame: bytes) -> int:
    """IP header length in bytes, read from the frame."""
    return (frame[ETH] & 0xF) * 4


def refresh_ip_checksum(frame: bytearray) -> bytearray:
    """Recompute the IPv4 header checksum with dpkt's in_cksum (not ours), so a
    corruption elsewhere is the only fault in the header."""
    hl = ihl_bytes(frame)
    frame[ETH + 10:ETH + 12] = b"\0\0"
    frame[ETH + 10:ETH + 12] = dpkt.in_cksum(bytes(frame[ETH:ETH + hl])).to_bytes(2, "big")
    return frame


def put16(frame: bytearray, off: int, v: int) -> None:
    """Overwrite a big-endian 16-bit field."""
    frame[off:off + 2] = v.to_bytes(2, "big")


def reason(frame: bytes, **kw) -> tuple[str, int]:
    """The (reason, offset) parse_udp_frame rejects the frame with."""
    with pytest.raises(NetError) as ei:
        parse_udp_frame(bytes(frame), **kw)
    e = ei.value
    assert e.reason in str(e) and str(e.offset) in str(e)
    return e.reason, e.offset


# --------------------------------------------------------------------------- #
# Known answers and helpers
# --------------------------------------------------------------------------- #


def test_ipv4_checksum_known_answer():
    # The IPv4 header checksum example (Wikipedia, "IPv4 header checksum").
    header = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")
    zeroed = header[:10] + b"\0\0" + header[12:]
    assert ipv4_checksum(zeroed) == 0xB861
    assert ipv4_checksum(header) == 0


def test_address_helpers():
    assert ip_to_int("192.168.0.199") == 0xC0A800C7
    assert int_to_ip(0xC0A800C7) == "192.168.0.199"
    assert mac_to_bytes("01:00:5e:00:00:01") == bytes.fromhex("01005e000001")
    assert mac_to_bytes("02-AB-cd-00-00-ff") == bytes.fromhex("02abcd0000ff")
    assert bytes_to_mac(bytes.fromhex("01005e7f0102")) == "01:00:5e:7f:01:02"
    for bad in ("1.2.3", "256.0.0.1", "1.2.3.4.5", "a.b.c.d"):
        with pytest.raises(NetError) as ei:
            ip_to_int(bad)
        assert ei.value.reason == "ip_address"
    for bad in ("01:00:5e:00:00", "01:00:5e:00:00:1", "01:00:5e:00:00:0g", "01:00:5e:00:00:01:02"):
        with pytest.raises(NetError) as ei:
            mac_to_bytes(bad)
        assert ei.value.reason == "mac_address"


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_ip_string_round_trip(v):
    assert ip_to_int(int_to_ip(v)) == v


def test_multicast_mac_known_answers():
    def dst(ip):
        return build_udp_frame(b"", dst_ip=ip, src_ip="10.0.0.1", dst_port=1, src_port=2)[:6]

    # The top bit of the group's second octet is not mapped (RFC 1112 6.4).
    assert dst("239.255.1.2") == bytes.fromhex("01005e7f0102")
    assert dst("224.128.0.1") == bytes.fromhex("01005e000001")
    assert dst("10.1.2.3") == bytes.fromhex("020000000001")


def test_frame_layout_known_answer():
    frame = build_udp_frame(b"hello", dst_ip="233.54.12.1", src_ip="10.0.0.1",
                            dst_port=26400, src_port=1234, src_mac="02:00:00:00:00:02")
    ip_header = frame[ETH:ETH + 20]
    assert len(frame) == 60 and frame[ETH + 20 + 8 + 5:] == bytes(60 - 47)
    assert frame[12:14] == b"\x08\x00"
    assert ip_header[0] == 0x45 and ip_header[6:8] == b"\x40\x00"  # DF, offset 0
    assert int.from_bytes(ip_header[2:4], "big") == 33 and ip_header[9] == 17
    assert dpkt.in_cksum(ip_header) == 0


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


@settings(max_examples=150, deadline=None)
@given(frame_args())
def test_round_trip(args):
    frame = build(args)
    hl = 20 + len(args["ip_options"])
    assert len(frame) == max(60, ETH + hl + 8 + len(args["payload"]))
    assert ihl_bytes(frame) == hl
    assert parse_udp_frame(bytes(frame)) == UdpDatagram(
        dst_mac=expected_dst_mac(args), src_mac=args["src_mac"],
        src_ip=args["src_ip"], dst_ip=args["dst_ip"],
        src_port=args["src_port"], dst_port=args["dst_port"],
        payload=args["payload"], ttl=args["ttl"], ident=args["ident"],
    )


@settings(max_examples=50, deadline=None)
@given(frame_args(max_payload=64, options=st.just(b"")))
def test_datagram_rebuilds_same_frame(args):
    frame = bytes(build(args))
    assert build_datagram_frame(parse_udp_frame(frame),
                                udp_checksum=args["udp_checksum"]) == frame


def test_dotted_and_integer_addresses_agree():
    kw = dict(dst_port=5, src_port=6)
    assert build_udp_frame(b"x", dst_ip="233.1.2.3", src_ip="10.9.8.7", **kw) == \
        build_udp_frame(b"x", dst_ip=0xE9010203, src_ip=0x0A090807, **kw)


@settings(max_examples=50, deadline=None)
@given(frame_args(max_payload=100), st.binary(min_size=1, max_size=64))
def test_trailing_padding_ignored(args, junk):
    frame = build(args)
    end = ETH + int.from_bytes(frame[ETH + 2:ETH + 4], "big")
    padded = bytes(frame[:end]) + junk
    assert parse_udp_frame(padded) == parse_udp_frame(bytes(frame))


@settings(max_examples=50, deadline=None)
@given(frame_args(max_payload=100, udp_checksum=st.just(True)))
def test_zero_udp_checksum_means_none(args):
    frame = build(args)
    u = ETH + ihl_bytes(frame)
    frame[u + 6:u + 8] = b"\0\0"
    frame[u + 8 + len(args["payload"]):] = b"\xAA" * (len(frame) - u - 8 - len(args["payload"]))
    assert parse_udp_frame(bytes(frame)).payload == args["payload"]


def test_build_rejects_bad_arguments():
    kw = dict(dst_ip="10.0.0.1", src_ip="10.0.0.2", dst_port=1, src_port=2)
    cases = [
        (dict(ip_options=b"\x01\x02\x03"), "ip_options"),
        (dict(ip_options=bytes(44)), "ip_options"),
        (dict(src_port=65536), "src_port"),
        (dict(dst_port=-1), "dst_port"),
        (dict(ttl=256), "ttl"),
        (dict(ident=1 << 16), "ident"),
        (dict(dst_mac=b"\x01\x02"), "mac_address"),
        (dict(dst_ip=1 << 32), "ip_address"),
        (dict(src_ip="300.0.0.1"), "ip_address"),
    ]
    for extra, why in cases:
        with pytest.raises(NetError) as ei:
            build_udp_frame(b"", **{**kw, **extra})
        assert ei.value.reason == why, extra
    with pytest.raises(NetError) as ei:
        build_udp_frame(bytes(65536 - 28), **kw)
    assert ei.value.reason == "ip_length"
    assert len(build_udp_frame(bytes(65535 - 28), **kw)) == 65535 + ETH


# --------------------------------------------------------------------------- #
# One corruption per reason
# --------------------------------------------------------------------------- #


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.data())
def test_runt_short_frame(args, data):
    frame = build(args)
    k = data.draw(st.integers(0, 33))
    assert reason(frame[:k]) == ("runt", 0)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100, options=options.filter(bool)), st.data())
def test_runt_ip_header_cut(args, data):
    frame = build(args)
    hl = ihl_bytes(frame)
    k = data.draw(st.integers(34, ETH + hl - 1))
    assert reason(frame[:k]) == ("runt", ETH)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.integers(0, 0xFFFF).filter(lambda t: t != 0x0800))
def test_not_ipv4(args, ethertype):
    frame = build(args)
    put16(frame, 12, ethertype)
    assert reason(frame) == ("not_ipv4", 12)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.integers(0, 15).filter(lambda v: v != 4))
def test_ip_version(args, version):
    frame = build(args)
    frame[ETH] = (version << 4) | (frame[ETH] & 0xF)
    assert reason(refresh_ip_checksum(frame)) == ("ip_version", ETH)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.integers(0, 4))
def test_ip_ihl(args, ihl):
    frame = build(args)
    frame[ETH] = 0x40 | ihl
    assert reason(frame) == ("ip_ihl", ETH)


@settings(max_examples=100, deadline=None)
@given(frame_args(max_payload=100), st.data())
def test_ip_checksum_single_bit_flip(args, data):
    # Any one flipped bit in the header after the version/IHL byte breaks the
    # checksum, and the checksum is checked before the fields it protects.
    frame = build(args)
    hl = ihl_bytes(frame)
    byte = data.draw(st.integers(ETH + 1, ETH + hl - 1))
    frame[byte] ^= 1 << data.draw(st.integers(0, 7))
    assert reason(frame) == ("ip_checksum", ETH + 10)


@settings(max_examples=50, deadline=None)
@given(frame_args(max_payload=100), st.data())
def test_ip_length(args, data):
    frame = build(args)
    hl = ihl_bytes(frame)
    total = data.draw(st.integers(0, hl + 7) | st.integers(len(frame) - ETH + 1, 0xFFFF))
    put16(frame, ETH + 2, total)
    assert reason(refresh_ip_checksum(frame)) == ("ip_length", ETH + 2)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.booleans(), st.integers(0, 0x1FFF), st.booleans())
def test_ip_fragment(args, mf, frag_offset, df):
    if not mf and frag_offset == 0:
        frag_offset = 1
    frame = build(args)
    put16(frame, ETH + 6, (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_offset)
    assert reason(refresh_ip_checksum(frame)) == ("ip_fragment", ETH + 6)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100), st.integers(0, 255).filter(lambda p: p != 17))
def test_not_udp(args, proto):
    frame = build(args)
    frame[ETH + 9] = proto
    assert reason(refresh_ip_checksum(frame)) == ("not_udp", ETH + 9)


@settings(max_examples=50, deadline=None)
@given(frame_args(max_payload=100), st.data())
def test_udp_length(args, data):
    frame = build(args)
    u = ETH + ihl_bytes(frame)
    ip_payload = int.from_bytes(frame[ETH + 2:ETH + 4], "big") - ihl_bytes(frame)
    ulen = data.draw(st.integers(0, 7) | st.integers(ip_payload + 1, 0xFFFF))
    put16(frame, u + 4, ulen)
    assert reason(frame) == ("udp_length", u + 4)


def test_udp_length_shorter_than_ip_payload_is_accepted():
    frame = bytearray(build_udp_frame(b"abcdef", dst_ip=1, src_ip=2, dst_port=3,
                                      src_port=4, udp_checksum=False))
    put16(frame, ETH + 20 + 4, 8 + 4)
    assert parse_udp_frame(bytes(frame)).payload == b"abcd"


@settings(max_examples=100, deadline=None)
@given(frame_args(max_payload=100, udp_checksum=st.just(True)), st.data())
def test_udp_checksum_single_bit_flip(args, data):
    frame = build(args)
    u = ETH + ihl_bytes(frame)
    # ports or payload; not the length (its own reason) nor the checksum field
    # (a flip there may produce 0, "no checksum").
    byte = data.draw(st.sampled_from([u, u + 1, u + 2, u + 3]
                                     + list(range(u + 8, u + 8 + len(args["payload"])))))
    frame[byte] ^= 1 << data.draw(st.integers(0, 7))
    assert reason(frame) == ("udp_checksum", u + 6)
    assert parse_udp_frame(bytes(frame), verify_udp_checksum=False)


@settings(max_examples=30, deadline=None)
@given(frame_args(max_payload=100, udp_checksum=st.just(True)), st.sampled_from([12, 16]),
       st.integers(0, 31))
def test_udp_checksum_covers_pseudo_header(args, field, bit):
    frame = build(args)
    addr = ETH + field  # source or destination address
    v = int.from_bytes(frame[addr:addr + 4], "big") ^ (1 << bit)
    frame[addr:addr + 4] = v.to_bytes(4, "big")
    refresh_ip_checksum(frame)
    assert reason(frame) == ("udp_checksum", ETH + ihl_bytes(frame) + 6)


# --------------------------------------------------------------------------- #
# dpkt as the peer
# --------------------------------------------------------------------------- #


@settings(max_examples=100, deadline=None)
@given(frame_args())
def test_dpkt_parses_our_frames(args):
    frame = bytes(build(args))
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP)
    udp = ip.data
    assert (eth.dst, eth.src) == (expected_dst_mac(args), args["src_mac"])
    assert ip.src == args["src_ip"].to_bytes(4, "big")
    assert ip.dst == args["dst_ip"].to_bytes(4, "big")
    assert (ip.ttl, ip.id, ip.df, ip.mf, ip.offset) == (args["ttl"], args["ident"], 1, 0, 0)
    assert bytes(ip.opts) == args["ip_options"]
    assert (udp.sport, udp.dport, udp.ulen) == (args["src_port"], args["dst_port"],
                                               8 + len(args["payload"]))
    assert bytes(udp.data) == args["payload"]

    # dpkt recomputes both checksums when they are zeroed and re-serialised.
    ours_ip, ours_udp = ip.sum, udp.sum
    ip.sum = 0
    if args["udp_checksum"]:
        udp.sum = 0
    else:
        assert ours_udp == 0
        udp.sum = 1  # keep dpkt from filling in a checksum we did not send
    bytes(ip)
    assert ip.sum == ours_ip
    if args["udp_checksum"]:
        assert udp.sum == ours_udp


@settings(max_examples=100, deadline=None)
@given(frame_args(udp_checksum=st.just(True)))
def test_we_parse_and_reproduce_dpkt_frames(args):
    dst_mac = expected_dst_mac(args)
    udp = dpkt.udp.UDP(sport=args["src_port"], dport=args["dst_port"],
                       ulen=8 + len(args["payload"]), data=args["payload"])
    ip = dpkt.ip.IP(src=args["src_ip"].to_bytes(4, "big"), dst=args["dst_ip"].to_bytes(4, "big"),
                    p=17, ttl=args["ttl"], id=args["ident"], df=1,
                    opts=args["ip_options"], data=udp)
    ip.hl = 5 + len(args["ip_options"]) // 4
    eth = dpkt.ethernet.Ethernet(dst=dst_mac, src=args["src_mac"],
                                 type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    theirs = bytes(eth)
    theirs += bytes(max(0, 60 - len(theirs)))
    assert bytes(build(args)) == theirs
    d = parse_udp_frame(theirs)
    assert (d.src_port, d.dst_port, d.payload) == (args["src_port"], args["dst_port"],
                                                   args["payload"])
