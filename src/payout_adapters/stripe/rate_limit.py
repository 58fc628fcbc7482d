"""The pace of requests to Stripe within one process: a GCRA schedule per budget.

:class:`LocalRateLimiter` implements :class:`payout_core.ports.RateLimiter`
with the schedule a fleet shares through PostgreSQL
(:class:`payout_adapters.postgres.PostgresRateLimiter`), held in memory: each
budget keeps the time its next request may leave; a caller takes that slot,
moves it on by ``1 / rate`` and waits for it outside the lock. Requests leave
evenly spaced, first come first served, never more than ``rate`` in any
second, and nobody spins. A 429 moves the slot past its ``Retry-After`` for
every caller at once and cuts the pace (:mod:`payout_core.pacing`).

It is the gateway's default, enough for one process (the demo, tests, a
single worker); ``payout-core loop`` gives the gateway the shared one. Clock
and sleep are injected, so a test counts the waits without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from payout_core import pacing, ports

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
        self._interval = {b: 1.0 / (rates[b] * pacing.HEADROOM) for b in ports.Budget}
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[ports.Budget, float] = {}
        # Per budget: the share of the rate set by the last 429, and when.
        self._factor: dict[ports.Budget, float] = dict.fromkeys(ports.Budget, 1.0)
        self._cut_at: dict[ports.Budget, float | None] = dict.fromkeys(ports.Budget, None)
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

    def _since_cut(self, budget: ports.Budget, now: float) -> float | None:
        cut_at = self._cut_at[budget]
        return None if cut_at is None else now - cut_at

    def _interval_now(self, budget: ports.Budget, now: float) -> float:
        factor = pacing.factor_now(self._factor[budget], self._since_cut(budget, now))
        return self._interval[budget] / factor

    def acquire(self, budget: ports.Budget, *, max_wait: float | None = None) -> float | None:
        with self._lock:
            now = self._clock()
            slot = max(self._next.get(budget, now), now)
            if max_wait is not None and slot - now > max_wait:
                return None  # booked beyond what the caller may wait: nothing taken
            self._next[budget] = slot + self._interval_now(budget, now)
            self._taken[budget] += 1
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def push_back(self, budget: ports.Budget, retry_after: float | None) -> None:
        with self._lock:
            now = self._clock()
            cut = pacing.factor_after_429(self._factor[budget], self._since_cut(budget, now))
            if cut is not None:
                self._factor[budget], self._cut_at[budget] = cut, now
            pause = self._interval_now(budget, now) if retry_after is None else retry_after
            resume = now + max(pause, 0.0)
            self._next[budget] = max(self._next.get(budget, resume), resume)

    def ready_within(self, budget: ports.Budget, seconds: float) -> int:
        with self._lock:
            now = self._clock()
            backlog = self._next.get(budget, now) - now
            return pacing.ready_within(
                seconds, backlog=backlog, interval=self._interval_now(budget, now)
            )

    def pace(self, budget: ports.Budget) -> float:
        """Requests per second ``budget`` is spaced at now (after any 429's cut)."""
        with self._lock:
            return 1.0 / self._interval_now(budget, self._clock())
