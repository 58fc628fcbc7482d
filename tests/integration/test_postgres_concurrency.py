"""Many workers on one database: nothing is sent twice and nothing is lost.

The worker processes and the Stripe stand-in they share are in
``pg_workers.py`` (which says why the stand-in keeps its state in PostgreSQL).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_adapters.clock import SystemClock
from payout_core import models, ports, reconcile, validation
from payout_core import state_machine as sm
from payout_core.services import scheduling, tick
from tests.integration import pg_workers
from tests.kit.clocks import ShiftedClock
from tests.kit.times import T0
from tests.kit.waiting import wait_for

Conn = psycopg.Connection[tuple[Any, ...]]
S = models.TransferStatus


def settlement(settlement_id: str, contest_id: str, users: list[str]) -> models.Settlement:
    return validation.parse_settlement(
        {
            "settlement_id": settlement_id,
            "contest_id": contest_id,
            "currency": "usd",
            "winners": [
                {"user_id": u, "amount_cents": 100 + n} for n, u in enumerate(users, start=1)
            ],
        }
    )


def connect_accounts(admin: Conn, accounts: dict[str, str]) -> None:
    with admin.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            list(accounts.items()),
        )


def check_every_invariant(
    store: postgres.PostgresStore, admin: Conn
) -> list[models.PayoutTransfer]:
    """DESIGN 3's invariants over the whole database, and Stripe's side of them."""
    jobs = store.list_jobs(limit=1_000)
    transfers: list[models.PayoutTransfer] = []
    for job in jobs:
        of_job = store.transfers_of(job.id)
        assert reconcile.check_job(job, of_job, store.ledger(job_id=job.id)) == []
        assert job.status is models.JobStatus.COMPLETE
        transfers.extend(of_job)
    assert all(t.status.is_terminal for t in transfers)

    created = admin.execute(
        "SELECT payout_transfer_id, id, amount_cents, destination FROM fake_stripe_transfers"
    ).fetchall()
    per_payout = Counter(row[0] for row in created)
    assert [pid for pid, n in per_payout.items() if n > 1] == []  # never paid twice
    completed = {t.id: t for t in transfers if t.status is S.COMPLETED}
    assert {row[0] for row in created} == set(completed)  # nothing paid that is not booked
    for payout_id, stripe_id, amount, destination in created:
        t = completed[payout_id]
        assert (t.stripe_transfer_id, t.amount_cents, t.destination_account) == (
            stripe_id,
            amount,
            destination,
        )
    return transfers


# -- scheduling from threads --------------------------------------------------------


def test_eight_threads_scheduling_one_settlement_make_one_job(
    pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    store = postgres.PostgresStore(pool)
    paid = settlement("s-1", "c-1", [f"u-{n:02d}" for n in range(50)])
    barrier = threading.Barrier(8)

    def schedule(_: int) -> ports.ScheduleResult:
        barrier.wait()
        return scheduling.schedule_payout_for_settlement(store=store, settlement=paid, now=T0)

    with ThreadPoolExecutor(max_workers=8) as threads:
        results = list(threads.map(schedule, range(8)))

    assert len({r.job.id for r in results}) == 1
    assert sorted(r.created for r in results) == [False] * 7 + [True]
    counts = admin.execute(
        "SELECT (SELECT count(*) FROM payout_jobs), (SELECT count(*) FROM payout_transfers)"
    ).fetchone()
    assert counts == (1, 50)


# -- worker processes ------------------------------------------------------------------

WORKERS = 4
THREADS = 4
JOBS = 8
WINNERS_PER_JOB = 250  # 2,000 transfers
FAULTS = pg_workers.FaultRates(rate_limited=0.05, lost_response=0.05, server_error=0.03)


@pytest.mark.slow
def test_four_worker_processes_pay_two_thousand_transfers_exactly_once(
    database_url: str, pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    pg_workers.install_fake_stripe(database_url)
    store = postgres.PostgresStore(pool)
    accounts: dict[str, str] = {}
    expected_failure: dict[str, str] = {}
    for j in range(JOBS):
        users = [f"u{j}-{n:04d}" for n in range(WINNERS_PER_JOB)]
        for n, user in enumerate(users):
            if n % 50 == 7:
                expected_failure[user] = sm.ACCOUNT_NOT_CONNECTED
            elif n % 50 == 13:
                accounts[user] = f"{pg_workers.DECLINED_PREFIX}_{j}x{n}"
                expected_failure[user] = "account_invalid"
            else:
                accounts[user] = f"acct_{j}x{n}"
        scheduling.schedule_payout_for_settlement(
            store=store, settlement=settlement(f"s-{j}", f"c-{j}", users), now=T0
        )
    connect_accounts(admin, accounts)

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS + 1)  # every worker ready before any begins
    results = context.Queue()
    processes = [
        context.Process(
            target=pg_workers.run_worker,
            args=(
                pg_workers.WorkerPlan(
                    url=database_url,
                    worker=n,
                    concurrency=THREADS,
                    faults=FAULTS,
                    deadline_seconds=90.0,
                ),
                start,
                results,
            ),
        )
        for n in range(WORKERS)
    ]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    reports: list[pg_workers.WorkerReport] = [results.get(timeout=150) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert all(r.finished and not r.errors for r in reports), reports
    assert all(r.claimed > 0 for r in reports)  # the work really was shared
    assert sum(r.stale for r in reports) == 0  # no lease expired, no claim was taken twice

    transfers = check_every_invariant(store, admin)
    assert len(transfers) == JOBS * WINNERS_PER_JOB
    for t in transfers:
        if t.user_id in expected_failure:
            assert (t.status, t.failure_code) == (S.FAILED_TERMINAL, expected_failure[t.user_id])
        else:
            # Five failed attempts in a row are possible with these fault rates, only unlikely.
            assert t.status is S.COMPLETED or t.failure_code == sm.MAX_ATTEMPTS_EXCEEDED
    # A key with one send intent was sent at most once: no two workers ever held it together.
    sends = Counter(
        str(key) for (key,) in admin.execute("SELECT idempotency_key FROM fake_stripe_calls")
    )
    once = [t for t in transfers if t.key_sends == 1 and t.key_generation == 0]
    assert all(sends[f"payout:{t.id}"] <= 1 for t in once)


# -- a worker killed while it holds claims ------------------------------------------


@pytest.mark.slow
def test_a_killed_workers_claims_are_taken_over_with_nothing_lost_or_paid_twice(
    database_url: str, pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    pg_workers.install_fake_stripe(database_url)
    store = postgres.PostgresStore(pool)
    users = [f"u-{n:02d}" for n in range(20)]
    job = scheduling.schedule_payout_for_settlement(
        store=store, settlement=settlement("s-1", "c-1", users), now=T0
    ).job
    connect_accounts(admin, {u: f"acct_{u.replace('-', '')}" for u in users})

    def count(query: str) -> int:
        row = admin.execute(query).fetchone()
        return int(row[0]) if row else 0

    context = multiprocessing.get_context("spawn")
    doomed = context.Process(target=pg_workers.hold_claims, args=(database_url, 20, 4))
    doomed.start()
    try:
        # It claimed 4, one per thread (claims track sending); each created a
        # transfer at "Stripe" and hangs before reading the answer. The other 16
        # were never claimed.
        wait_for(  # another process's progress: no clock to inject
            "the doomed worker to hold its claims",
            lambda: (
                count("SELECT count(*) FROM payout_transfers WHERE status = 'processing'") == 4
                and count("SELECT count(*) FROM fake_stripe_calls") == 4
            ),
        )
    finally:
        os.kill(doomed.pid or 0, signal.SIGKILL)
        doomed.join(timeout=30)
    assert doomed.exitcode == -signal.SIGKILL
    reached_stripe = {
        str(pid) for (pid,) in admin.execute("SELECT payout_transfer_id FROM fake_stripe_transfers")
    }

    # Another worker, an hour later by the database's clock, which decides leases:
    # every lease expired long ago. (Its own clock is an hour ahead too; it decides nothing.)
    admin.execute(
        "UPDATE payout_transfers SET lease_expires_at = lease_expires_at - interval '1 hour', "
        "last_send_at = last_send_at - interval '1 hour', "
        "key_first_sent_at = key_first_sent_at - interval '1 hour'"
    )
    report = tick.run_tick(
        store=store,
        directory=postgres.PostgresAccountDirectory(pool),
        gateway=pg_workers.SharedFakeStripe(pool),
        clock=ShiftedClock(SystemClock(), timedelta(hours=1)),
        settings=pg_workers.fast_settings(
            concurrency=4, batch_size=50, lease=timedelta(minutes=10)
        ),
    )

    assert (report.claimed, report.completed, report.error) == (20, 20, None)
    transfers = check_every_invariant(store, admin)
    assert {t.status for t in transfers} == {S.COMPLETED}
    # Claims spend nothing: each transfer spent one attempt, at its one intent; the 4
    # that had reached Stripe were resent under that attempt, uncertain, spending nothing.
    assert all(t.attempt_count == 1 and t.outcome_uncertain is False for t in transfers)
    assert sum(t.key_sends == 2 for t in transfers) == 4
    assert len(reached_stripe) == 4
    replays = admin.execute(
        "SELECT idempotency_key, answer FROM fake_stripe_calls ORDER BY id"
    ).fetchall()
    # The 4 that had reached Stripe were answered by replay under the same key.
    for payout_id in reached_stripe:
        assert [a for k, a in replays if k == f"payout:{payout_id}"] == ["Succeeded"] * 2
    finished = store.get_job(job.id)
    assert finished is not None
    assert finished.status is models.JobStatus.COMPLETE
