"""Market data edge: one venue's MoldUDP64 datagrams -> Ethernet frames -> NIC -> events, with gap recovery.

What
    :class:`FeedHandler` takes the datagrams of one MoldUDP64 session (live
    multicast stand-in, or re-request answers), wraps each into an
    Ethernet/IPv4/UDP frame with :func:`protocols.net.build_udp_frame` -
    what a NIC sees on the wire - and delivers it to a :class:`host.nic.Nic`
    whose events (top of book, gaps) the engine takes from :meth:`poll`.

    The NIC does the sequencing: it is programmed with the session and
    ``mold.next_seq = 1`` and the *hold* gap policy (``mold.control`` bit 1),
    so packets beyond a gap are dropped until retransmissions fill it and
    the book never skips a message. The handler only reads the first 20
    bytes of each datagram to learn the session (when not configured) and
    the highest sequence number announced, and while the NIC's
    ``mold.expected`` is behind that, re-requests ``[expected, high)`` from
    the venue's re-request server (:class:`protocols.moldudp64.MoldRequest`),
    repeating every ``retry_s`` until it arrives (the server answers one
    datagram per request; progress triggers the next request at once). A
    late joiner (a restarted engine) thereby replays the day from sequence 1.
    This is the logic of ``sim/exchange/retransmit.py``'s ``MoldReceiver``,
    moved to the NIC's side of the interface (``host`` does not import ``sim``).

    :class:`FeedProtocol` and :class:`RequestProtocol` are the asyncio
    datagram endpoints; :meth:`FeedHandler.configure_nic` writes the
    registers (mold, itch tracking, book slot table, event kinds).

Why
    DESIGN.md: the gateware detects and counts gaps, the host recovers them;
    the host never reads market data bytes itself on the hot path.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Callable

from host.nic import Nic
from protocols import moldudp64 as mold
from protocols.events import GapEvent
from protocols.net import build_udp_frame

__all__ = ["EVENTS_LOST", "EVENTS_TOB", "FeedHandler", "FeedProtocol", "RequestProtocol"]

EVENTS_TOB = 1 << 2
"""``events.control`` bit of TOB events."""

EVENTS_LOST = 1 << 3
"""``events.control`` bit of BOOK_LOST events (an order the gateware book could not keep: its TOB is off)."""

MOLD_HOLD = 0b10
"""``mold.control``: no learning (session and next_seq written), hold policy on gaps."""

FEED_SRC_IP, FEED_DST_IP = "10.0.0.1", "10.0.0.2"


class FeedHandler:
    """One venue's feed into one NIC (see the module docstring).

    ``locates`` maps the symbols to track to their stock locates (the NIC's
    book slot table is filled in this order). ``send_request(bytes)`` sends
    a re-request datagram (None: no recovery). ``clock`` is ``time.monotonic``.
    """

    def __init__(self, venue: str, nic: Nic, locates: dict[str, int], *, session: str | bytes | None = None,
                 send_request: Callable[[bytes], None] | None = None, retry_s: float = 0.05,
                 md_port: int = 26400, clock: Callable[[], float] = time.monotonic):
        self.venue = venue
        self.nic = nic
        self.locates = dict(locates)
        self.symbols = {loc: sym for sym, loc in self.locates.items()}
        self.session = None if not session else mold.session_bytes(session)
        self.send_request = send_request
        self.retry_s = retry_s
        self.md_port = md_port
        self.clock = clock
        self.high = 1                    # one past the highest sequence number announced
        self.seen_live = False           # a datagram (live or heartbeat) has told us where the feed is
        self.stats: Counter = Counter()
        self._requested_at: float | None = None
        self._requested_from = 0
        self._configured = False
        if self.session is not None:
            self.configure_nic()

    # ---------------------------------------------------------------- NIC set-up

    def configure_nic(self) -> None:
        """Program the NIC: session, next_seq 1, hold policy, tracked locates, book slots, TOB and LOST events."""
        nic = self.nic
        s = int.from_bytes(self.session, "big")
        nic.write("mold.control", MOLD_HOLD)
        nic.write("mold.session_hi", s >> 64)
        nic.write("mold.session_lo", s & ((1 << 64) - 1))
        nic.write("mold.next_seq", 1)
        nic.write("itch.control", 1)
        for slot, (sym, loc) in enumerate(self.locates.items()):
            nic.write("itch.track", 1 << 16 | loc)
            nic.write("book.slot", loc | slot << 16 | 1 << 24)
        nic.write("events.control", EVENTS_TOB | EVENTS_LOST)
        self._configured = True

    @property
    def slots(self) -> dict[str, int]:
        """``{symbol: book slot}`` as :meth:`configure_nic` wrote them."""
        return {sym: i for i, sym in enumerate(self.locates)}

    # ---------------------------------------------------------------- input

    def datagram(self, data: bytes, *, retransmitted: bool = False) -> None:
        """One MoldUDP64 datagram (live or a re-request answer) to the NIC."""
        if len(data) < mold.HEADER_LEN:
            self.stats["short"] += 1
            return
        session, seq, count = data[:10], int.from_bytes(data[10:18], "big"), int.from_bytes(data[18:20], "big")
        if self.session is None:
            self.session = session
            self.configure_nic()
        if session != self.session:
            self.stats["wrong_session"] += 1
            return
        self.stats["retransmitted" if retransmitted else "datagrams"] += 1
        if not retransmitted:
            self.seen_live = True
        end = seq if count in (0, mold.END_OF_SESSION) else seq + count
        self.high = max(self.high, end)
        frame = build_udp_frame(data, dst_ip=FEED_DST_IP, src_ip=FEED_SRC_IP, dst_port=self.md_port,
                                src_port=self.md_port)
        self.nic.deliver([frame])

    def poll(self) -> list:
        """The NIC's events since the last poll; re-requests what the NIC is still missing."""
        if not self._configured:
            return []
        events = self.nic.poll()
        for ev in events:
            if isinstance(ev, GapEvent):
                self.stats["gap_events"] += 1
        self.recover()
        return events

    @property
    def expected(self) -> int:
        return self.nic.read("mold.expected") if self._configured else 1

    @property
    def caught_up(self) -> bool:
        """The feed has been seen live and the NIC holds every message announced so far."""
        return self.seen_live and self._configured and self.expected >= self.high

    def recover(self, now: float | None = None) -> None:
        """Re-request ``[expected, high)`` unless a request for the same start is younger than ``retry_s``."""
        if self.send_request is None or not self._configured:
            return
        exp = self.expected
        if exp >= self.high:
            self._requested_at = None
            return
        now = self.clock() if now is None else now
        if (self._requested_at is not None and self._requested_from == exp
                and now - self._requested_at < self.retry_s):
            return
        count = min(self.high - exp, 0xFFFF)
        self.send_request(mold.encode_request(mold.MoldRequest(self.session, exp, count)))
        self.stats["requests"] += 1
        self._requested_at, self._requested_from = now, exp


class FeedProtocol(asyncio.DatagramProtocol):
    """The live feed socket: every datagram to ``on_datagram(data)``."""

    def __init__(self, on_datagram: Callable[[bytes], None]):
        self.on_datagram = on_datagram
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data)

    def error_received(self, exc) -> None:
        pass


class RequestProtocol(FeedProtocol):
    """The re-request socket: sends requests to the server and takes its answers."""

    def __init__(self, on_datagram: Callable[[bytes], None], server: tuple[str, int]):
        super().__init__(on_datagram)
        self.server = server

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(data, self.server)
