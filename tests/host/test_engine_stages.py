"""The engine's own pieces without the network: gateway adapter, feed gap recovery, recovery from the
stores, duplicate reports, recalibration (accept / keep last accepted), a failing signal type."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from host.arming import ArmedThreshold
from host.book import BookSet, TopOfBook as RefTop
from host.config import RiskLimits, config_from_dict
from host.engine import Engine, Journal
from host.fix import FileStore, Session, SessionConfig, new_order_single
from host.gateway import REGISTERS, Gateway, GatewayLimits
from host.marketdata import FeedHandler
from host.nic import Nic
from host.softnic import SoftwareNic
from protocols import fix, itch
from protocols import moldudp64 as mold
from protocols.events import TobEvent
from protocols.registers import REGISTER_MAP, RegisterBlock, RegisterMap, rw

# ----------------------------------------------------------------------------- gateway


class RecordingNic(Nic):
    """A NIC whose register map also has the trigger/risk registers the gateway is bound to."""

    def __init__(self):
        names = {}
        for fields in REGISTERS.values():
            for _, reg in fields:
                block, name = reg.split(".")
                names.setdefault(block, set()).add(name)
        blocks = tuple(RegisterBlock(b, "test", tuple(rw(n, 64, "test") for n in sorted(ns)))
                       for b, ns in sorted(names.items()))
        self.register_map = RegisterMap(REGISTER_MAP.blocks + blocks)
        self.writes = []

    def write(self, name, value):
        self.check_write(name, value)
        self.writes.append((name, value))

    def read(self, name):
        return 0

    def send(self, frames): pass
    def deliver(self, frames): pass
    def poll(self): return []
    def sent(self): return []
    def reset(self): pass


def test_gateway_writes_bound_registers_in_table_order_strobe_last():
    nic = RecordingNic()
    gw = Gateway(nic, {"AAA": 3})
    assert all(gw.bound(a) for a in REGISTERS)
    gw.arm(ArmedThreshold("AAA", 199_800, 200_200, 50))
    assert nic.writes == [("trigger.slot", 3), ("trigger.buy_below", 199_800), ("trigger.sell_above", 200_200),
                          ("trigger.max_qty", 50), ("trigger.delta", 0), ("trigger.ref", 0), ("trigger.arm", 1)]
    nic.writes.clear()
    gw.set_limits(GatewayLimits.from_risk(RiskLimits(max_order_qty=500, max_order_notional=12_345.5)))
    assert nic.writes[0] == ("risk.max_order_qty", 500) and nic.writes[1] == ("risk.max_notional", 123_455_000)
    assert nic.writes[-1] == ("risk.commit", 1)
    nic.writes.clear()
    gw.kill("drawdown")
    gw.clear()
    assert nic.writes == [("risk.kill", 1), ("risk.kill", 0)] and gw.killed is None


def test_gateway_without_trigger_registers_records_the_intent():
    nic = SoftwareNic()
    gw = Gateway(nic, {"AAA": 0})
    assert not gw.bound("arm")
    intent = gw.arm(ArmedThreshold("AAA", 1, 2, 3))
    assert intent.written == () and intent.fields["buy_below"] == 1 and gw.armed["AAA"].sell_above == 2
    gw.disarm("AAA")
    assert "AAA" not in gw.armed and [i.action for i in gw.intents] == ["arm", "disarm"]
    with pytest.raises(KeyError, match="no trigger slot"):
        gw.arm(ArmedThreshold("ZZZ", 1, 2, 3))


# ----------------------------------------------------------------------------- feed handler


def itch_messages():
    out = []
    for ref, (side, px, n) in enumerate([("B", 199_900, 100), ("S", 200_100, 200), ("B", 200_000, 50),
                                         ("S", 200_000 + 500, 10), ("B", 199_800, 70)], 1):
        out.append(itch.encode(itch.message("A", stock_locate=1, timestamp=ref, order_ref=ref, side=side,
                                            shares=n, stock="AAA", price=px)))
    out.append(itch.encode(itch.message("D", stock_locate=1, timestamp=9, order_ref=3)))
    return out


def test_feed_handler_holds_gaps_and_recovers_them_through_re_requests():
    msgs = itch_messages()
    packets = [mold.encode_packet(p) for p in mold.packetise(msgs, session="SESS000001", max_payload=80)]
    assert len(packets) >= 3
    requests = []
    feed = FeedHandler("V", SoftwareNic(), {"AAA": 1}, send_request=requests.append, retry_s=10.0)
    # the first packet is lost: the NIC holds the rest and the handler asks for the gap
    events = []
    for p in packets[1:]:
        feed.datagram(p)
        events += feed.poll()
    first = mold.decode_packet(packets[1])
    req = mold.decode_request(requests[0])
    # asked for [expected, high) when the gap showed, once: the same start is not asked again within retry_s
    assert (req.seq, req.count) == (1, first.seq + len(first.messages) - 1) and len(requests) == 1
    assert not feed.caught_up and not [e for e in events if isinstance(e, TobEvent)]
    answer = mold.encode_packet(mold.MoldPacket(mold.session_bytes("SESS000001"), 1, tuple(msgs)))
    feed.datagram(answer, retransmitted=True)
    events += feed.poll()
    assert feed.caught_up and feed.expected == len(msgs) + 1
    tobs = [(e.bid_price, e.bid_size, e.ask_price, e.ask_size, e.seq) for e in events if isinstance(e, TobEvent)]
    ref = BookSet()
    want = []
    for seq, m in enumerate(msgs, 1):
        want += [(t.bid_price, t.bid_size, t.ask_price, t.ask_size, t.seq) for t in ref.apply(itch.decode(m), seq)
                 if isinstance(t, RefTop)]
    assert tobs == want and len(want) >= 4


# ----------------------------------------------------------------------------- engine pieces


def config(tmp_path, **extra):
    base = {"instruments": [{"name": "AAA"}, {"name": "BBB"}],
            "pairs": [{"y": "AAA", "x": "BBB", "hedge_ratio": 2.0}],
            "routing": {"venues": [{"name": "SIMA", "latency_us": 40}, {"name": "SIMB", "latency_us": 60}]},
            "metrics": {"enabled": False}, "storage": {"run_dir": str(tmp_path)}}
    for k, v in extra.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(base)


def test_recovery_rebuilds_orders_and_winds_back_the_fix_store_to_the_journal(tmp_path):
    store = tmp_path / "fix" / "SIMA.store"
    s = Session(SessionConfig("CALARB", "SIMA", store=store), initiator=True)
    s.send(new_order_single("CA00000007", "AAA", "2", 149, 200_200, time_in_force="3"))
    for seq in range(2, 6):
        s.store.set_next_target(seq)       # reports 1..4 arrived (the session counted them)
    s.store.close()
    e = Engine(config(tmp_path), tmp_path)
    e.journal.write({"k": "fix_in", "venue": "SIMA", "seq": 2})   # ... but only up to 2 was journaled
    e.journal.close()
    e.storage.close()
    e = Engine(config(tmp_path), tmp_path)
    report = e.recover()
    assert report["orders"] == 1 and report["rewound"] == {"SIMA": (5, 3)}
    assert e.pending("AAA") == -149 and e._clordid == 8
    assert FileStore(store).next_target_seq == 3   # the venue resends 3.. after the next Logon
    e.storage.close()


def er(exec_id, exec_type, last_qty=0, cum=0, leaves=149, status="0"):
    return fix.Message("8", [(37, "1"), (11, "CA00000001"), (17, exec_id), (150, exec_type), (39, status),
                             (55, "AAA"), (54, "2"), (38, 149), (32, last_qty), (31, "20.02"), (151, leaves),
                             (14, cum), (6, "20.02"), (34, int(exec_id) + 1)])


def test_execution_reports_journaled_reconciled_and_resends_recognised(tmp_path):
    e = Engine(config(tmp_path), tmp_path)
    e.reconciler.on_sent("CA00000001", "AAA", -1, 149, 200_200)
    e.on_fix("SIMA", er("1", "0"))
    e.on_fix("SIMA", er("2", "F", 149, 149, 0, "2"))
    e.on_fix("SIMA", er("2", "F", 149, 149, 0, "2"))     # resent after a restart (PossDup): not applied twice
    assert e.position("AAA") == -149 and e.stats["duplicate_reports"] == 1 and e.reconciler.mismatches == []
    assert [r["exec_id"] for r in Journal.read(tmp_path / "journal.jsonl") if r["k"] == "exec"] == \
        ["SIMA:1", "SIMA:2"]                            # journaled as they came
    e.journal.write({"k": "exec"})                      # killed in the middle of a write: a torn last line
    os.truncate(tmp_path / "journal.jsonl", os.path.getsize(tmp_path / "journal.jsonl") - 3)
    e.storage.close()
    e.journal.close()
    again = Engine(config(tmp_path), tmp_path)
    again.recover()
    assert again.position("AAA") == -149 and again.reconciler.positions["AAA"].avg_price == pytest.approx(20.02)
    again.storage.close()


def feed_observations(e, ys, xs):
    for y, x in zip(ys, xs):
        e.mids["AAA"], e.mids["BBB"] = y, x
        e._observe("AAA", 0)


def test_recalibration_accepts_a_cointegrated_history_and_keeps_the_last_accepted_otherwise(tmp_path):
    e = Engine(config(tmp_path, pairs=[{"y": "AAA", "x": "BBB"}], engine={"recal_window": 60,
                                                                            "recal_alert_after": 2}), tmp_path)
    pm = e.pairs[0]
    assert pm.signal is None                       # no hedge ratio given: fitted once history is there
    rng = np.random.default_rng(7)
    x = 10 + np.cumsum(rng.normal(0, 0.05, 60))
    y = 1.5 * x + rng.normal(0, 0.02, 60)
    feed_observations(e, y, x)
    assert pm.signal is not None and pm.hedge_ratio == pytest.approx(1.5, abs=0.05)
    accepted = pm.hedge_ratio
    # a history that is not cointegrated (x flat: no hedge ratio) is refused and the ratio stays
    feed_observations(e, 20 + np.cumsum(rng.normal(0, 0.05, 60)), np.full(60, 10.0))
    for _ in range(2):
        assert e.recalibrate(0) is False
    assert pm.hedge_ratio == accepted and pm.failures == 2
    rows = e.storage.scan("calibrations").to_pylist()
    assert [r["accepted"] for r in rows] == [True, False, False]
    assert "calibration failed" in json.loads(rows[-1]["metrics"])["reasons"][0]
    assert e.storage.scan("audit", "kind = 'calibration_alert'").num_rows == 1
    e.storage.close()


def test_a_failing_signal_type_is_disabled_and_alerted_while_the_engine_goes_on(tmp_path):
    e = Engine(config(tmp_path), tmp_path)

    def broken(*a, **k):
        raise FloatingPointError("spread blew up")

    e.pairs[0].signal.update = broken
    feed_observations(e, [20.0, 20.1, 20.2], [10.0, 10.0, 10.0])
    assert "pairs" in e.signal_engine.disabled and e.stats["observations"] == 3
    rows = e.storage.scan("audit", "kind = 'signal_disabled'").to_pylist()
    assert len(rows) == 1 and "spread blew up" in rows[0]["detail"]
    e.storage.close()


def test_example_engine_config_loads_and_documents_the_engine_keys():
    import dataclasses
    from pathlib import Path

    from host.config import RunConfig, VenueConfig, load_config

    path = Path(__file__).resolve().parents[2] / "host" / "example_engine.toml"
    cfg = load_config(path)
    assert [v.name for v in cfg.routing.venues] == ["SIMA", "SIMB"] and cfg.pairs[0].y == "AAPL"
    text = path.read_text()
    for cls in (RunConfig, VenueConfig):
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} = " in text, f"{cls.__name__}.{f.name} is not in {path.name}"


def test_a_risk_kill_trips_every_venue_gateway_and_blocks_new_risk(tmp_path):
    e = Engine(config(tmp_path, risk={"max_drawdown": 100.0}), tmp_path)
    e.risk.update_equity(1_000_000.0)
    e.risk.update_equity(999_850.0)                      # 150 below the peak: drawdown breached
    assert {g.killed for g in e.gateways.values()} == {"drawdown limit breached"}
    assert e.storage.scan("audit", "kind = 'kill'").num_rows == 1
    e.storage.close()


def test_a_gateware_fire_is_reconciled_and_re_arms_the_pair(tmp_path):
    e = Engine(config(tmp_path, signals={"pairs": {"window": 5}}), tmp_path)
    feed_observations(e, [20.00, 20.01, 20.00, 19.99, 20.00, 20.01], [10.0] * 6)
    before = {v: g.arm_count for v, g in e.gateways.items()}
    assert all(before.values())                  # armed when the model's window filled
    e.on_gateware_order("SIMA", "GW1", "AAA", 1, 100, 199_800)
    assert e.reconciler.orders["GW1"].origin == "gateware" and e.pending("AAA") == 100
    assert all(g.arm_count == before[v] + 2 for v, g in e.gateways.items())   # both legs again, every venue
    fair = e.fair_values(e.pairs[0])
    th = e.gateways["SIMA"].armed["AAA"]
    assert th.buy_below <= fair["AAA"] * 10_000 - 200 < fair["AAA"] * 10_000 + 200 <= th.sell_above
    e.storage.close()
