"""host/fix/transport.py: calarb initiator against calarb acceptor over loopback TCP, HeartBtInt 1 s.
Every wait is on a condition with a generous timeout; nothing asserts on time."""

from __future__ import annotations

import asyncio
import socket
import time

from host.fix import (Acceptor, Application, Initiator, OrderState, OrderTracker, SessionConfig,
                      execution_report, new_order_single)
from protocols import fix
from protocols.fix import Message


async def until(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Exchange(Application):
    """Acknowledges every NewOrderSingle and fills it in two parts."""

    def __init__(self):
        self.orders, self.logons, self.logouts = [], 0, 0

    def on_logon(self, s):
        self.logons += 1

    def on_logout(self, s):
        self.logouts += 1

    def on_message(self, s, m):
        if m.msg_type != "D":
            return
        self.orders.append(m)
        q, n = m.order_qty, len(self.orders)
        common = dict(order_id=f"O{n}", cl_ord_id=m.cl_ord_id, symbol=m.symbol, side=m.side, order_qty=q,
                      price_e4=m.price_e4)
        s.send(execution_report(exec_id=f"E{n}a", exec_type="0", ord_status="0", cum_qty=0, leaves_qty=q, **common))
        s.send(execution_report(exec_id=f"E{n}b", exec_type="F", ord_status="1", cum_qty=q // 2,
                                leaves_qty=q - q // 2, last_qty=q // 2, last_px_e4=m.price_e4,
                                avg_px_e4=m.price_e4, **common))
        s.send(execution_report(exec_id=f"E{n}c", exec_type="F", ord_status="2", cum_qty=q, leaves_qty=0,
                                last_qty=q - q // 2, last_px_e4=m.price_e4, avg_px_e4=m.price_e4, **common))


class Client(Application):
    def __init__(self):
        self.tracker, self.reports, self.admin = OrderTracker(), [], []

    def on_message(self, s, m):
        self.reports.append(m)
        self.tracker.on_message(m)

    def on_admin(self, s, m):
        self.admin.append(m)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def acceptor_cfg(**kw):
    return SessionConfig("EXCH", "CALARB", heartbeat_s=1, **kw)


def initiator_cfg(**kw):
    return SessionConfig("CALARB", "EXCH", heartbeat_s=1, **kw)


def test_orders_and_execution_reports_round_trip():
    async def main():
        ex, cl = Exchange(), Client()
        acc = Acceptor([acceptor_cfg()], ex)
        port = await acc.start()
        assert acc.host == "127.0.0.1"
        ini = Initiator(initiator_cfg(), "127.0.0.1", port, cl)
        await ini.start()
        await ini.wait_logged_on()
        for i in range(3):
            nos = new_order_single(f"c{i}", "AAPL", "1", 100 + i, 1_502_500 + i)
            cl.tracker.new_order(nos)
            ini.send(nos)
        await until(lambda: len(cl.reports) == 9, what="9 execution reports")
        assert all(cl.tracker.order(f"c{i}").state == OrderState.FILLED for i in range(3))
        assert [o.price_e4 for o in ex.orders] == [1_502_500, 1_502_501, 1_502_502]
        await ini.stop()
        await until(lambda: ex.logouts == 1, what="acceptor logout")
        await acc.stop()
    run(main())


def test_heartbeats_and_test_request_over_tcp():
    async def main():
        acc = Acceptor([acceptor_cfg()], Exchange())
        port = await acc.start()
        cl = Client()
        ini = Initiator(initiator_cfg(), "127.0.0.1", port, cl)
        await ini.start()
        s = await ini.wait_logged_on()
        await until(lambda: s.received["0"] >= 2 and acc.session("CALARB").received["0"] >= 2, what="heartbeats")
        s.test_request("PING-1")
        await until(lambda: any(m.msg_type == "0" and m.get(112) == "PING-1" for m in cl.admin), what="answer")
        await ini.stop()
        await acc.stop()
    run(main())


def test_silent_peer_gets_test_request_then_disconnect():
    """A raw socket logs on and then says nothing: the acceptor sends a TestRequest, then drops it."""
    async def main():
        acc = Acceptor([acceptor_cfg()], Exchange())
        port = await acc.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(Message("A", [(34, 1), (49, "CALARB"), (56, "EXCH"), (52, fix.format_utc(time.time())),
                                   (98, 0), (108, 1)]).encode())
        seen = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), 20)
            if not chunk:
                break
            seen += chunk
        types = [m.msg_type for m in fix.iter_messages(seen) if isinstance(m, Message)]
        assert types[0] == "A" and "1" in types
        sess = acc.session("CALARB")
        assert not sess.connected_now and "TestRequest" in sess.logout_reason
        writer.close()
        await acc.stop()
    run(main())


def test_acceptor_refuses_unknown_comp_ids_bad_password_and_non_logon():
    async def main():
        acc = Acceptor([acceptor_cfg(username="calarb", password="pw")], Exchange())
        port = await acc.start()
        bad = [Initiator(SessionConfig("MALLORY", "EXCH", heartbeat_s=1), "127.0.0.1", port, reconnect=False),
               Initiator(initiator_cfg(username="calarb", password="nope"), "127.0.0.1", port, reconnect=False)]
        for b in bad:
            await b.start()
        await until(lambda: all(b._task.done() for b in bad), what="refused connections closed")
        assert not any(b.session.logged_on for b in bad)
        assert any("unconfigured CompIDs MALLORY->EXCH" in r for r in acc.refused)
        assert "Username/Password" in acc.session("CALARB").logout_reason
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(Message("0", [(34, 1), (49, "CALARB"), (56, "EXCH"), (52, fix.format_utc(time.time()))]).encode())
        assert await asyncio.wait_for(r.read(100), 10) == b""
        assert "not a Logon" in acc.refused[-1]
        good = Initiator(initiator_cfg(username="calarb", password="pw"), "127.0.0.1", port)
        await good.start()
        await good.wait_logged_on()
        await good.stop()
        for b in bad:
            await b.stop()
        await acc.stop()
    run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reconnect_with_backoff_and_persisted_stores(tmp_path):
    async def main():
        port = free_port()
        ex, cl = Exchange(), Client()
        ini = Initiator(initiator_cfg(store=tmp_path / "calarb.store"), "127.0.0.1", port, cl, backoff_s=0.05,
                        backoff_max_s=0.4)
        await ini.start()                                   # nobody listening yet: retries with backoff
        await asyncio.sleep(0.3)
        assert not ini.session.logged_on and ini.connects == 0
        acc = Acceptor([acceptor_cfg(store=tmp_path / "exch.store")], ex, port=port)
        await acc.start()
        await ini.wait_logged_on()
        nos = new_order_single("c1", "AAPL", "1", 10, 1_000_000)
        cl.tracker.new_order(nos)
        ini.send(nos)
        await until(lambda: len(cl.reports) == 3, what="reports")
        seqs = (ini.session.next_sender_seq, ini.session.next_target_seq)
        await acc.stop()                                    # the exchange restarts from its store
        await until(lambda: not ini.session.logged_on, what="disconnect")
        acc2 = Acceptor([acceptor_cfg(store=tmp_path / "exch.store")], ex, port=port)
        await acc2.start()
        await until(lambda: ini.session.logged_on, what="reconnect")
        assert ini.connects == 2 and ini.session.next_target_seq > seqs[1]
        await ini.stop()                                    # and calarb restarts from its store
        ini2 = Initiator(initiator_cfg(store=tmp_path / "calarb.store"), "127.0.0.1", port, cl)
        assert ini2.session.next_sender_seq > seqs[0]
        await ini2.start()
        await ini2.wait_logged_on()
        nos = new_order_single("c2", "AAPL", "1", 10, 1_000_000)
        cl.tracker.new_order(nos)
        ini2.send(nos)
        await until(lambda: len(cl.reports) == 6, what="reports after restart")
        assert cl.tracker.order("c2").state == OrderState.FILLED
        assert acc2.session("CALARB").rejects_sent == 0 and ini2.session.rejects_sent == 0
        await ini2.stop()
        await acc2.stop()
    run(main())


def test_messages_sent_while_disconnected_arrive_by_resend():
    async def main():
        ex, cl = Exchange(), Client()
        acc = Acceptor([acceptor_cfg()], ex)
        port = await acc.start()
        ini = Initiator(initiator_cfg(), "127.0.0.1", port, cl, backoff_s=0.05)
        await ini.start()
        await ini.wait_logged_on()
        acc.session("CALARB").disconnect("test: drop the line")
        await until(lambda: not ini.session.logged_on, what="disconnect")
        ex_session = acc.session("CALARB")
        ex_session.send(execution_report("O9", "E9", "zz", "AAPL", "1", "3", "0", 0, 0))   # while down
        await until(lambda: ini.session.logged_on and any(r.order_id == "O9" for r in cl.reports),
                    what="resent report")
        assert [r for r in cl.reports if r.order_id == "O9"][0].poss_dup
        await ini.stop()
        await acc.stop()
    run(main())


def test_gap_fill_sequence_reset_and_reject_over_tcp():
    async def main():
        ex, cl = Exchange(), Client()
        rejects = []
        cl.on_reject = lambda s, m: rejects.append(m)
        acc = Acceptor([acceptor_cfg()], ex)
        port = await acc.start()
        ini = Initiator(initiator_cfg(), "127.0.0.1", port, cl)
        await ini.start()
        s = await ini.wait_logged_on()
        theirs = acc.session("CALARB")

        s.store.set_next_sender(s.next_sender_seq + 3)          # gap: ResendRequest, answered by GapFill
        nos = new_order_single("g1", "AAPL", "1", 10, 1_000_000)
        cl.tracker.new_order(nos)
        ini.send(nos)
        await until(lambda: cl.tracker.order("g1").state == OrderState.FILLED, what="g1 filled")
        assert theirs.sent["2"] == 1 and theirs.received["4"] >= 1 and len(ex.orders) == 1

        s.reset_sequence(s.next_sender_seq + 100)               # SequenceReset, Reset mode
        await until(lambda: theirs.next_target_seq == s.next_sender_seq, what="reset applied")

        seq = s.next_sender_seq                                 # a malformed order: Side out of range
        s.store.set_next_sender(seq + 1)
        bad = Message("D", [(34, seq), (49, "CALARB"), (56, "EXCH"), (52, fix.format_utc(time.time())), (11, "x"),
                            (55, "AAPL"), (54, "Z"), (60, fix.format_utc(time.time())), (38, 1), (40, "1")])
        ini._conn.write(bad.encode())
        await until(lambda: rejects, what="Reject")
        assert (rejects[0].get_int(45), rejects[0].get_int(373), rejects[0].get_int(371)) == (seq, 5, 54)
        assert theirs.logged_on and theirs.next_target_seq == seq + 1

        await ini.stop()
        await acc.stop()
    run(main())
