"""A QuickFIX 1.16 peer in its own process, for the interoperability tests and the benchmark.

Run as ``python tests/host/fix_qf_peer.py --role acceptor|initiator --port P --dir D
--sender QFX --target CALARB [--hb 1] [--exchange]``. It prints JSON lines
(``logon``, ``logout``, ``app``/``admin`` with the raw message, ``seqs``, ``bye``)
and reads JSON commands on stdin (``send``, ``skip``, ``seqs``, ``logout``,
``exit``). ``--exchange`` answers every NewOrderSingle with ExecutionReports New
then Trade (ExecType F, OrdStatus 2) and every OrderCancelRequest with Canceled.

QuickFIX runs in a separate process because ``SocketAcceptor.stop()`` in the 1.16
Python build can crash (a race in ``SocketServer::close``); ``exit`` logs the
session out, waits for the Logout, and ends the process with ``os._exit`` without
stopping the engine. The persistent FileStore makes a restart a new process on
the same directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import quickfix as qf

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "protocols", "spec", "FIX44.xml")

CONFIG = """[DEFAULT]
ConnectionType={role}
FileStorePath={dir}/store
FileLogPath={dir}/log
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={spec}
ResetOnLogon=N
ReconnectInterval=1
HeartBtInt={hb}
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
SocketAcceptPort={port}
SocketAcceptAddress=127.0.0.1
SocketNodelay=Y
[SESSION]
BeginString=FIX.4.4
SenderCompID={sender}
TargetCompID={target}
"""

_out_lock = threading.Lock()


def emit(**event) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class Peer(qf.Application):
    def __init__(self, exchange: bool) -> None:
        super().__init__()
        self.exchange = exchange
        self.sid = None
        self.logged_on = threading.Event()
        self.logged_out = threading.Event()
        self.n = 0

    def onCreate(self, sid):
        self.sid = qf.SessionID(sid.getBeginString().getValue(), sid.getSenderCompID().getValue(),
                                sid.getTargetCompID().getValue())

    def onLogon(self, sid):
        self.logged_out.clear()
        self.logged_on.set()
        emit(event="logon")

    def onLogout(self, sid):
        self.logged_on.clear()
        self.logged_out.set()
        emit(event="logout")

    def toAdmin(self, msg, sid):
        pass

    def fromAdmin(self, msg, sid):
        emit(event="admin", raw=msg.toString())

    def toApp(self, msg, sid):
        pass

    def fromApp(self, msg, sid):
        raw = msg.toString()
        emit(event="app", raw=raw)
        if not self.exchange:
            return
        mt = msg.getHeader().getField(35)
        if mt == "D":
            qty = int(float(msg.getField(38)))
            price = msg.getField(44) if msg.isSetField(44) else "0"
            self.report(msg, "0", "0", 0, qty, qty, None, None)
            self.report(msg, "F", "2", qty, 0, qty, qty, price)
        elif mt == "F":
            self.report(msg, "4", "4", 0, 0, int(float(msg.getField(38))), None, None, orig=msg.getField(41))

    def report(self, order, exec_type, status, cum, leaves, qty, last_qty, last_px, orig=None):
        self.n += 1
        er = qf.Message()
        er.getHeader().setField(qf.BeginString("FIX.4.4"))
        er.getHeader().setField(qf.MsgType("8"))
        er.setField(37, f"Q{order.getField(11)}")
        er.setField(11, order.getField(11))
        if orig:
            er.setField(41, orig)
        er.setField(17, f"QE{self.n}")
        er.setField(150, exec_type)
        er.setField(39, status)
        er.setField(55, order.getField(55))
        er.setField(54, order.getField(54))
        er.setField(38, str(qty))
        if last_qty:
            er.setField(32, str(last_qty))
            er.setField(31, last_px)
        er.setField(151, str(leaves))
        er.setField(14, str(cum))
        er.setField(6, last_px or "0")
        qf.Session.sendToTarget(er, self.sid)


def build(msg_type: str, fields) -> qf.Message:
    m = qf.Message()
    m.getHeader().setField(qf.BeginString("FIX.4.4"))
    m.getHeader().setField(qf.MsgType(msg_type))
    for tag, value in fields:
        m.setField(int(tag), str(value))
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=("acceptor", "initiator"), required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--sender", default="QFX")
    ap.add_argument("--target", default="CALARB")
    ap.add_argument("--hb", type=int, default=1)
    ap.add_argument("--exchange", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    cfg = os.path.join(args.dir, f"{args.role}.cfg")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(role=args.role, dir=args.dir, spec=os.path.abspath(SPEC), hb=args.hb, port=args.port,
                              sender=args.sender, target=args.target))
    settings = qf.SessionSettings(cfg)
    app = Peer(args.exchange)
    store, log = qf.FileStoreFactory(settings), qf.FileLogFactory(settings)
    engine = (qf.SocketAcceptor if args.role == "acceptor" else qf.SocketInitiator)(app, store, settings, log)
    engine.start()
    emit(event="started")
    for line in sys.stdin:
        cmd = json.loads(line)
        session = qf.Session.lookupSession(app.sid)
        if cmd["cmd"] == "send":
            qf.Session.sendToTarget(build(cmd["msg_type"], cmd["fields"]), app.sid)
        elif cmd["cmd"] == "skip":
            session.setNextSenderMsgSeqNum(session.getExpectedSenderNum() + int(cmd["n"]))
        elif cmd["cmd"] == "seqs":
            emit(event="seqs", sender=session.getExpectedSenderNum(), target=session.getExpectedTargetNum())
        elif cmd["cmd"] == "logout":
            session.logout()
        elif cmd["cmd"] == "exit":
            break
    if app.logged_on.is_set():
        qf.Session.lookupSession(app.sid).logout()
        app.logged_out.wait(5)
    time.sleep(0.1)
    emit(event="bye")
    os._exit(0)


if __name__ == "__main__":
    main()
