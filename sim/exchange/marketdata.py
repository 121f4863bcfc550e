"""Market data out of the matching engine's book: ITCH 5.0 in MoldUDP64 packets.

:class:`ItchWriter` turns the engine's book events into ITCH messages one for
one (``BookAdd`` -> ``A``, ``BookExecute`` -> ``E``, ``BookCancel`` -> ``X``,
``BookDelete`` -> ``D``, ``BookReplace`` -> ``U``) and writes the start of the
day (system events, a stock directory ``R`` and trading action ``H`` per
symbol). :class:`MoldPublisher` numbers the messages, keeps every one for the
retransmission server, packs them with :func:`protocols.moldudp64.packetise`
and hands each datagram to a sink (the venue's UDP socket). Both use only the
codecs in ``protocols/``: the layouts are written once, there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from protocols import itch
from protocols import moldudp64 as mold
from sim.exchange.matching import BookAdd, BookCancel, BookDelete, BookExecute, BookReplace

NS_PER_DAY = 86_400 * 1_000_000_000
MAX_TIMESTAMP = (1 << 48) - 1


def wall_clock_ns() -> int:
    """Nanoseconds since local midnight (the ITCH timestamp of "now")."""
    now = time.time_ns()
    offset = datetime.now().astimezone().utcoffset()
    local = now + int(offset.total_seconds()) * 1_000_000_000 if offset else now
    return local % NS_PER_DAY


class ItchWriter:
    """ITCH messages for one venue: ``locates`` maps each symbol to its stock
    locate; ``clock()`` gives the timestamp (ns since midnight)."""

    def __init__(self, locates: Mapping[str, int], clock: Callable[[], int] = wall_clock_ns):
        self.locates = dict(locates)
        self.clock = clock

    def _ts(self) -> int:
        return min(max(int(self.clock()), 0), MAX_TIMESTAMP)

    def start_of_day(self, round_lots: Mapping[str, int] | None = None) -> list[bytes]:
        """``S O``, ``S S``, ``R`` and ``H T`` per symbol, and ``S Q`` (market open)."""
        t = self._ts()
        msgs = [itch.message("S", timestamp=t, event_code="O"), itch.message("S", timestamp=t, event_code="S")]
        for sym, loc in self.locates.items():
            msgs.append(itch.message(
                "R", stock_locate=loc, timestamp=t, stock=sym, market_category="Q", financial_status="N",
                round_lot_size=(round_lots or {}).get(sym, 100), round_lots_only="N", issue_classification="C",
                issue_sub_type="Z", authenticity="T", short_sale_threshold="N", ipo_flag="N", luld_tier="1",
                etp_flag="N", etp_leverage_factor=0, inverse_indicator="N"))
        for sym, loc in self.locates.items():
            msgs.append(itch.message("H", stock_locate=loc, timestamp=t, stock=sym, trading_state="T"))
        msgs.append(itch.message("S", timestamp=t, event_code="Q"))
        return [itch.encode(m) for m in msgs]

    def end_of_day(self) -> list[bytes]:
        """``S M`` (market close), ``S E`` and ``S C``."""
        t = self._ts()
        return [itch.encode(itch.message("S", timestamp=t, event_code=c)) for c in "MEC"]

    def book_event(self, ev) -> bytes:
        """The ITCH message of one engine book event."""
        loc = self.locates[ev.symbol]
        t = self._ts()
        if isinstance(ev, BookAdd):
            m = itch.message("A", stock_locate=loc, timestamp=t, order_ref=ev.ref, side=ev.side, shares=ev.shares,
                             stock=ev.symbol, price=ev.price)
        elif isinstance(ev, BookExecute):
            m = itch.message("E", stock_locate=loc, timestamp=t, order_ref=ev.ref, shares=ev.shares,
                             match_number=ev.match)
        elif isinstance(ev, BookCancel):
            m = itch.message("X", stock_locate=loc, timestamp=t, order_ref=ev.ref, shares=ev.shares)
        elif isinstance(ev, BookDelete):
            m = itch.message("D", stock_locate=loc, timestamp=t, order_ref=ev.ref)
        elif isinstance(ev, BookReplace):
            m = itch.message("U", stock_locate=loc, timestamp=t, order_ref=ev.ref, new_order_ref=ev.new_ref,
                             shares=ev.shares, price=ev.price)
        else:
            raise TypeError(f"not a book event: {ev!r}")
        return itch.encode(m)

    def book_events(self, events: Iterable) -> list[bytes]:
        """ITCH messages of the book events among ``events`` (exec reports are skipped)."""
        return [self.book_event(e) for e in events
                if isinstance(e, (BookAdd, BookExecute, BookCancel, BookDelete, BookReplace))]


class MoldPublisher:
    """Sequence, store and send ITCH messages as MoldUDP64 datagrams.

    Message ``seq`` (from 1) is ``messages[seq - 1]``; every message is kept for
    re-requests. ``sink(payload)`` sends one datagram; ``drop(payload)``, when
    given, may return True to lose a datagram on purpose (tests), which is
    counted in ``stats["dropped"]`` but still stored.
    """

    def __init__(self, session: bytes | str, *, max_payload: int = 1400,
                 sink: Callable[[bytes], None] | None = None, drop: Callable[[bytes], bool] | None = None):
        self.session = mold.session_bytes(session)
        self.max_payload = max_payload
        self.sink = sink
        self.drop = drop
        self.messages: list[bytes] = []
        self.stats = {"packets": 0, "messages": 0, "heartbeats": 0, "dropped": 0, "bytes": 0}
        self.ended = False

    @property
    def next_seq(self) -> int:
        return len(self.messages) + 1

    def _send(self, payload: bytes) -> None:
        if self.drop is not None and self.drop(payload):
            self.stats["dropped"] += 1
            return
        self.stats["bytes"] += len(payload)
        if self.sink is not None:
            self.sink(payload)

    def publish(self, messages: Iterable[bytes]) -> list[mold.MoldPacket]:
        """Number, store and send ``messages``; returns the packets (in order)."""
        messages = list(messages)
        if not messages:
            return []
        packets = mold.packetise(messages, session=self.session, first_seq=self.next_seq,
                                 max_payload=self.max_payload)
        self.messages.extend(messages)
        for p in packets:
            self.stats["packets"] += 1
            self.stats["messages"] += len(p.messages)
            self._send(mold.encode_packet(p))
        return packets

    def heartbeat(self) -> None:
        """Announce the next sequence number (lets receivers see a gap at the tail)."""
        self.stats["heartbeats"] += 1
        self._send(mold.encode_packet(mold.heartbeat(self.session, self.next_seq)))

    def end_session(self) -> None:
        """Send the end-of-session packet."""
        self.ended = True
        self._send(mold.encode_packet(mold.end_of_session(self.session, self.next_seq)))

    def lookup(self, seq: int, count: int) -> list[bytes]:
        """Stored messages ``seq .. seq + count - 1`` (fewer at the end of what exists)."""
        if seq < 1:
            return []
        return self.messages[seq - 1:seq - 1 + count]
