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
statements are the same named queries (:data:`~payout_adapters.postgres.queries.QUERIES`)
with the same parameters and row mapping (:mod:`~payout_adapters.postgres.jobs`,
:mod:`~payout_adapters.postgres.rows`). Only the waiting on I/O is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from payout_adapters import clock as clock_
from payout_adapters.postgres import jobs, rows, translate
from payout_adapters.postgres import pool as pool_
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, models, ports
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
    job_params, transfer_params = jobs.schedule_params(job, transfers)
    with translate.unavailable("schedule a payout"):
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            try:
                await cursor.execute(QUERIES["insert_job"], job_params)
                if await cursor.fetchone() is None:
                    # Scheduled before, or by a concurrent caller that committed first.
                    existing = await _find_job(cursor, job.settlement_id)
                    if existing is None:  # pragma: no cover - the conflicting row is committed
                        raise errors.StoreUnavailable(
                            f"settlement {job.settlement_id!r} conflicted with a job "
                            "that cannot be read; try again"
                        )
                    return ports.ScheduleResult(job=existing, created=False)
                await cursor.execute(QUERIES["insert_transfers"], transfer_params)
                inserted = [r["user_id"] for r in await cursor.fetchall()]
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                raise translate.refused(exc, action="schedule a payout") from exc
            already_paid = jobs.not_inserted(transfers, inserted)
            if already_paid:
                # Leaving the block by raising rolls the job back: nothing is written.
                raise errors.DuplicatePayout(job.contest_id, already_paid)
    return ports.ScheduleResult(job=job, created=True)


async def _find_job(
    cursor: psycopg.AsyncCursor[Any], settlement_id: str
) -> models.PayoutJob | None:
    await cursor.execute(QUERIES["find_job_by_settlement"], {"settlement_id": settlement_id})
    found = await cursor.fetchone()
    return None if found is None else rows.JOBS.from_row(found)


async def find_job_on(conn: AsyncConnection, settlement_id: str) -> models.PayoutJob | None:
    """The job of ``settlement_id``, or ``None``."""
    with translate.unavailable("find a job"):
        async with conn.cursor(row_factory=dict_row) as cursor:
            return await _find_job(cursor, settlement_id)


async def get_job_on(conn: AsyncConnection, job_id: str) -> models.PayoutJob | None:
    """The job ``job_id``, or ``None`` (also when it is no UUID, as no job's id is)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return None
    with translate.unavailable("read a job"):
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERIES["get_job"], {"id": key})
            found = await cursor.fetchone()
    return None if found is None else rows.JOBS.from_row(found)


async def transfers_of_job_on(conn: AsyncConnection, job_id: str) -> list[models.PayoutTransfer]:
    """The transfers of job ``job_id``, by user id (byte order)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return []
    with translate.unavailable("read a job's transfers"):
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERIES["transfers_of_job"], {"job_id": key})
            found = await cursor.fetchall()
    return [rows.TRANSFERS.from_row(row) for row in found]


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
