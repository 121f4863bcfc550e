"""A small FIX order entry client for the simulator (examples, tests, the README walk-through).

:class:`OrderClient` runs a :class:`host.fix.Initiator` to one venue and keeps,
per order (its first ClOrdID), every ExecutionReport and OrderCancelReject
received, in order; :meth:`OrderClient.done` says whether the order reached a
terminal state (filled, canceled, rejected). It sends with the builders of
:mod:`host.fix.orders`. The client is the calarb side of the wire, so it uses
only ``host.fix`` and ``protocols.fix``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from pathlib import Path

from host.fix import Application, Initiator, SessionConfig, cancel_request, new_order_single, replace_request
from protocols import fix

TERMINAL_STATUS = frozenset("248")


class _App(Application):
    def __init__(self, client: "OrderClient"):
        self.client = client

    def on_message(self, session, msg: fix.Message) -> None:
        self.client._on_message(msg)


class OrderClient:
    """FIX client ``comp_id`` -> venue ``venue_comp_id`` at ``host:port``; ``store`` (a file path)
    keeps the session's sequence numbers and messages across restarts."""

    def __init__(self, host: str, port: int, *, comp_id: str = "CALARB", venue_comp_id: str = "SIMA",
                 store: str | Path | None = None, heartbeat_s: int = 30, backoff_s: float = 0.05,
                 prefix: str = "C"):
        self.config = SessionConfig(comp_id, venue_comp_id, heartbeat_s=heartbeat_s, store=store, fsync="never")
        self.host, self.port, self.backoff_s = host, port, backoff_s
        self.root: dict[str, str] = {}                      # any ClOrdID -> the order's first ClOrdID
        self.current: dict[str, str] = {}                   # first ClOrdID -> latest requested ClOrdID
        self.orders: dict[str, tuple[str, str]] = {}         # first ClOrdID -> (symbol, side)
        self.reports: dict[str, list[fix.Message]] = defaultdict(list)
        self.exec_ids: list[str] = []
        self.unknown: list[fix.Message] = []
        self._ids = itertools.count(1)
        self.prefix = prefix
        self.initiator: Initiator | None = None
        self._changed = asyncio.Event()

    # ---- life ---------------------------------------------------------------------------

    async def start(self, wait: bool = True) -> "OrderClient":
        self.initiator = Initiator(self.config, self.host, self.port, _App(self), backoff_s=self.backoff_s,
                                   backoff_max_s=max(self.backoff_s * 4, 0.2))
        await self.initiator.start()
        if wait:
            await self.initiator.wait_logged_on()
        return self

    async def stop(self, graceful: bool = True) -> None:
        """Log out and close (``graceful``), or drop the connection at once, as a killed process would."""
        if self.initiator is None:
            return
        init, self.initiator = self.initiator, None
        if not graceful:
            init.reconnect = False
            conn = init._conn
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            init.session.connection_lost()
        await init.stop()

    def drop_connection(self) -> None:
        """Abort the TCP connection (bytes in flight are lost); the initiator reconnects."""
        conn = self.initiator._conn if self.initiator else None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()

    @property
    def session(self):
        return self.initiator.session

    # ---- orders -------------------------------------------------------------------------

    def _cl(self) -> str:
        return f"{self.prefix}{next(self._ids)}"

    def _send(self, msg: fix.Message) -> None:
        if self.initiator is None:
            raise RuntimeError("the client is stopped")
        self.initiator.send(msg)

    def buy(self, symbol: str, qty: int, price_e4: int | None = None, tif: str = "0") -> str:
        return self.order(symbol, "1", qty, price_e4, tif)

    def sell(self, symbol: str, qty: int, price_e4: int | None = None, tif: str = "0") -> str:
        return self.order(symbol, "2", qty, price_e4, tif)

    def order(self, symbol: str, side: str, qty: int, price_e4: int | None = None, tif: str = "0") -> str:
        """Send a NewOrderSingle (limit if ``price_e4`` else market; ``tif`` '0' day, '3' IOC);
        returns its ClOrdID."""
        cl = self._cl()
        self.root[cl] = cl
        self.current[cl] = cl
        self.orders[cl] = (symbol, side)
        self._send(new_order_single(cl, symbol, side, qty, price_e4, time_in_force=tif))
        return cl

    def cancel(self, first_cl: str, qty: int = 0) -> str:
        symbol, side = self.orders[first_cl]
        cl = self._cl()
        self.root[cl] = first_cl
        orig, self.current[first_cl] = self.current[first_cl], cl
        self._send(cancel_request(cl, orig, symbol, side, qty or 1))
        return cl

    def replace(self, first_cl: str, qty: int, price_e4: int) -> str:
        symbol, side = self.orders[first_cl]
        cl = self._cl()
        self.root[cl] = first_cl
        orig, self.current[first_cl] = self.current[first_cl], cl
        self._send(replace_request(cl, orig, symbol, side, qty, price_e4))
        return cl

    def _on_message(self, msg: fix.Message) -> None:
        root = self.root.get(msg.cl_ord_id or "")
        if root is None:
            self.unknown.append(msg)
        else:
            self.reports[root].append(msg)
            if msg.msg_type == "8":
                self.exec_ids.append(msg.exec_id)
                if msg.exec_type == "5" or (msg.ord_status in TERMINAL_STATUS):
                    pass
            elif msg.msg_type == "9" and self.current.get(root) == msg.cl_ord_id:
                self.current[root] = msg.orig_cl_ord_id    # the request failed: the old ClOrdID is current
        self._changed.set()

    def terminal(self, first_cl: str) -> list[fix.Message]:
        """The order's terminal ExecutionReports (exactly one once it is done)."""
        return [m for m in self.reports[first_cl] if m.msg_type == "8" and m.ord_status in TERMINAL_STATUS]

    def done(self, first_cl: str) -> bool:
        return bool(self.terminal(first_cl))

    def open_orders(self) -> list[str]:
        return [cl for cl in self.orders if not self.done(cl)]

    async def wait_done(self, orders=None, timeout_s: float = 10.0) -> None:
        """Wait until every order (default: all sent) is done; TimeoutError names the first few open."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = [cl for cl in (orders if orders is not None else self.orders) if not self.done(cl)]
            if not left:
                return
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise TimeoutError(f"{len(left)} orders still open: {left[:5]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), rest)
            except asyncio.TimeoutError:
                pass
