"""A settlement's job on a connection the caller holds: schedule it, read it back.

:class:`~payout_adapters.postgres.PostgresStore` runs these on a connection
of its pool. A library that schedules payouts in its own transaction (the
settlement's row and its payout committed together) passes its connection::

    with conn.transaction():
        conn.execute(...)                     # the caller's own writes
        result = jobs.schedule_on(conn, job, transfers)

Each function works on a connection inside the caller's transaction or on
one outside any (autocommit or idle). :func:`schedule_on` writes in a
transaction of its own, ``conn.transaction()``, which inside the caller's is
a savepoint: when it raises, what it wrote is rolled back and the caller's
transaction is still usable.

The parameters and the reading of rows are plain functions (:func:`schedule_params`,
:func:`not_inserted`, :mod:`~payout_adapters.postgres.rows`) and the statements
are named text (:data:`~payout_adapters.postgres.queries.QUERIES`): an
asynchronous twin runs the same statements through ``psycopg.AsyncConnection``.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from payout_adapters.postgres import rows, translate
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, models, ports

__all__ = [
    "find_job_on",
    "get_job_on",
    "not_inserted",
    "schedule_on",
    "schedule_params",
    "transfers_of_job_on",
]


def schedule_params(
    job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """What ``insert_job`` and ``insert_transfers`` take.

    The transfers go in user order, so that two settlements of one contest
    that share winners lock them in the same order and wait for each other
    instead of deadlocking.
    """
    ordered = sorted(transfers, key=operator.attrgetter("user_id"))
    return rows.JOBS.params(job), rows.TRANSFERS.array_params(ordered)


def not_inserted(
    transfers: Sequence[models.PayoutTransfer], inserted_user_ids: Iterable[str]
) -> list[str]:
    """The winners ``insert_transfers`` skipped (it returns the user ids it
    inserted): a live or completed transfer of the contest pays them already,
    or they are twice in this job. The partial unique index decides; it is the
    last line behind the core's validation."""
    left = collections.Counter(inserted_user_ids)
    skipped = []
    for transfer in transfers:
        if left[transfer.user_id] > 0:
            left[transfer.user_id] -= 1
        else:
            skipped.append(transfer.user_id)
    return skipped


def schedule_on(
    conn: psycopg.Connection[Any],
    job: models.PayoutJob,
    transfers: Sequence[models.PayoutTransfer],
) -> ports.ScheduleResult:
    """:meth:`payout_core.ports.PayoutStore.schedule` on ``conn``, in a
    transaction of its own (a savepoint inside the caller's).

    The job and its transfers are written as the core built them: their
    totals were derived from the validated settlement, and are not checked
    again here (the schema's constraints are the last line).

    Raises:
        DuplicatePayout: a winner is paid already in this contest (nothing written).
        StoreRefused: a constraint refused a value (nothing written).
        StoreUnavailable: the database failed (nothing written).
    """
    job_params, transfer_params = schedule_params(job, transfers)
    with (
        translate.unavailable("schedule a payout"),
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        try:
            if cursor.execute(QUERIES["insert_job"], job_params).fetchone() is None:
                # Scheduled before, or by a concurrent caller that committed
                # first (the insert waited for it): that job, untouched.
                found = cursor.execute(
                    QUERIES["find_job_by_settlement"], {"settlement_id": job.settlement_id}
                ).fetchone()
                if found is None:  # pragma: no cover - the conflicting row is committed
                    raise errors.StoreUnavailable(
                        f"settlement {job.settlement_id!r} conflicted with a job "
                        "that cannot be read; try again"
                    )
                return ports.ScheduleResult(job=rows.JOBS.from_row(found), created=False)
            inserted = [
                r["user_id"] for r in cursor.execute(QUERIES["insert_transfers"], transfer_params)
            ]
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            # Validated before, so not the settlement's fault: name the constraint.
            raise translate.refused(exc, action="schedule a payout") from exc
        already_paid = not_inserted(transfers, inserted)
        if already_paid:
            # Leaving the block by raising rolls the job back: nothing is written.
            raise errors.DuplicatePayout(job.contest_id, already_paid)
    return ports.ScheduleResult(job=job, created=True)


def find_job_on(conn: psycopg.Connection[Any], settlement_id: str) -> models.PayoutJob | None:
    """The job of ``settlement_id``, or ``None``."""
    with translate.unavailable("find a job"), conn.cursor(row_factory=dict_row) as cursor:
        found = cursor.execute(
            QUERIES["find_job_by_settlement"], {"settlement_id": settlement_id}
        ).fetchone()
    return None if found is None else rows.JOBS.from_row(found)


def get_job_on(conn: psycopg.Connection[Any], job_id: str) -> models.PayoutJob | None:
    """The job ``job_id``, or ``None`` (also when it is no UUID, as no job's id is)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return None
    with translate.unavailable("read a job"), conn.cursor(row_factory=dict_row) as cursor:
        found = cursor.execute(QUERIES["get_job"], {"id": key}).fetchone()
    return None if found is None else rows.JOBS.from_row(found)


def transfers_of_job_on(conn: psycopg.Connection[Any], job_id: str) -> list[models.PayoutTransfer]:
    """The transfers of job ``job_id``, by user id (byte order)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return []
    with (
        translate.unavailable("read a job's transfers"),
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        found = cursor.execute(QUERIES["transfers_of_job"], {"job_id": key}).fetchall()
    return [rows.TRANSFERS.from_row(row) for row in found]
