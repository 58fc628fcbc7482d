r"""Two baselines for payout-core's throughput, run on the same PostgreSQL (issue 9).

    python benchmarks/bench.py run --gateway simulated --transfers 5000 --compare

:func:`minimal_loop`: the ceiling. How fast a hand-written psycopg loop pays transfers
on payout-core's own schema, doing only the SQL that a correct payout needs and
calling no gateway (a zero-latency Stripe that answers ``tr_<n>``). The target is
payout-core at 0.7 of it or better.

:func:`procrastinate_noop`: the alternative. procrastinate, the PostgreSQL job queue
that a team would use instead of a purpose-built engine, running jobs that do nothing
at the same concurrency. The target is payout-core at twice its jobs per second or
better.

``benchmarks/bench.py run --compare`` runs both on scratch databases of the server it
measures payout-core on, at the same size and concurrency, and prints payout-core's
figure as a ratio of each. Each function checks its own result and raises if any item
was not done exactly once.

**The minimal loop.** ``concurrency`` threads, each with its own connection in
autocommit mode, repeat until a claim comes back empty. Its SQL is the shape of
``claim_due``, ``write_intent`` and ``record_outcome_with_ledger_entry`` (as three
statements) in ``src/payout_adapters/postgres/sql/queries.sql``, minus what only
payout-core's extra guarantees need. It satisfies every CHECK constraint and trigger
of the schema. For each claimed batch:

1. The claim, one statement for the batch: an ``UPDATE`` of up to ``batch`` due
   transfers chosen by ``claimable_at <= now()`` in index order ``FOR UPDATE SKIP
   LOCKED``. It sets ``status = 'processing'``, a fresh ``claim_token``,
   ``lease_expires_at`` (the schema's claim check wants both) and ``updated_at``, and
   returns what the rest needs.

Then, for each transfer of the batch:

2. The write-ahead send intent: one autocommit ``UPDATE`` by primary key, guarded by
   the claim token. It sets ``destination_account = 'acct_<user_id>'``,
   ``attempt_count + 1``, ``key_first_sent_at``, ``last_send_at``, ``key_sends = 1``,
   ``outcome_uncertain = true`` and ``updated_at``. It is durable before the (here
   instant) send, as the exactly-once rules need.
3. The outcome, one transaction of three statements (``BEGIN``, 3, ``COMMIT``):
   ``UPDATE`` the transfer by primary key, guarded by the claim token, to
   ``completed`` with ``stripe_transfer_id = 'tr_<n>'``, ``outcome_uncertain = false``,
   no claim or lease; ``INSERT`` its ``payout_completed`` debit into ``payout_ledger``
   (key ``ledger:payout:<id>:<attempt>``); ``UPDATE`` its job's ``completed_count`` by
   one, setting ``complete`` and ``completed_at`` once every transfer is terminal.

Per transfer that is 4 statements and 2 commits (6 round trips with ``BEGIN`` and
``COMMIT``), plus a share of one claim per batch. What it leaves out, all of it payout-core's:

- the escalation of claims abandoned too often (``abandoned_too_often``);
- moving claimed jobs to ``processing`` at claim time (``START_JOBS``); here the first
  outcome does it;
- the intent's guards on attempt count, lease margin, pinned destination, key trust
  window and attempts left; the outcome's guard on attempt count;
- ``RETURNING`` whole rows and turning them into models;
- the run records (``payout_scheduler_runs``), the state machine, retries and look-ups.

Why it is fair: it is what anyone writing this loop by hand on this schema must
write. The claim, the durable intent before the send and the outcome with its ledger
row in one transaction are the least that pays exactly once. The job's counters are
what the schema keeps. Like payout-core it holds no transaction open across a send,
uses plain transactions (no pipeline mode) and reads the destination from memory, as
``benchmarks/throughput.py``'s in-memory account directory does. Its one freedom is
the batch. Each thread claims ``batch`` transfers for itself, 100 by default, as
payout-core's ``PAYOUT_BATCH_SIZE``. Measured here, 100 beats 10 and 1. A claim of 100
in due order is one job's transfers when jobs have 100 winners, so each thread
advances its own job's row. With small batches, every thread's outcome queues on the
same job's row lock until that outcome commits. payout-core's tick claims 100 and
spreads them over its threads, so its threads share one job at a time. That
contention is payout-core's to remove, and the ceiling does not copy it. The claim
itself costs a hundredth of a statement per transfer.

**procrastinate.** ``procrastinate_noop`` applies procrastinate's schema to an empty
database, defers ``jobs`` jobs of an ``async`` task that does nothing (in batches,
``Task.batch_defer_async``; not timed), then times one worker with ``concurrency``
concurrent jobs and ``wait=False`` from start until the queue is drained and the
worker has stopped. Why it is fair: it is procrastinate as a team would run it, with
its defaults: ``listen_notify`` on (it costs nothing here, since every job is queued
before the worker starts), jobs kept after success (``delete_jobs="never"``),
heartbeats and abort polling on. Its connection pool is sized so that no job waits
for a connection (``concurrency`` + 3: the fetch loop and the finishing jobs, the
listener, the heartbeat and abort polls), as payout-core's pool is in
``throughput.py``. The job does nothing, so every second measured is procrastinate's
own. A real payout job would also do the SQL of the minimal loop, so this figure is an
upper bound for a payout engine built on procrastinate.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Final

import attrs
import procrastinate
import psycopg
from psycopg.rows import DictRow, dict_row

from payout_cli import bootstrap
from payout_cli import settings as settings_
from payout_core import models
from payout_core.services import scheduling

__all__ = ["Figure", "minimal_loop", "procrastinate_noop"]

# Long enough that no claim expires during a run, as in throughput.py.
LEASE: Final = timedelta(minutes=10)


@attrs.frozen
class Figure:
    """``items`` done in ``seconds`` of wall time."""

    items: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds


# -- the minimal psycopg loop ---------------------------------------------------

# claim_due without the take-over count, the clock CTE or whole-row RETURNING.
# The partial index payout_transfers_claimable_idx, range-scanned up to now().
MINIMAL_CLAIM: Final = """
UPDATE payout_transfers AS t
SET status = 'processing',
    claim_token = %(token)s,
    lease_expires_at = now() + %(lease)s,
    updated_at = now()
FROM (
    SELECT id FROM payout_transfers
    WHERE claimable_at <= now()
    ORDER BY claimable_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS due
WHERE t.id = due.id
RETURNING t.id, t.job_id, t.contest_id, t.user_id, t.amount_cents, t.currency, t.attempt_count
"""

# write_intent for a transfer that is not uncertain: a new attempt, spent here.
MINIMAL_INTENT: Final = """
UPDATE payout_transfers
SET destination_account = %(destination)s,
    attempt_count = attempt_count + 1,
    key_first_sent_at = now(),
    last_send_at = now(),
    key_sends = 1,
    outcome_uncertain = true,
    updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s
"""

# record_outcome for a completion: only the columns that change.
MINIMAL_COMPLETE: Final = """
UPDATE payout_transfers
SET status = 'completed',
    stripe_transfer_id = %(stripe_transfer_id)s,
    outcome_uncertain = false,
    claim_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s
"""

MINIMAL_LEDGER: Final = """
INSERT INTO payout_ledger (
    idempotency_key, entry_type, direction, amount_cents, currency, transfer_id,
    job_id, contest_id, user_id, attempt_number, stripe_transfer_id)
VALUES (%(key)s, 'payout_completed', 'debit', %(amount_cents)s, %(currency)s, %(id)s,
        %(job_id)s, %(contest_id)s, %(user_id)s, %(attempt)s, %(stripe_transfer_id)s)
"""

# ADVANCE_JOB for one completion.
MINIMAL_ADVANCE: Final = """
UPDATE payout_jobs
SET completed_count = completed_count + 1,
    status = CASE WHEN completed_count + 1 + failed_count = total_transfers
                  THEN 'complete' ELSE 'processing' END,
    completed_at = CASE WHEN completed_count + 1 + failed_count = total_transfers
                        THEN now() END,
    updated_at = now()
WHERE id = %(job_id)s
"""

# Every transfer completed with exactly one ledger row, every job complete.
MINIMAL_CHECK: Final = """
SELECT
    (SELECT count(*) FROM payout_transfers) AS transfers,
    (SELECT count(*) FROM payout_transfers WHERE status = 'completed') AS completed,
    (SELECT count(*) FROM payout_ledger) AS ledger_rows,
    (SELECT count(*) FROM payout_transfers AS t
     WHERE (SELECT count(*) FROM payout_ledger AS l WHERE l.transfer_id = t.id) <> 1)
        AS without_one_row,
    (SELECT count(*) FROM payout_jobs
     WHERE status <> 'complete' OR completed_count <> total_transfers) AS open_jobs
"""


def minimal_loop(
    url: str, *, transfers: int, concurrency: int, job_size: int, batch: int = 100
) -> Figure:
    """Pay ``transfers`` transfers with the minimal loop; time only the paying.

    ``url`` is an empty database with payout-core's schema (``bootstrap.migrate``
    done). The transfers are scheduled by payout-core itself, in jobs of
    ``job_size`` winners, before the clock starts; then ``concurrency`` threads
    claim ``batch`` at a time until none is left.

    Raises:
        ValueError: a count below 1.
        RuntimeError: a transfer is not completed with exactly one ledger row, or a
            job is not complete, or a claim lost its transfer.
    """
    if min(transfers, concurrency, job_size, batch) < 1:
        raise ValueError("transfers, concurrency, job_size and batch must be >= 1")
    _schedule(url, transfers=transfers, job_size=job_size)

    stripe_ids = itertools.count(1)  # next() on a count is atomic in CPython
    connections: list[psycopg.Connection[tuple[object, ...]]] = []
    try:
        # Opened before the clock starts, as payout-core's pool is.
        connections.extend(psycopg.connect(url, autocommit=True) for _ in range(concurrency))
        start = threading.Barrier(concurrency + 1)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [
                pool.submit(_pay_until_empty, conn, batch, stripe_ids, start)
                for conn in connections
            ]
            start.wait()
            started = time.perf_counter()
            paid = sum(future.result() for future in futures)
            seconds = time.perf_counter() - started
    finally:
        for conn in connections:
            conn.close()

    _check_minimal(url, transfers=transfers, paid=paid)
    return Figure(items=paid, seconds=seconds)


def _schedule(url: str, *, transfers: int, job_size: int) -> None:
    """payout-core's own scheduling, as ``benchmarks/throughput.py`` does it."""
    system = bootstrap.clock()
    with bootstrap.open_database(settings_.Settings(database_url=url), max_size=2) as db:
        store = db.store
        for s in range(0, transfers, job_size):
            winners = tuple(
                models.Winner(user_id=f"u{n}", amount_cents=100 + n)
                for n in range(s, min(s + job_size, transfers))
            )
            scheduling.schedule_payout_for_settlement(
                store=store,
                settlement=models.Settlement(
                    settlement_id=f"bench-{s}", contest_id="bench", currency="usd", winners=winners
                ),
                now=system.now(),
            )


def _pay_until_empty(
    conn: psycopg.Connection[tuple[object, ...]],
    batch: int,
    stripe_ids: Iterator[int],
    start: threading.Barrier,
) -> int:
    """One thread of the minimal loop: claim, then intent and outcome for each."""
    paid = 0
    start.wait()
    with conn.cursor(row_factory=dict_row) as cur:
        while True:
            token = uuid.uuid4().hex
            claimed = cur.execute(
                MINIMAL_CLAIM, {"token": token, "lease": LEASE, "limit": batch}
            ).fetchall()
            if not claimed:
                return paid
            for row in claimed:
                _pay_one(conn, cur, row, token, f"tr_{next(stripe_ids)}")
                paid += 1


def _pay_one(
    conn: psycopg.Connection[tuple[object, ...]],
    cur: psycopg.Cursor[DictRow],
    row: DictRow,
    token: str,
    stripe_transfer_id: str,
) -> None:
    key = {"id": row["id"], "token": token}
    # The intent commits on its own (autocommit) before the send.
    cur.execute(MINIMAL_INTENT, {**key, "destination": f"acct_{row['user_id']}"})
    if cur.rowcount != 1:
        raise RuntimeError(f"transfer {row['id']}: the intent found no claim")
    # The send: a zero-latency Stripe that answered stripe_transfer_id.
    attempt = row["attempt_count"] + 1
    with conn.transaction():
        cur.execute(MINIMAL_COMPLETE, {**key, "stripe_transfer_id": stripe_transfer_id})
        if cur.rowcount != 1:
            raise RuntimeError(f"transfer {row['id']}: the outcome found no claim")
        cur.execute(
            MINIMAL_LEDGER,
            {
                "key": f"ledger:payout:{row['id']}:{attempt}",
                "amount_cents": row["amount_cents"],
                "currency": row["currency"],
                "id": row["id"],
                "job_id": row["job_id"],
                "contest_id": row["contest_id"],
                "user_id": row["user_id"],
                "attempt": attempt,
                "stripe_transfer_id": stripe_transfer_id,
            },
        )
        cur.execute(MINIMAL_ADVANCE, {"job_id": row["job_id"]})


def _check_minimal(url: str, *, transfers: int, paid: int) -> None:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        found = conn.execute(MINIMAL_CHECK).fetchone()
    expected = {
        "transfers": transfers,
        "completed": transfers,
        "ledger_rows": transfers,
        "without_one_row": 0,
        "open_jobs": 0,
    }
    if found != expected or paid != transfers:
        raise RuntimeError(f"minimal loop: expected {expected}, found {found} (paid {paid})")


# -- procrastinate ----------------------------------------------------------------

# How many jobs one batch_defer call inserts (one statement each).
DEFER_CHUNK: Final = 1000


def procrastinate_noop(url: str, *, jobs: int, concurrency: int) -> Figure:
    """Run ``jobs`` no-op procrastinate jobs with ``concurrency`` at a time; time
    only the worker.

    ``url`` is an empty database: procrastinate's schema is applied here.

    Raises:
        ValueError: a count below 1.
        RuntimeError: a job did not succeed.
    """
    if min(jobs, concurrency) < 1:
        raise ValueError("jobs and concurrency must be >= 1")
    return asyncio.run(_procrastinate_noop(url, jobs=jobs, concurrency=concurrency))


async def _procrastinate_noop(url: str, *, jobs: int, concurrency: int) -> Figure:
    # The fetch loop and every running job, the listener, the heartbeat and
    # abort polls: no job waits for a connection. min_size = max_size opens
    # them all before the clock starts.
    size = concurrency + 3
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=size, max_size=size)
    )

    @app.task(name="noop")
    async def noop() -> None:
        """Nothing: every second measured is procrastinate's."""

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for s in range(0, jobs, DEFER_CHUNK):
            await noop.batch_defer_async(*({} for _ in range(min(DEFER_CHUNK, jobs - s))))

        started = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        seconds = time.perf_counter() - started

        statuses = collections.Counter(
            job.status for job in await app.job_manager.list_jobs_async()
        )
    if statuses != {"succeeded": jobs}:
        raise RuntimeError(f"procrastinate: expected {jobs} jobs succeeded, found {statuses}")
    return Figure(items=jobs, seconds=seconds)
