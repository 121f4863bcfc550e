"""Order entry through a QuickFIX acceptor (``--venue quickfix``), forwarding into the same engine.

QuickFIX (PyPI ``quickfix`` 1.16) runs the FIX 4.4 session layer, polled from
the asyncio loop (``Acceptor.poll``) so every callback runs on the loop's
thread (letting QuickFIX's own threads call back into Python crashes the 1.16
wheel intermittently, and always on a forced stop); :class:`_App` turns every application message it accepts into the
project's :class:`protocols.fix.Message` (its raw string decoded by the
project's codec), maps it with :mod:`sim.exchange.fixmap` and hands the
request to the venue. The
venue's ExecReports go back with ``Session.sendToTarget``. The settings file
is written for each start: one ``[SESSION]`` per client CompID of the venue,
validation against the repository's ``protocols/spec/FIX44.xml``, a file
store under ``store_dir`` (or a temporary directory). QuickFIX cannot listen
on port 0 and report the port, so port 0 picks a free port first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from pathlib import Path

from protocols import fix, fix44
from sim.exchange.fixmap import FixRequestError, fix_from_event, request_from_fix
from sim.exchange.matching import CancelReject, ExecReport

log = logging.getLogger(__name__)

POLL_S = 0.002
"""How often the event loop polls the QuickFIX acceptor (seconds)."""


class QuickFixMissing(RuntimeError):
    """``--venue quickfix`` without the ``quickfix`` package."""


def import_quickfix():
    try:
        import quickfix
    except ImportError as e:
        raise QuickFixMissing(
            "--venue quickfix needs the QuickFIX Python package (pip install quickfix==1.16.0; it builds from "
            f"source, about 15 minutes): {e}") from None
    return quickfix


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _settings_text(venue, port: int, store: Path) -> str:
    cfg = venue.cfg
    lines = ["[DEFAULT]", "ConnectionType=acceptor", f"SocketAcceptHost={cfg.host}", f"SocketAcceptPort={port}",
             "SocketReuseAddress=Y", "StartTime=00:00:00", "EndTime=00:00:00", f"FileStorePath={store}",
             "UseDataDictionary=Y", f"DataDictionary={fix44.SPEC.resolve()}", "ValidateUserDefinedFields=N",
             "AllowUnknownMsgFields=Y", "ResetOnLogon=N", f"HeartBtInt={cfg.fix_heartbeat_s}"]
    for client in cfg.clients:
        lines += ["", "[SESSION]", "BeginString=FIX.4.4", f"SenderCompID={cfg.comp_id}", f"TargetCompID={client}"]
    return "\n".join(lines) + "\n"


def _to_quickfix(qf, msg: fix.Message):
    out = qf.Message()
    out.getHeader().setField(qf.MsgType(msg.msg_type))
    for tag, value in msg.fields:
        out.setField(qf.StringField(tag, value.decode("latin-1")))
    return out


class QuickFixOrderEntry:
    """The venue's order entry as a QuickFIX ``SocketAcceptor``."""

    def __init__(self, venue):
        self.qf = import_quickfix()
        self.venue = venue
        self.port = venue.cfg.fix_port
        self.acceptor = None
        self.sessions: dict[str, object] = {}      # client CompID -> SessionID
        self.stats = {"in": 0, "out": 0, "rejected": 0, "logons": 0}
        self._tmp = None

    async def start(self) -> None:
        qf = self.qf
        loop = asyncio.get_running_loop()
        if self.port == 0:
            self.port = free_port(self.venue.cfg.host)
        if self.venue.cfg.store_dir:
            store = Path(self.venue.cfg.store_dir) / "quickfix"
            store.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"qf-{self.venue.name}-")
            store = Path(self._tmp.name)
        path = store / "acceptor.cfg"
        path.write_text(_settings_text(self.venue, self.port, store / "store"))
        # QuickFIX keeps raw pointers to these: they must live as long as the acceptor
        self.settings = qf.SessionSettings(str(path))
        self.app = _App(self, loop)
        self.store_factory = qf.FileStoreFactory(self.settings)
        self.log_factory = qf.FileLogFactory(str(store / "log"))
        self.acceptor = qf.SocketAcceptor(self.app, self.store_factory, self.settings, self.log_factory)
        # Polled from the event loop, not start()ed: QuickFIX's own threads calling back into
        # Python crash the 1.16 wheel now and then (and always on a forced stop).
        self.acceptor.poll()
        self._poller = asyncio.create_task(self._poll_loop())
        self.venue.listen(None, self._deliver)

    async def _poll_loop(self) -> None:
        while True:
            self.acceptor.poll()
            await asyncio.sleep(POLL_S)

    def _deliver(self, ev) -> None:
        if not isinstance(ev, (ExecReport, CancelReject)):
            return
        sid = self.sessions.get(ev.owner)
        if sid is None:
            return
        self.send(fix_from_event(ev), sid)

    def send(self, msg: fix.Message, sid) -> None:
        self.stats["out"] += 1
        self.qf.Session.sendToTarget(_to_quickfix(self.qf, msg), sid)

    async def stop(self) -> None:
        if self.acceptor is not None:
            acceptor, self.acceptor = self.acceptor, None
            self._poller.cancel()
            for sid in self.sessions.values():
                session = self.qf.Session.lookupSession(sid)
                if session is not None and session.isLoggedOn():
                    session.logout("venue stopping")
            deadline = asyncio.get_running_loop().time() + 2.0
            while acceptor.isLoggedOn() and asyncio.get_running_loop().time() < deadline:
                acceptor.poll()
                await asyncio.sleep(POLL_S)
            acceptor.stop(True)
        if self.venue is not None and self._deliver in self.venue.any_listeners:
            self.venue.any_listeners.remove(self._deliver)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _make_app_class():
    qf = import_quickfix()

    class App(qf.Application):
        """QuickFIX callbacks (on QuickFIX's threads) forwarding into the venue's loop."""

        def __init__(self, entry: QuickFixOrderEntry, loop):
            super().__init__()
            self.entry, self.loop = entry, loop

        def onCreate(self, sid):
            # QuickFIX passes references it owns: keep a copy, never the argument itself
            target = sid.getTargetCompID().getValue()
            self.entry.sessions[target] = qf.SessionID(sid.getBeginString().getValue(),
                                                       sid.getSenderCompID().getValue(), target)

        def onLogon(self, sid):
            self.entry.stats["logons"] += 1

        def onLogout(self, sid):
            pass

        def toAdmin(self, message, sid):
            pass

        def fromAdmin(self, message, sid):
            pass

        def toApp(self, message, sid):
            pass

        def fromApp(self, message, sid):
            raw = message.toString().encode("latin-1")
            owner = sid.getTargetCompID().getValue()
            self.loop.call_soon(self.entry_handle, raw, owner)

        def entry_handle(self, raw: bytes, owner: str) -> None:
            entry = self.entry
            sid = entry.sessions[owner]
            entry.stats["in"] += 1
            try:
                msg = fix.decode(raw)
                req = request_from_fix(msg, owner)
            except FixRequestError as e:
                entry.stats["rejected"] += 1
                entry.send(e.reply, sid)
                return
            except (ValueError, fix.FixError) as e:
                log.warning("quickfix venue %s: %s", entry.venue.name, e)
                entry.stats["rejected"] += 1
                entry.send(fix.Message("j", [(45, msg.seq_num or 0), (372, msg.msg_type), (380, 3),
                                             (58, str(e)[:200])]), sid)
                return
            entry.venue.enqueue(req)

    return App


def _App(entry, loop):
    return _make_app_class()(entry, loop)
