"""Prometheus metrics (host/metrics.py) and the latency recorder (host/latency.py)."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from host.config import LatencyConfig
from host.latency import LatencyRecorder
from host.metrics import EngineMetrics, MetricsError
from host.reconcile import Mismatch
from host.types import Signal


def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


class FakeNic:
    def __init__(self):
        self.regs = {"itch.messages": 10, "mold.gaps": 1}

    def counters(self):
        return dict(self.regs)


def test_stage_hooks_feed_the_metrics():
    m = EngineMetrics()
    m.messages.labels("tob").inc(3)
    m.count_signals([Signal("A", 1, 0.7, "pairs"), Signal("B", -1, 0.7, "pairs"), Signal("C", 1, 0.9, "volarb")])
    m.breach("var")
    m.killed("drawdown")
    m.set_pnl({"realised": 12.5, "unrealised": -2.0})
    m.mismatch(Mismatch("overfill", "c1", ""))
    s = samples(m.text())
    assert s[("calarb_messages_total", (("kind", "tob"),))] == 3
    assert s[("calarb_signals_total", (("direction", "1"), ("source", "pairs")))] == 1
    assert s[("calarb_signals_total", (("direction", "1"), ("source", "volarb")))] == 1
    assert s[("calarb_risk_breaches_total", (("limit", "var"),))] == 1
    assert s[("calarb_kill_switch", ())] == 1
    assert s[("calarb_pnl", (("kind", "unrealised"),))] == -2.0
    assert s[("calarb_mismatches_total", (("kind", "overfill"),))] == 1


def test_gateware_counters_are_read_at_each_scrape():
    nic = FakeNic()
    m = EngineMetrics(nic)
    assert samples(m.text())[("calarb_gateware_itch_messages_total", ())] == 10
    nic.regs["itch.messages"] = 25
    assert samples(m.text())[("calarb_gateware_itch_messages_total", ())] == 25


def test_latency_recorder_reports_against_budgets_and_feeds_the_histogram():
    m = EngineMetrics()
    rec = LatencyRecorder(LatencyConfig(risk_ms=1.0), observer=m.observe_latency)
    for ns in (100_000, 200_000, 300_000):
        rec.record("risk", ns)
    rec.record("risk", 2_000_000)  # one over the 1 ms budget
    with rec.measure("signals"):
        pass
    rep = rec.report()
    assert rep["risk"]["count"] == 4 and rep["risk"]["max_ns"] == 2_000_000
    assert rep["risk"]["budget_ns"] == 1_000_000 and rep["risk"]["within_budget"] is False
    assert rep["signals"]["count"] == 1 and rep["signals"]["within_budget"] is True
    assert rep["validation"] == {"count": 0, "budget_ns": 50_000_000}
    s = samples(m.text())
    assert s[("calarb_stage_latency_seconds_count", (("stage", "risk"),))] == 4
    assert s[("calarb_stage_latency_seconds_bucket", (("le", "0.001"), ("stage", "risk")))] == 3


def test_ring_buffer_keeps_the_latest():
    rec = LatencyRecorder(capacity=3)
    for ns in range(1, 6):
        rec.record("x", ns)
    assert sorted(rec.samples("x").tolist()) == [3, 4, 5] and rec.report()["x"]["count"] == 5


def test_endpoint_serves_on_loopback_only():
    m = EngineMetrics()
    with pytest.raises(MetricsError, match="loopback"):
        m.serve(0, "0.0.0.0")
    port = m.serve(0)
    try:
        m.breach("max_gross")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert samples(body)[("calarb_risk_breaches_total", (("limit", "max_gross"),))] == 1
    finally:
        m.close()
