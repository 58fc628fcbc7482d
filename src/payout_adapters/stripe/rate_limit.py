"""The pace of requests to Stripe within one process: a GCRA schedule per budget.

:class:`LocalRateLimiter` implements :class:`payout_core.ports.RateLimiter`
with the schedule a fleet shares through PostgreSQL
(:class:`payout_adapters.postgres.PostgresRateLimiter`), held in memory: each
budget keeps the time its next request may leave; a caller takes that slot,
moves it on by ``1 / rate`` and waits for it outside the lock. Requests leave
evenly spaced, first come first served, never more than ``rate`` in any
second, and nobody spins. A 429 moves the slot past its ``Retry-After`` for
every caller at once.

It is the gateway's default, enough for one process (the demo, tests, a
single worker); ``payout-core loop`` gives the gateway the shared one. Clock
and sleep are injected, so a test counts the waits without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from payout_core import ports

__all__ = ["LocalRateLimiter"]


class LocalRateLimiter:
    """``rates``: requests per second, per budget (every budget needs one)."""

    def __init__(
        self,
        rates: Mapping[ports.Budget, float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = set(ports.Budget) - set(rates)
        if missing:
            raise ValueError(f"no rate for budget(s) {sorted(missing)}")
        for budget, rate in rates.items():
            if not rate > 0:
                raise ValueError(f"the rate of {budget} must be > 0, got {rate}")
        self._interval = {b: 1.0 / rates[b] for b in ports.Budget}
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[ports.Budget, float] = {}
        self._taken: dict[ports.Budget, int] = dict.fromkeys(ports.Budget, 0)

    @classmethod
    def at(
        cls,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> LocalRateLimiter:
        """The same ``rate`` for every budget (each budget paced on its own)."""
        return cls(dict.fromkeys(ports.Budget, rate), clock=clock, sleep=sleep)

    def taken(self, budget: ports.Budget) -> int:
        """How many requests of ``budget`` were let through."""
        with self._lock:
            return self._taken[budget]

    def acquire(self, budget: ports.Budget, *, max_wait: float | None = None) -> float | None:
        with self._lock:
            now = self._clock()
            slot = max(self._next.get(budget, now), now)
            if max_wait is not None and slot - now > max_wait:
                return None  # booked beyond what the caller may wait: nothing taken
            self._next[budget] = slot + self._interval[budget]
            self._taken[budget] += 1
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def push_back(self, budget: ports.Budget, seconds: float) -> None:
        with self._lock:
            resume = self._clock() + max(seconds, 0.0)
            self._next[budget] = max(self._next.get(budget, resume), resume)
