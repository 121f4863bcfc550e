"""Retries with exponential backoff, then the cached value with a staleness alert.

What
    :func:`retry` / :func:`aretry` call a function up to ``1 + retries`` times
    (default: the first try and three retries), sleeping ``base_delay``,
    ``base_delay * factor``, ... between tries. :class:`CachedSource` wraps a
    fetch: a success refreshes the cache; when every try fails it returns the
    last good value marked ``stale`` with its age, and raises an alert once
    that age passes ``max_age``. With nothing cached the last error is raised.

Why
    DESIGN.md's failure rule for anything fetched (market data, reference
    data, parameters): retry three times with exponential backoff, then use
    cached values and alert when stale. Clock and sleep are injectable so
    tests run instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from host.config import RetryConfig

__all__ = ["CachedSource", "Fetched", "RetryError", "aretry", "backoff_delays", "retry"]


class RetryError(RuntimeError):
    """Every try failed; ``errors`` holds each try's exception, ``__cause__`` the last."""

    def __init__(self, name: str, errors: list[BaseException]):
        super().__init__(f"{name}: {len(errors)} tries failed, last: {errors[-1]!r}")
        self.errors = errors


def backoff_delays(config: RetryConfig = RetryConfig()) -> list[float]:
    """Seconds slept before each retry: ``base * factor**k`` for k = 0 .. retries-1."""
    return [config.base_delay_s * config.factor**k for k in range(config.retries)]


def retry(fn: Callable[[], Any], config: RetryConfig = RetryConfig(), *, name: str = "call",
          retry_on: tuple[type[BaseException], ...] = (Exception,), sleep: Callable[[float], None] = time.sleep):
    """``fn()``, retried on ``retry_on`` exceptions with exponential backoff; :class:`RetryError` at the end."""
    errors: list[BaseException] = []
    delays = backoff_delays(config)
    for attempt in range(config.retries + 1):
        try:
            return fn()
        except retry_on as exc:
            errors.append(exc)
            if attempt < config.retries:
                sleep(delays[attempt])
    raise RetryError(name, errors) from errors[-1]


async def aretry(fn: Callable[[], Any], config: RetryConfig = RetryConfig(), *, name: str = "call",
                 retry_on: tuple[type[BaseException], ...] = (Exception,), sleep=asyncio.sleep):
    """The asyncio twin of :func:`retry`: ``await fn()`` with ``await sleep(delay)`` between tries."""
    errors: list[BaseException] = []
    delays = backoff_delays(config)
    for attempt in range(config.retries + 1):
        try:
            return await fn()
        except retry_on as exc:
            errors.append(exc)
            if attempt < config.retries:
                await sleep(delays[attempt])
    raise RetryError(name, errors) from errors[-1]


@dataclass(frozen=True)
class Fetched:
    """A value from :class:`CachedSource`: fresh, or the cached one with its age in seconds."""

    value: Any
    stale: bool
    age_s: float
    alert: bool
    error: BaseException | None = None


class CachedSource:
    """A fetch with retries that falls back to its last good value.

    ``on_alert(name, age_s, error)`` is called whenever a stale value older
    than ``config.max_age_s`` is served (the metrics/alerting edge hooks in here).
    """

    def __init__(self, name: str, fetch: Callable[[], Any], config: RetryConfig = RetryConfig(), *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 on_alert: Callable[[str, float, BaseException], None] | None = None):
        self.name = name
        self.fetch = fetch
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.on_alert = on_alert
        self._value: Any = None
        self._at: float | None = None
        self.failures = 0  # fetches (after all retries) that fell back
        self.alerts = 0

    @property
    def cached(self) -> bool:
        return self._at is not None

    def get(self) -> Fetched:
        """Fetch (with retries); on failure the cached value, stale; re-raises if nothing is cached."""
        try:
            value = retry(self.fetch, self.config, name=self.name, sleep=self.sleep)
        except RetryError as exc:
            self.failures += 1
            if self._at is None:
                raise
            age = self.clock() - self._at
            alert = age > self.config.max_age_s
            if alert:
                self.alerts += 1
                if self.on_alert is not None:
                    self.on_alert(self.name, age, exc)
            return Fetched(self._value, stale=True, age_s=age, alert=alert, error=exc)
        self._value, self._at = value, self.clock()
        return Fetched(value, stale=False, age_s=0.0, alert=False)
