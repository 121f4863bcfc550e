"""The software receive path: what the gateware's Ethernet/UDP and MoldUDP64 stages do, in Python.

This is the golden model of ``hw/ethrx.py`` and ``hw/moldudp64.py`` and the
host's software decoding path: for the same frames it produces the same
messages, gap events and counter values (named as in
``protocols/registers.py``). It is written from the protocol rules, not from
the gateware, so the differential tests compare two independent readings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from protocols.moldudp64 import END_OF_SESSION, HEADER_LEN

ETH_HEADERS = 42
"""Ethernet (14) + IPv4 without options (20) + UDP (8) header bytes."""


@dataclass(frozen=True)
class EthRxConfig:
    """The ``eth`` block's filter registers."""

    filter: int = 0
    ip_dst: int = 0
    udp_port: int = 0


def eth_verdict(frame: bytes, cfg: EthRxConfig = EthRxConfig()) -> str:
    """The counter a frame lands in: ``forwarded`` or ``drop_<reason>``, checks in gateware order."""
    if len(frame) < ETH_HEADERS:
        return "drop_runt"
    if frame[12:14] != b"\x08\x00":
        return "drop_ethertype"
    if frame[14] != 0x45:
        return "drop_ip_header"
    total = 0
    for k in range(14, 34, 2):
        total += int.from_bytes(frame[k:k + 2], "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if total != 0xFFFF:
        return "drop_ip_checksum"
    total_len = int.from_bytes(frame[16:18], "big")
    udp_len = int.from_bytes(frame[38:40], "big")
    if total_len < 28 or udp_len < 8 or udp_len + 20 > total_len:
        return "drop_ip_length"
    if int.from_bytes(frame[20:22], "big") & 0x3FFF:
        return "drop_fragment"
    if frame[23] != 17:
        return "drop_protocol"
    if (cfg.filter & 1 and int.from_bytes(frame[30:34], "big") != cfg.ip_dst) or \
       (cfg.filter & 2 and int.from_bytes(frame[36:38], "big") != cfg.udp_port):
        return "drop_filter"
    return "forwarded"


@dataclass
class EthRx:
    """Frames in, UDP payloads out, with the ``eth`` block's counters."""

    cfg: EthRxConfig = field(default_factory=EthRxConfig)
    counters: Counter = field(default_factory=Counter)

    def receive(self, frame: bytes) -> bytes | None:
        """The UDP payload the stage forwards for ``frame`` (possibly truncated), or None if dropped."""
        verdict = eth_verdict(frame, self.cfg)
        self.counters["frames"] += 1
        self.counters[verdict] += 1
        if verdict != "forwarded":
            self.counters["dropped_bytes"] += len(frame)
            return None
        udp_len = int.from_bytes(frame[38:40], "big")
        if len(frame) < ETH_HEADERS - 8 + udp_len:
            self.counters["truncated"] += 1
        return frame[ETH_HEADERS:ETH_HEADERS - 8 + udp_len]


@dataclass(frozen=True)
class Message:
    """One message delivered by the MoldUDP64 stage; ``aborted`` ones were cut short (bytes unspecified)."""

    seq: int
    data: bytes
    aborted: bool = False


@dataclass(frozen=True)
class Gap:
    """Messages ``expected .. seq - 1`` were not received."""

    expected: int
    seq: int


@dataclass
class MoldRx:
    """MoldUDP64 sequencing and message splitting with the ``mold`` block's registers.

    ``learn`` and ``hold`` are the two bits of ``mold.control``.
    """

    learn: bool = True
    hold: bool = False
    session: bytes = b" " * 10               # the learned session
    written_session: bytes = b"\0" * 10      # ``mold.session_hi/lo``, in force when not learning
    expected: int = 1
    counters: Counter = field(default_factory=Counter)
    learn_pending: bool = True
    learned: bool = False
    eos_seen: bool = False

    @property
    def session_in_force(self) -> bytes:
        return self.session if self.learn else self.written_session

    def resync(self, next_seq: int) -> None:
        """What a host write to ``mold.next_seq`` does."""
        self.expected = next_seq
        self.learn_pending = True
        self.learned = False
        self.eos_seen = False

    def receive(self, payload: bytes) -> list[Message | Gap]:
        """Process one UDP payload; returns gap events and messages in the order the stage emits them."""
        c = self.counters
        c["packets"] += 1
        if len(payload) < HEADER_LEN:
            c["drop_short"] += 1
            c["dropped_bytes"] += len(payload)
            return []
        session = payload[:10]
        seq = int.from_bytes(payload[10:18], "big")
        count = int.from_bytes(payload[18:20], "big")
        learning = self.learn and self.learn_pending
        if not learning and session != self.session_in_force:
            c["drop_session"] += 1
            c["dropped_bytes"] += len(payload)
            return []
        if learning:
            self.session, self.learn_pending, self.learned = session, False, True
            self.expected = seq
        exp = self.expected
        out: list[Message | Gap] = []
        beyond = seq > exp
        if beyond and count != END_OF_SESSION:
            out.append(Gap(exp, seq))
            c["gaps"] += 1
            c["gap_messages"] += seq - exp
        body = payload[HEADER_LEN:]
        if count == END_OF_SESSION:
            c["end_of_session"] += 1
            self.eos_seen = True
            self._trailer(body)
            return out
        if count == 0:
            c["heartbeats"] += 1
            if beyond and not self.hold:
                self.expected = seq
            self._trailer(body)
            return out
        if beyond and self.hold:
            c["held_packets"] += 1
            c["dropped_bytes"] += len(payload)
            return out
        if seq + count <= exp:
            c["dup_packets"] += 1
            c["dup_messages"] += count
            c["dropped_bytes"] += len(payload)
            return out
        skip = 0 if beyond else exp - seq
        floor = seq if beyond else exp
        c["dup_messages"] += skip
        self.expected = seq + count
        pos = 0
        for index in range(count):
            delivering = index >= skip
            if pos + 2 > len(body):
                self._truncate(count, index, seq, floor, len(body) - pos)
                return out
            length = int.from_bytes(body[pos:pos + 2], "big")
            if pos + 2 + length > len(body):
                if delivering:
                    out.append(Message(seq + index, body[pos + 2:], aborted=True))
                self._truncate(count, index, seq, floor, len(body) - pos)
                return out
            if delivering:
                out.append(Message(seq + index, body[pos + 2:pos + 2 + length]))
                c["messages"] += 1
            else:
                c["dropped_bytes"] += 2 + length
            pos += 2 + length
        self._trailer(body[pos:])
        return out

    def _truncate(self, count: int, index: int, seq: int, floor: int, left: int) -> None:
        c = self.counters
        c["truncated"] += 1
        c["lost_messages"] += count - index
        c["dropped_bytes"] += left
        self.expected = max(floor, seq + index)

    def _trailer(self, rest: bytes) -> None:
        if rest:
            self.counters["trailing"] += 1
            self.counters["dropped_bytes"] += len(rest)


@dataclass
class ItchRx:
    """The ITCH decoder stage: records for well-formed messages of tracked instruments, with its counters."""

    filter: bool = False
    tracked: set = field(default_factory=set)
    counters: Counter = field(default_factory=Counter)

    def receive(self, message: Message) -> dict | None:
        """The decoded record (with ``seq``) the stage emits for ``message``, or None if it is dropped."""
        from protocols.itch import MESSAGES, decoded_record

        c = self.counters
        mt = MESSAGES.get(chr(message.data[0])) if message.data else None
        if message.aborted:
            c["aborted"] += 1
        elif mt is None:
            c["unknown_type"] += 1
        elif len(message.data) != mt.length:
            c["bad_length"] += 1
        elif self.filter and mt.code not in "SRH" and \
                int.from_bytes(message.data[1:3], "big") not in self.tracked:
            c["untracked"] += 1
        else:
            c["decoded"] += 1
            return dict(decoded_record(message.data), seq=message.seq)
        return None
