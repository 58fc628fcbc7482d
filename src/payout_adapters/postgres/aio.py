"""The front door for asyncio services: :class:`AsyncPayouts`, on psycopg's
``AsyncConnection`` and ``AsyncConnectionPool``.

::

    from payout_adapters import postgres

    async with postgres.connect_async(url) as payouts:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            async with conn.transaction():
                await conn.execute("UPDATE contests SET settled = true WHERE id = %s", [cid])
                payout = await payouts.enqueue(conn, settlement)
        done = await payouts.wait(payout.id, timeout=60)

The twin of :class:`payout_core.Payouts`, call for call, and no copy of it:
the settlement is checked and planned by the core
(:func:`payout_core.payouts.plan`, :func:`~payout_core.payouts.accepted`), the
units of work are the same steps (:mod:`~payout_adapters.postgres.jobs`: the
same named queries, parameters, row mapping and decisions between statements),
driven here on an ``AsyncConnection``. Only the waiting on I/O is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import attrs
import psycopg
import psycopg_pool
from psycopg.rows import DictRow, dict_row

from payout_adapters import clock as clock_
from payout_adapters.postgres import jobs, translate
from payout_adapters.postgres import pool as pool_
from payout_core import models, ports
from payout_core.payouts import (
    Deadline,
    Payout,
    SettlementInput,
    UnknownPayout,
    accepted,
    plan,
)

__all__ = ["AsyncConnection", "AsyncPayouts", "async_payouts", "connect_async"]

AsyncConnection = psycopg.AsyncConnection[Any]
T = TypeVar("T")


async def run(cursor: psycopg.AsyncCursor[DictRow], steps: jobs.Steps[T]) -> T:
    """:func:`payout_adapters.postgres.jobs.run`, awaited: the same steps."""
    try:
        statement = next(steps)
        while True:
            await cursor.execute(statement.query, statement.params)
            answer = await (cursor.fetchone() if statement.one else cursor.fetchall())
            statement = steps.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


async def schedule_on(
    conn: AsyncConnection,
    job: models.PayoutJob,
    transfers: Sequence[models.PayoutTransfer],
) -> ports.ScheduleResult:
    """:func:`payout_adapters.postgres.jobs.schedule_on`, awaited: in a
    transaction of its own (a savepoint inside the caller's).

    Raises:
        DuplicatePayout: a winner is paid already in this contest (nothing written).
        StoreRefused: a constraint refused a value (nothing written).
        StoreUnavailable: the database failed (nothing written).
    """
    with translate.unavailable("schedule a payout"):
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            try:
                return await run(cursor, jobs.schedule_steps(job, transfers))
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                raise translate.refused(exc, action="schedule a payout") from exc


async def _read(conn: AsyncConnection, action: str, steps: jobs.Steps[T]) -> T:
    with translate.unavailable(action):
        async with conn.cursor(row_factory=dict_row) as cursor:
            return await run(cursor, steps)


async def find_job_on(conn: AsyncConnection, settlement_id: str) -> models.PayoutJob | None:
    """The job of ``settlement_id``, or ``None``."""
    return await _read(conn, "find a job", jobs.find_job_steps(settlement_id))


async def get_job_on(conn: AsyncConnection, job_id: str) -> models.PayoutJob | None:
    """The job ``job_id``, or ``None``."""
    return await _read(conn, "read a job", jobs.get_job_steps(job_id))


async def transfers_of_job_on(conn: AsyncConnection, job_id: str) -> list[models.PayoutTransfer]:
    """The transfers of job ``job_id``, by user id (byte order)."""
    return await _read(conn, "read a job's transfers", jobs.transfers_of_job_steps(job_id))


@attrs.frozen(kw_only=True)
class AsyncPayouts:
    """:class:`payout_core.Payouts` for asyncio: the same calls, awaited.
    Build it with :func:`connect_async` or :func:`async_payouts`."""

    pool: psycopg_pool.AsyncConnectionPool[Any]
    clock: ports.Clock = attrs.Factory(clock_.SystemClock)
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS
    poll_seconds: float = 0.5
    monotonic: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)

    async def schedule(self, settlement: SettlementInput) -> Payout:
        """:meth:`payout_core.Payouts.schedule`, awaited."""
        planned = plan(settlement, now=self.clock.now(), max_attempts=self.max_attempts)
        async with self.pool.connection() as conn:
            result = accepted(planned, await schedule_on(conn, planned.job, planned.transfers))
            return await self._payout(conn, result.job)

    async def enqueue(self, connection: AsyncConnection, settlement: SettlementInput) -> Payout:
        """:meth:`payout_core.Payouts.enqueue`, awaited: on the caller's
        ``connection``, inside its open transaction."""
        planned = plan(settlement, now=self.clock.now(), max_attempts=self.max_attempts)
        result = accepted(planned, await schedule_on(connection, planned.job, planned.transfers))
        return await self._payout(connection, result.job)

    async def get(self, job_id: str) -> Payout | None:
        """:meth:`payout_core.Payouts.get`, awaited."""
        async with self.pool.connection() as conn:
            job = await get_job_on(conn, job_id)
            return None if job is None else await self._payout(conn, job)

    async def get_by_settlement(self, settlement_id: str) -> Payout | None:
        """:meth:`payout_core.Payouts.get_by_settlement`, awaited."""
        async with self.pool.connection() as conn:
            job = await find_job_on(conn, settlement_id)
            return None if job is None else await self._payout(conn, job)

    async def status(self, job_id: str) -> models.JobStatus:
        """:meth:`payout_core.Payouts.status`, awaited.

        Raises:
            UnknownPayout: no job ``job_id``.
        """
        async with self.pool.connection() as conn:
            job = await get_job_on(conn, job_id)
        if job is None:
            raise UnknownPayout(job_id)
        return job.status

    async def wait(self, job_id: str, *, timeout: timedelta | float) -> Payout:
        """:meth:`payout_core.Payouts.wait`, awaited; sleeps with ``asyncio.sleep``.

        Raises:
            UnknownPayout: no job ``job_id``.
            PayoutTimeout: not finished within ``timeout`` (carries the payout as it stood).
        """
        deadline = Deadline.after(timeout, self.monotonic)
        while (done := deadline.finished(job_id, await self.get(job_id))) is None:
            await asyncio.sleep(deadline.pause(self.poll_seconds))
        return done

    async def _payout(self, conn: AsyncConnection, job: models.PayoutJob) -> Payout:
        return Payout(job=job, transfers=tuple(await transfers_of_job_on(conn, job.id)))


def async_payouts(
    pool: psycopg_pool.AsyncConnectionPool[Any],
    *,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    poll_seconds: float = 0.5,
) -> AsyncPayouts:
    """The async front door over ``pool``, which the caller owns (opens and closes)."""
    return AsyncPayouts(pool=pool, max_attempts=max_attempts, poll_seconds=poll_seconds)


@contextlib.asynccontextmanager
async def connect_async(
    url: str,
    *,
    max_size: int = 4,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    poll_seconds: float = 0.5,
) -> AsyncIterator[AsyncPayouts]:
    """The async front door over a pool of its own on ``url`` (at most
    ``max_size`` connections), closed when the block ends.

    Raises:
        StoreUnavailable: no connection could be made.
    """
    pool = psycopg_pool.AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs=pool_.connection_kwargs(
            url, statement_timeout=pool_.DEFAULT_STATEMENT_TIMEOUT_SECONDS
        ),
        check=psycopg_pool.AsyncConnectionPool.check_connection,
        open=False,
    )
    try:
        with translate.unavailable("connect to the database"):
            await pool.open(wait=True, timeout=10.0)
        yield async_payouts(pool, max_attempts=max_attempts, poll_seconds=poll_seconds)
    finally:
        await pool.close()
