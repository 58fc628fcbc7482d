"""Scheduling and job look-ups on a connection the caller holds (``postgres.jobs``).

A service schedules a payout in its own transaction: the job is committed or
rolled back with the service's own writes, and a refusal leaves that
transaction usable (the job's writes are a savepoint of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from payout_adapters.postgres import jobs
from payout_core import errors, ports
from tests.kit import builders as b
from tests.kit.times import T0

Conn = psycopg.Connection[Any]


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    # Not autocommit: the first statement opens the caller's transaction, as a service's does.
    with psycopg.connect(database_url) as connection:
        connection.execute("CREATE TABLE contests (id text PRIMARY KEY, settled boolean)")
        connection.commit()
        yield connection


def scheduled(conn: Conn, *winners: str, settlement_id: str = "s-1") -> ports.ScheduleResult:
    stl = b.settlement(*winners, settlement_id=settlement_id)
    job = b.make_job(stl, now=T0)
    return jobs.schedule_on(conn, job, b.make_transfers(job, stl, now=T0))


def test_a_job_scheduled_in_the_callers_transaction_commits_with_it(conn: Conn) -> None:
    conn.execute("INSERT INTO contests VALUES ('c-1', true)")
    result = scheduled(conn, "u-1", "u-2")
    # Seen in the transaction before it commits.
    assert jobs.find_job_on(conn, "s-1") == result.job
    assert jobs.get_job_on(conn, result.job.id) == result.job
    assert [t.user_id for t in jobs.transfers_of_job_on(conn, result.job.id)] == ["u-1", "u-2"]
    conn.commit()

    assert result.created
    assert jobs.find_job_on(conn, "s-1") == result.job


def test_a_job_scheduled_in_the_callers_transaction_rolls_back_with_it(conn: Conn) -> None:
    conn.execute("INSERT INTO contests VALUES ('c-1', true)")
    result = scheduled(conn, "u-1")
    conn.rollback()

    assert jobs.find_job_on(conn, "s-1") is None
    assert jobs.transfers_of_job_on(conn, result.job.id) == []


def test_a_refusal_leaves_the_callers_transaction_usable_and_its_writes_intact(
    conn: Conn,
) -> None:
    scheduled(conn, "u-1")
    conn.commit()

    conn.execute("INSERT INTO contests VALUES ('c-1', true)")
    with pytest.raises(errors.DuplicatePayout):
        scheduled(conn, "u-1", "u-2", settlement_id="s-2")  # u-1 is paid by s-1 already
    conn.execute("INSERT INTO contests VALUES ('c-2', true)")  # the transaction goes on
    conn.commit()

    assert conn.execute("SELECT id FROM contests ORDER BY id").fetchall() == [("c-1",), ("c-2",)]
    assert jobs.find_job_on(conn, "s-2") is None


def test_scheduling_a_known_settlement_again_returns_its_job(conn: Conn) -> None:
    first = scheduled(conn, "u-1")
    conn.commit()

    again = scheduled(conn, "u-1")

    assert (again.job, again.created) == (first.job, False)


def test_ids_that_are_not_uuids_find_nothing_on_a_connection(conn: Conn) -> None:
    assert jobs.get_job_on(conn, "job-1") is None
    assert jobs.transfers_of_job_on(conn, "job-1") == []
