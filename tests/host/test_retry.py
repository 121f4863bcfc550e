"""Retries, backoff and the stale cache (host/retry.py)."""

import asyncio

import pytest

from host.config import RetryConfig
from host.retry import CachedSource, RetryError, aretry, backoff_delays, retry


class Flaky:
    def __init__(self, failures, value="ok"):
        self.failures = failures
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"try {self.calls}")
        return self.value


def test_three_retries_with_exponential_backoff():
    slept = []
    cfg = RetryConfig(retries=3, base_delay_s=0.1, factor=2.0)
    assert backoff_delays(cfg) == [0.1, 0.2, 0.4]
    f = Flaky(3)
    assert retry(f, cfg, sleep=slept.append) == "ok"
    assert f.calls == 4 and slept == [0.1, 0.2, 0.4]
    g = Flaky(4)
    with pytest.raises(RetryError, match="4 tries failed") as exc:
        retry(g, cfg, name="quotes", sleep=slept.append)
    assert [str(e) for e in exc.value.errors] == ["try 1", "try 2", "try 3", "try 4"]


def test_only_the_listed_errors_are_retried():
    def boom():
        raise KeyError("bug")
    with pytest.raises(KeyError):
        retry(boom, retry_on=(ConnectionError,), sleep=lambda s: None)


def test_async_retry():
    slept = []

    async def sleep(s):
        slept.append(s)

    f = Flaky(2)

    async def fetch():
        return f()

    assert asyncio.run(aretry(fetch, RetryConfig(base_delay_s=1.0), sleep=sleep)) == "ok"
    assert slept == [1.0, 2.0]


def test_cache_serves_stale_values_and_alerts_past_max_age():
    now = [0.0]
    alerts = []
    state = {"fail": False, "n": 0}

    def fetch():
        if state["fail"]:
            raise TimeoutError("feed down")
        state["n"] += 1
        return state["n"]

    src = CachedSource("spot", fetch, RetryConfig(max_age_s=5.0), clock=lambda: now[0], sleep=lambda s: None,
                       on_alert=lambda name, age, err: alerts.append((name, age)))
    assert src.get().value == 1
    state["fail"] = True
    now[0] = 3.0
    got = src.get()
    assert (got.value, got.stale, got.age_s, got.alert) == (1, True, 3.0, False)
    now[0] = 6.5
    got = src.get()
    assert (got.stale, got.alert) == (True, True) and alerts == [("spot", 6.5)]
    state["fail"] = False
    got = src.get()
    assert (got.value, got.stale) == (2, False) and src.failures == 2


def test_cache_without_a_value_raises():
    src = CachedSource("spot", Flaky(99), sleep=lambda s: None)
    with pytest.raises(RetryError):
        src.get()
