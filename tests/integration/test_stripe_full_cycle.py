"""The whole payout, end to end: settlement -> job -> ticks on PostgreSQL -> the real
Stripe SDK against the fake Stripe -> every transfer terminal -> ledger.

What the original system verified by hand, automated: each completed transfer's
``stripe_transfer_id`` is the fake Stripe's own record with the right amount and
destination, the ledger has a row for every outcome, the invariants hold, and a
further tick creates nothing at Stripe. With faults injected (lost answers,
500s with and without a transfer behind them, 502s, 429s, a timeout), every
winner with a connected account is paid exactly once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import attrs
import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_adapters.memory import ManualClock
from payout_adapters.stripe import LocalRateLimiter, StripeGateway
from payout_core import models, retry
from payout_core import reconcile as invariants
from payout_core.services import reconciliation, scheduling, tick, worker
from tests import fake_stripe
from tests.fake_stripe import faults
from tests.kit.clocks import FakeTime
from tests.kit.times import T0

S = models.TransferStatus
E = models.LedgerEntryType
WINNERS = 16  # u_00 .. u_15
NOT_CONNECTED = "u_15"  # never connected a Stripe account
CLOSED = "u_14"  # connected an account that Stripe has since closed
MAX_TICKS = 20


@attrs.frozen
class World:
    store: postgres.PostgresStore
    directory: postgres.PostgresAccountDirectory
    server: fake_stripe.FakeStripeServer
    gateway: StripeGateway
    clock: ManualClock
    settings: tick.WorkerSettings

    @property
    def fake(self) -> fake_stripe.FakeStripe:
        return self.server.fake

    def tick(self) -> models.RunReport:
        return worker.Worker(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings,
        ).tick()


def account(user_id: str) -> str:
    return f"acct_1{user_id.replace('_', '')}"


@pytest.fixture
def world(pool: psycopg_pool.ConnectionPool) -> Iterator[World]:
    directory = postgres.PostgresAccountDirectory(pool)
    with fake_stripe.running() as server:
        for n in range(WINNERS):
            user = f"u_{n:02d}"
            if user == NOT_CONNECTED:
                continue
            directory.set_account(user, account(user))
            server.fake.add_account(
                account(user),
                fake_stripe.AccountState.CLOSED
                if user == CLOSED
                else fake_stripe.AccountState.ACTIVE,
            )
        wait = FakeTime()  # the rate limiter's: tokens are counted, nothing waits
        with StripeGateway(
            api_key=server.api_key,
            api_base=server.url,
            timeout_seconds=1.0,
            limiter=LocalRateLimiter.at(20, clock=wait.clock, sleep=wait.sleep),
        ) as gateway:
            clock = ManualClock(T0)  # the workers' and, standing in for it, the database's
            yield World(
                store=postgres.PostgresStore(pool, clock=clock),
                directory=directory,
                server=server,
                gateway=gateway,
                clock=clock,
                settings=tick.WorkerSettings(
                    batch_size=6,  # several batches per tick
                    concurrency=4,
                    # A send margin of 2 s, so that look-ups come within a few ticks.
                    stripe_timeout=timedelta(seconds=1),
                    send_start_limit=timedelta(seconds=1),
                    retry_policy=retry.RetryPolicy(
                        base_seconds=1, max_seconds=10, uniform=random.Random(7).random
                    ),
                ),
            )


def settle(world: World) -> models.PayoutJob:
    settlement = models.Settlement(
        settlement_id="stl_2026_11_29_001",
        contest_id="contest_42",
        currency="usd",
        winners=tuple(
            models.Winner(user_id=f"u_{n:02d}", amount_cents=1000 + 25 * n) for n in range(WINNERS)
        ),
    )
    return scheduling.schedule_payout_for_settlement(
        store=world.store, settlement=settlement, now=world.clock.now()
    ).job


def run_until_terminal(
    world: World, job: models.PayoutJob, between: Callable[[], None] | None = None
) -> int:
    """Tick until every transfer is terminal; the number of ticks it took."""
    for ticks in range(1, MAX_TICKS + 1):
        report = world.tick()
        assert report.error is None, report.error
        assert report.halted_reason is None, report.halted_reason
        if between is not None:
            between()
        if all(t.status.is_terminal for t in world.store.transfers_of(job.id)):
            return ticks
        world.clock.advance(timedelta(seconds=11))  # past every backoff
    statuses = {t.user_id: t.status for t in world.store.transfers_of(job.id)}
    raise AssertionError(f"not terminal after {MAX_TICKS} ticks: {statuses}")


def check_the_books(world: World, job: models.PayoutJob) -> None:
    """Every winner with an active account paid exactly once, as Stripe records it;
    the others failed with the right code; a ledger row for every outcome."""
    job = world.store.get_job(job.id) or job
    transfers = {t.user_id: t for t in world.store.transfers_of(job.id)}
    ledger = world.store.ledger(job_id=job.id)
    at_stripe = world.fake.transfers()

    assert job.status is models.JobStatus.COMPLETE
    assert (job.completed_count, job.failed_count) == (WINNERS - 2, 2)
    assert invariants.check_job(job, list(transfers.values()), ledger) == []

    for user, t in transfers.items():
        rows = [r for r in ledger if r.transfer_id == t.id]
        paid = [s for s in at_stripe if s["metadata"].get("payout_transfer_id") == t.id]
        if user in (NOT_CONNECTED, CLOSED):
            assert t.status is S.FAILED_TERMINAL
            expected = (
                "stripe_account_not_connected" if user == NOT_CONNECTED else "account_invalid"
            )
            assert t.failure_code == expected
            assert paid == []
            assert [r.entry_type for r in rows if r.entry_type is not E.PAYOUT_ATTEMPT_FAILED] == [
                E.PAYOUT_FAILED
            ]
            continue
        assert t.status is S.COMPLETED, (user, t.failure_code, t.failure_message)
        assert len(paid) == 1, f"{user} paid {len(paid)} times"
        (record,) = paid
        assert t.stripe_transfer_id == record["id"]
        assert (record["amount"], record["currency"]) == (t.amount_cents, "usd")
        assert record["destination"] == account(user) == t.destination_account
        assert record["transfer_group"] == "contest:contest_42"
        assert record["metadata"] == {
            "payout_transfer_id": t.id,
            "payout_job_id": job.id,
            "settlement_id": "stl_2026_11_29_001",
            "contest_id": "contest_42",
            "user_id": user,
        }
        completed = [r for r in rows if r.entry_type is E.PAYOUT_COMPLETED]
        assert [(r.amount_cents, r.stripe_transfer_id) for r in completed] == [
            (t.amount_cents, record["id"])
        ]
        assert completed[0].direction is models.LedgerDirection.DEBIT
        attempts = sorted(r.attempt_number for r in rows)
        assert attempts == list(range(1, t.attempt_count + 1))  # one row per attempt

    # Only transfers payout-core made exist at Stripe, and Stripe agrees with the record.
    assert len(at_stripe) == WINNERS - 2
    agreed = reconciliation.reconcile_all(world.store, world.gateway)
    assert agreed.ok, [str(f) for f in agreed.findings]
    assert agreed.stripe_transfers == WINNERS - 2

    # A further tick, later, creates nothing and claims nothing.
    posts = len(world.fake.requests("POST"))
    world.clock.advance(timedelta(hours=1))
    report = world.tick()
    assert report.claimed == 0
    assert len(world.fake.requests("POST")) == posts
    assert len(world.fake.transfers()) == WINNERS - 2


def test_a_settlement_is_paid_in_full_and_booked(world: World) -> None:
    job = settle(world)

    ticks = run_until_terminal(world, job)

    assert ticks == 1
    check_the_books(world, job)


def test_with_faults_every_winner_with_an_account_is_paid_exactly_once(world: World) -> None:
    fake = world.fake
    hold = faults.Hold(release=threading.Event())  # slower than the client's timeout
    scripted: list[tuple[faults.Fault, int]] = [
        (faults.Drop(), 2),  # created at Stripe, the answer lost
        (faults.Drop(reset=True), 1),
        (faults.server_error(create=True), 1),  # 500, the transfer exists
        (faults.server_error(create=False), 2),  # 500, no transfer
        (faults.bad_gateway(), 1),
        (faults.rate_limited(), 2),
        (faults.lock_timeout(), 1),
        (hold, 1),
    ]
    for fault, times in scripted:
        fake.script(fault, times=times)

    def release_the_slow_one() -> None:
        if hold.held.is_set() and not hold.release.is_set():
            hold.release.set()
            assert fake.wait_idle()

    job = settle(world)
    ticks = run_until_terminal(world, job, between=release_the_slow_one)

    assert ticks > 1
    faulted = [r for r in fake.requests("POST") if r.fault is not None]
    assert len(faulted) == 11  # every scripted fault happened
    check_the_books(world, job)
    # An attempt is booked as failed only once Stripe is known to hold nothing for its key,
    # and then its key moves on: at least the two 500s without a transfer. The other faults
    # were resolved by resending the same key.
    retried = [
        r for r in world.store.ledger(job_id=job.id) if r.entry_type is E.PAYOUT_ATTEMPT_FAILED
    ]
    moved = sum(t.key_generation for t in world.store.transfers_of(job.id))
    assert len(retried) == moved >= 2
    # After each 500 the transfer was looked up; where nothing existed, a new key paid it.
    assert len(fake.requests("GET", "/v1/transfers")) >= 3
    keys = {r.idempotency_key or "" for r in fake.requests("POST")}
    assert len([k for k in keys if k.endswith(":1")]) >= 1  # a new key after a 500
