"""FIX over TCP on asyncio: an :class:`Acceptor` (loopback by default, configured CompIDs
only) and an :class:`Initiator` (reconnects with exponential backoff).

Both run :class:`host.fix.session.Session` objects, feeding them the bytes of their
connection and a timer (``poll``) every ``tick_s``; everything happens on the
event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Callable

from protocols import fix
from protocols.fix import FixError

from .config import ConfigError, SessionConfig
from .session import Application, Session

log = logging.getLogger(__name__)


class _Connection(asyncio.Protocol):
    """One TCP connection; hands bytes to a session once it is bound to one."""

    def __init__(self, bind: Callable[["_Connection", bytes], Session | None] | None = None,
                 session: Session | None = None) -> None:
        self.bind = bind
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._pending = b""
        self._parser = fix.StreamParser()

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.session is not None:
            self.session.connected(self.write, self.close)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            # acceptor, not yet bound: wait for the first complete frame, which must be a Logon
            self._pending += data
            frames = [f for f in self._parser.feed(data) if not isinstance(f, FixError)]
            if not frames:
                if len(self._pending) > 64 * 1024:
                    self.close()
                return
            session = self.bind(self, frames[0])
            if session is None:
                self.close()
                return
            self.session = session
            session.connected(self.write, self.close)
            data, self._pending = self._pending, b""
        self.session.data_received(data)

    def connection_lost(self, exc) -> None:
        if self.session is not None and self.session._close_cb == self.close:
            self.session.connection_lost()
        if not self.closed.done():
            self.closed.set_result(None)


class _Ticker:
    """Calls ``poll`` on the sessions every ``tick_s`` seconds."""

    def __init__(self, sessions: Callable[[], list[Session]], tick_s: float) -> None:
        self.sessions, self.tick_s = sessions, tick_s
        self._handle = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.tick_s, self._tick)

    def _tick(self) -> None:
        for s in self.sessions():
            try:
                s.poll()
            except Exception:           # a timer must never die silently with its loop
                log.exception("%s: poll failed", s.id)
        self.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Acceptor:
    """Accept FIX sessions for the configured CompIDs only.

    ``sessions``: one :class:`SessionConfig` per counterparty (our ``sender_comp_id``,
    theirs as ``target_comp_id``; ``username``/``password`` make them required on Logon).
    A connection whose first frame is not a Logon for one of them, or is for a session that
    is already connected, is refused, logged and recorded in :attr:`refused`.
    """

    def __init__(self, sessions: list[SessionConfig], app: Application | None = None, host: str = "127.0.0.1",
                 port: int = 0, tick_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.host, self.port, self.app = host, port, app or Application()
        self.sessions: dict[tuple[str, str], Session] = {}
        for cfg in sessions:
            key = (cfg.target_comp_id, cfg.sender_comp_id)     # (their SenderCompID, their TargetCompID)
            if key in self.sessions:
                raise ConfigError(f"fix.sessions: {cfg.session_id} configured twice")
            self.sessions[key] = Session(cfg, self.app, initiator=False, clock=clock)
        hb = min((c.heartbeat_s for c in sessions), default=30)
        self.tick_s = tick_s or min(0.5, hb / 10)
        self.refused: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self._ticker = _Ticker(lambda: list(self.sessions.values()), self.tick_s)

    def session(self, counterparty: str) -> Session:
        """The session with the counterparty whose SenderCompID is ``counterparty``."""
        for (theirs, _), s in self.sessions.items():
            if theirs == counterparty:
                return s
        raise KeyError(f"no FIX session with {counterparty!r}")

    def _bind(self, conn: _Connection, first: bytes) -> Session | None:
        peer = conn.transport.get_extra_info("peername") if conn.transport else None
        msg_type, _ = fix.peek(first)
        try:
            msg = fix.decode(first)
        except FixError as e:
            return self._refuse(f"{peer}: first frame does not decode: {e}")
        if msg_type != "A":
            return self._refuse(f"{peer}: first message is 35={msg_type}, not a Logon")
        key = (msg.sender_comp_id, msg.target_comp_id)
        session = self.sessions.get(key)
        if session is None:
            return self._refuse(f"{peer}: Logon from unconfigured CompIDs {key[0]}->{key[1]}")
        if session.connected_now:
            return self._refuse(f"{peer}: {session.id} is already connected")
        return session

    def _refuse(self, why: str) -> None:
        log.warning("FIX acceptor refused a connection: %s", why)
        self.refused.append(why)
        return None

    async def start(self) -> int:
        """Listen; returns the bound port (``port=0`` picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(bind=self._bind), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker.start()
        return self.port

    async def stop(self, logout_timeout_s: float = 2.0) -> None:
        """Log out every active session (waiting for replies up to the timeout), close, stop."""
        for s in self.sessions.values():
            s.logout("acceptor stopping")
        deadline = time.monotonic() + logout_timeout_s
        while any(s.connected_now for s in self.sessions.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for s in self.sessions.values():
            s.disconnect("acceptor stopped")
        self._ticker.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for s in self.sessions.values():
            s.store.close()


class Initiator:
    """Connect to a FIX acceptor and keep the session up: reconnect after a disconnect
    or a failed connect, waiting ``backoff_s`` doubled each failure up to ``backoff_max_s``
    (reset once a Logon succeeds)."""

    def __init__(self, config: SessionConfig, host: str, port: int, app: Application | None = None,
                 backoff_s: float = 0.5, backoff_max_s: float = 30.0, reconnect: bool = True,
                 tick_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.host, self.port = host, port
        self.session = Session(config, app, initiator=True, clock=clock)
        self.backoff_s, self.backoff_max_s, self.reconnect = backoff_s, backoff_max_s, reconnect
        self.tick_s = tick_s or min(0.5, config.heartbeat_s / 10)
        self.connects = 0
        self._task: asyncio.Task | None = None
        self._conn: _Connection | None = None
        self._ticker = _Ticker(lambda: [self.session], self.tick_s)

    async def start(self) -> None:
        """Start connecting in the background (see :meth:`wait_logged_on`)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._ticker.start()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_s
        while True:
            logons = self.session.logons
            try:
                self._conn = _Connection(session=self.session)
                await loop.create_connection(lambda: self._conn, self.host, self.port)
                self.connects += 1
                await self._conn.closed
                log.info("%s: connection closed: %s", self.session.id, self.session.logout_reason)
            except OSError as e:
                log.info("%s: connect to %s:%d failed: %s", self.session.id, self.host, self.port, e)
            if not self.reconnect:
                return
            if self.session.logons > logons:
                delay = self.backoff_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def wait_logged_on(self, timeout_s: float = 10.0) -> Session:
        """Wait until the session is logged on; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while not self.session.logged_on:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.session.id}: not logged on after {timeout_s} s "
                                   f"({self.session.logout_reason or self.session.state})")
            await asyncio.sleep(0.005)
        return self.session

    def send(self, msg: fix.Message) -> int | None:
        """Send an application message on the session (see :meth:`Session.send`)."""
        return self.session.send(msg)

    async def stop(self, logout_timeout_s: float = 2.0) -> None:
        """Logout (waiting for the reply up to the timeout), then stop reconnecting and close."""
        self.reconnect = False
        if self.session.logged_on:
            self.session.logout()
            deadline = time.monotonic() + logout_timeout_s
            while self.session.connected_now and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self.session.disconnect("initiator stopped")
        self._ticker.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.session.store.close()
