"""The front door on PostgreSQL: :class:`payout_core.Payouts` for a service.

::

    from payout_adapters import postgres

    with postgres.connect(url) as payouts:          # a small pool of its own
        payout = payouts.schedule(settlement)

    payouts = postgres.payouts(pool)                # over a pool the service owns

    with conn.transaction():                         # the service's own transaction
        conn.execute("UPDATE contests SET settled = true WHERE id = %s", [contest_id])
        payouts.enqueue(conn, settlement)           # committed, or rolled back, with it

The asyncio twin is :mod:`payout_adapters.postgres.aio`. docs/library.md says
why ``enqueue`` writes the job itself rather than a row of the settlement inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import psycopg
import psycopg_pool

from payout_adapters import clock as clock_
from payout_adapters.postgres import jobs
from payout_adapters.postgres import pool as pool_
from payout_adapters.postgres.store import PostgresStore
from payout_core import models, ports
from payout_core.payouts import Payouts

__all__ = ["Connection", "PostgresEnqueuer", "connect", "payouts"]

Connection = psycopg.Connection[Any]


@attrs.frozen
class PostgresEnqueuer:
    """Schedules on the caller's connection, in a savepoint of its open
    transaction (:func:`payout_adapters.postgres.jobs.schedule_on`)."""

    def schedule_on(
        self,
        connection: Connection,
        job: models.PayoutJob,
        transfers: Sequence[models.PayoutTransfer],
    ) -> ports.ScheduleResult:
        return jobs.schedule_on(connection, job, transfers)

    def transfers_on(self, connection: Connection, job_id: str) -> list[models.PayoutTransfer]:
        return jobs.transfers_of_job_on(connection, job_id)


def payouts(
    pool: psycopg_pool.ConnectionPool,
    *,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    poll_seconds: float = 0.5,
) -> Payouts[Connection]:
    """The front door over ``pool``, which the caller owns (and closes).
    ``max_attempts``: how many times each transfer is tried before it fails
    for good; ``poll_seconds``: how often :meth:`~payout_core.Payouts.wait` looks."""
    return Payouts(
        store=PostgresStore(pool),
        clock=clock_.SystemClock(),
        enqueuer=PostgresEnqueuer(),
        max_attempts=max_attempts,
        poll_seconds=poll_seconds,
    )


@contextlib.contextmanager
def connect(
    url: str,
    *,
    max_size: int = 4,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    poll_seconds: float = 0.5,
) -> Iterator[Payouts[Connection]]:
    """The front door over a pool of its own on ``url`` (at most ``max_size``
    connections), closed when the block ends.

    Raises:
        StoreUnavailable: no connection could be made.
    """
    pool = pool_.connect_pool(url, min_size=1, max_size=max_size)
    try:
        yield payouts(pool, max_attempts=max_attempts, poll_seconds=poll_seconds)
    finally:
        pool.close()
