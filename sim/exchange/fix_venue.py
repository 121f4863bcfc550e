"""Order entry through the project's FIX 4.4 acceptor (``host.fix``), forwarding into the venue's engine.

:class:`FixOrderEntry` runs one :class:`host.fix.transport.Acceptor` per venue
with a session for every client CompID of the venue's config (the venue's
``comp_id`` as SenderCompID). Application messages become engine requests
(:mod:`sim.exchange.fixmap`); the venue's ExecReports and CancelRejects for a
client go out on that client's session, which stores them first, so reports
made while the client is disconnected (its resting order filled by background
flow) reach it by resend after the next Logon. With ``store_dir`` set the
sessions keep their sequence numbers and messages on disk, so the acceptor can
be stopped and started again (:meth:`FixOrderEntry.restart`) without losing or
repeating a report. A resent order (PossDupFlag=Y) whose ClOrdID the engine
has already taken is dropped, not rejected, so it cannot be answered twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from host.fix.config import SessionConfig
from host.fix.session import Application
from host.fix.transport import Acceptor
from protocols import fix
from sim.exchange.fixmap import FixRequestError, fix_from_event, request_from_fix
from sim.exchange.matching import CancelReject, ExecReport

log = logging.getLogger(__name__)

ORDER_ENTRY_TYPES = frozenset("DFG")


class _App(Application):
    def __init__(self, entry: "FixOrderEntry"):
        self.entry = entry

    def on_logon(self, session) -> None:
        self.entry.stats["logons"] += 1

    def on_message(self, session, msg: fix.Message) -> None:
        self.entry.on_message(session, msg)


class FixOrderEntry:
    """The venue's FIX acceptor (see the module doc); ``port`` is the bound port once started."""

    def __init__(self, venue, *, tick_s: float | None = None):
        self.venue = venue
        self.port = venue.cfg.fix_port
        self.tick_s = tick_s
        self.acceptor: Acceptor | None = None
        self.stats: Counter = Counter()
        self._listening = False

    def session_configs(self) -> list[SessionConfig]:
        cfg = self.venue.cfg
        out = []
        for client in cfg.clients:
            store = None
            if cfg.store_dir:
                Path(cfg.store_dir).mkdir(parents=True, exist_ok=True)
                store = Path(cfg.store_dir) / f"{cfg.comp_id}-{client}.fixstore"
            out.append(SessionConfig(sender_comp_id=cfg.comp_id, target_comp_id=client,
                                     heartbeat_s=cfg.fix_heartbeat_s, store=store, fsync="never"))
        return out

    async def start(self) -> None:
        self.acceptor = Acceptor(self.session_configs(), _App(self), host=self.venue.cfg.host, port=self.port,
                                 tick_s=self.tick_s)
        self.port = await self.acceptor.start()
        if not self._listening:
            self.venue.listen(None, self._deliver)
            self._listening = True

    async def stop(self, graceful: bool = True) -> None:
        """Stop accepting: log out every session (``graceful``) or drop the connections at once."""
        if self.acceptor is None:
            return
        acceptor, self.acceptor = self.acceptor, None
        if not graceful:
            for s in acceptor.sessions.values():
                if s._close_cb is not None:
                    s.disconnect("killed")
        await acceptor.stop(logout_timeout_s=2.0 if graceful else 0.0)

    async def restart(self, graceful: bool = False) -> None:
        """Stop and start again on the same port (the sessions reload their stores)."""
        await self.stop(graceful)
        await self.start()

    def session(self, client: str):
        return self.acceptor.session(client) if self.acceptor is not None else None

    # ---- messages ---------------------------------------------------------------------

    def on_message(self, session, msg: fix.Message) -> None:
        owner = session.config.target_comp_id
        self.stats["in"] += 1
        if msg.msg_type not in ORDER_ENTRY_TYPES:
            self.stats["unsupported"] += 1
            session.send(fix.Message("j", [(45, msg.seq_num), (372, msg.msg_type), (380, 3),
                                           (58, f"MsgType {msg.msg_type} is not supported by this venue")]))
            return
        if msg.poss_dup and msg.cl_ord_id and (owner, msg.cl_ord_id) in self.venue.engine.seen:
            self.stats["possdup_ignored"] += 1
            return
        try:
            req = request_from_fix(msg, owner)
        except FixRequestError as e:
            self.stats["rejected"] += 1
            session.send(e.reply)
            return
        self.venue.enqueue(req)

    def _deliver(self, ev) -> None:
        if not isinstance(ev, (ExecReport, CancelReject)) or self.acceptor is None:
            if self.acceptor is None and isinstance(ev, (ExecReport, CancelReject)):
                self._deliver_offline(ev)
            return
        try:
            session = self.acceptor.session(ev.owner)
        except KeyError:
            return
        self.stats["out"] += 1
        session.send(fix_from_event(ev))

    def _deliver_offline(self, ev) -> None:
        """A report made while the acceptor is down: append it to the client's store so the
        session resends it after the next Logon (as a restarted gateway replays its journal)."""
        cfg = self.venue.cfg
        if ev.owner not in cfg.clients:
            return
        if not cfg.store_dir:
            log.warning("venue %s: report for %s lost while the acceptor is down (no store_dir)", cfg.name, ev.owner)
            self.stats["lost_offline"] += 1
            return
        from host.fix.session import Session
        sc = next(c for c in self.session_configs() if c.target_comp_id == ev.owner)
        s = Session(sc, initiator=False)
        try:
            s.send(fix_from_event(ev))
        finally:
            s.store.close()
        self.stats["out_offline"] += 1
