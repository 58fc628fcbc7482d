"""Worker processes for the PostgreSQL concurrency and crash tests, and the
Stripe stand-in they share.

Each worker is a separate process (``multiprocessing`` with ``spawn``), as
``payout-core loop`` runs on several hosts: its own pool, its own store, its
own threads, and ``payout_core.services.tick.run_tick`` doing the work.

Why not :class:`payout_adapters.memory.gateway.SimulatedGateway` here: each
process would hold its own copy of "Stripe", so a transfer retried by another
process (after a lost response) would be created twice by construction, and
"Stripe saw exactly one transfer per payout transfer" could not be checked.
:class:`SharedFakeStripe` keeps Stripe's state in tables of the test's own
database instead, with Stripe's idempotency rules (one result saved per
idempotency key and replayed; other parameters under a known key refused; a
500 saved under its key) and no uniqueness on the payout transfer, so two
transfers created for one winner (under two keys) would show.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Final

import attrs
import psycopg
import psycopg_pool

from payout_adapters import postgres
from payout_adapters.clock import SystemClock
from payout_core import outcomes, ports, retry
from payout_core.services import tick

FAKE_STRIPE_SCHEMA: Final = """
CREATE TABLE fake_stripe_keys (
    -- What Stripe saved under each idempotency key.
    idempotency_key  text PRIMARY KEY,
    params           text NOT NULL,
    transfer_id      text,
    saved_error      boolean NOT NULL DEFAULT false
);
CREATE TABLE fake_stripe_transfers (
    -- Deliberately not unique on payout_transfer_id: a second transfer for a
    -- winner, created under another key, is exactly what the tests look for.
    id                  text PRIMARY KEY,
    payout_transfer_id  text NOT NULL,
    amount_cents        bigint NOT NULL,
    currency            text NOT NULL,
    destination         text NOT NULL,
    transfer_group      text NOT NULL,
    idempotency_key     text NOT NULL
);
CREATE TABLE fake_stripe_calls (
    -- Every Create Transfer request, with what it was answered.
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text NOT NULL,
    answer           text NOT NULL
);
"""

DECLINED_PREFIX: Final = "acct_closed"


def install_fake_stripe(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FAKE_STRIPE_SCHEMA.encode())


@attrs.frozen(kw_only=True)
class FaultRates:
    rate_limited: float = 0.0  # 429 before anything happens
    lost_response: float = 0.0  # created, then the response is lost (timeout)
    server_error: float = 0.0  # a 500 saved under the key, after creating or not


class SharedFakeStripe:
    """A Stripe stand-in whose state is shared by every process (see the module docstring).

    Destinations starting with ``acct_closed`` are declined (``account_invalid``).
    """

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool,
        *,
        faults: FaultRates = FaultRates(),
        seed: int = 0,
        before_create: Callable[[outcomes.TransferRequest], None] | None = None,
        after_create: Callable[[outcomes.TransferRequest], None] | None = None,
    ) -> None:
        self._pool = pool
        self._faults = faults
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._before_create = before_create
        self._after_create = after_create

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        if self._before_create is not None:
            self._before_create(request)
        answer = self._create(request)
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO fake_stripe_calls (idempotency_key, answer) VALUES (%s, %s)",
                (request.idempotency_key, type(answer).__name__),
            )
        if self._after_create is not None:
            self._after_create(request)
        return answer

    def _create(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        draw = self._draw()
        f = self._faults
        if draw < f.rate_limited:
            return outcomes.Transient(code="rate_limit", message="fake 429")
        if request.destination.startswith(DECLINED_PREFIX):
            return outcomes.Permanent(code="account_invalid", message="fake: account closed")
        metadata = dict(request.metadata)
        params = "|".join(
            (
                str(request.amount_cents),
                request.currency,
                request.destination,
                request.transfer_group,
                metadata["payout_transfer_id"],
            )
        )
        with self._pool.connection() as conn:
            fresh = conn.execute(
                "INSERT INTO fake_stripe_keys (idempotency_key, params) VALUES (%s, %s) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                (request.idempotency_key, params),
            ).fetchone()
            if fresh is None:
                # A known key: replay what was saved, as Stripe does.
                row = conn.execute(
                    "SELECT params, transfer_id, saved_error FROM fake_stripe_keys "
                    "WHERE idempotency_key = %s",
                    (request.idempotency_key,),
                ).fetchone()
                assert row is not None
                saved_params, transfer_id, saved_error = row
                if saved_params != params:
                    return outcomes.Permanent(code="idempotency_error", message="fake: changed")
                if saved_error:
                    return outcomes.Unknown(
                        code="api_error", message="fake 500 (replayed)", key_replays_error=True
                    )
                return outcomes.Succeeded(stripe_transfer_id=str(transfer_id), replayed=True)

            lost = draw < f.rate_limited + f.lost_response
            server_error = not lost and draw < f.rate_limited + f.lost_response + f.server_error
            # Half of the 500s come after the transfer was made.
            create = not server_error or self._draw() < 0.5
            transfer_id = None
            if create:
                transfer_id = "tr_" + secrets.token_hex(8)
                conn.execute(
                    "INSERT INTO fake_stripe_transfers (id, payout_transfer_id, amount_cents, "
                    "currency, destination, transfer_group, idempotency_key) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        transfer_id,
                        metadata["payout_transfer_id"],
                        request.amount_cents,
                        request.currency,
                        request.destination,
                        request.transfer_group,
                        request.idempotency_key,
                    ),
                )
            conn.execute(
                "UPDATE fake_stripe_keys SET transfer_id = %s, saved_error = %s "
                "WHERE idempotency_key = %s",
                (transfer_id, server_error, request.idempotency_key),
            )
        if server_error:
            return outcomes.Unknown(code="api_error", message="fake 500", key_replays_error=True)
        if lost:
            return outcomes.Unknown(code="timeout", message="fake: response lost")
        assert transfer_id is not None
        return outcomes.Succeeded(stripe_transfer_id=transfer_id)

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id FROM fake_stripe_transfers "
                "WHERE payout_transfer_id = %s AND transfer_group = %s ORDER BY id LIMIT 1",
                (lookup.payout_transfer_id, lookup.transfer_group),
            ).fetchone()
        if row is None:
            return outcomes.NotFound()
        return outcomes.Found(stripe_transfer_id=str(row[0]))


def fast_settings(*, concurrency: int, batch_size: int, lease: timedelta) -> tick.WorkerSettings:
    """Retries within a second, so a test with faults ends quickly: a send margin of
    1.2 s (safe with this fake Stripe, which answers at once) instead of a minute."""
    return tick.WorkerSettings(
        batch_size=batch_size,
        max_batches=1_000,
        concurrency=concurrency,
        lease=lease,
        stripe_timeout=timedelta(seconds=0.2),
        send_start_limit=timedelta(seconds=1),
        retry_policy=retry.RetryPolicy(base_seconds=0.02, max_seconds=1.2),
    )


def open_transfers(pool: psycopg_pool.ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM payout_transfers "
            "WHERE status NOT IN ('completed', 'failed_terminal')"
        ).fetchone()
    assert row is not None
    return int(row[0])


@attrs.frozen(kw_only=True)
class WorkerReport:
    worker: int
    pid: int
    ticks: int
    claimed: int
    completed: int
    retried: int
    failed_terminal: int
    stale: int
    errors: tuple[str, ...]
    finished: bool  # False: the deadline passed with transfers still open


def _tally(reports: Iterable[Any], worker: int, finished: bool, ticks: int) -> WorkerReport:
    runs = list(reports)
    return WorkerReport(
        worker=worker,
        pid=os.getpid(),
        ticks=ticks,
        claimed=sum(r.claimed for r in runs),
        completed=sum(r.completed for r in runs),
        retried=sum(r.retried for r in runs),
        failed_terminal=sum(r.failed_terminal for r in runs),
        stale=sum(r.stale for r in runs),
        errors=tuple(r.error for r in runs if r.error is not None),
        finished=finished,
    )


@attrs.frozen(kw_only=True)
class WorkerPlan:
    url: str
    worker: int
    concurrency: int
    faults: FaultRates
    deadline_seconds: float


def run_worker(plan: WorkerPlan, start: Any, results: Any) -> None:
    """One worker process: ticks until no transfer is open (or the deadline)."""
    logging.basicConfig(level=logging.ERROR)  # expected declines are not news
    store_pool = postgres.connect_pool(plan.url, max_size=plan.concurrency + 1)
    stripe_pool = postgres.connect_pool(plan.url, max_size=plan.concurrency)
    try:
        store = postgres.PostgresStore(store_pool)
        directory = postgres.PostgresAccountDirectory(store_pool)
        gateway = SharedFakeStripe(stripe_pool, faults=plan.faults, seed=plan.worker)
        settings = fast_settings(
            concurrency=plan.concurrency,
            batch_size=plan.concurrency * 4,
            lease=timedelta(seconds=60),
        )
        clock = SystemClock()
        start.wait(timeout=120)
        ends = time.monotonic() + plan.deadline_seconds
        runs = []
        while True:
            report = tick.run_tick(
                store=store, directory=directory, gateway=gateway, clock=clock, settings=settings
            )
            runs.append(report)
            if report.claimed == 0:
                if open_transfers(store_pool) == 0:
                    finished = True
                    break
                if time.monotonic() > ends:
                    finished = False
                    break
                time.sleep(0.02)  # retries are due in a few hundredths of a second
        results.put(_tally(runs, plan.worker, finished, len(runs)))
    finally:
        stripe_pool.close()
        store_pool.close()


def hold_claims(url: str, batch_size: int, concurrency: int) -> None:
    """A worker that claims and then hangs for ever.

    It claims one transfer per concurrency slot (claims track sending); each
    request reaches "Stripe" (the transfer is created) and the thread then
    hangs before it reads the answer. The test kills the process with SIGKILL
    while it holds those claims.
    """
    logging.basicConfig(level=logging.ERROR)
    store_pool = postgres.connect_pool(url, max_size=concurrency + 1)
    stripe_pool = postgres.connect_pool(url, max_size=concurrency)
    forever = threading.Event()

    def hang(_request: outcomes.TransferRequest) -> None:
        forever.wait()

    gateway = SharedFakeStripe(stripe_pool, after_create=hang)
    store = postgres.PostgresStore(store_pool)
    directory = postgres.PostgresAccountDirectory(store_pool)
    settings = fast_settings(
        concurrency=concurrency, batch_size=batch_size, lease=timedelta(minutes=10)
    )
    tick.run_tick(
        store=store, directory=directory, gateway=gateway, clock=SystemClock(), settings=settings
    )
    raise AssertionError("the gateway never answers: this line is never reached")


def migrate_when_told(url: str, directory: str, start: Any, results: Any) -> None:
    start.wait(timeout=120)
    results.put(postgres.migrate(url, directory))


def _fits_the_port(gateway: SharedFakeStripe) -> ports.PaymentGateway:
    return gateway  # mypy checks that the fake implements the gateway port
