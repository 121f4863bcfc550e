"""FIX 4.4 codec and order round trip: calarb against simplefix and QuickFIX in the same run.

* Codec: messages per second to encode and to parse a NewOrderSingle (with a two-entry
  Parties group) and an ExecutionReport (a fill), with

  - calarb (``protocols.fix``): ``Message.encode`` from a built message, build+encode
    from values, ``decode`` (framing, BodyLength, CheckSum, fields) and decode plus
    dictionary ``validate``;
  - simplefix 1.0.17: build+encode with ``append_pair``, parse with ``FixParser``;
  - QuickFIX 1.16 (Python binding): ``toString`` of a built message, build+toString,
    parse without and with the data dictionary (``Message(str, dd, True)``).

* Round trip on loopback TCP: NewOrderSingle out, the acceptor answers each with an
  ExecutionReport (New), time from send to the report's callback; calarb initiator to
  calarb acceptor (one asyncio loop; memory store, and file store with fsync never and
  always) and QuickFIX initiator to QuickFIX acceptor (its threads, FileStore). Each
  round trip runs in a child process so QuickFIX's shutdown cannot take the benchmark
  with it. A peer that is not installed is skipped, saying so.

Prints a table and writes ``build/bench/fix.json``. Run as ``python -m bench.fix
[--messages N] [--orders N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from protocols import fix, fix44

OUT = Path("build/bench/fix.json")
HEADER = [(34, 1234), (49, "CALARB"), (52, "20240102-14:30:00.123"), (56, "EXCH")]
NOS = [(11, "ORD-000123"), (453, 2), (448, "DESK1"), (447, "D"), (452, 1), (448, "TRADER7"), (447, "D"), (452, 11),
       (21, "1"), (55, "AAPL"), (54, "1"), (60, "20240102-14:30:00.120"), (38, 100), (40, "2"),
       (44, Decimal("150.25")), (59, "0")]
ER = [(37, "O123"), (11, "ORD-000123"), (17, "E456"), (150, "F"), (39, "1"), (55, "AAPL"), (54, "1"), (38, 100),
      (44, Decimal("150.25")), (32, 40), (31, Decimal("150.25")), (151, 60), (14, 40), (6, Decimal("150.25")),
      (60, "20240102-14:30:00.199")]
MESSAGES = {"NewOrderSingle": ("D", NOS), "ExecutionReport": ("8", ER)}


def rate(fn, n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in calls per second."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_calarb(n: int) -> dict:
    out = {}
    d = fix44.dictionary()
    for name, (mt, body) in MESSAGES.items():
        fields = HEADER + body
        msg = fix.Message(mt, fields)
        raw = msg.encode()
        out[name] = {
            "encode_per_s": rate(msg.encode, n),
            "build_encode_per_s": rate(lambda: fix.Message(mt, fields).encode(), n),
            "parse_per_s": rate(lambda: fix.decode(raw), n),
            "parse_validate_per_s": rate(lambda: fix.validate(fix.decode(raw), d), n),
            "bytes": len(raw),
        }
    return out


def bench_simplefix(n: int) -> dict:
    import simplefix
    out = {}
    for name, (mt, body) in MESSAGES.items():
        fields = [(t, str(v)) for t, v in HEADER + body]
        raw = fix.Message(mt, HEADER + body).encode()

        def build_encode():
            m = simplefix.FixMessage()
            m.append_pair(8, "FIX.4.4", header=True)
            m.append_pair(35, mt, header=True)
            for t, v in fields:
                m.append_pair(t, v)
            return m.encode()
        assert build_encode() == raw

        def parse():
            p = simplefix.FixParser()
            p.append_buffer(raw)
            return p.get_message()
        assert parse().get(11) == b"ORD-000123"
        out[name] = {"build_encode_per_s": rate(build_encode, n), "parse_per_s": rate(parse, n), "bytes": len(raw)}
    return out


def bench_quickfix(n: int) -> dict:
    import quickfix as qf
    dd = qf.DataDictionary(str(fix44.SPEC))
    out = {}
    for name, (mt, body) in MESSAGES.items():
        raw = fix.Message(mt, HEADER + body).encode().decode()

        def build():
            m = qf.Message()
            h = m.getHeader()
            h.setField(8, "FIX.4.4")
            h.setField(35, mt)
            for t, v in HEADER:
                h.setField(t, str(v))
            if mt == "D":
                m.setField(11, "ORD-000123")
                g = qf.Group(453, 448)
                for pid, role in (("DESK1", "1"), ("TRADER7", "11")):
                    g.setField(448, pid)
                    g.setField(447, "D")
                    g.setField(452, role)
                    m.addGroup(g)
                rest = [f for f in body if f[0] not in (11, 453, 448, 447, 452)]
            else:
                rest = body
            for t, v in rest:
                m.setField(t, str(v))
            return m
        built = build()
        parsed = qf.Message(raw, dd, True)
        assert parsed.getField(11) == "ORD-000123"
        assert fix.decode(built.toString().encode()).cl_ord_id == "ORD-000123"
        out[name] = {
            "encode_per_s": rate(built.toString, n),
            "build_encode_per_s": rate(lambda: build().toString(), n),
            "parse_per_s": rate(lambda: qf.Message(raw, False), n),
            "parse_validate_per_s": rate(lambda: qf.Message(raw, dd, True), n),
            "bytes": len(raw),
        }
    return out


def summary(lat_s: list[float]) -> dict:
    lat = sorted(x * 1e6 for x in lat_s)
    return {"orders": len(lat), "median_us": statistics.median(lat), "mean_us": statistics.fmean(lat),
            "p99_us": lat[int(0.99 * (len(lat) - 1))], "min_us": lat[0], "max_us": lat[-1]}


# ------------------------------------------------------------------------------------------ round trips (child)

def roundtrip_calarb(orders: int, store: str) -> dict:
    from host.fix import Acceptor, Application, Initiator, SessionConfig, execution_report, new_order_single

    class Exchange(Application):
        def on_message(self, s, m):
            s.send(execution_report(f"O{m.cl_ord_id}", f"E{m.cl_ord_id}", m.cl_ord_id, m.symbol, m.side, "0", "0",
                                    0, m.order_qty, 0))

    async def main():
        tmp = tempfile.mkdtemp(prefix="calarb-fix-bench-")
        kw = {} if store == "memory" else {"fsync": store, "store": None}
        acc_kw = dict(kw, store=f"{tmp}/exch.store") if store != "memory" else {}
        ini_kw = dict(kw, store=f"{tmp}/calarb.store") if store != "memory" else {}
        acc = Acceptor([SessionConfig("EXCH", "CALARB", heartbeat_s=30, **acc_kw)], Exchange())
        port = await acc.start()
        loop = asyncio.get_running_loop()
        waiter: dict = {}

        class Client(Application):
            def on_message(self, s, m):
                fut = waiter.pop(m.cl_ord_id, None)
                if fut is not None:
                    fut.set_result(time.perf_counter())
        ini = Initiator(SessionConfig("CALARB", "EXCH", heartbeat_s=30, **ini_kw), "127.0.0.1", port, Client())
        await ini.start()
        await ini.wait_logged_on()
        lat = []
        for i in range(orders + orders // 10):
            cid = f"c{i}"
            fut = loop.create_future()
            waiter[cid] = fut
            t0 = time.perf_counter()
            ini.send(new_order_single(cid, "AAPL", "1", 100, 1_502_500))
            t1 = await fut
            if i >= orders // 10:
                lat.append(t1 - t0)
        await ini.stop()
        await acc.stop()
        return lat
    return summary(asyncio.run(main()))


QF_CONFIG = ("[DEFAULT]\nFileStorePath={t}/store\nStartTime=00:00:00\nEndTime=00:00:00\nUseDataDictionary=Y\n"
             "DataDictionary={dd}\nHeartBtInt=30\nReconnectInterval=1\nSocketNodelay=Y\n"
             "SocketConnectHost=127.0.0.1\nSocketConnectPort={p}\nSocketAcceptPort={p}\n"
             "SocketAcceptAddress=127.0.0.1\n[SESSION]\nConnectionType={role}\nBeginString=FIX.4.4\n"
             "SenderCompID={s}\nTargetCompID={tg}\n")


def quickfix_engine(role: str, port: int, tmp: str, on_app):
    """A QuickFIX SocketAcceptor/SocketInitiator (EXCH <-> QFINIT) calling ``on_app(app, msg)``."""
    import threading

    import quickfix as qf

    class App(qf.Application):
        def __init__(self):
            super().__init__()
            self.sid, self.up = None, threading.Event()

        def onCreate(self, sid):
            self.sid = qf.SessionID(sid.getBeginString().getValue(), sid.getSenderCompID().getValue(),
                                    sid.getTargetCompID().getValue())

        def onLogon(self, sid):
            self.up.set()

        def onLogout(self, sid):
            pass

        def toAdmin(self, m, sid):
            pass

        def fromAdmin(self, m, sid):
            pass

        def toApp(self, m, sid):
            pass

        def fromApp(self, m, sid):
            on_app(self, m)

    s, tg = ("EXCH", "QFINIT") if role == "acceptor" else ("QFINIT", "EXCH")
    path = f"{tmp}/{role}.cfg"
    Path(path).write_text(QF_CONFIG.format(t=f"{tmp}/{role}", dd=fix44.SPEC.resolve(), p=port, role=role, s=s, tg=tg))
    settings = qf.SessionSettings(path)
    app = App()
    store = qf.FileStoreFactory(settings)
    log = qf.ScreenLogFactory(False, False, False)
    eng = (qf.SocketAcceptor if role == "acceptor" else qf.SocketInitiator)(app, store, settings, log)
    eng.start()
    return app, (eng, store, log, settings)          # keep every SWIG object alive


def quickfix_exchange(port: int, tmp: str) -> None:
    """Child process: a QuickFIX acceptor answering each NewOrderSingle with an ExecutionReport (New)."""
    import quickfix as qf

    def on_app(app, m):
        er = qf.Message()
        er.getHeader().setField(35, "8")
        cid = m.getField(11)
        for t, v in ((37, "O" + cid), (11, cid), (17, "E" + cid), (150, "0"), (39, "0"), (55, "AAPL"), (54, "1"),
                     (151, m.getField(38)), (14, "0"), (6, "0")):
            er.setField(t, v)
        qf.Session.sendToTarget(er, app.sid)
    keep = quickfix_engine("acceptor", port, tmp, on_app)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()                                   # until the parent closes our stdin
    del keep
    os._exit(0)


def roundtrip_quickfix(orders: int) -> dict:
    """QuickFIX initiator here, QuickFIX acceptor in another process (one engine per process:
    two QuickFIX engines calling into one interpreter crash the 1.16 binding)."""
    import socket
    import threading

    import quickfix as qf
    tmp = tempfile.mkdtemp(prefix="qf-bench-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exch = subprocess.Popen([sys.executable, "-m", "bench.fix", "--child", f"qfexchange:{port}:{tmp}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert exch.stdout.readline().strip() == "ready"
    # every order is sent from QuickFIX's own thread (the previous report's callback), so no
    # Python runs on the main thread meanwhile: the 1.16 binding crashes under that concurrency
    total = orders + orders // 10
    lat: list[float] = []
    done = threading.Event()
    state = {"i": 0, "t0": 0.0}

    def send_next(app):
        m = qf.Message()
        m.getHeader().setField(35, "D")
        for t, v in ((11, f"c{state['i']}"), (21, "1"), (55, "AAPL"), (54, "1"),
                     (60, fix.format_utc(time.time()).decode()), (38, "100"), (40, "2"), (44, "150.25")):
            m.setField(t, v)
        state["t0"] = time.perf_counter()
        qf.Session.sendToTarget(m, app.sid)

    def on_app(app, m):
        t1 = time.perf_counter()
        if m.getField(11) != f"c{state['i']}":
            return
        if state["i"] >= orders // 10:
            lat.append(t1 - state["t0"])
        state["i"] += 1
        if state["i"] == total:
            done.set()
        else:
            send_next(app)
    ini, keep = quickfix_engine("initiator", port, tmp, on_app)
    if not ini.up.wait(30):
        raise RuntimeError("QuickFIX initiator did not log on")
    time.sleep(0.2)
    threading.Thread(target=send_next, args=(ini,)).start()
    if not done.wait(300):
        raise RuntimeError(f"QuickFIX round trip stalled at order {state['i']}")
    exch.stdin.close()
    exch.wait(30)
    return summary(lat)


def child(kind: str, orders: int) -> None:
    if kind.startswith("qfexchange:"):
        _, port, tmp = kind.split(":", 2)
        return quickfix_exchange(int(port), tmp)
    res = roundtrip_quickfix(orders) if kind == "quickfix" else roundtrip_calarb(orders, kind.split(":")[1])
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    os._exit(0)          # QuickFIX 1.16's SocketAcceptor.stop() can crash; the figures are out already


def run_child(kind: str, orders: int, attempts: int = 4) -> dict:
    """One round-trip run in a child process; a child that crashes is run again (QuickFIX 1.16's
    Python binding segfaults now and then while an initiator starts) and the crashes are counted."""
    crashes = []
    for _ in range(attempts):
        p = subprocess.run([sys.executable, "-m", "bench.fix", "--child", kind, "--orders", str(orders)],
                           capture_output=True, text=True, timeout=900)
        if p.returncode == 0 and p.stdout.strip():
            return dict(json.loads(p.stdout.strip().splitlines()[-1]), child_crashes=len(crashes))
        crashes.append(p.returncode)
    raise RuntimeError(f"round trip {kind} failed {attempts} times (exit codes {crashes}): {p.stderr[-2000:]}")


def have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--orders", type=int, default=2_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.orders)

    report: dict = {"codec": {}, "roundtrip": {}, "skipped": {}}
    peers = {"calarb": bench_calarb, "simplefix": bench_simplefix, "quickfix": bench_quickfix}
    for name, fn in peers.items():
        if name != "calarb" and not have(name):
            report["skipped"][name] = f"{name} is not installed"
            print(f"skipping {name}: not installed", flush=True)
            continue
        print(f"codec: {name} ...", flush=True)
        report["codec"][name] = fn(args.messages)
    kinds = ["calarb:memory", "calarb:never", "calarb:always"] + (["quickfix"] if have("quickfix") else [])
    for kind in kinds:
        print(f"round trip: {kind} ...", flush=True)
        report["roundtrip"][kind] = run_child(kind, args.orders)
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "load_average": os.getloadavg()}

    print()
    print(f"{'codec':10} {'message':16} {'encode/s':>10} {'build+enc/s':>12} {'parse/s':>10} {'parse+dict/s':>13}")
    for lib, per in report["codec"].items():
        for msg, r in per.items():
            cells = [r.get(k) for k in ("encode_per_s", "build_encode_per_s", "parse_per_s", "parse_validate_per_s")]
            print(f"{lib:10} {msg:16} " + " ".join(f"{c:>{w},.0f}" if c else f"{'-':>{w}}"
                                                   for c, w in zip(cells, (10, 12, 10, 13))))
    print()
    print(f"{'round trip (NOS -> ER New)':34} {'median us':>10} {'p99 us':>10} {'mean us':>10}")
    for kind, r in report["roundtrip"].items():
        label = {"calarb:memory": "calarb -> calarb (memory store)",
                 "calarb:never": "calarb -> calarb (file, no fsync)",
                 "calarb:always": "calarb -> calarb (file, fsync)",
                 "quickfix": "QuickFIX -> QuickFIX (file)"}[kind]
        print(f"{label:34} {r['median_us']:>10.1f} {r['p99_us']:>10.1f} {r['mean_us']:>10.1f}")
    for name, why in report["skipped"].items():
        print(f"skipped {name}: {why}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
