"""Executing transfers: one attempt (:mod:`payout_core.attempt`), its driver
(:mod:`payout_core.services.attempting`) and the slots that run many at once
(:mod:`payout_core.services.execution`), rule by rule of DESIGN 3, "Exactly
once, under every interleaving".

The in-memory store has a clock of its own, the database's; the simulated Stripe
runs on that clock too (its key ages and slow requests); the worker has its own
clock, which may disagree with both. The jitter is fixed at half the range, so
every backoff is exact: 15 s after a first try, 30 s after a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryInbox,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_adapters.memory import gateway as simulated
from payout_core import attempt, errors, idempotency, ledger, models, outcomes, ports, retry
from payout_core import state_machine as sm
from payout_core.services import attempting, execution, scheduling, tick, worker
from tests.kit import builders as b
from tests.kit.times import HALF_JITTER, LEASE, MARGIN, T0

Fault = simulated.Fault
S = models.TransferStatus
Entry = models.LedgerEntryType
D = attempt.Disposition
Request = simulated.Request

SETTINGS = tick.WorkerSettings(retry_policy=HALF_JITTER)
TIMING = SETTINGS.timing  # its lease and send margin are the kit's LEASE and MARGIN
FIRST_BACKOFF = timedelta(seconds=15)

TIMEOUT_NOTHING_CREATED = Fault.respond(outcomes.Unknown(code="timeout", message="read timed out"))
SAVED_500 = outcomes.Unknown(code="api_error", message="500", key_replays_error=True)


def key(transfer_id: str, generation: int = 0) -> str:
    return idempotency.stripe_idempotency_key(transfer_id, generation)


@attrs.define
class Payouts:
    """One contest's payout on in-memory adapters, driven tick by tick."""

    db_clock: ManualClock  # the database's clock: the store's, and Stripe's here
    worker_clock: ManualClock  # the worker's own clock, possibly skewed
    gateway: SimulatedGateway
    store: InMemoryStore
    directory: InMemoryAccountDirectory = attrs.Factory(InMemoryAccountDirectory)
    settings: tick.WorkerSettings = SETTINGS
    job_id: str = ""

    def schedule(
        self, *users: str, max_attempts: int = 5, connected: bool = True
    ) -> list[models.PayoutTransfer]:
        """Users u1, u2, ... are paid 1000, 2000, ... cents, to acct_u1, acct_u2, ..."""
        if connected:
            for user in users:
                self.directory.set_account(user, f"acct_{user}")
        settlement = b.settlement(
            *((u, 1000 * (n + 1)) for n, u in enumerate(users)),
            settlement_id="stl-1",
            contest_id="contest-1",
        )
        result = scheduling.schedule_payout_for_settlement(
            store=self.store,
            settlement=settlement,
            now=self.db_clock.now(),
            max_attempts=max_attempts,
        )
        self.job_id = result.job.id
        return sorted(self.store.transfers_of(self.job_id), key=lambda t: users.index(t.user_id))

    def advance(self, by: timedelta) -> None:
        """Time passes for everyone: the database, Stripe and the worker."""
        self.db_clock.advance(by)
        self.worker_clock.advance(by)

    def until_due(self, transfer_id: str) -> None:
        """Move time on to when the transfer may be claimed again, by the database's clock."""
        due = self.get(transfer_id).next_attempt_at
        assert due is not None
        if due > self.db_clock.now():
            self.advance(due - self.db_clock.now())

    def tick(
        self,
        *,
        concurrency: int = 4,
        stop: threading.Event | None = None,
        inbox: ports.SettlementInbox | None = None,
        limiter: ports.RateLimiter | None = None,
    ) -> models.RunReport:
        return tick.run_tick(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.worker_clock,
            settings=attrs.evolve(self.settings, concurrency=concurrency),
            stop=stop,
            inbox=inbox,
            limiter=limiter,
        )

    def claim(self, worker: str) -> list[models.PayoutTransfer]:
        return self.store.claim_due(limit=100, lease=LEASE, token=worker)

    def execute(self, claimed: models.PayoutTransfer) -> attempt.AttemptResult:
        return attempting.execute_transfer(
            transfer=claimed,
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.worker_clock,
            timing=self.settings.timing,
        )

    def execute_claimed(
        self,
        claimed: list[models.PayoutTransfer],
        *,
        concurrency: int,
        stop: threading.Event | None = None,
    ) -> list[attempt.AttemptResult]:
        return execution.execute_claimed(
            transfers=claimed,
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.worker_clock,
            timing=self.settings.timing,
            concurrency=concurrency,
            stop=stop,
        )

    def perform(self, op: attempt.Operation) -> object:
        """Do one operation of an attempt as the driver does: for tests that
        drive :func:`~payout_core.attempt.run_attempt` by hand."""
        match op:
            case attempt.ReadAccount(user_id=user_id):
                return self.directory.account_for(user_id)
            case attempt.ReadLocalClock():
                return self.worker_clock.now()
            case attempt.WriteIntent(claimed=claimed, destination=destination, margin=margin):
                return self.store.write_intent(
                    claimed=claimed, destination=destination, margin=margin
                )
            case attempt.Send(request=request):
                if op.too_late(self.worker_clock.now()):
                    return attempt.TOO_LATE
                return self.gateway.create_transfer(request)
            case attempt.LookUp(lookup=lookup):
                return self.gateway.find_transfer(lookup)
            case attempt.Record(claimed=claimed, updated=updated, ledger_entry=entry, now=now):
                return self.store.record(
                    claimed=claimed, updated=updated, ledger_entry=entry, now=now
                )

    def get(self, transfer_id: str) -> models.PayoutTransfer:
        transfer = self.store.get_transfer(transfer_id)
        assert transfer is not None
        return transfer

    def rows(self, transfer_id: str) -> list[tuple[int, Entry, str | None]]:
        return [
            (e.attempt_number, e.entry_type, e.failure_code)
            for e in self.store.ledger(transfer_id=transfer_id)
        ]

    def job(self) -> models.PayoutJob:
        job = self.store.get_job(self.job_id)
        assert job is not None
        return job

    def keys_sent(self, transfer_id: str | None = None) -> list[str]:
        return [
            r.idempotency_key
            for r in self.gateway.requests
            if transfer_id is None or dict(r.metadata)["payout_transfer_id"] == transfer_id
        ]


def payouts(handler: simulated.Handler | None = None, *, skew: timedelta = timedelta(0)) -> Payouts:
    """Payouts whose worker's clock is ``skew`` off the database's."""
    db_clock = ManualClock(T0)
    return Payouts(
        db_clock=db_clock,
        worker_clock=ManualClock(T0 + skew),
        gateway=SimulatedGateway(handler=handler, clock=db_clock, seed=1),
        store=InMemoryStore(clock=db_clock),
    )


def on_creates(*faults: simulated.Fault | None) -> simulated.Handler:
    """A handler answering the n-th Create Transfer call with the n-th fault, then normally."""
    return scripted(creates=faults)


def scripted(
    *,
    creates: tuple[simulated.Fault | None, ...] = (),
    lookups: tuple[simulated.Fault | None, ...] = (),
) -> simulated.Handler:
    """The n-th create and the n-th look-up meet the n-th fault of their script."""
    scripts = {
        simulated.Operation.CREATE: list(creates),
        simulated.Operation.FIND: list(lookups),
    }
    lock = threading.Lock()

    def handler(request: Request, call: simulated.Call) -> simulated.Fault | None:
        with lock:
            script = scripts[call.operation]
            return script.pop(0) if script else None

    return handler


def finish(steps: attempt.Attempt, answer: object) -> attempt.AttemptResult:
    """Send the last answer an attempt needs and return its result."""
    with pytest.raises(StopIteration) as done:
        steps.send(answer)
    result = done.value.value
    assert isinstance(result, attempt.AttemptResult)
    return result


# -- success ---------------------------------------------------------------------


def test_a_successful_attempt_completes_the_transfer_with_one_debit_row() -> None:
    p = payouts()
    [t] = p.schedule("u1")

    report = p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert (done.attempt_count, done.destination_account, done.key_generation) == (1, "acct_u1", 0)
    assert not done.outcome_uncertain
    assert (record.amount_cents, record.destination, record.idempotency_key) == (
        1000,
        "acct_u1",
        key(t.id),
    )
    assert record.transfer_group == "contest:contest-1"
    assert record.payout_transfer_id == t.id
    [row] = p.store.ledger(transfer_id=t.id)
    assert (row.entry_type, row.direction, row.amount_cents, row.attempt_number) == (
        Entry.PAYOUT_COMPLETED,
        models.LedgerDirection.DEBIT,
        1000,
        1,
    )
    assert (row.stripe_transfer_id, row.idempotency_key) == (record.id, f"ledger:payout:{t.id}:1")
    assert (report.claimed, report.completed) == (1, 1)
    assert p.job().status is models.JobStatus.COMPLETE


def test_a_second_tick_after_completion_sends_nothing() -> None:
    p = payouts()
    p.schedule("u1", "u2")
    p.tick()

    report = p.tick()

    assert report.claimed == 0
    assert len(p.gateway.requests) == 2


@pytest.mark.parametrize("skew", [timedelta(hours=-5), timedelta(hours=5)])
def test_every_time_an_attempt_stores_is_the_databases_whatever_the_workers_clock_says(
    skew: timedelta,
) -> None:
    p = payouts(skew=skew)
    [t] = p.schedule("u1")
    p.advance(timedelta(seconds=7))

    report = p.tick()

    done = p.get(t.id)
    db_now = T0 + timedelta(seconds=7)
    assert done.status is S.COMPLETED
    assert done.key_first_sent_at == done.last_send_at == done.updated_at == db_now
    [row] = p.store.ledger(transfer_id=t.id)
    assert row.created_at == db_now
    assert report.started_at == db_now + skew  # the run is the worker's own record


def test_a_worker_whose_clock_runs_ahead_cannot_take_a_live_claim() -> None:
    p = payouts(skew=timedelta(days=1))
    [t] = p.schedule("u1")
    [held] = p.claim("worker-a")

    report = p.tick()  # a worker a day ahead: by its clock, worker-a's lease expired long ago

    assert report.claimed == 0
    assert p.get(t.id) == held
    assert p.gateway.requests == ()


# -- an uncertain transfer is resolved by resending its key while it is trusted ---------


def test_a_lost_response_is_resent_with_the_same_key_and_completed_once() -> None:
    p = payouts(on_creates(Fault.lost_response()))
    [t] = p.schedule("u1")
    p.tick()
    lost = p.get(t.id)
    assert lost.status is S.RETRYABLE
    assert (lost.attempt_count, lost.outcome_uncertain, lost.key_replays_error) == (1, True, False)
    assert lost.last_send_at is not None
    assert lost.next_attempt_at == lost.last_send_at + FIRST_BACKOFF
    assert p.rows(t.id) == []  # the attempt has not concluded: nothing to book yet

    p.until_due(t.id)
    p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert (done.attempt_count, done.key_sends) == (1, 2)
    assert p.keys_sent() == [key(t.id), key(t.id)]
    assert p.gateway.lookups == ()
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_resend_of_an_uncertain_key_spends_no_attempt() -> None:
    p = payouts(on_creates(*[Fault.rate_limited()] * 4))
    [t] = p.schedule("u1", max_attempts=1)  # one attempt: any resend that spent one would fail it

    for sends in range(1, 5):
        p.tick()
        waiting = p.get(t.id)
        assert (waiting.status, waiting.attempt_count, waiting.key_sends) == (
            S.RETRYABLE,
            1,
            sends,
        )
        p.until_due(t.id)
    p.tick()

    done = p.get(t.id)
    assert (done.status, done.attempt_count) == (S.COMPLETED, 1)
    assert p.keys_sent() == [key(t.id)] * 5
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.rate_limited(), "rate_limit"),
        (TIMEOUT_NOTHING_CREATED, "timeout"),
        (Fault.lost_response(), "timeout"),
        (Fault.key_in_use(), "idempotency_key_in_use"),
    ],
    ids=["429", "timeout", "lost-response", "409"],
)
def test_an_answer_that_proves_nothing_keeps_the_transfer_uncertain(
    fault: simulated.Fault, code: str
) -> None:
    p = payouts(on_creates(fault))
    [t] = p.schedule("u1")

    report = p.tick()

    retried = p.get(t.id)
    assert retried.status is S.RETRYABLE
    assert (retried.attempt_count, retried.outcome_uncertain) == (1, True)
    assert not retried.key_replays_error  # the key can still be resent
    assert retried.failure_code == code
    assert retried.last_send_at is not None
    assert retried.next_attempt_at == retried.last_send_at + FIRST_BACKOFF
    assert p.rows(t.id) == []
    assert report.retried == 1
    assert p.tick().claimed == 0  # not due yet


def test_a_request_stripe_is_still_running_is_waited_for_never_decided() -> None:
    # Stripe takes 5 minutes over the first request; every resend meanwhile
    # answers 409. On the last attempt, none of that may fail the winner.
    p = payouts(on_creates(Fault.finishes_later(300)))
    [t] = p.schedule("u1", max_attempts=1)
    p.tick()
    codes = []
    while p.get(t.id).status is S.RETRYABLE:
        waiting = p.get(t.id)
        assert (waiting.attempt_count, waiting.outcome_uncertain) == (1, True)
        codes.append(waiting.failure_code)
        p.until_due(t.id)
        p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert codes[0] == "timeout"
    assert set(codes[1:]) == {"idempotency_key_in_use"}
    assert len(codes) > 2
    assert set(p.keys_sent()) == {key(t.id)}
    assert p.gateway.lookups == ()
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_each_resend_backs_off_further() -> None:
    p = payouts(on_creates(*[Fault.rate_limited()] * 3))
    [t] = p.schedule("u1")
    waits = []
    for _ in range(3):
        p.tick()
        waiting = p.get(t.id)
        assert waiting.next_attempt_at is not None
        assert waiting.last_send_at is not None
        waits.append(waiting.next_attempt_at - waiting.last_send_at)
        p.until_due(t.id)

    assert waits == [timedelta(seconds=s) for s in (15, 30, 60)]


# -- a saved 500 or an old key: a look-up, once the send margin has passed ---------------


def test_after_a_saved_500_the_look_up_waits_for_the_send_margin_then_finds_the_transfer() -> None:
    p = payouts(on_creates(Fault.server_error(created=True)))
    [t] = p.schedule("u1")
    p.tick()
    saved = p.get(t.id)
    assert (saved.status, saved.outcome_uncertain, saved.key_replays_error) == (
        S.RETRYABLE,
        True,
        True,
    )
    assert saved.last_send_at is not None
    assert saved.next_attempt_at == saved.last_send_at + MARGIN  # not the 15 s backoff

    p.advance(MARGIN - timedelta(seconds=1))
    assert p.tick().claimed == 0
    p.advance(timedelta(seconds=1))
    p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert p.keys_sent() == [key(t.id)]  # a resend would only replay the 500
    assert p.gateway.lookups == (
        outcomes.TransferLookup(
            destination="acct_u1", transfer_group="contest:contest-1", payout_transfer_id=t.id
        ),
    )
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_look_up_that_finds_nothing_books_the_failed_attempt_and_moves_to_a_new_key() -> None:
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)

    p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert (done.attempt_count, done.key_generation) == (2, 1)
    assert record.idempotency_key == key(t.id, 1)
    assert p.keys_sent() == [key(t.id), key(t.id, 1)]
    assert len(p.gateway.lookups) == 1
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "api_error"),
        (2, Entry.PAYOUT_COMPLETED, None),
    ]


def test_a_look_up_that_finds_nothing_after_the_last_attempt_fails_it_max_attempts_exceeded() -> (
    None
):
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1", max_attempts=1)
    p.tick()
    p.until_due(t.id)

    report = p.tick()

    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "max_attempts_exceeded"
    assert failed.failure_message is not None
    assert "api_error" in failed.failure_message
    assert (failed.attempt_count, failed.outcome_uncertain) == (1, False)
    assert p.gateway.created_transfers() == []
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "max_attempts_exceeded")]
    assert report.failed_terminal == 1


@pytest.mark.parametrize(("hours", "looked_up"), [(1, False), (22, False), (23, True), (30, True)])
def test_a_key_first_sent_23_hours_ago_or_more_is_looked_up_instead_of_resent(
    hours: int, looked_up: bool
) -> None:
    p = payouts(on_creates(TIMEOUT_NOTHING_CREATED))
    [t] = p.schedule("u1")
    p.tick()
    p.advance(timedelta(hours=hours))

    p.tick()

    done = p.get(t.id)
    assert done.status is S.COMPLETED
    assert len(p.gateway.lookups) == int(looked_up)
    if looked_up:
        # Found nothing: the attempt is booked, and a fresh key goes out.
        assert p.keys_sent() == [key(t.id), key(t.id, 1)]
        assert p.rows(t.id) == [
            (1, Entry.PAYOUT_ATTEMPT_FAILED, "timeout"),
            (2, Entry.PAYOUT_COMPLETED, None),
        ]
    else:
        assert p.keys_sent() == [key(t.id), key(t.id)]
        assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


@pytest.mark.parametrize("hours", [23, 25])
def test_a_paid_request_whose_key_stripe_may_have_forgotten_is_found_not_paid_again(
    hours: int,
) -> None:
    p = payouts(on_creates(Fault.lost_response()))
    [t] = p.schedule("u1")
    p.tick()
    p.advance(timedelta(hours=hours))  # Stripe forgets the key 24 hours after its first use

    p.tick()

    [record] = p.gateway.created_transfers()
    done = p.get(t.id)
    assert (done.status, done.stripe_transfer_id, done.attempt_count) == (
        S.COMPLETED,
        record.id,
        1,
    )
    assert p.keys_sent() == [key(t.id)]
    assert len(p.gateway.lookups) == 1


def test_a_look_up_waits_for_the_send_margin_after_the_last_resend() -> None:
    # The key is resent just before it stops being trusted; the next claim may
    # only look up once that resend could no longer be running at Stripe.
    p = payouts(
        scripted(creates=(Fault.rate_limited(), Fault.finishes_later(MARGIN.total_seconds())))
    )
    [t] = p.schedule("u1")
    p.tick()
    p.advance(sm.KEY_TRUST_WINDOW - timedelta(seconds=30))
    p.tick()  # the resend; Stripe creates the transfer as the margin ends
    resent = p.get(t.id)
    assert resent.last_send_at == T0 + sm.KEY_TRUST_WINDOW - timedelta(seconds=30)
    p.until_due(t.id)
    assert p.db_clock.now() < resent.last_send_at + MARGIN

    early = p.tick()

    assert early.released == 1
    assert not p.gateway.lookups
    waiting = p.get(t.id)
    assert (waiting.status, waiting.outcome_uncertain) == (S.RETRYABLE, True)
    assert waiting.next_attempt_at == resent.last_send_at + MARGIN
    p.until_due(t.id)
    p.tick()
    [record] = p.gateway.created_transfers()
    done = p.get(t.id)
    assert (done.status, done.stripe_transfer_id) == (S.COMPLETED, record.id)
    assert len(p.gateway.lookups) == 1
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


# -- conclusive refusals ------------------------------------------------------------


def test_a_permanent_decline_fails_the_transfer_with_its_code_and_a_payout_failed_row() -> None:
    p = payouts()
    declined, paid = p.schedule("u1", "u2")
    p.gateway.decline("acct_u1", code="account_invalid")

    report = p.tick()

    failed = p.get(declined.id)
    assert failed.status is S.FAILED_TERMINAL
    assert (failed.failure_code, failed.attempt_count, failed.outcome_uncertain) == (
        "account_invalid",
        1,
        False,
    )
    assert p.rows(declined.id) == [(1, Entry.PAYOUT_FAILED, "account_invalid")]
    assert p.get(paid.id).status is S.COMPLETED
    assert (report.failed_terminal, report.completed) == (1, 1)
    job = p.job()
    assert (job.status, job.completed_count, job.failed_count) == (models.JobStatus.COMPLETE, 1, 1)


def test_a_decline_of_a_resent_key_that_had_created_nothing_fails_the_transfer() -> None:
    p = payouts(on_creates(TIMEOUT_NOTHING_CREATED))
    [t] = p.schedule("u1")
    p.tick()
    p.gateway.decline("acct_u1", code="account_closed")
    p.until_due(t.id)

    p.tick()

    failed = p.get(t.id)
    assert (failed.status, failed.failure_code, failed.attempt_count) == (
        S.FAILED_TERMINAL,
        "account_closed",
        1,
    )
    assert p.gateway.lookups == ()  # the refusal is saved under the key: conclusive
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "account_closed")]


def test_a_paid_winner_is_never_failed_by_a_later_decline() -> None:
    p = payouts(on_creates(Fault.lost_response()))
    [t] = p.schedule("u1")
    p.tick()  # paid at Stripe; the response was lost
    p.gateway.decline("acct_u1", code="account_closed")
    p.until_due(t.id)

    p.tick()

    [record] = p.gateway.created_transfers()
    assert p.get(t.id).status is S.COMPLETED  # Stripe replays the payment under the key
    assert p.get(t.id).stripe_transfer_id == record.id


def test_balance_insufficient_moves_to_the_next_key_refunds_the_attempt_and_halts() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    p.gateway.set_balance(500)

    report = p.tick()

    assert report.halted_reason is not None
    assert report.halted_reason.startswith("balance_insufficient")
    refused = p.get(t.id)
    assert refused.status is S.PENDING
    assert (refused.attempt_count, refused.key_generation, refused.outcome_uncertain) == (
        0,
        1,
        False,
    )
    assert refused.key_first_sent_at is None
    assert refused.failure_code == "balance_insufficient"
    assert p.rows(t.id) == []
    assert p.tick().halted_reason is not None  # still short: key 1 is refused in turn
    assert p.get(t.id).key_generation == 2

    p.gateway.set_balance(5000)  # the platform tops up
    p.tick()

    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert (done.status, done.attempt_count, done.stripe_transfer_id) == (S.COMPLETED, 1, record.id)
    # After the top-up a fresh key goes out, not a key replaying the refusal for a day.
    assert p.keys_sent() == [key(t.id), key(t.id, 1), key(t.id, 2)]
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]
    assert p.gateway.balance == 4000


@pytest.mark.parametrize("code", ["authentication_error", "permission_error"])
def test_a_401_or_403_releases_the_transfer_keeps_its_doubt_and_halts_the_tick(code: str) -> None:
    p = payouts()
    transfers = p.schedule("u1", "u2", "u3")
    p.gateway.systemic_outage(code)

    report = p.tick(concurrency=1)

    assert report.halted_reason is not None
    assert report.halted_reason.startswith(code)
    # One slot: one claim; the halt stops the tick before it claims the others.
    assert (report.claimed, report.released) == (1, 1)
    [sent] = p.gateway.requests
    sent_id = dict(sent.metadata)["payout_transfer_id"]
    for t in transfers:
        released = p.get(t.id)
        assert released.claim_token is None
        if t.id == sent_id:
            # An intent was written: the request may have reached Stripe.
            assert (released.status, released.attempt_count, released.outcome_uncertain) == (
                S.RETRYABLE,
                1,
                True,
            )
            assert released.failure_code == code
        else:
            assert (released.status, released.attempt_count, released.outcome_uncertain) == (
                S.PENDING,
                0,
                False,
            )
    assert p.store.ledger(job_id=p.job_id) == []

    p.gateway.end_outage()
    p.tick()

    for t in transfers:
        assert (p.get(t.id).status, p.get(t.id).attempt_count) == (S.COMPLETED, 1)
    assert p.keys_sent(sent_id) == [key(sent_id), key(sent_id)]


def test_a_systemic_failure_of_a_look_up_keeps_the_doubt_and_halts() -> None:
    p = payouts(on_creates(Fault.server_error(created=True)))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.gateway.systemic_outage("authentication_error")

    report = p.tick()

    assert report.halted_reason is not None
    waiting = p.get(t.id)
    assert (waiting.status, waiting.attempt_count) == (S.RETRYABLE, 1)
    assert (waiting.outcome_uncertain, waiting.key_replays_error) == (True, True)
    assert waiting.lookup_failures == 0  # the platform's fault, not the look-up's
    assert len(p.gateway.lookups) == 1
    p.gateway.end_outage()
    p.tick()
    [record] = p.gateway.created_transfers()
    assert p.get(t.id).stripe_transfer_id == record.id


# -- no connected account ---------------------------------------------------------------


def test_a_winner_without_a_connected_account_fails_spending_an_attempt() -> None:
    p = payouts()
    [t] = p.schedule("u1", connected=False)

    report = p.tick()

    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert (failed.failure_code, failed.attempt_count) == ("stripe_account_not_connected", 1)
    assert failed.stripe_transfer_id is None
    assert failed.destination_account is None
    assert p.gateway.requests == ()
    assert p.gateway.lookups == ()
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "stripe_account_not_connected")]
    assert report.failed_terminal == 1


def test_a_take_over_of_a_claim_that_sent_nothing_fails_for_want_of_an_account_at_once() -> None:
    p = payouts()
    [t] = p.schedule("u1", connected=False)
    p.claim("worker-a")  # worker-a dies before any intent: it sent nothing
    p.advance(LEASE)
    [taken_over] = p.claim("worker-b")
    assert not taken_over.outcome_uncertain

    result = p.execute(taken_over)

    assert result.disposition is D.FAILED_TERMINAL
    assert p.get(t.id).failure_code == "stripe_account_not_connected"
    assert p.gateway.lookups == ()
    assert p.gateway.requests == ()


# -- the destination is pinned by the first intent ----------------------------------


def test_a_pinned_destination_is_paid_even_after_the_winner_connects_another_account() -> None:
    p = payouts(on_creates(TIMEOUT_NOTHING_CREATED))
    [t] = p.schedule("u1")
    p.tick()
    p.directory.set_account("u1", "acct_new")
    p.until_due(t.id)

    p.tick()

    [record] = p.gateway.created_transfers()
    assert record.destination == "acct_u1"
    assert {r.destination for r in p.gateway.requests} == {"acct_u1"}
    assert p.get(t.id).destination_account == "acct_u1"


def test_a_winner_who_disconnects_after_the_intent_is_paid_on_the_pinned_account() -> None:
    p = payouts(on_creates(TIMEOUT_NOTHING_CREATED))
    [t] = p.schedule("u1")
    p.tick()
    p.directory.remove_account("u1")
    p.until_due(t.id)

    p.tick()

    done = p.get(t.id)
    assert (done.status, done.destination_account) == (S.COMPLETED, "acct_u1")


def test_a_new_key_generation_still_pays_and_looks_up_the_pinned_destination() -> None:
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1")
    p.tick()
    p.directory.set_account("u1", "acct_new")
    p.until_due(t.id)

    p.tick()

    assert p.keys_sent() == [key(t.id), key(t.id, 1)]
    assert {r.destination for r in p.gateway.requests} == {"acct_u1"}
    assert {lookup.destination for lookup in p.gateway.lookups} == {"acct_u1"}
    [record] = p.gateway.created_transfers()
    assert record.destination == "acct_u1"


# -- claims, leases and the send intent -------------------------------------------------


@pytest.mark.parametrize(
    ("margin_left", "sent"),
    [(MARGIN, True), (MARGIN - timedelta(seconds=1), False)],
    ids=["margin-left", "less-than-the-margin"],
)
def test_no_send_when_the_lease_has_less_than_the_send_margin_left(
    margin_left: timedelta, sent: bool
) -> None:
    p = payouts()
    [t] = p.schedule("u1")
    [claimed] = p.claim("worker")
    p.advance(LEASE - margin_left)  # the worker was slow to start, by the database's clock

    result = p.execute(claimed)

    if sent:
        assert result.disposition is D.COMPLETED
        assert len(p.gateway.requests) == 1
    else:
        assert result.disposition is D.RELEASED
        assert p.gateway.requests == ()
        back = p.get(t.id)
        assert (back.status, back.attempt_count, back.outcome_uncertain) == (S.PENDING, 0, False)
        assert back.claim_token is None
        assert p.rows(t.id) == []


def test_a_worker_whose_claim_was_taken_over_before_its_intent_sends_and_records_nothing() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    [stalled] = p.claim("worker-a")
    p.advance(LEASE)
    [taken] = p.claim("worker-b")
    assert p.execute(taken).disposition is D.COMPLETED
    done = p.get(t.id)

    result = p.execute(stalled)

    assert result.disposition is D.STALE
    assert p.get(t.id) == done
    assert len(p.gateway.requests) == 1
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_worker_whose_claim_was_taken_over_after_its_send_cannot_record() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    [claimed_a] = p.claim("worker-a")
    steps = attempt.run_attempt(claimed_a, timing=TIMING)
    op = next(steps)
    while not isinstance(op, attempt.Record):
        op = steps.send(p.perform(op))
    # worker-a was paid and stalls before recording; its lease expires.
    p.advance(LEASE)
    [claimed_b] = p.claim("worker-b")
    assert claimed_b.outcome_uncertain  # worker-a's intent says it may have reached Stripe
    assert p.execute(claimed_b).disposition is D.COMPLETED

    result = finish(steps, p.perform(op))

    assert result.disposition is D.STALE
    [record] = p.gateway.created_transfers()
    assert p.get(t.id).stripe_transfer_id == record.id
    assert p.keys_sent() == [key(t.id), key(t.id)]
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_worker_past_its_lease_never_sends_even_after_the_claim_moved_to_a_new_key() -> None:
    # worker-a stalls before its intent; its claim is taken over; a 500 moves the
    # transfer to key generation 1 and it is paid; a day later Stripe has
    # forgotten key 0. Were worker-a to send key 0 now, Stripe would pay again.
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1")
    [stalled] = p.claim("worker-a")
    p.advance(LEASE)
    [taken] = p.claim("worker-b")
    assert p.execute(taken).disposition is D.RETRIED
    p.until_due(t.id)
    [looked_up] = p.claim("worker-c")
    assert p.execute(looked_up).disposition is D.RETRIED  # nothing found: key 1 next
    [again] = p.claim("worker-d")
    assert p.execute(again).disposition is D.COMPLETED
    p.advance(timedelta(hours=25))

    assert p.execute(stalled).disposition is D.STALE

    assert len(p.gateway.created_transfers()) == 1
    assert p.keys_sent() == [key(t.id), key(t.id, 1)]


class StallingStore(InMemoryStore):
    """The in-memory store, whose next intent returns only after the worker's
    clock moved on by ``stall`` (a long garbage collection, a frozen VM)."""

    def __init__(self, *, clock: ManualClock, worker_clock: ManualClock, stall: timedelta) -> None:
        super().__init__(clock=clock)
        self._worker_clock = worker_clock
        self._stalls = [stall]

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        written = super().write_intent(claimed=claimed, destination=destination, margin=margin)
        if self._stalls:
            self._worker_clock.advance(self._stalls.pop())
        return written


@pytest.mark.parametrize(
    ("stall", "sent"),
    [(attempt.SEND_START_LIMIT, True), (attempt.SEND_START_LIMIT + timedelta(seconds=1), False)],
    ids=["within-the-limit", "too-late"],
)
def test_a_send_that_would_leave_too_long_after_its_intent_is_not_sent(
    stall: timedelta, sent: bool
) -> None:
    p = payouts()
    p.store = StallingStore(clock=p.db_clock, worker_clock=p.worker_clock, stall=stall)
    [t] = p.schedule("u1")
    [claimed] = p.claim("worker")

    result = p.execute(claimed)

    if sent:
        assert result.disposition is D.COMPLETED
        return
    assert result.disposition is D.STALE
    assert p.gateway.requests == ()
    # The intent stands: whoever takes the claim over resends the same key.
    held = p.get(t.id)
    assert (held.status, held.attempt_count, held.outcome_uncertain) == (S.PROCESSING, 1, True)
    assert p.rows(t.id) == []
    p.advance(LEASE)
    p.tick()
    done = p.get(t.id)
    assert (done.status, done.attempt_count) == (S.COMPLETED, 1)
    assert p.keys_sent() == [key(t.id)]


def test_executing_a_transfer_that_is_not_claimed_is_refused() -> None:
    p = payouts()
    [t] = p.schedule("u1")

    with pytest.raises(errors.IllegalTransition):
        p.execute(t)

    assert p.gateway.requests == ()


# -- nothing waits forever without a name (rule 7) ------------------------------------


def test_look_ups_that_keep_failing_put_the_transfer_in_front_of_an_operator() -> None:
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1")
    p.tick()
    p.gateway.delete_account("acct_u1")  # every look-up filtered by it is refused now
    results = []
    for n in range(1, sm.LOOKUP_FAILURES_LIMIT + 1):
        p.until_due(t.id)
        [claimed] = p.claim(f"worker-{n}")
        results.append(p.execute(claimed).disposition)
        assert p.get(t.id).lookup_failures == n

    assert results == [D.RETRIED] * (sm.LOOKUP_FAILURES_LIMIT - 1) + [D.NEEDS_OPERATOR]
    waiting = p.get(t.id)
    assert waiting.needs_operator is not None
    assert f"{sm.LOOKUP_FAILURES_LIMIT} look-ups at Stripe failed in a row" in (
        waiting.needs_operator
    )
    assert "resource_missing" in waiting.needs_operator
    assert (waiting.status, waiting.attempt_count, waiting.outcome_uncertain) == (
        S.RETRYABLE,
        1,
        True,
    )
    assert p.store.needing_operator() == [waiting]
    assert p.store.queue_depth() == ports.QueueDepth(due=0, stuck=0, needs_operator=1)
    assert p.job().status is models.JobStatus.PROCESSING  # open until an operator decides
    assert p.rows(t.id) == []
    p.advance(timedelta(days=7))
    assert p.tick().claimed == 0
    assert len(p.gateway.lookups) == sm.LOOKUP_FAILURES_LIMIT


def test_a_transfer_that_kills_every_worker_taking_it_goes_to_an_operator() -> None:
    def poison(request: Request, call: simulated.Call) -> None:
        raise RuntimeError("the worker dies")  # each time, after the intent

    p = payouts(poison)
    [t] = p.schedule("u1")
    for _ in range(sm.ABANDONED_CLAIMS_LIMIT):
        assert p.tick().claimed == 1
        assert p.get(t.id).status is S.PROCESSING
        p.advance(LEASE)

    assert p.tick().claimed == 0

    waiting = p.get(t.id)
    assert waiting.needs_operator is not None
    assert "claims in a row expired" in waiting.needs_operator
    assert "a transfer may exist at Stripe" in waiting.needs_operator
    assert (waiting.status, waiting.attempt_count, waiting.outcome_uncertain) == (
        S.RETRYABLE,
        1,  # resending the same key spent nothing
        True,
    )
    assert p.store.needing_operator() == [waiting]
    assert p.keys_sent() == [key(t.id)] * sm.ABANDONED_CLAIMS_LIMIT


def test_a_look_up_that_fails_then_succeeds_resolves_the_transfer() -> None:
    p = payouts(
        scripted(creates=(Fault.server_error(created=True),), lookups=(Fault.rate_limited(),))
    )
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.tick()
    waiting = p.get(t.id)
    assert (waiting.status, waiting.lookup_failures, waiting.failure_code) == (
        S.RETRYABLE,
        1,
        "rate_limit",
    )
    assert waiting.key_replays_error  # still a look-up next: the key only replays its 500

    p.until_due(t.id)
    p.tick()

    [record] = p.gateway.created_transfers()
    assert p.get(t.id).stripe_transfer_id == record.id
    assert p.keys_sent() == [key(t.id)]
    assert len(p.gateway.lookups) == 2


# -- the store fails -------------------------------------------------------------------


def test_a_store_failure_while_recording_leaves_the_intent_for_the_take_over_to_resolve() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    p.store.fail_next(1, operations={"record"})

    report = p.tick()

    assert (report.claimed, report.completed) == (1, 0)
    held = p.get(t.id)  # paid at Stripe, not recorded here
    assert (held.status, held.attempt_count, held.outcome_uncertain) == (S.PROCESSING, 1, True)
    p.advance(LEASE)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert (done.status, done.stripe_transfer_id, done.attempt_count) == (
        S.COMPLETED,
        record.id,
        1,
    )
    assert p.keys_sent() == [key(t.id), key(t.id)]  # the same key: Stripe replays the payment
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_take_over_a_day_after_a_worker_died_mid_request_looks_up_instead_of_paying_again() -> (
    None
):
    p = payouts()
    [t] = p.schedule("u1")
    p.store.fail_next(1, operations={"record"})  # the worker dies after Stripe paid
    p.tick()
    p.advance(timedelta(hours=25))  # the fleet was down; Stripe has forgotten the key

    p.tick()

    [record] = p.gateway.created_transfers()
    assert p.get(t.id).stripe_transfer_id == record.id
    assert p.keys_sent() == [key(t.id)]
    assert len(p.gateway.lookups) == 1
    assert p.rows(t.id) == [(1, Entry.PAYOUT_COMPLETED, None)]


def test_a_store_failure_while_writing_the_intent_sends_nothing_and_spends_nothing() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    p.store.fail_next(1, operations={"write_intent"})

    p.tick()

    held = p.get(t.id)
    assert (held.status, held.attempt_count, held.outcome_uncertain) == (S.PROCESSING, 0, False)
    assert p.gateway.requests == ()
    p.advance(LEASE)
    p.tick()
    assert (p.get(t.id).status, p.get(t.id).attempt_count) == (S.COMPLETED, 1)


def test_a_database_outage_fails_the_tick_without_raising_and_the_next_tick_recovers() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    p.store.fail_next(1, operations={"claim_due"})

    failed = p.tick()

    assert failed.error is not None
    assert failed.error.startswith("StoreUnavailable")
    assert failed.claimed == 0
    assert not failed.succeeded
    assert p.gateway.requests == ()
    assert p.tick().completed == 1
    assert p.get(t.id).status is S.COMPLETED


class _UnreadableInbox(InMemoryInbox):
    def unprocessed(self, *, limit: int) -> list[ports.InboxItem]:
        raise errors.StoreUnavailable("connection refused")


def test_an_error_in_the_inbox_step_fails_the_tick_before_claiming() -> None:
    p = payouts()
    [t] = p.schedule("u1")

    failed = p.tick(inbox=_UnreadableInbox())

    assert failed.error == "StoreUnavailable: connection refused"
    assert p.get(t.id).status is S.PENDING


# -- executing a batch ----------------------------------------------------------------


def test_concurrency_bounds_the_simultaneous_gateway_calls() -> None:
    concurrency = 4
    barrier = threading.Barrier(concurrency)
    lock = threading.Lock()
    in_flight = 0
    most = 0

    def handler(request: Request, call: simulated.Call) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            barrier.wait(timeout=10)  # only passes once `concurrency` calls are in flight
        finally:
            with lock:
                in_flight -= 1

    p = payouts(handler)
    p.schedule(*(f"u{n:02d}" for n in range(3 * concurrency)))

    report = p.tick(concurrency=concurrency)

    assert report.completed == 3 * concurrency
    assert most == concurrency


def test_a_worker_never_holds_more_claims_than_its_concurrency() -> None:
    held: list[int] = []
    p: Payouts

    def handler(request: Request, call: simulated.Call) -> None:
        held.append(p.store.transfer_counts().get(S.PROCESSING, 0))

    p = payouts(handler)
    p.schedule(*(f"u{n:02d}" for n in range(30)))

    report = p.tick(concurrency=3)

    assert report.completed == 30
    # Claimed for free slots only: none waits in a queue while its lease runs.
    assert max(held) == 3


@attrs.define
class Budget:
    """A Stripe budget that grants what its script says, then ``then`` for ever."""

    script: list[int]
    then: int
    asked: int = 0
    on_ask: Callable[[int], None] | None = None  # told how many times it was asked

    def acquire(self, budget: ports.Budget, *, max_wait: float | None = None) -> float | None:
        return 0.0

    def push_back(self, budget: ports.Budget, retry_after: float | None) -> None:
        raise AssertionError("not in these tests")

    def ready_within(self, budget: ports.Budget, seconds: float) -> int:
        assert budget is ports.Budget.CREATE
        self.asked += 1
        if self.on_ask is not None:
            self.on_ask(self.asked)
        return self.script.pop(0) if self.script else self.then


def claim_sizes(p: Payouts) -> list[int]:
    """The ``limit`` of every claim the store is asked for, from now on."""
    sizes: list[int] = []
    claim_due = p.store.claim_due

    def recording(*, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        sizes.append(limit)
        return claim_due(limit=limit, lease=lease, token=token)

    p.store.claim_due = recording  # type: ignore[method-assign]
    return sizes


def test_a_worker_claims_no_more_than_the_stripe_budget_grants_soon() -> None:
    p = payouts()
    p.schedule(*(f"u{n:02d}" for n in range(10)))
    sizes = claim_sizes(p)

    report = p.tick(concurrency=8, limiter=Budget(script=[], then=2))

    assert report.completed == 10
    assert max(sizes) <= 2


def test_a_worker_claims_nothing_while_the_budget_grants_nothing() -> None:
    p = payouts()
    p.schedule("u1", "u2")
    budget = Budget(script=[0, 0, 0], then=8)  # a 429's pause, then the budget frees

    asked_at_claims: list[int] = []
    claim_due = p.store.claim_due

    def recording(*, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        asked_at_claims.append(budget.asked)
        return claim_due(limit=limit, lease=lease, token=token)

    p.store.claim_due = recording  # type: ignore[method-assign]

    report = p.tick(concurrency=8, limiter=budget)

    assert report.completed == 2
    assert asked_at_claims[0] == 4  # the first claim came after the three refusals


def test_claim_tokens_name_the_worker_that_holds_them() -> None:
    tokens: list[str | None] = []
    p: Payouts

    def handler(request: Request, call: simulated.Call) -> None:
        tokens.extend(t.claim_token for t in p.store.transfers() if t.status is S.PROCESSING)

    p = payouts(handler)
    p.schedule("u1", "u2")

    worker.Worker(
        store=p.store,
        directory=p.directory,
        gateway=p.gateway,
        clock=p.worker_clock,
        settings=p.settings,
        name="host-a:42",
    ).tick()

    assert tokens
    assert all(t is not None and t.startswith("host-a:42/") for t in tokens)


def test_a_stop_ends_a_tick_that_waits_for_the_stripe_budget() -> None:
    p = payouts()
    p.schedule("u1")
    stop = threading.Event()

    def stopping(asked: int) -> None:
        if asked >= 2:
            stop.set()  # SIGTERM while the worker waits for the budget

    # A long Retry-After: the budget grants nothing.
    budget = Budget(script=[], then=0, on_ask=stopping)

    report = p.tick(stop=stop, limiter=budget)

    assert (report.claimed, report.error) == (0, None)
    assert p.store.transfers()[0].status is S.PENDING


def test_execute_claimed_returns_one_result_per_transfer_in_claim_order() -> None:
    p = payouts()
    p.schedule("u1", "u2", "u3", connected=False)
    p.directory.set_account("u2", "acct_u2")
    claimed = p.claim("worker")

    results = p.execute_claimed(claimed, concurrency=3)

    assert [r.transfer.id for r in results] == [t.id for t in claimed]
    expected = {"u1": D.FAILED_TERMINAL, "u2": D.COMPLETED, "u3": D.FAILED_TERMINAL}
    assert [r.disposition for r in results] == [expected[t.user_id] for t in claimed]


def test_a_stop_request_ends_the_tick_without_claiming_more() -> None:
    stop = threading.Event()

    def handler(request: Request, call: simulated.Call) -> None:
        stop.set()  # SIGTERM arrives while the first transfer is at the gateway

    p = payouts(handler)
    transfers = p.schedule("u1", "u2", "u3")

    report = p.tick(concurrency=1, stop=stop)

    after = sorted(((p.get(t.id).status, p.get(t.id).attempt_count) for t in transfers), key=str)
    assert after == [(S.COMPLETED, 1), (S.PENDING, 0), (S.PENDING, 0)]
    # Claims track sending: the one in flight finished, the others were never claimed.
    assert (report.claimed, report.completed, report.released) == (1, 1, 0)
    assert {p.get(t.id).claim_token for t in transfers} == {None}
    assert len(p.gateway.requests) == 1


def test_a_stop_request_gives_back_the_claimed_transfers_not_yet_started() -> None:
    stop = threading.Event()

    def handler(request: Request, call: simulated.Call) -> None:
        stop.set()

    p = payouts(handler)
    p.schedule("u1", "u2", "u3")

    results = p.execute_claimed(p.claim("worker"), concurrency=1, stop=stop)

    assert [r.disposition for r in results] == [D.COMPLETED, D.RELEASED, D.RELEASED]
    released = [p.get(r.transfer.id) for r in results[1:]]
    assert [(t.status, t.attempt_count, t.claim_token) for t in released] == [
        (S.PENDING, 0, None)
    ] * 2
    assert len(p.gateway.requests) == 1


def test_a_halt_stops_claiming() -> None:
    p = payouts()
    transfers = p.schedule("u1", "u2", "u3")
    p.gateway.set_balance(0)

    report = p.tick(concurrency=1)

    assert report.halted_reason is not None
    assert (report.claimed, report.released) == (1, 1)  # one claim, then the halt
    [refused] = p.gateway.requests
    refused_id = dict(refused.metadata)["payout_transfer_id"]
    for t in transfers:
        back = p.get(t.id)
        assert (back.status, back.attempt_count, back.claim_token) == (S.PENDING, 0, None)
        assert back.key_generation == (1 if t.id == refused_id else 0)
    p.gateway.set_balance(None)
    p.tick()
    assert {p.get(t.id).status for t in transfers} == {S.COMPLETED}
    assert p.keys_sent(refused_id) == [key(refused_id), key(refused_id, 1)]


def test_a_halt_gives_back_the_claimed_transfers_not_yet_started() -> None:
    p = payouts()
    p.schedule("u1", "u2", "u3")
    p.gateway.set_balance(0)

    results = p.execute_claimed(p.claim("worker"), concurrency=1)

    assert [r.disposition for r in results][1:] == [D.RELEASED, D.RELEASED]
    assert results[0].systemic is not None
    assert len(p.gateway.requests) == 1


def test_a_gateway_that_raises_does_not_stop_the_other_transfers() -> None:
    def handler(request: Request, call: simulated.Call) -> None:
        is_u2 = isinstance(request, outcomes.TransferRequest) and request.destination == "acct_u2"
        if is_u2 and call.attempt == 1:
            raise RuntimeError("bug in the adapter")

    p = payouts(handler)
    u1, u2, u3 = p.schedule("u1", "u2", "u3")

    p.tick()

    assert p.get(u1.id).status is S.COMPLETED
    assert p.get(u3.id).status is S.COMPLETED
    stuck = p.get(u2.id)
    assert stuck.status is S.PROCESSING  # held until its lease expires
    assert stuck.outcome_uncertain  # its intent was written before the gateway raised
    assert p.rows(u2.id) == []
    p.advance(LEASE)
    p.tick()
    done = p.get(u2.id)
    assert (done.status, done.attempt_count) == (S.COMPLETED, 1)
    assert len(p.gateway.transfers_for(u2.id)) == 1


def test_a_concurrency_below_one_is_refused() -> None:
    p = payouts()
    p.schedule("u1")

    with pytest.raises(ValueError, match="concurrency"):
        p.execute_claimed(p.claim("worker"), concurrency=0)


# -- the tick and its settings --------------------------------------------------------


def inbox_of(*users: str) -> InMemoryInbox:
    """An inbox with one settlement per user (stl-1 pays u1 1000 cents, ...)."""
    inbox = InMemoryInbox()
    for n, user in enumerate(users, start=1):
        sid = f"stl-{n}"
        inbox.put(
            sid, b.settlement_json(sid, {user: 1000}, contest_id=f"contest-{n}"), received_at=T0
        )
    return inbox


def test_a_tick_takes_the_inbox_first_and_records_its_run_with_what_it_did() -> None:
    p = payouts(on_creates(Fault.rate_limited()))
    p.directory.set_account("u1", "acct_u1")
    inbox = inbox_of("u1", "u2")
    inbox.put("stl-bad", {"settlement_id": "stl-bad"}, received_at=T0)

    report = p.tick(inbox=inbox)

    assert (report.settlements_accepted, report.settlements_rejected, report.claimed) == (2, 1, 2)
    assert (report.retried, report.failed_terminal, report.completed) == (1, 1, 0)
    assert report.succeeded
    assert report.finished_at is not None
    assert p.store.recent_runs(1) == [report]


def test_a_wired_worker_takes_its_inbox_with_its_settings_and_pays() -> None:
    p = payouts()
    p.directory.set_account("u1", "acct_u1")
    wired = worker.Worker(
        store=p.store,
        directory=p.directory,
        gateway=p.gateway,
        clock=p.worker_clock,
        settings=attrs.evolve(p.settings, max_attempts=3),
        inbox=inbox_of("u1"),
    )

    report = wired.tick()

    assert (report.settlements_accepted, report.completed) == (1, 1)
    [paid] = p.store.transfers()
    assert (paid.status, paid.max_attempts, paid.amount_cents) == (S.COMPLETED, 3, 1000)
    assert wired.tick().settlements_accepted == 0  # a row is taken once


def test_default_worker_settings_keep_the_exactly_once_rules() -> None:
    settings = tick.WorkerSettings()
    assert settings.timing.margin == MARGIN == timedelta(seconds=60)
    assert settings.lease == SETTINGS.lease == LEASE  # what these tests reason with
    assert (
        tick.unsafe_timing(
            lease=settings.lease,
            stripe_timeout=settings.stripe_timeout,
            retry_max=timedelta(seconds=settings.retry_policy.max_seconds),
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"lease": timedelta(seconds=119)}, "lease (119 s) must be at least twice the send margin"),
        ({"stripe_timeout": timedelta(seconds=300)}, "lease (600 s) must be at least twice"),
        (
            {"retry_policy": retry.RetryPolicy(base_seconds=1, max_seconds=59)},
            "retry cap (59 s) must be at least the send margin (60 s)",
        ),
    ],
    ids=["short-lease", "long-stripe-timeout", "low-retry-cap"],
)
def test_worker_settings_that_would_break_the_rules_are_refused(
    changes: dict[str, Any], said: str
) -> None:
    with pytest.raises(ValueError, match="must be at least") as refused:
        tick.WorkerSettings(**changes)
    assert said in str(refused.value)


def test_worker_settings_at_the_limits_of_safety_are_accepted() -> None:
    settings = tick.WorkerSettings(
        lease=2 * MARGIN, retry_policy=retry.RetryPolicy(base_seconds=1, max_seconds=60)
    )
    assert settings.timing.policy.max_seconds == 60


# -- the attempt itself, driven by hand (the sans-I/O API) ----------------------------------


def a_claim(**changes: Any) -> models.PayoutTransfer:
    """The kit's transfer (``t-1``: 1,500 cents to ``u-1``) claimed by worker w-1 at T0."""
    return sm.claim(b.transfer(**changes), now=T0, lease=LEASE, token="w-1")


def intent(
    claimed: models.PayoutTransfer, *, at: timedelta = timedelta(0)
) -> models.PayoutTransfer:
    """``claimed`` after its intent, written ``at`` after the claim by the database's clock."""
    destination = claimed.destination_account or "acct_1"
    return sm.send(claimed, destination=destination, now=claimed.updated_at + at, margin=MARGIN)


def uncertain_claim(
    *, first_sent: timedelta, resent: timedelta | None = None, claimed_at: timedelta
) -> models.PayoutTransfer:
    """A transfer whose key was first sent ``first_sent`` after T0 (and resent
    ``resent`` after T0) with no answer, claimed again ``claimed_at`` after T0."""
    sent = sm.send(a_claim(), destination="acct_1", now=T0 + first_sent, margin=MARGIN)
    lost = sm.retry(sent, next_attempt_at=T0, code="timeout", message="m", now=T0 + first_sent)
    if resent is not None:
        again = sm.claim(lost, now=T0 + resent, lease=LEASE, token="w-r")
        sent = sm.send(again, destination="acct_1", now=T0 + resent, margin=MARGIN)
        lost = sm.retry(sent, next_attempt_at=T0, code="timeout", message="m", now=T0 + resent)
    return sm.claim(lost, now=T0 + claimed_at, lease=LEASE, token="w-2")


def test_run_attempt_asks_for_the_account_the_clock_the_intent_the_send_and_the_record() -> None:
    claimed = a_claim()
    steps = attempt.run_attempt(claimed, timing=TIMING)

    assert next(steps) == attempt.ReadAccount(user_id="u-1")
    assert steps.send("acct_1") == attempt.ReadLocalClock()
    began = T0 + timedelta(hours=3)  # the worker's clock: only time elapsed on it counts
    assert steps.send(began) == attempt.WriteIntent(
        claimed=claimed, destination="acct_1", margin=MARGIN
    )
    written = intent(claimed, at=timedelta(seconds=2))
    send = steps.send(written)
    assert send == attempt.Send(
        request=idempotency.transfer_request(written, "acct_1"),
        intent_began=began,
        start_limit=attempt.SEND_START_LIMIT,
    )
    assert send.request.idempotency_key == "payout:t-1"
    record = steps.send(outcomes.Succeeded(stripe_transfer_id="tr_1"))
    assert isinstance(record, attempt.Record)
    sent_at = T0 + timedelta(seconds=2)
    assert record.claimed == written
    assert (record.updated.status, record.updated.stripe_transfer_id) == (S.COMPLETED, "tr_1")
    assert record.updated.updated_at == record.now == sent_at  # the intent's database time
    assert record.ledger_entry == ledger.entry_for(record.updated, now=sent_at)

    result = finish(steps, True)

    assert result == attempt.AttemptResult(transfer=record.updated, disposition=D.COMPLETED)


def test_run_attempt_resends_an_uncertain_key_to_its_pinned_destination_without_the_directory() -> (
    None
):
    claimed = uncertain_claim(first_sent=timedelta(0), claimed_at=timedelta(minutes=5))
    steps = attempt.run_attempt(claimed, timing=TIMING)

    assert next(steps) == attempt.ReadLocalClock()
    write = steps.send(T0)
    assert write == attempt.WriteIntent(claimed=claimed, destination="acct_1", margin=MARGIN)
    resent = intent(claimed)
    assert (resent.attempt_count, resent.key_sends) == (1, 2)
    send = steps.send(resent)
    assert isinstance(send, attempt.Send)
    assert send.request.idempotency_key == "payout:t-1"


def test_run_attempt_fails_a_winner_with_no_account_without_any_intent() -> None:
    claimed = a_claim()
    steps = attempt.run_attempt(claimed, timing=TIMING)
    next(steps)

    record = steps.send(None)

    assert isinstance(record, attempt.Record)
    assert (record.updated.status, record.updated.failure_code, record.updated.attempt_count) == (
        S.FAILED_TERMINAL,
        "stripe_account_not_connected",
        1,
    )
    assert record.ledger_entry is not None
    assert record.ledger_entry.entry_type is Entry.PAYOUT_FAILED
    assert finish(steps, True).disposition is D.FAILED_TERMINAL


@pytest.mark.parametrize(
    ("answer", "code", "wait", "replays_error"),
    [
        (outcomes.Transient(code="rate_limit", message="429"), "rate_limit", FIRST_BACKOFF, False),
        (SAVED_500, "api_error", MARGIN, True),
        (
            outcomes.Unknown(
                code="idempotency_error", message="other parameters", key_replays_error=True
            ),
            "idempotency_error",
            MARGIN,
            True,
        ),
    ],
    ids=["429", "saved-500", "idempotency-error"],
)
def test_run_attempt_decides_after_the_send_by_the_intents_database_time(
    answer: outcomes.GatewayOutcome, code: str, wait: timedelta, replays_error: bool
) -> None:
    claimed = a_claim()
    steps = attempt.run_attempt(claimed, timing=TIMING)
    next(steps)
    steps.send("acct_1")
    steps.send(T0)
    written = intent(claimed, at=timedelta(seconds=40))  # the database was slow to commit
    steps.send(written)

    record = steps.send(answer)

    assert isinstance(record, attempt.Record)
    sent_at = T0 + timedelta(seconds=40)
    retried = record.updated
    assert (retried.status, retried.failure_code, retried.outcome_uncertain) == (
        S.RETRYABLE,
        code,
        True,  # never a decline: the key may have created a transfer
    )
    assert retried.key_replays_error is replays_error
    assert retried.next_attempt_at == sent_at + wait
    assert retried.updated_at == record.now == sent_at
    assert record.ledger_entry is None
    assert finish(steps, True).disposition is D.RETRIED


def test_run_attempt_looks_up_an_untrusted_key_only_once_the_margin_has_passed() -> None:
    resent = sm.KEY_TRUST_WINDOW - timedelta(seconds=10)
    too_early = uncertain_claim(
        first_sent=timedelta(0), resent=resent, claimed_at=sm.KEY_TRUST_WINDOW
    )
    steps = attempt.run_attempt(too_early, timing=TIMING)

    record = next(steps)

    assert isinstance(record, attempt.Record)
    assert record.updated.status is S.RETRYABLE
    assert record.updated.outcome_uncertain
    assert record.updated.next_attempt_at == T0 + resent + MARGIN
    assert record.ledger_entry is None
    assert finish(steps, True).disposition is D.RELEASED

    on_time = uncertain_claim(first_sent=timedelta(0), resent=resent, claimed_at=resent + MARGIN)
    assert next(attempt.run_attempt(on_time, timing=TIMING)) == attempt.LookUp(
        lookup=outcomes.TransferLookup(
            destination="acct_1", transfer_group="contest:c-1", payout_transfer_id="t-1"
        )
    )


def test_run_attempt_looks_up_when_the_key_aged_past_trust_between_claim_and_intent() -> None:
    claimed = uncertain_claim(
        first_sent=timedelta(0), claimed_at=sm.KEY_TRUST_WINDOW - timedelta(seconds=1)
    )
    steps = attempt.run_attempt(claimed, timing=TIMING)
    next(steps)
    steps.send(T0)

    lookup = steps.send(sm.IntentRefusal.KEY_UNTRUSTED)

    assert isinstance(lookup, attempt.LookUp)
    record = steps.send(outcomes.Found(stripe_transfer_id="tr_1"))
    assert isinstance(record, attempt.Record)
    assert (record.updated.status, record.updated.stripe_transfer_id) == (S.COMPLETED, "tr_1")


def test_run_attempt_releases_its_claim_when_the_lease_is_too_short_to_send() -> None:
    claimed = a_claim()
    steps = attempt.run_attempt(claimed, timing=TIMING)
    next(steps)
    steps.send("acct_1")
    steps.send(T0)

    record = steps.send(sm.IntentRefusal.LEASE_TOO_SHORT)

    assert isinstance(record, attempt.Record)
    assert (record.updated.status, record.updated.attempt_count) == (S.PENDING, 0)
    assert record.ledger_entry is None
    assert finish(steps, True).disposition is D.RELEASED


@pytest.mark.parametrize(
    ("answer_to_the_intent", "answer_to_the_send", "answer_to_the_record"),
    [
        (sm.IntentRefusal.STALE_CLAIM, None, None),
        ("written", attempt.TOO_LATE, None),
        ("written", outcomes.Succeeded(stripe_transfer_id="tr_1"), False),
    ],
    ids=["intent-refused", "too-late-to-send", "record-refused"],
)
def test_run_attempt_ends_stale_with_nothing_recorded_when_its_claim_is_lost(
    answer_to_the_intent: object, answer_to_the_send: object, answer_to_the_record: object
) -> None:
    claimed = a_claim()
    written = intent(claimed)
    steps = attempt.run_attempt(claimed, timing=TIMING)
    next(steps)
    steps.send("acct_1")
    steps.send(T0)
    answers = [
        written if answer_to_the_intent == "written" else answer_to_the_intent,
        answer_to_the_send,
        answer_to_the_record,
    ]
    answers = [a for a in answers if a is not None]

    for answer in answers[:-1]:
        steps.send(answer)
    result = finish(steps, answers[-1])

    assert result.disposition is D.STALE
    assert result.transfer == (claimed if answer_to_the_send is None else written)


def test_a_send_is_too_late_only_past_the_start_limit_by_the_workers_clock() -> None:
    send = attempt.Send(request=idempotency.transfer_request(a_claim(), "acct_1"), intent_began=T0)
    assert not send.too_late(T0 + attempt.SEND_START_LIMIT)
    assert send.too_late(T0 + attempt.SEND_START_LIMIT + timedelta(microseconds=1))


def test_run_attempt_refuses_a_transfer_that_is_not_claimed() -> None:
    pending = attrs.evolve(a_claim(), status=S.PENDING, claim_token=None, lease_expires_at=None)

    with pytest.raises(errors.IllegalTransition):
        next(attempt.run_attempt(pending, timing=TIMING))


def test_run_attempt_raises_on_an_answer_its_step_does_not_take() -> None:
    steps = attempt.run_attempt(a_claim(), timing=TIMING)
    next(steps)

    with pytest.raises(TypeError, match="the driver answered 42"):
        steps.send(42)


def test_run_attempt_raises_on_a_refusal_it_can_never_cause() -> None:
    steps = attempt.run_attempt(a_claim(), timing=TIMING)
    next(steps)
    steps.send("acct_1")
    steps.send(T0)

    with pytest.raises(errors.IllegalTransition, match="destination_changed"):
        steps.send(sm.IntentRefusal.DESTINATION_CHANGED)
