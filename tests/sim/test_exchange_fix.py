"""Order entry over FIX 4.4 into the simulated venue (sim/exchange/fix_venue.py, quickfix_venue.py,
fixmap.py): the project's initiator trades against the venue through the project's acceptor and
through a QuickFIX acceptor; reports are consistent (checked by host.fix's OrderTracker), and the
client's resting order shows up in the venue's ITCH feed under the reference the reports carry."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from host.fix import OrderTracker
from protocols import fix, itch
from sim.exchange.client import OrderClient
from sim.exchange.config import FlowConfig, SymbolConfig, VenueConfig
from sim.exchange.fixmap import fix_from_event, request_from_fix
from sim.exchange.matching import BUY, IOC, ExecReport, NewOrder, ReplaceRequest
from sim.exchange.venue import Venue

HAVE_QUICKFIX = importlib.util.find_spec("quickfix") is not None
KINDS = ["calarb", pytest.param("quickfix", marks=pytest.mark.skipif(
    not HAVE_QUICKFIX, reason="quickfix (PyPI quickfix 1.16) is not installed"))]

SYMBOLS = (SymbolConfig("AAPL", 1, 1_900_000), SymbolConfig("MSFT", 2, 4_100_000))


def cfg(tmp_path, **kw):
    return VenueConfig("SIMA", SYMBOLS, fix_port=0, md_port=0, retransmit_port=0, flow=None,
                       store_dir=str(tmp_path / "venue"), **kw)


def test_fixmap_round_trip():
    msg = fix.decode(fix.Message("D", [(11, "x1"), (55, "AAPL"), (54, "1"), (38, 300), (40, "2"),
                                       (44, "190.25"), (59, "3")]).encode())
    assert request_from_fix(msg, "CALARB") == NewOrder("CALARB", "x1", "AAPL", BUY, 300, 1_902_500, IOC)
    g = fix.decode(fix.Message("G", [(11, "x2"), (41, "x1"), (55, "AAPL"), (54, "1"), (38, 200), (40, "2"),
                                     (44, "190.5")]).encode())
    assert request_from_fix(g, "CALARB") == ReplaceRequest("CALARB", "x2", "x1", 200, 1_905_000, "AAPL", BUY)
    er = ExecReport("CALARB", 7, 9, "x1", "", "AAPL", BUY, "F", "1", 300, 1_902_500, "0", 100, 1_902_500, 100,
                    200, 100 * 1_902_500, ref=12)
    out = fix.decode(fix.Message("8", fix_from_event(er).fields).encode())
    fix.validate(out, header=False)
    assert (out.order_id, out.exec_id, out.cum_qty, out.leaves_qty, out.last_qty, out.last_px_e4, out.avg_px_e4,
            out.price_e4, out.get_int(198)) == ("7", "9", 100, 200, 100, 1_902_500, 1_902_500, 1_902_500, 12)


@pytest.mark.parametrize("bad,why", [((40, "3"), "OrdType"), ((59, "1"), "TimeInForce"), ((38, "0"), "OrderQty")])
def test_fixmap_refuses_what_the_venue_cannot_take(bad, why):
    fields = dict([(11, "x1"), (55, "AAPL"), (54, "1"), (38, "100"), (40, "2"), (44, "190"), (59, "0")])
    fields[bad[0]] = bad[1]
    msg = fix.decode(fix.Message("D", list(fields.items())).encode())
    with pytest.raises(ValueError, match=why) as e:
        request_from_fix(msg, "CALARB")
    reply = e.value.reply
    assert reply.msg_type == "8" and reply.exec_type == "8" and why in reply.text
    fix.validate(fix.decode(fix.Message("8", reply.fields).encode()), header=False)


async def _trade(tmp_path, kind):
    v = Venue(cfg(tmp_path), order_entry=kind, flow_timer=False, heartbeat_timer=False)
    await v.start()
    client = OrderClient("127.0.0.1", v.fix_port, venue_comp_id="SIMA", store=tmp_path / "client.store")
    try:
        await client.start()
        # resting liquidity from another participant
        v.handle(NewOrder("MM", "m1", "AAPL", "S", 100, 1_901_000))
        v.handle(NewOrder("MM", "m2", "AAPL", "S", 200, 1_902_000))

        a = client.buy("AAPL", 250, 1_902_000, "3")                   # IOC: 100 @ 190.10, 150 @ 190.20
        b = client.buy("AAPL", 100, 1_899_000)                        # rests
        c = client.sell("MSFT", 100)                                  # market, nothing to hit
        d = client.buy("ZZZZ", 100, 1_000_000)                        # unknown symbol
        await client.wait_done([a, c, d])
        await asyncio.sleep(0.05)
        r = client.replace(b, 300, 1_898_000)                         # loses priority: U on the feed
        await asyncio.sleep(0.05)
        x = client.cancel(b)
        await client.wait_done([b])
        too_late = client.cancel(a)
        for _ in range(200):
            if any(m.msg_type == "9" for m in client.reports[a]):
                break
            await asyncio.sleep(0.01)
        return v, client
    finally:
        await client.stop()
        await v.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_orders_over_fix(tmp_path, kind):
    v, client = asyncio.run(_trade(tmp_path, kind))
    a, b, c, d = "C1", "C2", "C3", "C4"
    ra = [m for m in client.reports[a] if m.msg_type == "8"]
    assert [(m.exec_type, m.ord_status, m.last_qty, m.last_px_e4, m.cum_qty, m.leaves_qty) for m in ra] == [
        ("0", "0", None, None, 0, 250), ("F", "1", 100, 1_901_000, 100, 150), ("F", "2", 150, 1_902_000, 250, 0)]
    assert ra[-1].avg_px_e4 == (100 * 1_901_000 + 150 * 1_902_000) // 250
    rc = client.reports[c]
    assert [(m.exec_type, m.ord_status) for m in rc] == [("0", "0"), ("4", "4")] and rc[-1].text == "no liquidity"
    rd = client.reports[d]
    assert [(m.exec_type, m.ord_status) for m in rd] == [("8", "8")] and "unknown symbol" in rd[0].text
    rb = client.reports[b]
    assert [(m.msg_type, m.exec_type, m.cl_ord_id) for m in rb] == [("8", "0", "C2"), ("8", "5", "C5"),
                                                                    ("8", "4", "C6")]
    assert rb[1].order_qty == 300 and rb[1].price_e4 == 1_898_000 and rb[1].leaves_qty == 300
    assert [(m.msg_type, m.get(434), m.get(102)) for m in client.reports[a] if m.msg_type == "9"] == [("9", "1", "0")]
    # every order reached exactly one terminal report; nothing unexpected arrived
    assert all(len(client.terminal(cl)) == 1 for cl in (a, b, c, d)) and not client.unknown
    # the client's resting order is in the feed: A with the reference of SecondaryOrderID, U, then D
    feed = [itch.decode(m) for m in v.publisher.messages]
    ref_b = rb[0].get_int(198)
    add = [m for m in feed if m.code == "A" and m.order_ref == ref_b]
    assert len(add) == 1 and (add[0].shares, add[0].price, add[0].side) == (100, 1_899_000, b"B")
    new_ref = rb[1].get_int(198)
    assert [(m.code, m.new_order_ref) for m in feed if m.code == "U" and m.order_ref == ref_b] == [("U", new_ref)]
    assert [m.code for m in feed if m.code == "D" and m.order_ref == new_ref] == ["D"]
    execs = [(m.order_ref, m.shares) for m in feed if m.code == "E"]
    assert execs == [(1, 100), (2, 150)]


async def _tracked(tmp_path):
    """The same exchange of messages, checked report by report with host.fix's order state machine."""
    v = Venue(cfg(tmp_path), flow_timer=False, heartbeat_timer=False)
    await v.start()
    client = OrderClient("127.0.0.1", v.fix_port, store=tmp_path / "c.store")
    tracker = OrderTracker()
    errors = []
    real = client._on_message

    def check(msg):
        try:
            tracker.on_message(msg)
        except Exception as e:       # noqa: BLE001 - collected and asserted below
            errors.append(e)
        real(msg)

    client._on_message = check
    sent = client._send

    def track_send(msg):
        {"D": tracker.new_order, "F": tracker.cancel, "G": tracker.replace}[msg.msg_type](msg)
        sent(msg)

    client._send = track_send
    try:
        await client.start()
        for i in range(5):
            v.handle(NewOrder("MM", f"m{i}", "AAPL", "S", 100, 1_901_000 + 1000 * i))   # 190.10, 190.20, ...
        x = client.buy("AAPL", 150, 1_900_000)
        y = client.buy("AAPL", 50, 1_901_000, "3")
        await asyncio.sleep(0.05)
        client.replace(x, 400, 1_902_000)            # crosses: 50 left of m0 and 100 of m1, rests 250
        await asyncio.sleep(0.05)
        v.handle(NewOrder("MM", "s9", "AAPL", "S", 100, 1_890_000))   # hits x's remainder
        await asyncio.sleep(0.05)
        client.cancel(x)
        await client.wait_done([x, y])
    finally:
        await client.stop()
        await v.stop()
    return tracker, errors, client


def test_reports_follow_the_fix_order_state_machine(tmp_path):
    tracker, errors, client = asyncio.run(_tracked(tmp_path))
    assert errors == []
    x = tracker.order("C1")
    assert x.state.name == "CANCELED" and x.cum_qty == 150 + 100 and x.order_qty == 400
    assert tracker.order("C2").state.name == "FILLED"
