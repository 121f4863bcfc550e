"""Prometheus metrics of the host, served on loopback.

What
    :class:`EngineMetrics` owns a private ``CollectorRegistry`` (no global
    state) with

    ``calarb_messages_total{kind}``          messages handled (tob, fix, itch, ...)
    ``calarb_stage_latency_seconds{stage}``  per-stage latency histogram (fed by :class:`host.latency.LatencyRecorder`)
    ``calarb_signals_total{source,direction}`` signals generated
    ``calarb_risk_breaches_total{limit}``    risk limit breaches
    ``calarb_kill_switch``                   1 once the kill switch tripped
    ``calarb_pnl{kind}``                     realised / unrealised / total P&L (currency units)
    ``calarb_mismatches_total{kind}``        reconciliation mismatches
    ``calarb_gateware_<counter>``            every gateware counter register, read through the NIC at scrape time

    :meth:`~EngineMetrics.serve` starts the HTTP endpoint on a loopback
    address only (``port=0`` picks a free port); :meth:`~EngineMetrics.text`
    renders the exposition format without a server.

Why
    Issue 10: message rates, per-stage latencies, signal counts, risk
    breaches, P&L and gateware counters for an operator's Prometheus.
"""

from __future__ import annotations

import re
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily

__all__ = ["EngineMetrics", "MetricsError", "NicCounterCollector"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")

# 10 us .. 10 s: the host's stages run in microseconds, its budgets are in milliseconds to seconds
LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0, 10.0)


class MetricsError(ValueError):
    """A metrics endpoint that is not on loopback, ..."""


def _metric_name(register: str) -> str:
    return "calarb_gateware_" + re.sub(r"[^a-zA-Z0-9_]", "_", register)


class NicCounterCollector:
    """Reads ``counters()`` from a NIC (anything with that method) at every scrape."""

    def __init__(self, read_counters: Callable[[], dict[str, int]]):
        self.read_counters = read_counters

    def collect(self):
        try:
            counters = self.read_counters()
        except Exception:  # noqa: BLE001 - a NIC that cannot be read yields no samples, not a failed scrape
            return
        for name, value in sorted(counters.items()):
            fam = CounterMetricFamily(_metric_name(name), f"gateware counter register {name}")
            fam.add_metric([], float(value))
            yield fam


class EngineMetrics:
    """The host's metrics on a private registry (see the module docstring)."""

    def __init__(self, nic=None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("calarb_messages", "messages handled", ["kind"], registry=r)
        self.latency = Histogram("calarb_stage_latency_seconds", "host stage latency", ["stage"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.signals = Counter("calarb_signals", "signals generated", ["source", "direction"], registry=r)
        self.breaches = Counter("calarb_risk_breaches", "risk limit breaches", ["limit"], registry=r)
        self.kill_switch = Gauge("calarb_kill_switch", "1 once the kill switch tripped", registry=r)
        self.pnl = Gauge("calarb_pnl", "P&L in currency units", ["kind"], registry=r)
        self.mismatches = Counter("calarb_mismatches", "reconciliation mismatches", ["kind"], registry=r)
        self.disabled_signals = Gauge("calarb_signal_disabled", "1 while a signal type is disabled", ["source"],
                                      registry=r)
        self._server = None
        self._thread = None
        if nic is not None:
            self.watch_nic(nic.counters)

    def watch_nic(self, read_counters: Callable[[], dict[str, int]]) -> None:
        """Export the gateware counters returned by ``read_counters()`` (``Nic.counters``) at each scrape."""
        self.registry.register(NicCounterCollector(read_counters))

    # hooks for the stages --------------------------------------------------------------

    def observe_latency(self, stage: str, seconds: float) -> None:
        """A :class:`host.latency.LatencyRecorder` observer."""
        self.latency.labels(stage).observe(seconds)

    def count_signals(self, signals) -> None:
        for s in signals:
            self.signals.labels(s.source, str(s.direction)).inc()

    def breach(self, limit: str) -> None:
        """A :class:`host.risk.RiskManager` ``on_breach`` hook."""
        self.breaches.labels(limit).inc()

    def killed(self, reason: str = "") -> None:
        self.kill_switch.set(1)

    def set_pnl(self, pnl: dict[str, float]) -> None:
        for kind, value in pnl.items():
            self.pnl.labels(kind).set(value)

    def mismatch(self, m) -> None:
        """A :class:`host.reconcile.Reconciler` ``on_mismatch`` hook."""
        self.mismatches.labels(m.kind).inc()

    # exposition ------------------------------------------------------------------------

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, port: int = 9464, address: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint (a daemon thread); returns the bound port."""
        if address not in LOOPBACK:
            raise MetricsError(f"metrics.address must be a loopback address, got {address!r}")
        if self._server is not None:
            raise MetricsError("already serving")
        self._server, self._thread = start_http_server(port, addr=address, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None
