"""NASDAQ MoldUDP64: the sequenced UDP framing ITCH messages travel in.

A downstream packet is a 20-byte header (10-byte session, 8-byte big-endian
sequence number of the first message, 2-byte message count) followed by
``count`` message blocks, each a 2-byte big-endian length and the message.
Count 0 is a heartbeat and count 0xFFFF marks the end of the session; both
carry the next expected sequence number. A request packet (sent to the
re-request server) is the same 20-byte header naming the first sequence number
and how many messages to resend.

This is the golden model of the gateware's MoldUDP64 stage: :func:`decode_packet`
is the strict codec, :func:`iter_messages_lenient` keeps the complete messages
of a damaged packet and counts the rest, as the stage does.

:class:`MoldError` reasons and offsets (from the start of the UDP payload):

=====================  =========================================================
``short_header``       fewer than 20 bytes (0)
``truncated_length``   a message's 2-byte length runs past the end (its offset)
``truncated_message``  a message's bytes run past the end (its length prefix)
``trailing_bytes``     bytes after the declared messages, or any message bytes
                       in an end-of-session packet (first extra byte)
``session``            a session that is not 10 bytes after space padding, or a
                       non-ASCII string (0)
``sequence``           a sequence number outside 0 .. 2**64-1 (10)
``count``              a request count outside 0 .. 0xFFFF (18)
``message_too_long``   a message over 65535 bytes (its length prefix)
``too_many_messages``  more than 0xFFFE messages in one packet (18)
``message_too_large``  packetise: a message that cannot fit a packet alone
=====================  =========================================================
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocols.errors import WireError

HEADER_LEN = 20
"""Session (10) + sequence number (8) + message count (2)."""
SESSION_LEN = 10
END_OF_SESSION = 0xFFFF
"""Message count that marks the end of a session."""
MAX_MESSAGES = 0xFFFE
"""Most messages one packet can carry (0xFFFF is the end-of-session mark)."""
MAX_MESSAGE_LEN = 0xFFFF
MAX_SEQ = (1 << 64) - 1

_HEADER = struct.Struct(">10sQH")


class MoldError(WireError):
    """A MoldUDP64 packet that cannot be encoded or decoded; ``reason`` names
    the fault and ``offset`` is its byte offset in the UDP payload."""


def session_bytes(session: bytes | str) -> bytes:
    """Normalise a session name to its 10 wire bytes: a string must be ASCII,
    and either form is right-padded with spaces; longer than 10 is refused."""
    if isinstance(session, str):
        try:
            session = session.encode("ascii")
        except UnicodeEncodeError:
            raise MoldError("session", 0, f"{session!r} is not ASCII") from None
    session = bytes(session)
    if len(session) > SESSION_LEN:
        raise MoldError("session", 0, f"{session!r} is longer than {SESSION_LEN} bytes")
    return session.ljust(SESSION_LEN, b" ")


def _check_seq(seq: int) -> None:
    if not 0 <= seq <= MAX_SEQ:
        raise MoldError("sequence", SESSION_LEN, f"{seq} does not fit 64 bits")


@dataclass(frozen=True)
class MoldPacket:
    """One downstream packet: session, sequence number of its first message
    (or, for heartbeats and end of session, the next expected one), and its
    messages. The session is normalised to 10 space-padded bytes."""

    session: bytes
    seq: int
    messages: tuple[bytes, ...] = ()
    end_of_session: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "session", session_bytes(self.session))
        object.__setattr__(self, "messages", tuple(bytes(m) for m in self.messages))
        _check_seq(self.seq)
        if self.end_of_session and self.messages:
            raise MoldError("trailing_bytes", HEADER_LEN,
                            f"end-of-session packet with {len(self.messages)} messages")

    @property
    def count(self) -> int:
        """The header's message count: 0xFFFF for end of session, else the
        number of messages."""
        return END_OF_SESSION if self.end_of_session else len(self.messages)

    @property
    def is_heartbeat(self) -> bool:
        """True for a packet with no messages that does not end the session."""
        return not self.end_of_session and not self.messages

    @property
    def next_seq(self) -> int:
        """Sequence number expected in the next packet."""
        return self.seq + len(self.messages)


def heartbeat(session: bytes | str, next_seq: int) -> MoldPacket:
    """A heartbeat: no messages, announcing the next sequence number so
    receivers can detect a gap on a quiet feed."""
    return MoldPacket(session, next_seq)


def end_of_session(session: bytes | str, next_seq: int) -> MoldPacket:
    """The end-of-session packet (count 0xFFFF) that closes ``session``."""
    return MoldPacket(session, next_seq, end_of_session=True)


def encoded_len(messages: Iterable[bytes]) -> int:
    """Size in bytes of a packet carrying ``messages`` (header plus blocks)."""
    return HEADER_LEN + sum(2 + len(m) for m in messages)


def encode_packet(pkt: MoldPacket) -> bytes:
    """Encode a downstream packet to its UDP payload."""
    if len(pkt.messages) > MAX_MESSAGES:
        raise MoldError("too_many_messages", HEADER_LEN - 2,
                        f"{len(pkt.messages)} messages, at most {MAX_MESSAGES}")
    parts = [_HEADER.pack(pkt.session, pkt.seq, pkt.count)]
    off = HEADER_LEN
    for i, m in enumerate(pkt.messages):
        if len(m) > MAX_MESSAGE_LEN:
            raise MoldError("message_too_long", off, f"message {i} is {len(m)} bytes")
        parts.append(len(m).to_bytes(2, "big"))
        parts.append(m)
        off += 2 + len(m)
    return b"".join(parts)


@dataclass(frozen=True)
class LenientMessages:
    """What :func:`iter_messages_lenient` recovered from one packet: its header,
    the complete messages in order (message ``i`` has sequence number
    ``seq + i``), and why and where the walk stopped early, if it did.

    Iterating yields ``(index, message)`` pairs.
    """

    session: bytes
    seq: int
    count: int
    """The header's declared count (0xFFFF for end of session)."""
    messages: tuple[bytes, ...]
    error: str | None = None
    """``None``, ``"truncated_length"``, ``"truncated_message"`` or
    ``"trailing_bytes"``."""
    offset: int | None = None

    @property
    def end_of_session(self) -> bool:
        """True when the header marks the end of the session."""
        return self.count == END_OF_SESSION

    @property
    def lost(self) -> int:
        """Messages the header declared but the packet did not deliver whole."""
        return 0 if self.end_of_session else self.count - len(self.messages)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(enumerate(self.messages))

    def __len__(self) -> int:
        return len(self.messages)


def _walk(data: bytes) -> LenientMessages:
    """Decode the header and every complete message block, stopping at the first
    fault."""
    if len(data) < HEADER_LEN:
        raise MoldError("short_header", 0, f"{len(data)} bytes, need {HEADER_LEN}")
    session, seq, count = _HEADER.unpack_from(data)
    n = len(data)
    off = HEADER_LEN
    msgs: list[bytes] = []
    wanted = 0 if count == END_OF_SESSION else count
    for _ in range(wanted):
        if off + 2 > n:
            return LenientMessages(session, seq, count, tuple(msgs), "truncated_length", off)
        length = int.from_bytes(data[off:off + 2], "big")
        if off + 2 + length > n:
            return LenientMessages(session, seq, count, tuple(msgs), "truncated_message", off)
        msgs.append(data[off + 2:off + 2 + length])
        off += 2 + length
    if off != n:
        return LenientMessages(session, seq, count, tuple(msgs), "trailing_bytes", off)
    return LenientMessages(session, seq, count, tuple(msgs))


def iter_messages_lenient(data: bytes) -> LenientMessages:
    """Recover what can be kept from a possibly damaged packet: every complete
    message before the first truncated one, plus a count of those lost, as the
    gateware does instead of dropping the whole packet.

    ``for index, msg in iter_messages_lenient(data)`` walks the messages; the
    result's ``lost``, ``error`` and ``offset`` say what was missing. A header
    shorter than 20 bytes still raises ``MoldError("short_header")`` since no
    sequence number can be attributed.
    """
    return _walk(bytes(data))


def decode_packet(data: bytes) -> MoldPacket:
    """Decode a downstream packet strictly: any truncation or extra byte
    raises :class:`MoldError` with the reason and offset of the fault."""
    r = _walk(bytes(data))
    if r.error is not None:
        detail = (f"{len(data) - r.offset} bytes after the declared messages"
                  if r.error == "trailing_bytes"
                  else f"message {len(r.messages)} of {r.count}, packet {len(data)} bytes")
        raise MoldError(r.error, r.offset, detail)
    return MoldPacket(r.session, r.seq, r.messages, end_of_session=r.end_of_session)


def packetise(
    messages: Iterable[bytes],
    *,
    session: bytes | str,
    first_seq: int = 1,
    max_payload: int = 1400,
    max_messages: int = MAX_MESSAGES,
) -> list[MoldPacket]:
    """Pack messages greedily, in order, into packets whose encoded size is at
    most ``max_payload`` bytes and which hold at most ``max_messages`` each,
    numbering them from ``first_seq``. No messages gives no packets."""
    session = session_bytes(session)
    if not 1 <= max_messages <= MAX_MESSAGES:
        raise MoldError("too_many_messages", HEADER_LEN - 2,
                        f"max_messages {max_messages}, must be 1..{MAX_MESSAGES}")
    packets: list[MoldPacket] = []
    batch: list[bytes] = []
    size = HEADER_LEN
    seq = first_seq
    for i, m in enumerate(messages):
        m = bytes(m)
        block = 2 + len(m)
        if len(m) > MAX_MESSAGE_LEN or HEADER_LEN + block > max_payload:
            raise MoldError("message_too_large", HEADER_LEN,
                            f"message {i} is {len(m)} bytes; max_payload {max_payload} "
                            f"leaves {max(0, min(max_payload - HEADER_LEN - 2, MAX_MESSAGE_LEN))}")
        if batch and (size + block > max_payload or len(batch) == max_messages):
            packets.append(MoldPacket(session, seq, tuple(batch)))
            seq += len(batch)
            batch, size = [], HEADER_LEN
        batch.append(m)
        size += block
    if batch:
        packets.append(MoldPacket(session, seq, tuple(batch)))
    return packets


@dataclass(frozen=True)
class MoldRequest:
    """A re-request: resend ``count`` messages of ``session`` starting at
    sequence number ``seq``. The session is normalised to 10 bytes."""

    session: bytes
    seq: int
    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "session", session_bytes(self.session))
        _check_seq(self.seq)
        if not 0 <= self.count <= 0xFFFF:
            raise MoldError("count", HEADER_LEN - 2, f"count {self.count} does not fit 16 bits")


def encode_request(req: MoldRequest) -> bytes:
    """Encode a re-request packet (20 bytes)."""
    return _HEADER.pack(req.session, req.seq, req.count)


def decode_request(data: bytes) -> MoldRequest:
    """Decode a re-request packet strictly: exactly 20 bytes."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise MoldError("short_header", 0, f"{len(data)} bytes, need {HEADER_LEN}")
    if len(data) > HEADER_LEN:
        raise MoldError("trailing_bytes", HEADER_LEN, f"{len(data) - HEADER_LEN} extra bytes")
    return MoldRequest(*_HEADER.unpack(data))
