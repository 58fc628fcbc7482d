"""The fleet's pace toward Stripe on PostgreSQL: one schedule per budget.

The table is ``payout_rate_schedule``, UNLOGGED: a schedule is worth nothing after a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import psycopg_pool

from payout_adapters.postgres.database import Database
from payout_adapters.postgres.queries import QUERIES
from payout_core import pacing, ports

__all__ = ["PostgresRateLimiter"]


class PostgresRateLimiter:
    """:class:`payout_core.ports.RateLimiter` for a fleet, on ``payout_rate_schedule``:
    every worker on every host takes its slots from one schedule per budget, so
    ``rates`` is the fleet's pace, however many workers run, and a 429 one of
    them meets slows them all. The schedule is the database's clock, as
    :class:`~payout_adapters.stripe.LocalRateLimiter`'s is the process's."""

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool,
        rates: Mapping[ports.Budget, float],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = set(ports.Budget) - set(rates)
        if missing or not all(r > 0 for r in rates.values()):
            raise ValueError(f"every budget needs a rate > 0, got {dict(rates)}")
        self._db = Database(pool)
        self._interval = {
            b: timedelta(seconds=1.0 / (rates[b] * pacing.HEADROOM)) for b in ports.Budget
        }
        self._sleep = sleep

    def acquire(self, budget: ports.Budget, *, max_wait: float | None = None) -> float | None:
        params = {
            **self._pacing(budget),
            "max_wait": None if max_wait is None else timedelta(seconds=max_wait),
        }
        row = self._db.fetch_one(
            "take a slot of the Stripe rate limit", QUERIES["take_rate_slot"], params
        )
        if row is None:
            return None  # booked beyond max_wait: nothing taken
        wait: float = row["wait"].total_seconds()
        if wait > 0:
            self._sleep(wait)
        return wait

    def push_back(self, budget: ports.Budget, retry_after: float | None) -> None:
        params = {
            **self._pacing(budget),
            "pause": None if retry_after is None else timedelta(seconds=max(retry_after, 0.0)),
            "cooldown": timedelta(seconds=pacing.COOLDOWN_SECONDS),
            "cut": pacing.CUT,
            "floor": pacing.FLOOR,
        }
        with self._db.statements("push the Stripe rate limit back") as cursor:
            cursor.execute(QUERIES["push_rate_back"], params)

    def ready_within(self, budget: ports.Budget, seconds: float) -> int:
        row = self._db.fetch_one(
            "read the Stripe rate limit", QUERIES["rate_backlog"], self._pacing(budget)
        )
        backlog, factor = (
            (0.0, 1.0) if row is None else (row["backlog"].total_seconds(), row["factor"])
        )
        interval = self._interval[budget].total_seconds() / factor
        return pacing.ready_within(seconds, backlog=backlog, interval=interval)

    def _pacing(self, budget: ports.Budget) -> dict[str, object]:
        return {
            "budget": budget.value,
            "interval": self._interval[budget],
            "recovery": pacing.RECOVERY_PER_SECOND,
        }
