"""Per-stage latency of the host, measured against DESIGN.md's budgets.

What
    :class:`LatencyRecorder` keeps the last ``capacity`` durations (ns) per
    stage in a ring buffer; :meth:`~LatencyRecorder.measure` is a context
    manager timing a block with ``perf_counter_ns``, :meth:`record` takes a
    duration measured elsewhere, and :meth:`report` gives count, mean,
    p50/p99/max and the budget with ``within_budget`` (p99 and max below it)
    per stage. ``observer(stage, seconds)`` is called per sample (the
    Prometheus histogram hooks in there).

Why
    The host's budgets (validation < 50 ms, signals < 5 s, risk < 1 s, order
    submission < 500 ms, ...) are requirements: they are measured all the
    time, exported and reported, never asserted in tests.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

import numpy as np

from host.config import LatencyConfig

__all__ = ["LatencyRecorder"]


class LatencyRecorder:
    """Ring buffers of durations per stage; budgets from :class:`LatencyConfig` (ns)."""

    def __init__(self, config: LatencyConfig = LatencyConfig(), *, capacity: int = 65536,
                 observer: Callable[[str, float], None] | None = None):
        self.budgets = config.budgets_ns()
        self.capacity = int(capacity)
        self.observer = observer
        self._buf: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}

    def record(self, stage: str, duration_ns: int) -> None:
        buf = self._buf.get(stage)
        if buf is None:
            buf = self._buf[stage] = np.zeros(self.capacity, dtype=np.int64)
            self._n[stage] = 0
        n = self._n[stage]
        buf[n % self.capacity] = duration_ns
        self._n[stage] = n + 1
        if self.observer is not None:
            self.observer(stage, duration_ns * 1e-9)

    @contextmanager
    def measure(self, stage: str):
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self.record(stage, time.perf_counter_ns() - t0)

    def samples(self, stage: str) -> np.ndarray:
        n = self._n.get(stage, 0)
        return self._buf[stage][: min(n, self.capacity)].copy() if n else np.zeros(0, np.int64)

    def report(self) -> dict[str, dict]:
        """``{stage: {count, mean_ns, p50_ns, p99_ns, max_ns, budget_ns, within_budget}}``."""
        out = {}
        for stage in sorted(set(self._n) | set(self.budgets)):
            s = self.samples(stage)
            budget = self.budgets.get(stage)
            row = {"count": int(self._n.get(stage, 0)), "budget_ns": budget}
            if s.size:
                p50, p99 = np.percentile(s, [50, 99])
                row.update(mean_ns=float(s.mean()), p50_ns=float(p50), p99_ns=float(p99), max_ns=int(s.max()))
                row["within_budget"] = None if budget is None else bool(s.max() < budget and p99 < budget)
            out[stage] = row
        return out
