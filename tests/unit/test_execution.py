"""Executing transfers: every row of DESIGN 3's state machine and the unknown-outcome rules.

The services run over the in-memory store and the simulated gateway, with a
manual clock and a seeded jitter, so every test is exact and fast.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from payout_adapters.memory import clock as manual_clock
from payout_adapters.memory import directory as memory_directory
from payout_adapters.memory import gateway as simulated
from payout_adapters.memory import store as memory_store
from payout_core import errors, models, outcomes, retry
from payout_core.services import execution, scheduling, tick

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
LEASE = timedelta(minutes=10)
Fault = simulated.Fault
S = models.TransferStatus
Entry = models.LedgerEntryType
Request = outcomes.TransferRequest | outcomes.TransferLookup

LOST_NOTHING_CREATED = Fault.respond(outcomes.Unknown(code="timeout", message="read timed out"))


@attrs.define
class Payouts:
    """One contest's payout on in-memory adapters, driven tick by tick."""

    gateway: simulated.SimulatedGateway
    store: memory_store.InMemoryStore = attrs.Factory(memory_store.InMemoryStore)
    directory: memory_directory.InMemoryAccountDirectory = attrs.Factory(
        memory_directory.InMemoryAccountDirectory
    )
    clock: manual_clock.ManualClock = attrs.Factory(lambda: manual_clock.ManualClock(T0))
    policy: retry.RetryPolicy = attrs.Factory(
        lambda: retry.RetryPolicy(uniform=random.Random(2026).random)
    )
    job_id: str = ""

    def schedule(
        self, *users: str, max_attempts: int = 5, connected: bool = True
    ) -> list[models.PayoutTransfer]:
        if connected:
            for user in users:
                self.directory.set_account(user, f"acct_{user}")
        settlement = models.Settlement(
            settlement_id="stl-1",
            contest_id="contest-1",
            currency="usd",
            winners=tuple(
                models.Winner(user_id=u, amount_cents=1000 * (n + 1)) for n, u in enumerate(users)
            ),
        )
        result = scheduling.schedule_payout_for_settlement(
            store=self.store, settlement=settlement, now=self.clock.now(), max_attempts=max_attempts
        )
        self.job_id = result.job.id
        return self.store.transfers_of(self.job_id)

    def settings(self, *, concurrency: int = 4, batch_size: int = 100) -> tick.WorkerSettings:
        return tick.WorkerSettings(
            batch_size=batch_size, concurrency=concurrency, lease=LEASE, retry_policy=self.policy
        )

    def tick(
        self,
        *,
        concurrency: int = 4,
        stop: threading.Event | None = None,
        before_claiming: Callable[[models.RunReport], models.RunReport] | None = None,
    ) -> models.RunReport:
        return tick.run_tick(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings(concurrency=concurrency),
            stop=stop,
            before_claiming=before_claiming,
        )

    def claim(self, worker: str) -> list[models.PayoutTransfer]:
        return self.store.claim_due(now=self.clock.now(), limit=100, lease=LEASE, token=worker)

    def execute(self, claimed: models.PayoutTransfer) -> execution.AttemptResult:
        return execution.execute_transfer(
            transfer=claimed,
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.clock,
            policy=self.policy,
        )

    def only(self) -> models.PayoutTransfer:
        [transfer] = self.store.transfers_of(self.job_id)
        return transfer

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

    def until_due(self, transfer_id: str) -> None:
        """Move the clock to when the transfer may be claimed again."""
        due = self.get(transfer_id).next_attempt_at
        assert due is not None
        if due > self.clock.now():
            self.clock.advance(due - self.clock.now())

    def keys_sent(self) -> list[str]:
        return [r.idempotency_key for r in self.gateway.requests]


def on_creates(*faults: simulated.Fault | None) -> simulated.Handler:
    """A handler answering the n-th Create Transfer call with the n-th fault, then normally."""
    script = list(faults)
    lock = threading.Lock()

    def handler(request: Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is not simulated.Operation.CREATE:
            return None
        with lock:
            return script.pop(0) if script else None

    return handler


def payouts(handler: simulated.Handler | None = None) -> Payouts:
    clock = manual_clock.ManualClock(T0)
    return Payouts(gateway=simulated.SimulatedGateway(handler=handler, clock=clock), clock=clock)


# -- processing -> completed ---------------------------------------------------


def test_a_successful_attempt_completes_the_transfer_with_one_debit_row() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    report = p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert (done.attempt_count, done.destination_account) == (1, "acct_u1")
    assert (record.amount_cents, record.destination, record.idempotency_key) == (
        1000,
        "acct_u1",
        f"payout:{t.id}",
    )
    assert record.transfer_group == "contest:contest-1"
    assert record.payout_transfer_id == t.id
    [row] = p.store.ledger(transfer_id=t.id)
    assert (row.entry_type, row.direction, row.amount_cents) == (
        Entry.PAYOUT_COMPLETED,
        models.LedgerDirection.DEBIT,
        1000,
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


# -- processing -> failed_terminal ---------------------------------------------------


def test_a_winner_without_a_connected_account_fails_without_calling_the_gateway() -> None:
    p = payouts()
    [t] = p.schedule("u1", connected=False)
    report = p.tick()
    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "stripe_account_not_connected"
    assert failed.stripe_transfer_id is None
    assert p.gateway.requests == ()
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "stripe_account_not_connected")]
    assert report.failed_terminal == 1


def test_a_permanent_decline_fails_the_transfer_with_the_gateways_code() -> None:
    p = payouts()
    declined, paid = p.schedule("u1", "u2")
    p.gateway.decline("acct_u1", code="account_invalid")
    p.tick()
    failed = p.get(declined.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "account_invalid"
    assert p.rows(declined.id) == [(1, Entry.PAYOUT_FAILED, "account_invalid")]
    assert p.get(paid.id).status is S.COMPLETED
    job = p.job()
    assert (job.status, job.completed_count, job.failed_count) == (models.JobStatus.COMPLETE, 1, 1)


def test_a_transient_failure_at_the_last_attempt_fails_with_max_attempts_exceeded() -> None:
    p = payouts(lambda _r, _c: Fault.rate_limited())
    [t] = p.schedule("u1", max_attempts=2)
    p.tick()
    p.until_due(t.id)
    p.tick()
    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "max_attempts_exceeded"
    assert failed.attempt_count == 2
    assert p.gateway.lookups == ()  # nothing can exist at Stripe: no look-up needed
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit"),
        (2, Entry.PAYOUT_FAILED, "max_attempts_exceeded"),
    ]


# -- processing -> retryable ---------------------------------------------------


def test_a_transient_failure_with_attempts_left_is_retried_after_a_jittered_backoff() -> None:
    p = payouts(on_creates(Fault.rate_limited()))
    [t] = p.schedule("u1")
    report = p.tick()
    retried = p.get(t.id)
    assert retried.status is S.RETRYABLE
    assert retried.attempt_count == 1
    assert retried.failure_code == "rate_limit"
    assert not retried.outcome_uncertain
    assert retried.next_attempt_at is not None
    ceiling = timedelta(seconds=p.policy.ceiling(1))
    assert T0 <= retried.next_attempt_at <= T0 + ceiling
    assert p.rows(t.id) == [(1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit")]
    assert report.retried == 1
    assert p.tick().claimed == 0  # not due yet
    p.until_due(t.id)
    p.tick()
    assert p.get(t.id).status is S.COMPLETED
    assert p.get(t.id).attempt_count == 2


def test_a_lost_response_is_retried_with_the_same_key_and_completed_once() -> None:
    p = payouts(on_creates(Fault.lost_response()))
    [t] = p.schedule("u1")
    p.tick()
    lost = p.get(t.id)
    assert lost.status is S.RETRYABLE
    assert lost.outcome_uncertain
    assert not lost.key_replays_error
    p.until_due(t.id)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert p.keys_sent() == [f"payout:{t.id}", f"payout:{t.id}"]
    assert p.gateway.lookups == ()
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "timeout"),
        (2, Entry.PAYOUT_COMPLETED, None),
    ]


def test_after_a_server_error_the_next_attempt_looks_up_and_completes_without_a_second_create() -> (
    None
):
    p = payouts(on_creates(Fault.server_error(created=True)))
    [t] = p.schedule("u1")
    p.tick()
    assert p.get(t.id).key_replays_error
    p.until_due(t.id)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert len(p.gateway.requests) == 1
    assert len(p.gateway.lookups) == 1
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "api_error"),
        (2, Entry.PAYOUT_COMPLETED, None),
    ]


def test_after_a_server_error_with_nothing_created_the_next_attempt_uses_a_new_key() -> None:
    p = payouts(on_creates(Fault.server_error(created=False)))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.tick()
    done = p.get(t.id)
    assert done.status is S.COMPLETED
    assert done.key_generation == 1
    assert p.keys_sent() == [f"payout:{t.id}", f"payout:{t.id}:1"]
    assert len(p.gateway.lookups) == 1
    [record] = p.gateway.created_transfers()
    assert record.idempotency_key == f"payout:{t.id}:1"


def test_a_failed_look_up_keeps_the_next_attempt_looking_up_before_sending() -> None:
    creates = on_creates(Fault.server_error())
    lookups = iter([Fault.rate_limited()])

    def handler(request: Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is simulated.Operation.CREATE:
            return creates(request, call)
        return next(lookups, None)

    p = payouts(handler)
    [t] = p.schedule("u1")
    p.tick()  # 500 saved under the key
    p.until_due(t.id)
    p.tick()  # the look-up is rate limited
    waiting = p.get(t.id)
    assert waiting.status is S.RETRYABLE
    assert waiting.key_replays_error  # the key still replays its 500
    p.until_due(t.id)
    p.tick()
    assert p.get(t.id).status is S.COMPLETED
    assert p.keys_sent() == [f"payout:{t.id}", f"payout:{t.id}:1"]  # the 500 was never replayed
    assert p.get(t.id).attempt_count == 3


@pytest.mark.parametrize(
    ("hours", "looked_up"),
    [(1, False), (22, False), (23, True), (30, True)],
)
def test_an_uncertain_transfer_whose_key_may_be_pruned_is_looked_up_first(
    hours: int, looked_up: bool
) -> None:
    p = payouts(on_creates(LOST_NOTHING_CREATED))
    [t] = p.schedule("u1")
    p.tick()
    p.clock.advance(timedelta(hours=hours))
    p.tick()
    done = p.get(t.id)
    assert done.status is S.COMPLETED
    assert len(p.gateway.lookups) == int(looked_up)
    # After a look-up found nothing, the next key is used: an old key could be forgotten at
    # Stripe and create a second transfer if the first request did land after all.
    expected = f"payout:{t.id}:1" if looked_up else f"payout:{t.id}"
    assert p.keys_sent() == [f"payout:{t.id}", expected]


def test_an_uncertain_transfer_whose_old_key_did_create_is_completed_by_the_look_up() -> None:
    p = payouts(on_creates(Fault.lost_response()))
    [t] = p.schedule("u1")
    p.tick()
    p.clock.advance(timedelta(hours=23))
    p.tick()
    [record] = p.gateway.created_transfers()
    assert p.get(t.id).stripe_transfer_id == record.id
    assert len(p.gateway.requests) == 1


def test_a_decline_after_an_uncertain_attempt_is_looked_up_before_failing() -> None:
    p = payouts(on_creates(Fault.lost_response(), Fault.permanent("account_closed")))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED  # the first request had paid: never fail a paid winner
    assert done.stripe_transfer_id == record.id


def test_a_decline_after_an_uncertain_attempt_fails_with_its_code_once_nothing_is_found() -> None:
    p = payouts(on_creates(LOST_NOTHING_CREATED, Fault.permanent("account_closed")))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.tick()
    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "account_closed"
    assert len(p.gateway.lookups) == 1
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "timeout"),
        (2, Entry.PAYOUT_FAILED, "account_closed"),
    ]


# -- the last attempt ends unknown: parked, then resolved by a look-up ---------


def test_an_unknown_outcome_at_the_last_attempt_is_parked_then_completed_when_found() -> None:
    p = payouts(on_creates(Fault.rate_limited(), Fault.lost_response()))
    [t] = p.schedule("u1", max_attempts=2)
    p.tick()
    p.until_due(t.id)
    p.tick()
    parked = p.get(t.id)
    assert parked.status is S.RETRYABLE
    assert (parked.attempt_count, parked.outcome_uncertain) == (2, True)
    assert p.rows(t.id) == [(1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit")]  # no row yet
    p.until_due(t.id)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.status is S.COMPLETED
    assert done.stripe_transfer_id == record.id
    assert done.attempt_count == 2
    assert len(p.gateway.requests) == 2  # the resolving claim only looked up
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit"),
        (2, Entry.PAYOUT_COMPLETED, None),
    ]


def test_an_unknown_outcome_at_the_last_attempt_fails_once_the_look_up_finds_nothing() -> None:
    p = payouts(on_creates(Fault.rate_limited(), LOST_NOTHING_CREATED))
    [t] = p.schedule("u1", max_attempts=2)
    p.tick()
    p.until_due(t.id)
    p.tick()
    assert p.get(t.id).status is S.RETRYABLE
    p.until_due(t.id)
    p.tick()
    failed = p.get(t.id)
    assert failed.status is S.FAILED_TERMINAL
    assert failed.failure_code == "max_attempts_exceeded"
    assert failed.attempt_count == 2
    assert p.gateway.created_transfers() == []
    assert p.rows(t.id) == [
        (1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit"),
        (2, Entry.PAYOUT_FAILED, "max_attempts_exceeded"),
    ]


def test_a_parked_transfer_stays_parked_while_its_look_up_fails() -> None:
    def handler(request: Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is simulated.Operation.CREATE:
            return LOST_NOTHING_CREATED
        return Fault.server_error() if call.attempt <= 2 else None

    p = payouts(handler)
    [t] = p.schedule("u1", max_attempts=1)
    for _ in range(3):
        p.tick()
        assert p.get(t.id).status is S.RETRYABLE
        assert p.rows(t.id) == []
        p.until_due(t.id)
    p.tick()
    assert p.get(t.id).status is S.FAILED_TERMINAL
    assert len(p.gateway.lookups) == 3
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "max_attempts_exceeded")]


def test_an_outage_during_the_resolving_look_up_keeps_the_transfer_parked() -> None:
    p = payouts(on_creates(LOST_NOTHING_CREATED))
    [t] = p.schedule("u1", max_attempts=1)
    p.tick()
    p.until_due(t.id)
    p.gateway.systemic_outage()
    assert p.tick().halted_reason is not None
    parked = p.get(t.id)
    assert parked.status is S.RETRYABLE
    assert (parked.attempt_count, parked.outcome_uncertain) == (1, True)
    assert p.rows(t.id) == []
    p.gateway.end_outage()
    p.tick()
    assert p.get(t.id).status is S.FAILED_TERMINAL
    assert p.rows(t.id) == [(1, Entry.PAYOUT_FAILED, "max_attempts_exceeded")]


# -- systemic: the attempt is given back and the tick halts ----------------------


def test_a_systemic_failure_gives_the_attempts_back_and_halts_the_tick() -> None:
    p = payouts()
    transfers = p.schedule("u1", "u2", "u3")
    p.gateway.systemic_outage("authentication_error")
    report = p.tick(concurrency=1)
    assert report.halted_reason is not None
    assert report.halted_reason.startswith("authentication_error")
    assert (report.claimed, report.released) == (3, 3)
    assert len(p.gateway.requests) == 1  # the rest of the batch never reached the gateway
    for t in transfers:
        released = p.get(t.id)
        assert released.status is S.PENDING
        assert released.attempt_count == 0
        assert released.claim_token is None
    assert p.store.ledger(job_id=p.job_id) == []
    p.gateway.end_outage()
    p.tick()
    assert {p.get(t.id).status for t in transfers} == {S.COMPLETED}
    assert {p.get(t.id).attempt_count for t in transfers} == {1}


def test_a_systemic_failure_on_a_retried_transfer_keeps_it_retryable() -> None:
    p = payouts(on_creates(Fault.rate_limited(), Fault.systemic("balance_insufficient")))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    report = p.tick()
    released = p.get(t.id)
    assert report.halted_reason is not None
    assert released.status is S.RETRYABLE
    assert released.attempt_count == 1
    assert p.rows(t.id) == [(1, Entry.PAYOUT_ATTEMPT_FAILED, "rate_limit")]


def test_a_systemic_failure_of_a_look_up_gives_the_attempt_back() -> None:
    p = payouts(on_creates(Fault.server_error()))
    [t] = p.schedule("u1")
    p.tick()
    p.until_due(t.id)
    p.gateway.systemic_outage("permission_error")
    report = p.tick()
    assert report.halted_reason is not None
    released = p.get(t.id)
    assert released.status is S.RETRYABLE
    assert released.attempt_count == 1
    assert released.key_replays_error
    assert len(p.gateway.lookups) == 1


# -- claims -----------------------------------------------------------------------


def test_a_worker_whose_lease_was_taken_over_cannot_record() -> None:
    p = payouts()
    p.schedule("u1")
    [first] = p.claim("worker-a")
    p.clock.advance(LEASE)
    [second] = p.claim("worker-b")
    assert second.outcome_uncertain  # worker-a may have reached Stripe
    stale = p.execute(first)
    assert stale.disposition is execution.Disposition.STALE
    assert p.get(first.id) == second  # untouched by worker-a
    assert p.rows(first.id) == []
    assert p.keys_sent() == []  # past its lease, worker-a sends nothing at all
    done = p.execute(second)
    assert done.disposition is execution.Disposition.COMPLETED
    [record] = p.gateway.created_transfers()
    assert p.get(first.id).stripe_transfer_id == record.id
    assert p.rows(first.id) == [(2, Entry.PAYOUT_COMPLETED, None)]


def test_a_taken_over_claim_is_looked_up_before_failing_for_want_of_an_account() -> None:
    p = payouts()
    [t] = p.schedule("u1", connected=False)
    p.claim("worker-a")  # worker-a dies: did it reach Stripe before?
    p.clock.advance(LEASE)
    [taken_over] = p.claim("worker-b")
    result = p.execute(taken_over)
    assert result.disposition is execution.Disposition.FAILED_TERMINAL
    assert p.get(t.id).failure_code == "stripe_account_not_connected"
    assert p.gateway.lookups == (
        outcomes.TransferLookup(
            destination=None, transfer_group="contest:contest-1", payout_transfer_id=t.id
        ),
    )
    assert p.gateway.requests == ()


def test_executing_a_transfer_that_is_not_claimed_is_refused() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    with pytest.raises(errors.IllegalTransition):
        p.execute(t)


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


def test_a_stop_request_releases_the_transfers_not_yet_started() -> None:
    stop = threading.Event()

    def handler(request: Request, call: simulated.Call) -> None:
        stop.set()  # SIGTERM arrives while the first transfer is at the gateway

    p = payouts(handler)
    transfers = p.schedule("u1", "u2", "u3")
    report = p.tick(concurrency=1, stop=stop)
    after = sorted(((p.get(t.id).status, p.get(t.id).attempt_count) for t in transfers), key=str)
    assert after == [(S.COMPLETED, 1), (S.PENDING, 0), (S.PENDING, 0)]
    assert (report.completed, report.released) == (1, 2)
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
    assert p.rows(u2.id) == []
    p.clock.advance(LEASE)
    p.tick()
    done = p.get(u2.id)
    assert done.status is S.COMPLETED
    assert done.attempt_count == 2
    assert len(p.gateway.transfers_for(u2.id)) == 1


def test_a_concurrency_below_one_is_refused() -> None:
    p = payouts()
    p.schedule("u1")
    with pytest.raises(ValueError, match="concurrency"):
        execution.execute_claimed(
            transfers=p.claim("worker"),
            store=p.store,
            directory=p.directory,
            gateway=p.gateway,
            clock=p.clock,
            policy=p.policy,
            concurrency=0,
        )


# -- the tick -----------------------------------------------------------------------


def test_a_tick_records_its_run_with_what_it_did() -> None:
    p = payouts(on_creates(Fault.rate_limited()))
    p.schedule("u1", "u2", connected=False)
    p.directory.set_account("u1", "acct_u1")

    def take_inbox(report: models.RunReport) -> models.RunReport:
        return attrs.evolve(report, settlements_accepted=2)

    report = p.tick(before_claiming=take_inbox)
    assert (report.settlements_accepted, report.claimed) == (2, 2)
    assert (report.retried, report.failed_terminal, report.completed) == (1, 1, 0)
    assert report.succeeded
    assert report.finished_at is not None
    assert p.store.recent_runs(1) == [report]


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


def test_an_error_in_the_inbox_step_fails_the_tick_before_claiming() -> None:
    p = payouts()
    [t] = p.schedule("u1")

    def database_gone(report: models.RunReport) -> models.RunReport:
        raise errors.StoreUnavailable("connection refused")

    failed = p.tick(before_claiming=database_gone)
    assert failed.error == "StoreUnavailable: connection refused"
    assert p.get(t.id).status is S.PENDING


def test_an_outcome_the_store_failed_to_record_is_replayed_after_the_lease_expires() -> None:
    p = payouts()
    [t] = p.schedule("u1")
    p.store.fail_next(1, operations={"record"})
    report = p.tick()
    assert (report.claimed, report.completed) == (1, 0)
    assert p.get(t.id).status is S.PROCESSING  # paid at Stripe, not yet recorded here
    p.clock.advance(LEASE)
    p.tick()
    done = p.get(t.id)
    [record] = p.gateway.created_transfers()
    assert done.stripe_transfer_id == record.id
    assert p.keys_sent() == [f"payout:{t.id}", f"payout:{t.id}"]
    assert p.rows(t.id) == [(2, Entry.PAYOUT_COMPLETED, None)]


def test_a_worker_past_its_lease_never_sends_even_after_the_claim_moved_to_a_new_key() -> None:
    # worker-a stalls; its claim is taken over; a 500 moves the transfer to key
    # generation 1 and it is paid; a day later Stripe has forgotten key 0. Were
    # worker-a to send key 0 now, Stripe would create a second transfer.
    p = payouts(on_creates(Fault.server_error(created=False)))
    p.schedule("u1")
    [stalled] = p.claim("worker-a")
    p.clock.advance(LEASE)
    [taken] = p.claim("worker-b")
    assert p.execute(taken).disposition is execution.Disposition.RETRIED
    p.until_due(taken.id)
    [again] = p.claim("worker-c")
    assert p.execute(again).disposition is execution.Disposition.COMPLETED
    p.clock.advance(timedelta(hours=25))
    assert p.execute(stalled).disposition is execution.Disposition.STALE
    assert len(p.gateway.created_transfers()) == 1
    assert p.keys_sent() == [f"payout:{taken.id}", f"payout:{taken.id}:1"]
