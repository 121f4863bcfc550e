"""MoldUDP64 re-request service and the gap-filling receiver that uses it.

:class:`RetransmitServer` answers a :class:`protocols.moldudp64.MoldRequest`
datagram with one downstream packet holding as many of the requested messages
as fit ``max_payload`` (the requester asks again for the rest), sent back to
the requester's address, as NASDAQ's re-request servers do. A request for
messages not yet sent is answered with a heartbeat naming the next sequence
number; a request for another session, or a malformed one, is counted and
dropped.

:class:`MoldReceiver` is the other end: it delivers a session's messages in
sequence order exactly once, and when a packet (or a heartbeat) shows a gap it
re-requests the missing messages, repeating on a timer until they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections import Counter

from protocols import moldudp64 as mold


class RetransmitServer(asyncio.DatagramProtocol):
    """Answer re-requests from ``lookup(seq, count) -> list[bytes]``; ``next_seq()``
    is the publisher's next sequence number."""

    def __init__(self, session: bytes | str, lookup: Callable[[int, int], list[bytes]],
                 next_seq: Callable[[], int], max_payload: int = 1400):
        self.session = mold.session_bytes(session)
        self.lookup = lookup
        self.next_seq = next_seq
        self.max_payload = max_payload
        self.transport: asyncio.DatagramTransport | None = None
        self.stats: Counter = Counter()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def answer(self, data: bytes) -> bytes | None:
        """The reply to one request datagram (``None``: no reply)."""
        try:
            req = mold.decode_request(data)
        except mold.MoldError as e:
            self.stats[f"bad_{e.reason}"] += 1
            return None
        if req.session != self.session:
            self.stats["wrong_session"] += 1
            return None
        self.stats["requests"] += 1
        msgs = self.lookup(req.seq, req.count) if req.count else []
        if not msgs:
            self.stats["beyond_end"] += 1
            return mold.encode_packet(mold.heartbeat(self.session, self.next_seq()))
        size, n = mold.HEADER_LEN, 0
        for m in msgs:
            if n and size + 2 + len(m) > self.max_payload:
                break
            size += 2 + len(m)
            n += 1
        self.stats["messages"] += n
        return mold.encode_packet(mold.MoldPacket(self.session, req.seq, tuple(msgs[:n])))

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class MoldReceiver(asyncio.DatagramProtocol):
    """Receive one MoldUDP64 session, recovering gaps from a re-request server.

    ``on_message(seq, message)`` is called for every message in sequence order,
    each exactly once, from ``first_seq``. ``request_addr`` is the re-request
    server; the same socket sends the requests and takes their answers.
    Packets of another session (once the first one fixed it) are counted and
    ignored. ``retry_s`` is how long an unanswered re-request waits before it
    is repeated.
    """

    def __init__(self, on_message: Callable[[int, bytes], None], request_addr: tuple[str, int] | None = None, *,
                 session: bytes | str | None = None, first_seq: int = 1, retry_s: float = 0.05):
        self.on_message = on_message
        self.request_addr = request_addr
        self.session = None if session is None else mold.session_bytes(session)
        self.expected = first_seq
        self.retry_s = retry_s
        self.pending: dict[int, bytes] = {}
        self.high = first_seq          # one past the highest sequence number seen
        self.stats: Counter = Counter()
        self.ended = False
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._caught_up = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self._timer:
            self._timer.cancel()

    def datagram_received(self, data: bytes, addr) -> None:
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Take one downstream datagram (live or retransmitted)."""
        try:
            pkt = mold.decode_packet(data)
        except mold.MoldError as e:
            self.stats[f"bad_{e.reason}"] += 1
            return
        if self.session is None:
            self.session = pkt.session
        elif pkt.session != self.session:
            self.stats["wrong_session"] += 1
            return
        self.stats["packets"] += 1
        if pkt.end_of_session:
            self.ended = True
        self.high = max(self.high, pkt.next_seq if pkt.messages else pkt.seq)
        for i, m in enumerate(pkt.messages):
            s = pkt.seq + i
            if s >= self.expected:
                self.pending.setdefault(s, m)
            else:
                self.stats["duplicates"] += 1
        before = self.expected
        while self.expected in self.pending:
            self.on_message(self.expected, self.pending.pop(self.expected))
            self.stats["messages"] += 1
            self.expected += 1
        if self.expected < self.high:
            if self.expected != before and self._timer is not None:
                self._timer.cancel()      # progress: ask for the rest at once
                self._timer = None
            self._request()
        else:
            self._caught_up.set()

    @property
    def gap(self) -> int:
        """Messages known to exist that have not been delivered yet."""
        return self.high - self.expected

    def _request(self) -> None:
        self._caught_up.clear()
        if self._timer is not None or self.request_addr is None or self.transport is None:
            return
        count = min(self.high - self.expected, 0xFFFF)
        self.transport.sendto(mold.encode_request(mold.MoldRequest(self.session, self.expected, count)),
                              self.request_addr)
        self.stats["requests"] += 1
        self._timer = asyncio.get_running_loop().call_later(self.retry_s, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self.expected < self.high:
            self._request()

    async def wait_caught_up(self, seq: int | None = None) -> None:
        """Wait until every message before ``seq`` (default: every one seen) is delivered."""
        while (self.expected < self.high) or (seq is not None and self.expected < seq):
            if seq is not None and self.high < seq:
                self.high = seq
                self._request()
            self._caught_up.clear()
            await self._caught_up.wait()
