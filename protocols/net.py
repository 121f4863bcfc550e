"""Ethernet II / IPv4 / UDP framing: the reference codec for the NIC's front end.

The feed generator builds frames with :func:`build_udp_frame`; the gateware's
eth/ip/udp stage is tested against :func:`parse_udp_frame`, whose error
reasons are the names of the stage's drop counters. Frames are handled without
the Ethernet FCS (the MAC strips and checks it).

Every :class:`NetError` carries a ``reason`` from a fixed vocabulary and the
byte ``offset`` (from the start of the frame) of the field or structure at
fault:

================  ==================================================  ==========
reason            cause                                               offset
================  ==================================================  ==========
``runt``          shorter than 14 + 20 bytes, or than the IP header   0, or 14
                  its IHL declares
``not_ipv4``      EtherType is not 0x0800                             12
``ip_version``    IP version is not 4                                 14
``ip_ihl``        IHL < 5                                             14
``ip_checksum``   IPv4 header checksum does not verify                24
``ip_length``     total length < IHL*4 + 8, or frame shorter than     16
                  14 + total length
``ip_fragment``   MF set or fragment offset non-zero                  20
``not_udp``       protocol is not 17                                  23
``udp_length``    UDP length < 8 or > total length - IHL*4            UDP + 4
``udp_checksum``  UDP checksum (when non-zero) does not verify        UDP + 6
================  ==================================================  ==========

Building refuses out-of-range arguments with the same exception (reasons
``ip_options``, ``ip_length``, ``src_port``, ``dst_port``, ``ttl``, ``ident``,
``ip_address``, ``mac_address``); the offset is that of the field in the
frame, or of the fault in an address string.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from protocols.errors import WireError

ETH_HEADER_LEN = 14
"""Destination MAC, source MAC, EtherType."""
ETH_MIN_FRAME = 60
"""Minimum Ethernet frame length without the 4-byte FCS."""
ETHERTYPE_IPV4 = 0x0800
IPV4_MIN_HEADER = 20
IPV4_MAX_OPTIONS = 40
IPPROTO_UDP = 17
UDP_HEADER_LEN = 8
IP_FLAG_DF = 0x4000
IP_FLAG_MF = 0x2000
IP_FRAG_OFFSET_MASK = 0x1FFF

DEFAULT_UNICAST_MAC = b"\x02\x00\x00\x00\x00\x01"
"""Destination MAC used for unicast destinations (locally administered)."""
DEFAULT_SRC_MAC = b"\x02\x00\x00\x00\x00\x02"
"""Source MAC used when none is given (locally administered)."""

_IP_OFF = ETH_HEADER_LEN


class NetError(WireError):
    """A frame or address that cannot be built or parsed; ``reason`` names the
    fault and ``offset`` is its byte offset in the frame (or string)."""


# --------------------------------------------------------------------------- #
# Addresses and checksums
# --------------------------------------------------------------------------- #


def ip_to_int(s: str) -> int:
    """Convert a dotted-quad IPv4 address to its 32-bit integer, so addresses
    can be compared and packed without string handling."""
    try:
        return int(ipaddress.IPv4Address(s))
    except (ipaddress.AddressValueError, TypeError) as exc:
        raise NetError("ip_address", 0, f"{s!r}: {exc}") from None


def int_to_ip(v: int) -> str:
    """Convert a 32-bit integer to dotted-quad notation, for logs and CLI
    output."""
    if not 0 <= v <= 0xFFFFFFFF:
        raise NetError("ip_address", 0, f"{v} is not a 32-bit address")
    return str(ipaddress.IPv4Address(v))


def mac_to_bytes(s: str) -> bytes:
    """Convert a MAC address written as six hex pairs ("01:00:5e:00:00:01",
    ':' or '-' separated) to its 6 wire bytes."""
    parts = s.replace("-", ":").split(":")
    pos = 0
    for part in parts:
        if len(part) != 2 or any(c not in "0123456789abcdefABCDEF" for c in part):
            raise NetError("mac_address", pos, f"{s!r}")
        pos += len(part) + 1
    if len(parts) != 6:
        raise NetError("mac_address", 0, f"{s!r} does not have six octets")
    return bytes(int(p, 16) for p in parts)


def bytes_to_mac(b: bytes) -> str:
    """Format 6 MAC bytes as lower-case colon-separated hex, for logs."""
    if len(b) != 6:
        raise NetError("mac_address", 0, f"{len(b)} bytes, expected 6")
    return ":".join(f"{x:02x}" for x in b)


def is_multicast_ip(ip: int) -> bool:
    """True for IPv4 multicast addresses (224.0.0.0/4), whose frames go to a
    mapped multicast MAC."""
    return (ip >> 28) == 0xE


def multicast_mac(ip: int) -> bytes:
    """The Ethernet MAC an IPv4 multicast group maps to (RFC 1112:
    01:00:5e followed by the low 23 bits of the group address)."""
    return b"\x01\x00\x5e" + (ip & 0x7FFFFF).to_bytes(3, "big")


def _ones_complement_sum(data: bytes) -> int:
    """16-bit ones' complement sum of big-endian words (odd length padded with
    a zero byte), carries folded back in (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ipv4_checksum(header: bytes) -> int:
    """Internet checksum of ``header`` (RFC 1071): the ones' complement of the
    ones' complement sum of its 16-bit words. Computed over a header whose
    checksum field is zero it gives the field's value; over a header carrying
    a correct checksum it gives 0."""
    return ~_ones_complement_sum(header) & 0xFFFF


def _udp_checksum_sum(src_ip: int, dst_ip: int, udp: bytes) -> int:
    """Ones' complement sum of the IPv4 pseudo-header plus the UDP datagram."""
    pseudo = struct.pack(">IIBBH", src_ip, dst_ip, 0, IPPROTO_UDP, len(udp))
    return _ones_complement_sum(pseudo + udp)


def compute_udp_checksum(src_ip: int, dst_ip: int, udp: bytes) -> int:
    """UDP checksum (RFC 768) of a datagram whose checksum field is zero,
    over the IPv4 pseudo-header; a result of 0 is sent as 0xFFFF."""
    c = ~_udp_checksum_sum(src_ip, dst_ip, udp) & 0xFFFF
    return c or 0xFFFF


def _as_ip(v: int | str, name: str) -> int:
    if isinstance(v, str):
        return ip_to_int(v)
    if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise NetError("ip_address", 0, f"{name}={v!r}")
    return v


def _as_mac(v: bytes | str, name: str) -> bytes:
    if isinstance(v, str):
        return mac_to_bytes(v)
    v = bytes(v)
    if len(v) != 6:
        raise NetError("mac_address", 0, f"{name} has {len(v)} bytes, expected 6")
    return v


# --------------------------------------------------------------------------- #
# Frames
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class UdpDatagram:
    """A UDP datagram as received: addresses, ports and payload of one
    Ethernet/IPv4/UDP frame (IP options, flags and checksums are not kept)."""

    dst_mac: bytes
    src_mac: bytes
    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    payload: bytes
    ttl: int = 64
    ident: int = 0


def build_udp_frame(
    payload: bytes,
    *,
    dst_ip: int | str,
    src_ip: int | str,
    dst_port: int,
    src_port: int,
    dst_mac: bytes | str | None = None,
    src_mac: bytes | str = DEFAULT_SRC_MAC,
    ttl: int = 64,
    ident: int = 0,
    udp_checksum: bool = True,
    ip_options: bytes = b"",
) -> bytes:
    """Build an Ethernet II / IPv4 / UDP frame without FCS, zero-padded to 60
    bytes, as a feed source would send it; DF is set and the IPv4 checksum is
    always correct.

    ``dst_mac`` defaults to the multicast MAC of ``dst_ip`` when it is a
    multicast group and to :data:`DEFAULT_UNICAST_MAC` otherwise.
    ``ip_options`` (a multiple of 4 bytes, at most 40) lengthen the IP header.
    With ``udp_checksum=False`` the UDP checksum field is 0 (not computed).
    """
    dip = _as_ip(dst_ip, "dst_ip")
    sip = _as_ip(src_ip, "src_ip")
    dmac = (multicast_mac(dip) if is_multicast_ip(dip) else DEFAULT_UNICAST_MAC) \
        if dst_mac is None else _as_mac(dst_mac, "dst_mac")
    smac = _as_mac(src_mac, "src_mac")
    payload = bytes(payload)
    ip_options = bytes(ip_options)
    if len(ip_options) % 4 or len(ip_options) > IPV4_MAX_OPTIONS:
        raise NetError("ip_options", _IP_OFF + IPV4_MIN_HEADER,
                       f"{len(ip_options)} bytes; need a multiple of 4, at most 40")
    ihl_bytes = IPV4_MIN_HEADER + len(ip_options)
    udp_off = _IP_OFF + ihl_bytes
    for name, value, bits, off in (("src_port", src_port, 16, udp_off),
                                   ("dst_port", dst_port, 16, udp_off + 2),
                                   ("ttl", ttl, 8, _IP_OFF + 8),
                                   ("ident", ident, 16, _IP_OFF + 4)):
        if not 0 <= value < (1 << bits):
            raise NetError(name, off, f"{name}={value} does not fit {bits} bits")
    udp_len = UDP_HEADER_LEN + len(payload)
    total_len = ihl_bytes + udp_len
    if total_len > 0xFFFF:
        raise NetError("ip_length", _IP_OFF + 2,
                       f"payload of {len(payload)} bytes exceeds the IPv4 total length")

    udp = struct.pack(">HHHH", src_port, dst_port, udp_len, 0) + payload
    if udp_checksum:
        c = compute_udp_checksum(sip, dip, udp)
        udp = udp[:6] + c.to_bytes(2, "big") + udp[8:]

    ip = struct.pack(">BBHHHBBHII", 0x40 | (ihl_bytes // 4), 0, total_len, ident,
                     IP_FLAG_DF, ttl, IPPROTO_UDP, 0, sip, dip) + ip_options
    ip = ip[:10] + ipv4_checksum(ip).to_bytes(2, "big") + ip[12:]

    frame = dmac + smac + ETHERTYPE_IPV4.to_bytes(2, "big") + ip + udp
    if len(frame) < ETH_MIN_FRAME:
        frame += bytes(ETH_MIN_FRAME - len(frame))
    return frame


def parse_udp_frame(frame: bytes, *, verify_udp_checksum: bool = True) -> UdpDatagram:
    """Parse an Ethernet II / IPv4 / UDP frame (without FCS) strictly, as the
    gateware's front end does, raising :class:`NetError` for the first fault
    found (checks run in the order of the module's reason table). Bytes after
    the IP total length (Ethernet padding) are ignored; a UDP checksum of 0
    means none was sent and is accepted."""
    frame = bytes(frame)
    n = len(frame)
    if n < ETH_HEADER_LEN + IPV4_MIN_HEADER:
        raise NetError("runt", 0, f"{n} bytes, need at least 34")
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype != ETHERTYPE_IPV4:
        raise NetError("not_ipv4", 12, f"EtherType 0x{ethertype:04x}")
    version, ihl = frame[_IP_OFF] >> 4, frame[_IP_OFF] & 0xF
    if version != 4:
        raise NetError("ip_version", _IP_OFF, f"version {version}")
    if ihl < 5:
        raise NetError("ip_ihl", _IP_OFF, f"IHL {ihl}")
    hl = ihl * 4
    if n < _IP_OFF + hl:
        raise NetError("runt", _IP_OFF, f"{n} bytes, IP header ends at {_IP_OFF + hl}")
    header = frame[_IP_OFF:_IP_OFF + hl]
    if ipv4_checksum(header) != 0:
        raise NetError("ip_checksum", _IP_OFF + 10,
                       f"field 0x{int.from_bytes(header[10:12], 'big'):04x}")
    (_, _, total_len, ident, flags_frag, ttl, proto, _, src_ip, dst_ip) = \
        struct.unpack(">BBHHHBBHII", header[:IPV4_MIN_HEADER])
    if total_len < hl + UDP_HEADER_LEN or n < _IP_OFF + total_len:
        raise NetError("ip_length", _IP_OFF + 2,
                       f"total length {total_len}, IHL*4 {hl}, frame {n} bytes")
    if flags_frag & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK):
        raise NetError("ip_fragment", _IP_OFF + 6, f"flags/offset 0x{flags_frag:04x}")
    if proto != IPPROTO_UDP:
        raise NetError("not_udp", _IP_OFF + 9, f"protocol {proto}")
    u = _IP_OFF + hl
    src_port, dst_port, udp_len, csum = struct.unpack(">HHHH", frame[u:u + 8])
    if not UDP_HEADER_LEN <= udp_len <= total_len - hl:
        raise NetError("udp_length", u + 4,
                       f"UDP length {udp_len}, IP payload {total_len - hl}")
    udp = frame[u:u + udp_len]
    if verify_udp_checksum and csum != 0:
        if ~_udp_checksum_sum(src_ip, dst_ip, udp) & 0xFFFF:
            raise NetError("udp_checksum", u + 6, f"field 0x{csum:04x}")
    return UdpDatagram(
        dst_mac=frame[0:6], src_mac=frame[6:12], src_ip=src_ip, dst_ip=dst_ip,
        src_port=src_port, dst_port=dst_port, payload=udp[UDP_HEADER_LEN:],
        ttl=ttl, ident=ident,
    )


def build_datagram_frame(d: UdpDatagram, **kw) -> bytes:
    """Build the frame for a :class:`UdpDatagram` (the inverse of
    :func:`parse_udp_frame`); ``kw`` passes ``udp_checksum`` and
    ``ip_options`` through to :func:`build_udp_frame`."""
    return build_udp_frame(
        d.payload, dst_ip=d.dst_ip, src_ip=d.src_ip, dst_port=d.dst_port,
        src_port=d.src_port, dst_mac=d.dst_mac, src_mac=d.src_mac, ttl=d.ttl,
        ident=d.ident, **kw,
    )
