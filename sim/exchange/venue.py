"""One simulated venue in asyncio: matching engine, ITCH feed, re-request server, flow, order entry.

:class:`Venue` owns a :class:`~sim.exchange.matching.MatchingEngine` for its
symbols and runs every request through :meth:`Venue.handle`: the book events
become ITCH messages published as MoldUDP64 datagrams (one batch per request,
so a client's own order and the trades it caused arrive together), and the
ExecReports and CancelRejects go to whoever listens for their owner (the FIX
acceptor, the background flow, a test). A venue can run without any order
entry (tests call :meth:`Venue.submit`), with the project's FIX acceptor
(``order_entry="calarb"``) or with a QuickFIX acceptor (``"quickfix"``).
:class:`Exchange` runs several venues in one process.

Time: ``clock()`` (ns since midnight) stamps ITCH messages; the flow and
heartbeat timers use the event loop. Tests pass a counting clock and drive
the flow with :meth:`Venue.step_flow`, so runs are deterministic and fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from sim.exchange.config import ExchangeConfig, VenueConfig
from sim.exchange.flow import BackgroundFlow
from sim.exchange.marketdata import ItchWriter, MoldPublisher, wall_clock_ns
from sim.exchange.matching import (CancelReject, CancelRequest, ExecReport, MatchingEngine, NewOrder,
                                   ReplaceRequest)
from sim.exchange.retransmit import RetransmitServer

log = logging.getLogger(__name__)


class _Sender(asyncio.DatagramProtocol):
    def error_received(self, exc) -> None:   # nobody listening on loopback: ICMP unreachable
        pass


class Venue:
    """A venue from its :class:`~sim.exchange.config.VenueConfig` (see the module doc).

    ``drop(payload) -> bool`` loses live market data datagrams on purpose (they
    stay available for re-requests). ``order_entry`` is ``None``, ``"calarb"``
    or ``"quickfix"``. ``flow_timer=False`` keeps the background flow to
    explicit :meth:`step_flow` calls.
    """

    def __init__(self, cfg: VenueConfig, *, clock: Callable[[], int] = wall_clock_ns,
                 drop: Callable[[bytes], bool] | None = None, order_entry: str | None = "calarb",
                 flow_timer: bool = True, heartbeat_timer: bool = True):
        self.cfg = cfg
        self.clock = clock
        self.engine = MatchingEngine([s.symbol for s in cfg.symbols], cfg.ticks)
        self.writer = ItchWriter(cfg.locates, clock)
        self.publisher = MoldPublisher(cfg.session, max_payload=cfg.max_payload, sink=self._sink, drop=drop)
        self.flow = BackgroundFlow(cfg.prices, cfg.ticks, cfg.flow) if cfg.flow is not None else None
        self.order_entry_kind = order_entry
        self.order_entry = None
        self.flow_timer = flow_timer and self.flow is not None
        self.heartbeat_timer = heartbeat_timer
        self.listeners: dict[str, list[Callable]] = {}
        self.any_listeners: list[Callable] = []
        self.md_targets: list[tuple[str, int]] = [(cfg.md_host, cfg.md_port)] if cfg.md_port else []
        self.stats: Counter = Counter()
        self.retransmit: RetransmitServer | None = None
        self._md_transport: asyncio.DatagramTransport | None = None
        self._rt_transport: asyncio.DatagramTransport | None = None
        self._tasks: list[asyncio.Task] = []
        self._queue: asyncio.Queue | None = None
        self.started = False
        if self.flow is not None:
            self.listen(self.flow.owner, self.flow.on_report)

    # ---- wiring -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.cfg.name

    def listen(self, owner: str | None, callback: Callable) -> None:
        """Call ``callback(event)`` with every ExecReport/CancelReject for ``owner`` (``None``: all)."""
        if owner is None:
            self.any_listeners.append(callback)
        else:
            self.listeners.setdefault(owner, []).append(callback)

    def subscribe(self, addr: tuple[str, int]) -> None:
        """Also send the live feed to ``addr`` (loopback fan-out in place of multicast)."""
        self.md_targets.append(addr)

    def _sink(self, payload: bytes) -> None:
        if self._md_transport is None:
            return
        for addr in self.md_targets:
            self._md_transport.sendto(payload, addr)

    @property
    def fix_port(self) -> int:
        """The bound FIX port (differs from the config's when that is 0)."""
        if self.order_entry is not None:
            return self.order_entry.port
        return self.cfg.fix_port

    @property
    def retransmit_port(self) -> int:
        if self._rt_transport is not None:
            return self._rt_transport.get_extra_info("sockname")[1]
        return self.cfg.retransmit_port

    @property
    def retransmit_addr(self) -> tuple[str, int]:
        return (self.cfg.host, self.retransmit_port)

    # ---- requests ---------------------------------------------------------------------

    def handle(self, req: NewOrder | CancelRequest | ReplaceRequest) -> list:
        """Run one request through the engine now; publish and dispatch what it caused."""
        if isinstance(req, NewOrder):
            events = self.engine.submit(req)
            self.stats["orders"] += 1
        elif isinstance(req, CancelRequest):
            events = self.engine.cancel(req)
            self.stats["cancels"] += 1
        elif isinstance(req, ReplaceRequest):
            events = self.engine.replace(req)
            self.stats["replaces"] += 1
        else:
            raise TypeError(f"not an engine request: {req!r}")
        self.publisher.publish(self.writer.book_events(events))
        for ev in events:
            if isinstance(ev, (ExecReport, CancelReject)):
                if isinstance(ev, ExecReport) and ev.exec_type == "F":
                    self.stats["fills"] += 1
                    self.stats["shares"] += ev.last_qty
                for cb in self.listeners.get(ev.owner, ()):
                    cb(ev)
                for cb in self.any_listeners:
                    cb(ev)
        return events

    submit = handle

    def enqueue(self, req) -> None:
        """Take a request from order entry: at once, or after the venue's latency in arrival order."""
        if self.cfg.latency_ms <= 0 or self._queue is None:
            self.handle(req)
        else:
            self._queue.put_nowait((asyncio.get_running_loop().time() + self.cfg.latency_ms / 1000, req))

    async def _delay_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, req = await self._queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                self.handle(req)
            except Exception:   # a bad request must not stop the venue
                log.exception("venue %s: request %r failed", self.name, req)

    def step_flow(self, n: int = 1) -> None:
        """Run ``n`` background flow requests."""
        for _ in range(n):
            self.handle(self.flow.step())

    async def _flow_loop(self) -> None:
        period = 1.0 / self.cfg.flow.rate
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            next_t += period
            now = loop.time()
            n = 1 + max(0, int((now - next_t) / period))   # catch up in batches when behind
            if n > 1:
                next_t += (n - 1) * period
            self.step_flow(min(n, 100))
            await asyncio.sleep(max(0.0, next_t - loop.time()))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            self.publisher.heartbeat()

    # ---- life -------------------------------------------------------------------------

    async def start(self) -> "Venue":
        """Bind the sockets, publish the start of day and the flow's opening book, start the timers
        and the order entry acceptor."""
        loop = asyncio.get_running_loop()
        self._md_transport, _ = await loop.create_datagram_endpoint(_Sender, local_addr=(self.cfg.host, 0))
        self.retransmit = RetransmitServer(self.cfg.session, self.publisher.lookup, lambda: self.publisher.next_seq,
                                           self.cfg.max_payload)
        self._rt_transport, _ = await loop.create_datagram_endpoint(
            lambda: self.retransmit, local_addr=(self.cfg.host, self.cfg.retransmit_port))
        self.publisher.publish(self.writer.start_of_day({s.symbol: s.round_lot for s in self.cfg.symbols}))
        if self.flow is not None:
            for req in self.flow.opening():
                self.handle(req)
        if self.cfg.latency_ms > 0:
            self._queue = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._delay_loop()))
        if self.flow_timer:
            self._tasks.append(asyncio.create_task(self._flow_loop()))
        if self.heartbeat_timer:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        if self.order_entry_kind is not None:
            self.order_entry = make_order_entry(self.order_entry_kind, self)
            await self.order_entry.start()
        self.started = True
        return self

    async def stop(self, end_session: bool = True) -> None:
        """Stop order entry and the timers, send end of session, close the sockets."""
        if self.order_entry is not None:
            await self.order_entry.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        if end_session and self.started:
            self.publisher.publish(self.writer.end_of_day())
            self.publisher.end_session()
        for tr in (self._md_transport, self._rt_transport):
            if tr is not None:
                tr.close()
        self._md_transport = self._rt_transport = None
        self.started = False

    async def __aenter__(self) -> "Venue":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def describe(self) -> dict:
        """What the venue serves, JSON-ready."""
        return {"venue": self.name, "fix": f"{self.cfg.host}:{self.fix_port}", "comp_id": self.cfg.comp_id,
                "order_entry": self.order_entry_kind, "market_data": [f"{h}:{p}" for h, p in self.md_targets],
                "retransmit": f"{self.cfg.host}:{self.retransmit_port}", "session": self.cfg.session,
                "symbols": {s.symbol: s.locate for s in self.cfg.symbols}, "latency_ms": self.cfg.latency_ms,
                "flow_rate": self.cfg.flow.rate if self.cfg.flow else 0}

    def snapshot(self) -> dict:
        """Counters and top of book per symbol, JSON-ready."""
        tops = {}
        for s in self.cfg.symbols:
            bid, ask = self.engine.books[s.symbol].top()
            tops[s.symbol] = [bid, ask]
        return {"venue": self.name, "seq": self.publisher.next_seq - 1, **dict(self.stats),
                "dropped": self.publisher.stats["dropped"], "rerequests": self.retransmit.stats["requests"]
                if self.retransmit else 0, "top": tops}


def make_order_entry(kind: str, venue: Venue):
    """The order entry acceptor ``kind`` (``calarb`` or ``quickfix``) for ``venue``."""
    if kind == "calarb":
        from sim.exchange.fix_venue import FixOrderEntry
        return FixOrderEntry(venue)
    if kind == "quickfix":
        from sim.exchange.quickfix_venue import QuickFixOrderEntry
        return QuickFixOrderEntry(venue)
    raise ValueError(f"order entry {kind!r} is not calarb or quickfix")


class Exchange:
    """Several venues in one process (one per ``[[venue]]`` of the config)."""

    def __init__(self, cfg: ExchangeConfig, **venue_kw):
        self.cfg = cfg
        self.venues = [Venue(v, **venue_kw) for v in cfg.venues]

    def __getitem__(self, name: str) -> Venue:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(f"no venue {name!r}")

    async def start(self) -> "Exchange":
        started = []
        try:
            for v in self.venues:
                await v.start()
                started.append(v)
        except BaseException:
            for v in started:
                await v.stop()
            raise
        return self

    async def stop(self) -> None:
        for v in self.venues:
            await v.stop()

    async def __aenter__(self) -> "Exchange":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
