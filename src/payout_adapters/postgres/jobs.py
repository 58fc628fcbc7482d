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

Each unit of work is written once, as *steps*: a generator that yields the
:class:`Statement` to run next, is sent its answer, and returns the result
(:func:`schedule_steps`, :func:`find_job_steps`, ...). :func:`run` drives
steps on a ``psycopg.Connection``; :mod:`~payout_adapters.postgres.aio` drives
the same steps on an ``AsyncConnection``. The SQL, the parameters, the rows'
reading and the decisions between statements are shared; only the I/O is not.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Generator, Iterable, Sequence
from typing import Any, LiteralString, TypeVar

import attrs
import psycopg
from psycopg.rows import DictRow, dict_row

from payout_adapters.postgres import rows, translate
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, models, ports

__all__ = [
    "Statement",
    "Steps",
    "find_job_on",
    "find_job_steps",
    "get_job_on",
    "get_job_steps",
    "not_inserted",
    "run",
    "schedule_on",
    "schedule_params",
    "schedule_steps",
    "transfers_of_job_on",
    "transfers_of_job_steps",
]

T = TypeVar("T")

# What a statement's answer is sent back as: its one row (or None), or all its rows.
Answer = DictRow | None | list[DictRow]


@attrs.frozen
class Statement:
    """One statement to run: its text, its parameters, and whether its one
    row (``one``) or all its rows are wanted back."""

    query: LiteralString
    params: dict[str, Any]
    one: bool = True


# A unit of work: yields statements, is sent their answers, returns its result.
Steps = Generator[Statement, Answer, T]


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


def _one(answer: Answer) -> DictRow | None:
    assert not isinstance(answer, list), "a statement of one row was answered with many"
    return answer


def _all(answer: Answer) -> list[DictRow]:
    assert isinstance(answer, list), "a statement of many rows was answered with one"
    return answer


def schedule_steps(
    job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
) -> Steps[ports.ScheduleResult]:
    """:meth:`payout_core.ports.PayoutStore.schedule` as steps, to be run in a
    transaction (or savepoint) of their own: raising rolls back what they wrote.

    The job and its transfers are written as the core built them: their
    totals were derived from the validated settlement, and are not checked
    again here (the schema's constraints are the last line).

    Raises:
        DuplicatePayout: a winner is paid already in this contest.
        StoreUnavailable: the settlement's job conflicted but cannot be read.
    """
    job_params, transfer_params = schedule_params(job, transfers)
    if _one((yield Statement(QUERIES["insert_job"], job_params))) is None:
        # Scheduled before, or by a concurrent caller that committed first
        # (the insert waited for it): that job, untouched.
        found = yield from find_job_steps(job.settlement_id)
        if found is None:  # pragma: no cover - the conflicting row is committed
            raise errors.StoreUnavailable(
                f"settlement {job.settlement_id!r} conflicted with a job "
                "that cannot be read; try again"
            )
        return ports.ScheduleResult(job=found, created=False)
    inserted = _all((yield Statement(QUERIES["insert_transfers"], transfer_params, one=False)))
    already_paid = not_inserted(transfers, [r["user_id"] for r in inserted])
    if already_paid:
        raise errors.DuplicatePayout(job.contest_id, already_paid)
    return ports.ScheduleResult(job=job, created=True)


def find_job_steps(settlement_id: str) -> Steps[models.PayoutJob | None]:
    """The job of ``settlement_id``, or ``None``."""
    found = _one(
        (yield Statement(QUERIES["find_job_by_settlement"], {"settlement_id": settlement_id}))
    )
    return None if found is None else rows.JOBS.from_row(found)


def get_job_steps(job_id: str) -> Steps[models.PayoutJob | None]:
    """The job ``job_id``, or ``None`` (also when it is no UUID, as no job's id is)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return None
    found = _one((yield Statement(QUERIES["get_job"], {"id": key})))
    return None if found is None else rows.JOBS.from_row(found)


def transfers_of_job_steps(job_id: str) -> Steps[list[models.PayoutTransfer]]:
    """The transfers of job ``job_id``, by user id (byte order)."""
    key = rows.as_uuid(job_id)
    if key is None:
        return []
    found = _all((yield Statement(QUERIES["transfers_of_job"], {"job_id": key}, one=False)))
    return [rows.TRANSFERS.from_row(row) for row in found]


def run(cursor: psycopg.Cursor[DictRow], steps: Steps[T]) -> T:
    """Drive ``steps`` on ``cursor``: each statement run, its answer sent back."""
    try:
        statement = next(steps)
        while True:
            cursor.execute(statement.query, statement.params)
            statement = steps.send(cursor.fetchone() if statement.one else cursor.fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


def schedule_on(
    conn: psycopg.Connection[Any],
    job: models.PayoutJob,
    transfers: Sequence[models.PayoutTransfer],
) -> ports.ScheduleResult:
    """:meth:`payout_core.ports.PayoutStore.schedule` on ``conn``, in a
    transaction of its own (a savepoint inside the caller's).

    Raises:
        DuplicatePayout: a winner is paid already in this contest (nothing written).
        StoreRefused: a constraint refused a value (nothing written).
        StoreUnavailable: the database failed (nothing written).
    """
    with (
        translate.unavailable("schedule a payout"),
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        try:
            return run(cursor, schedule_steps(job, transfers))
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            # Validated before, so not the settlement's fault: name the constraint.
            raise translate.refused(exc, action="schedule a payout") from exc


def _read(conn: psycopg.Connection[Any], action: str, steps: Steps[T]) -> T:
    with translate.unavailable(action), conn.cursor(row_factory=dict_row) as cursor:
        return run(cursor, steps)


def find_job_on(conn: psycopg.Connection[Any], settlement_id: str) -> models.PayoutJob | None:
    """The job of ``settlement_id``, or ``None``."""
    return _read(conn, "find a job", find_job_steps(settlement_id))


def get_job_on(conn: psycopg.Connection[Any], job_id: str) -> models.PayoutJob | None:
    """The job ``job_id``, or ``None``."""
    return _read(conn, "read a job", get_job_steps(job_id))


def transfers_of_job_on(conn: psycopg.Connection[Any], job_id: str) -> list[models.PayoutTransfer]:
    """The transfers of job ``job_id``, by user id (byte order)."""
    return _read(conn, "read a job's transfers", transfers_of_job_steps(job_id))
