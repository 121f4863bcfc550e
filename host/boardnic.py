"""The board NIC: the host's NIC interface to a real board, over the host link (``docs/hostlink.md``).

Register reads and writes are requests with a sequence number, answered by
the board; a request without an answer within ``timeout`` is sent again (same
``seq``) up to ``retries`` times. Reads are idempotent; the board executes a
repeated WRITE (same ``seq``) only once and acknowledges it again, so a lost
acknowledgement never writes twice. The first ``seq`` is random, so a new
host never collides with the board's memory of the last write.

Events (and order-entry messages) arrive as pushes numbered by the board; a
jump in the numbering counts the pushes lost on the way (:attr:`lost`), and a
repeated or older number is dropped (:attr:`stale`). Frames the host sends
go to the board's market port in SEND datagrams (not acknowledged: like any
frame on a network they may be lost).

The transport is anything with ``send(payload)`` and ``recv(timeout) ->
payload or None`` (:class:`UdpTransport` for a board on the network; the
Verilator board test plugs the simulated port in its place).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from host.nic import Nic, NicError
from protocols import hostlink as link
from protocols.events import Event, decode_event
from protocols.registers import REGISTER_MAP, Access, RegisterError, RegisterMap


class UdpTransport:
    """The host link over a UDP socket to ``board_ip`` (port :data:`protocols.hostlink.PORT`)."""

    def __init__(self, board_ip: str, *, local: tuple[str, int] = ("0.0.0.0", 0), port: int = link.PORT):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(local)
        self.sock.connect((board_ip, port))

    def send(self, payload: bytes) -> None:
        self.sock.send(payload)

    def recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout if timeout > 0 else 0.0)     # 0.0: non-blocking
        try:
            return self.sock.recv(65535)
        except (socket.timeout, BlockingIOError):
            return None

    def close(self) -> None:
        self.sock.close()


@dataclass
class LinkStats:
    """What the host saw of the link."""

    requests: int = 0
    retries: int = 0
    stale_responses: int = 0
    pushes: int = 0
    lost: int = 0
    stale: int = 0
    malformed: int = 0


def _default_board_map() -> RegisterMap | None:
    from protocols import registers
    return getattr(registers, "BOARD_REGISTER_MAP", None)


class BoardNic(Nic):
    """A board running calarb gateware, reached over the host link."""

    def __init__(self, transport, *, board_map: RegisterMap | None = None, timeout: float = 0.1,
                 retries: int = 8, seq: int | None = None):
        self.transport = transport
        self.board_map = board_map if board_map is not None else _default_board_map()
        self.timeout, self.retries = timeout, retries
        self._seq = int.from_bytes(os.urandom(4), "little") if seq is None else seq
        self._expected: int | None = None
        self._events: list[Event] = []
        self._sent: list[bytes] = []
        self.orders: list[bytes] = []
        self.stats = LinkStats()

    @property
    def lost(self) -> int:
        """Pushes (events, orders) lost on the link, from gaps in their numbering."""
        return self.stats.lost

    @property
    def stale(self) -> int:
        return self.stats.stale

    # ---- registers ----
    def _address(self, name: str) -> tuple[int, object]:
        try:
            mapped = REGISTER_MAP[name]
            return mapped.address, mapped.register
        except RegisterError:
            if self.board_map is None:
                raise
            try:
                mapped = self.board_map[name]
            except RegisterError:
                raise RegisterError(f"unknown register {name!r} (neither a core nor a board register)") from None
            return link.ADDR_SPACE_BOARD | mapped.address, mapped.register

    def read(self, name: str) -> int:
        addr, _ = self._address(name)
        return self._request(lambda seq: link.read_request(seq, addr), link.Kind.READ_ACK, name)

    def write(self, name: str, value: int) -> None:
        addr, reg = self._address(name)
        if reg.access is not Access.RW:
            raise NicError(f"register {name} is {reg.behaviour}; it cannot be written")
        if not 0 <= value <= reg.mask:
            raise NicError(f"value {value:#x} does not fit register {name} ({reg.width} bits)")
        self._request(lambda seq: link.write_request(seq, addr, value), link.Kind.WRITE_ACK, name)

    def counters(self, *blocks: str) -> dict[str, int]:
        """Every counter of the core's map and the board's (of ``blocks`` if given)."""
        out = super().counters(*blocks)
        if self.board_map is not None:
            out.update({m.name: self.read(m.name) for m in self.board_map.counters()
                        if not blocks or m.block in blocks})
        return out

    def _request(self, make, answer: link.Kind, name: str) -> int:
        self._seq = (self._seq + 1) & link.SEQ_MASK
        seq = self._seq
        payload = make(seq).encode()
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.transport.send(payload)
            deadline = time.monotonic() + self.timeout
            while True:
                got = self.transport.recv(max(deadline - time.monotonic(), 0.0))
                if got is None:
                    break
                d = self._handle(got)
                if d is None:
                    continue
                if d.kind is answer and d.seq == seq:
                    return link.addr_value(d)[1]
                self.stats.stale_responses += 1
        raise NicError(f"no answer from the board to {answer.name.removesuffix('_ACK')} {name} "
                       f"after {self.retries + 1} tries ({self.timeout} s each)")

    # ---- pushes ----
    def _handle(self, payload: bytes) -> link.Datagram | None:
        """Take a push into the queues; return a response for the caller, None otherwise."""
        try:
            d = link.decode(payload)
        except link.LinkError:
            self.stats.malformed += 1
            return None
        if d.kind not in link.PUSHES:
            return d
        if self._expected is not None:
            ahead = (d.seq - self._expected) & link.SEQ_MASK
            if ahead >= 1 << 31:            # behind: a duplicate or a late one
                self.stats.stale += 1
                return None
            self.stats.lost += ahead
        self._expected = (d.seq + 1) & link.SEQ_MASK
        self.stats.pushes += 1
        if d.kind is link.Kind.EVENT:
            self._events.append(decode_event(d.body, d.aborted))
        else:
            self.orders.append(d.body)
        return None

    def poll(self, wait: float = 0.0) -> list[Event]:
        """Events received since the last poll (waiting up to ``wait`` seconds for the first)."""
        got = self.transport.recv(wait)
        while got is not None:
            self._handle(got)
            got = self.transport.recv(0.0)
        events, self._events = self._events, []
        return events

    # ---- frames ----
    def send(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._seq = (self._seq + 1) & link.SEQ_MASK
            self.transport.send(link.send_request(self._seq, frame).encode())
            self._sent.append(bytes(frame))

    def sent(self) -> list[bytes]:
        """Frames handed to the board for its market port since the last call (not confirmed)."""
        out, self._sent = self._sent, []
        return out

    def deliver(self, frames: list[bytes]) -> None:
        raise NicError("a board receives market data on its own port; frames cannot be delivered through "
                       "the host link")

    def reset(self) -> None:
        """Forget what the host holds (queues, push numbering); the board keeps running."""
        self._events, self._sent, self.orders = [], [], []
        self._expected = None
        self.stats = LinkStats()

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()


__all__ = ["BoardNic", "LinkStats", "UdpTransport"]
