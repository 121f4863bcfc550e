"""Fault tests of FIX order entry into the simulated venue: an order stream with the connection
killed at many random points (connection aborted by the client, dropped by the venue, client
restarted from its store, venue acceptor restarted from its store), while background flow trades
against the client's resting orders. At the end every order sent is accounted for exactly once
(filled, canceled or rejected): none lost, none duplicated, no execution reported twice."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from sim.exchange.client import OrderClient
from sim.exchange.config import FlowConfig, SymbolConfig, VenueConfig
from sim.exchange.venue import Venue

SYMBOLS = (SymbolConfig("AAPL", 1, 1_900_000), SymbolConfig("MSFT", 2, 4_100_000))
KILLS = ("client_abort", "venue_drop", "client_restart", "venue_restart")


async def _faulty_stream(tmp_path, seed: int, n_orders: int, n_kills: int):
    rng = random.Random(seed)
    cfg = VenueConfig("FLT", SYMBOLS, fix_port=0, md_port=0, retransmit_port=0, store_dir=str(tmp_path / "venue"),
                      flow=FlowConfig(seed=seed, max_orders=40))
    v = Venue(cfg, flow_timer=False, heartbeat_timer=False)
    await v.start()
    store = tmp_path / "client.fixstore"
    client = OrderClient("127.0.0.1", v.fix_port, venue_comp_id="FLT", store=store, backoff_s=0.005)
    await client.start()
    kill_at = set(rng.sample(range(5, n_orders), n_kills))
    kills = Counter()
    try:
        for i in range(n_orders):
            sym = rng.choice(SYMBOLS)
            tick = 100
            bid, ask = v.engine.books[sym.symbol].top()
            mid = ((bid or ask or sym.price) + (ask or bid or sym.price)) // 2 // tick * tick
            u = rng.random()
            side = rng.choice("12")
            if u < 0.45:                                  # passive day order, may be hit by the flow
                off = rng.randint(0, 3) * tick
                client.order(sym.symbol, side, 100 * rng.randint(1, 5), mid - off if side == "1" else mid + off)
            elif u < 0.7:                                 # marketable IOC
                off = rng.randint(1, 5) * tick
                client.order(sym.symbol, side, 100 * rng.randint(1, 5), mid + off if side == "1" else mid - off, "3")
            elif u < 0.75:                                # market order
                client.order(sym.symbol, side, 100 * rng.randint(1, 3))
            else:                                         # cancel or replace an order that may be open
                open_ = client.open_orders()
                if open_:
                    first = rng.choice(open_)
                    if rng.random() < 0.6:
                        client.cancel(first)
                    else:
                        client.replace(first, 100 * rng.randint(1, 6), mid + rng.randint(-3, 3) * tick)
            v.step_flow(rng.randint(0, 6))
            if i in kill_at:
                kind = rng.choice(KILLS)
                kills[kind] += 1
                if kind == "client_abort":
                    client.drop_connection()
                elif kind == "venue_drop":
                    s = v.order_entry.session(client.config.sender_comp_id)
                    if s is not None:
                        s.disconnect("fault test")
                elif kind == "client_restart":
                    await client.stop(graceful=False)
                    await asyncio.sleep(rng.random() * 0.01)
                    v.step_flow(rng.randint(0, 10))      # the market moves while the client is down
                    await client.start(wait=False)
                else:
                    await v.order_entry.stop(graceful=False)
                    v.step_flow(rng.randint(0, 10))      # and while the acceptor is down
                    await v.order_entry.start()
            await asyncio.sleep(rng.random() * 0.002)
        # settle: cancel whatever is still open until every order is done
        await client.initiator.wait_logged_on(10)
        for _ in range(40):
            open_ = client.open_orders()
            if not open_:
                break
            for first in open_:
                client.cancel(first)
            try:
                await client.wait_done(open_, timeout_s=0.5)
            except TimeoutError:
                pass
        await client.wait_done(timeout_s=5)
        await asyncio.sleep(0.05)                       # anything duplicated would arrive now
    finally:
        await client.stop()
        await v.stop()
    return v, client, kills


def test_every_order_is_accounted_for_exactly_once_across_kills_and_restarts(tmp_path):
    v, client, kills = asyncio.run(_faulty_stream(tmp_path, seed=8, n_orders=220, n_kills=36))
    assert sum(kills.values()) == 36 and all(kills[k] > 0 for k in KILLS)
    assert len(client.orders) > 150
    for first in client.orders:
        terminal = client.terminal(first)
        assert len(terminal) == 1, (first, [(m.exec_type, m.ord_status, m.cl_ord_id) for m in client.reports[first]])
    assert not client.unknown
    dup = [e for e, n in Counter(client.exec_ids).items() if n > 1]
    assert dup == []
    # the venue saw every order exactly once, and finished every one of them
    owner = client.config.sender_comp_id
    assert not v.engine.live_orders(owner)
    taken = {cl for (w, cl) in v.engine.seen if w == owner}
    assert set(client.orders) <= taken
    # what the client was told matches the venue's own executions
    fills = sum(m.last_qty for reports in client.reports.values() for m in reports
                if m.msg_type == "8" and m.exec_type == "F")
    venue_fills = {o.order_id: o.cum_qty for (w, _), o in v.engine.done.items() if w == owner}
    assert fills == sum(venue_fills.values()) > 0
    outcomes = Counter(client.terminal(f)[0].ord_status for f in client.orders)
    assert outcomes["2"] > 0 and outcomes["4"] > 0 and outcomes["8"] == 0
