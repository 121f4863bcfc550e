"""The host link: a small UDP protocol between a board's second Ethernet port and the host.

It carries what the NIC interface (``host/nic.py``) needs: register reads and
writes (request/response, retried by the host), events pushed by the board
(``protocols/events.py`` packets, numbered so the host counts losses),
order-entry bytes from the gateware (for the host to write into its FIX TCP
connection) and frames the host wants sent on the market port. The wire
format is in ``docs/hostlink.md``; this module is its one definition: the
codec, the board's register block (:data:`HOSTLINK`) and :class:`BoardModel`,
the golden model of the gateware end (``hw/hostlink.py``).

Every datagram's UDP payload starts with a 6-byte link header: ``kind`` (1
byte), ``flags`` (1 byte: version in bits 7-4, ``aborted`` in bit 0) and
``seq`` (4 bytes, little-endian). Six bytes make the body start at byte 48 of
the Ethernet frame, on a 64-bit beat boundary, so the gateware never shifts
bytes. Multi-byte fields of the link are little-endian, like the event packets.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from protocols.errors import WireError
from protocols.net import NetError, build_udp_frame, parse_udp_frame
from protocols.registers import RegisterBlock, counter, ro

PORT = 0xCA1B
"""UDP port of the host link on the board (51739); the host may use any source port."""

VERSION = 1
HEADER_LEN = 6
HEADER_FMT = "<BBI"
FRAME_HEADER_LEN = 14 + 20 + 8 + HEADER_LEN
"""Bytes before the body in an Ethernet frame of the link: 48, six 64-bit beats."""

ADDR_SPACE_BOARD = 1 << 15
"""Address bit 15 selects the board's own registers (MACs, MDIO, the link); clear: the core's."""
SEQ_MASK = 0xFFFF_FFFF
MAX_BODY = 1024
"""Longest body the board pushes; longer events or order messages are dropped and counted."""


class Kind(enum.IntEnum):
    """What a datagram carries; requests are below 0x10, board pushes at 0x10, responses at 0x80."""

    READ = 0x01
    """Host -> board: read the register at ``addr`` (body: addr u16, 6 bytes zero)."""
    WRITE = 0x02
    """Host -> board: write ``value`` (body: addr u16, 6 bytes zero, value u64)."""
    SEND = 0x03
    """Host -> board: the body is an Ethernet frame (no FCS) to transmit on the market port."""
    EVENT = 0x10
    """Board -> host: the body is one event packet; ``aborted`` flag as the event stream had it."""
    ORDER = 0x11
    """Board -> host: the body is order-entry bytes (one FIX message) for the host's FIX session."""
    READ_ACK = 0x81
    """Board -> host: ``seq`` of the READ; body: addr u16, 6 bytes zero, value u64."""
    WRITE_ACK = 0x82
    """Board -> host: ``seq`` of the WRITE; body as the request's (addr, value written)."""


REQUESTS = (Kind.READ, Kind.WRITE, Kind.SEND)
PUSHES = (Kind.EVENT, Kind.ORDER)
FLAG_ABORTED = 0x01


class LinkError(WireError):
    """A datagram of the host link that does not follow the format (names the field and offset)."""

    def __init__(self, field: str, offset: int, detail: str):
        super().__init__(f"host link {field}", offset, detail)
        self.field = field


@dataclass(frozen=True)
class Datagram:
    """One link datagram: the header fields and the body."""

    kind: Kind
    seq: int
    body: bytes = b""
    aborted: bool = False

    def encode(self) -> bytes:
        flags = VERSION << 4 | (FLAG_ABORTED if self.aborted else 0)
        return struct.pack(HEADER_FMT, int(self.kind), flags, self.seq & SEQ_MASK) + self.body


def decode(payload: bytes) -> Datagram:
    """Decode a UDP payload of the link, checking version, kind and body length."""
    if len(payload) < HEADER_LEN:
        raise LinkError("header", 0, f"{len(payload)} bytes, need {HEADER_LEN}")
    kind, flags, seq = struct.unpack_from(HEADER_FMT, payload)
    if flags >> 4 != VERSION:
        raise LinkError("version", 1, f"version {flags >> 4}, expected {VERSION}")
    try:
        kind = Kind(kind)
    except ValueError:
        raise LinkError("kind", 0, f"unknown kind 0x{kind:02x}") from None
    body = payload[HEADER_LEN:]
    need = {Kind.READ: 8, Kind.WRITE: 16, Kind.READ_ACK: 16, Kind.WRITE_ACK: 16}.get(kind)
    if need is not None and len(body) != need:
        raise LinkError("body", HEADER_LEN, f"{kind.name} body of {len(body)} bytes, expected {need}")
    return Datagram(kind, seq, body, bool(flags & FLAG_ABORTED))


def read_request(seq: int, addr: int) -> Datagram:
    return Datagram(Kind.READ, seq, struct.pack("<Q", addr))


def write_request(seq: int, addr: int, value: int) -> Datagram:
    return Datagram(Kind.WRITE, seq, struct.pack("<QQ", addr, value))


def send_request(seq: int, frame: bytes) -> Datagram:
    return Datagram(Kind.SEND, seq, bytes(frame))


def addr_value(d: Datagram) -> tuple[int, int]:
    """``(addr, value)`` of a WRITE, READ_ACK or WRITE_ACK (``value`` 0 for a READ)."""
    if d.kind is Kind.READ:
        return struct.unpack("<Q", d.body)[0] & 0xFFFF, 0
    addr, value = struct.unpack("<QQ", d.body)
    return addr & 0xFFFF, value


HOSTLINK = RegisterBlock("hostlink", "Host link (`hw/hostlink.py`, `docs/hostlink.md`): register access, "
                         "events and orders to the host and host frames over UDP on the board's host port.", (
    counter("requests", "Requests accepted (READ, WRITE, SEND)."),
    counter("duplicates", "WRITEs repeating the last executed one (same seq): acknowledged, not executed again."),
    counter("ignored", "Frames on the host port that are not link requests for this board (wrong EtherType, "
            "IPv4 header, address, port, version, kind or length) or that the MAC aborted."),
    counter("events", "EVENT datagrams sent."),
    counter("orders", "ORDER datagrams sent."),
    counter("push_dropped", "Events and orders dropped: no host has sent a request yet, or longer than 1024 bytes."),
    counter("sent", "Frames from SEND requests passed to the market port."),
    ro("peer_ip", 32, "IPv4 address of the host (source of the last accepted request); pushes go there."),
    ro("peer_port", 16, "UDP port of the host (source of the last accepted request)."),
))


@dataclass
class Endpoint:
    """One end's Ethernet and IPv4 address and UDP port."""

    mac: bytes
    ip: int
    port: int


def frame(payload: bytes, src: Endpoint, dst: Endpoint) -> bytes:
    """The Ethernet frame (no FCS, padded to 60 bytes) of a link datagram, as the board sends it:
    DF set, identification 0, TTL 64, UDP checksum 0 (none)."""
    return build_udp_frame(payload, dst_ip=dst.ip, src_ip=src.ip, dst_port=dst.port, src_port=src.port,
                           dst_mac=dst.mac, src_mac=src.mac, udp_checksum=False)


@dataclass
class BoardModel:
    """Golden model of the board end (``hw/hostlink.py``): frames in on the host port, frames out.

    ``read(addr)`` / ``write(addr, value)`` reach the registers (``addr`` with the
    space bit); ``market`` collects frames from SEND requests.
    """

    board: Endpoint
    read: object = None
    write: object = None
    peer: Endpoint | None = None
    push_seq: int = 0
    last_write_seq: int | None = None
    market: list = field(default_factory=list)
    counters: dict = field(default_factory=lambda: {r.name: 0 for r in HOSTLINK.counters})

    def receive(self, raw: bytes, aborted: bool = False) -> list[bytes]:
        """Handle one frame from the host port; returns the frames the board sends back."""
        try:
            if aborted:
                raise LinkError("frame", 0, "aborted by the MAC")
            udp = parse_udp_frame(raw, verify_udp_checksum=False)
            if udp.dst_ip != self.board.ip or udp.dst_port != self.board.port:
                raise LinkError("address", 30, "not for this board")
            d = decode(udp.payload)
            if d.kind not in REQUESTS:
                raise LinkError("kind", 0, f"{d.kind.name} is not a request")
        except (NetError, LinkError):
            self.counters["ignored"] += 1
            return []
        if d.kind is Kind.SEND and len(d.body) < 14:
            self.counters["ignored"] += 1
            return []
        if raw[14] != 0x45:                    # IPv4 options are not supported by the board
            self.counters["ignored"] += 1
            return []
        self.counters["requests"] += 1
        self.peer = Endpoint(udp.src_mac, udp.src_ip, udp.src_port)
        if d.kind is Kind.SEND:
            self.counters["sent"] += 1
            self.market.append(d.body)
            return []
        addr, value = addr_value(d)
        if d.kind is Kind.READ:
            reply = Datagram(Kind.READ_ACK, d.seq, struct.pack("<QQ", addr, self.read(addr)))
        else:
            if d.seq == self.last_write_seq:
                self.counters["duplicates"] += 1
            else:
                self.write(addr, value)
                self.last_write_seq = d.seq
            reply = Datagram(Kind.WRITE_ACK, d.seq, struct.pack("<QQ", addr, value))
        return [frame(reply.encode(), self.board, self.peer)]

    def push(self, kind: Kind, body: bytes, aborted: bool = False) -> bytes | None:
        """An event (or order) leaving the board: its frame, or None if dropped (no peer, too long)."""
        if self.peer is None or len(body) > MAX_BODY:
            self.counters["push_dropped"] += 1
            return None
        self.counters["events" if kind is Kind.EVENT else "orders"] += 1
        d = Datagram(kind, self.push_seq, bytes(body), aborted)
        self.push_seq = (self.push_seq + 1) & SEQ_MASK
        return frame(d.encode(), self.board, self.peer)
