"""The money invariants of DESIGN 3, under random settlements, faults, crashes and clock jumps.

A Hypothesis state machine drives the real services over the in-memory store
and the simulated Stripe: scheduling (again, changed, concurrently), ticks at
random concurrency, gateway faults (lost responses, 500s saved under the key,
429s, 409s, declines, systemic outages), workers that claim and die or come
back late, and time jumping past leases, backoffs and Stripe's 24-hour key
window. After every step every invariant is checked; at the end the queue is
drained and every transfer must have ended.
"""

from __future__ import annotations

import itertools
import random
import threading
from datetime import timedelta

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_adapters.memory.faults import Call, Fault, Request
from payout_core import errors, ledger, models, reconcile, retry
from payout_core import reversal as rules
from payout_core.services import attempting, reversals, scheduling, tick
from tests.kit.times import LEASE, T0

MAX_ATTEMPTS = 4
S = models.TransferStatus
R = models.ReversalStatus

FAULTS = st.sampled_from(
    [
        None,
        Fault.lost_response(),
        Fault.server_error(created=False),
        Fault.server_error(created=True),
        Fault.rate_limited(),
        Fault.key_in_use(),
        Fault.permanent("account_invalid"),
        Fault.systemic("authentication_error"),
        Fault.finishes_later(20),
        Fault.finishes_later(50),
    ]
)
JUMPS = st.sampled_from(
    [
        timedelta(seconds=1),
        timedelta(seconds=45),
        timedelta(minutes=5),
        LEASE + timedelta(seconds=1),
        timedelta(hours=2),
        timedelta(hours=25),  # past Stripe's idempotency key window
    ]
)


class PayoutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)  # the database's
        self.store = InMemoryStore(clock=self.clock)
        self.skew = timedelta(0)  # the next worker's clock against the database's
        self.directory = InMemoryAccountDirectory()
        self.faults: list[Fault | None] = []
        self.faults_lock = threading.Lock()
        self.gateway = SimulatedGateway(handler=self.next_fault, clock=self.clock, seed=1)
        self.policy = retry.RetryPolicy(
            base_seconds=20, max_seconds=600, uniform=random.Random(3).random
        )
        self.settlements: list[models.Settlement] = []
        self.held: list[list[models.PayoutTransfer]] = []
        self.first_terminal: dict[str, models.PayoutTransfer] = {}
        self.contests = 0
        self.reversal_ids = itertools.count(1)

    def next_fault(self, _request: Request, _call: Call) -> Fault | None:
        with self.faults_lock:
            return self.faults.pop(0) if self.faults else None

    def worker_clock(self) -> ManualClock:
        """The next worker's own clock: the database's, off by the skew."""
        return ManualClock(self.clock.now() + self.skew)

    def worker(self, concurrency: int = 1) -> tick.WorkerSettings:
        return tick.WorkerSettings(
            batch_size=3,
            max_batches=3,
            concurrency=concurrency,
            lease=LEASE,
            retry_policy=self.policy,
        )

    # -- scheduling -------------------------------------------------------

    def new_settlement(self, amounts: list[int], connected: list[bool]) -> models.Settlement:
        self.contests += 1
        contest = f"c{self.contests}"
        winners = []
        for n, amount in enumerate(amounts):
            user = f"{contest}-u{n}"
            winners.append(models.Winner(user_id=user, amount_cents=amount))
            if connected[n % len(connected)]:
                self.directory.set_account(user, f"acct_{contest}u{n}")
        return models.Settlement(
            settlement_id=f"s{self.contests}",
            contest_id=contest,
            currency="usd",
            winners=tuple(winners),
        )

    @rule(
        amounts=st.lists(st.integers(1, 50_000), min_size=1, max_size=4),
        connected=st.lists(st.booleans(), min_size=1, max_size=4),
    )
    def schedule(self, amounts: list[int], connected: list[bool]) -> None:
        settlement = self.new_settlement(amounts, connected)
        result = scheduling.schedule_payout_for_settlement(
            store=self.store,
            settlement=settlement,
            now=self.clock.now(),
            max_attempts=MAX_ATTEMPTS,
        )
        assert result.created
        self.settlements.append(settlement)

    @rule(
        amounts=st.lists(st.integers(1, 50_000), min_size=1, max_size=3),
        threads=st.integers(2, 6),
    )
    def schedule_concurrently(self, amounts: list[int], threads: int) -> None:
        settlement = self.new_settlement(amounts, [True])
        barrier = threading.Barrier(threads)
        results: list[str] = []

        def go() -> None:
            barrier.wait()
            job = scheduling.schedule_payout_for_settlement(
                store=self.store,
                settlement=settlement,
                now=self.clock.now(),
                max_attempts=MAX_ATTEMPTS,
            ).job
            results.append(job.id)

        workers = [threading.Thread(target=go) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(results) == threads
        assert len(set(results)) == 1
        self.settlements.append(settlement)

    @rule(data=st.data())
    def schedule_again(self, data: st.DataObject) -> None:
        if not self.settlements:
            return
        settlement = data.draw(st.sampled_from(self.settlements))
        before = self.store.find_job(settlement.settlement_id)
        again = scheduling.schedule_payout_for_settlement(
            store=self.store, settlement=settlement, now=self.clock.now()
        )
        assert not again.created
        assert before is not None
        assert again.job.id == before.id

    @rule(data=st.data())
    def schedule_a_changed_settlement(self, data: st.DataObject) -> None:
        if not self.settlements:
            return
        settlement = data.draw(st.sampled_from(self.settlements))
        first = settlement.winners[0]
        changed = attrs.evolve(
            settlement,
            winners=(
                attrs.evolve(first, amount_cents=first.amount_cents + 1),
                *settlement.winners[1:],
            ),
        )
        transfers_before = len(self.store.list_transfers(limit=10_000))
        with pytest.raises(errors.SettlementConflict):
            scheduling.schedule_payout_for_settlement(
                store=self.store, settlement=changed, now=self.clock.now()
            )
        assert len(self.store.list_transfers(limit=10_000)) == transfers_before

    # -- the world misbehaving -------------------------------------------

    @rule(faults=st.lists(FAULTS, min_size=1, max_size=6))
    def arm_gateway_faults(self, faults: list[Fault | None]) -> None:
        with self.faults_lock:
            self.faults.extend(faults)

    @rule(jump=JUMPS)
    def time_passes(self, jump: timedelta) -> None:
        self.clock.advance(jump)

    @rule(skew=st.sampled_from([-3600, -45, 0, 45, 3600, 26 * 3600]))
    def the_next_worker_runs_on_a_skewed_clock(self, skew: int) -> None:
        self.skew = timedelta(seconds=skew)

    @rule(cents=st.sampled_from([None, 0, 10_000]))
    def the_platform_balance_changes(self, cents: int | None) -> None:
        self.gateway.set_balance(cents)

    @rule(data=st.data())
    def a_winner_moves_to_another_account(self, data: st.DataObject) -> None:
        transfers = self.store.transfers()
        if transfers:
            user = data.draw(st.sampled_from([t.user_id for t in transfers]))
            self.directory.set_account(user, f"acct_moved{len(transfers)}")

    @rule(limit=st.integers(1, 4))
    def a_worker_claims_and_stalls(self, limit: int) -> None:
        claimed = self.store.claim_due(limit=limit, lease=LEASE, token=f"stalled-{len(self.held)}")
        if claimed:
            self.held.append(claimed)

    @rule()
    def a_stalled_worker_comes_back(self) -> None:
        if not self.held:
            return
        for transfer in self.held.pop(0):
            attempting.execute_transfer(
                transfer=transfer,
                store=self.store,
                directory=self.directory,
                gateway=self.gateway,
                clock=self.worker_clock(),
                timing=self.worker().timing,
            )

    @rule()
    def a_stalled_worker_dies(self) -> None:
        if self.held:
            self.held.pop(0)

    # -- work -------------------------------------------------------------

    @rule(concurrency=st.integers(1, 4))
    def tick(self, concurrency: int) -> None:
        report = tick.run_tick(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.worker_clock(),
            settings=self.worker(concurrency),
        )
        assert report.error is None

    # -- money coming back ------------------------------------------------

    def _completed(self, pick: int) -> models.PayoutTransfer | None:
        """One completed transfer, by a drawn number: what is drawn never depends
        on what the threads of a tick happened to complete (Hypothesis replays)."""
        completed = sorted(
            (t for t in self.store.transfers() if t.status is S.COMPLETED), key=lambda t: t.id
        )
        return completed[pick % len(completed)] if completed else None

    @rule(pick=st.integers(0, 1000), share=st.sampled_from([None, 1, 50, 100, 150]))
    def an_operator_reverses(self, pick: int, share: int | None) -> None:
        """``share``: percent of what is left (None: all of it; 150: too much)."""
        t = self._completed(pick)
        if t is None:
            return
        before = rules.amounts(
            t, self.store.ledger(transfer_id=t.id), self.store.reversals_of(t.id)
        )
        amount = None if share is None else max(1, before.left * share // 100)
        in_doubt = any(r.status is R.SENDING for r in self.store.reversals_of(t.id))
        try:
            reversals.reverse(
                self.store,
                self.gateway,
                t.id,
                amount_cents=amount,
                actor="ops-1",
                reason="clawback",
                now=self.clock.now(),
                new_id=lambda: f"00000000-0000-4000-8000-{next(self.reversal_ids):012d}",
            )
        except errors.ActionRefused:
            assert not in_doubt, "a reversal in doubt is resolved, never refused"
            assert before.left == 0 or (amount is not None and amount > before.left)
        except errors.GatewayUnavailable:
            assert in_doubt  # only resolving one past the key window lists at Stripe

    @rule(pick=st.integers(0, 1000), cents=st.integers(1, 60_000), delivered=st.integers(0, 3))
    def someone_reverses_in_the_dashboard(self, pick: int, cents: int, delivered: int) -> None:
        """A reversal made at Stripe by hand; its webhook delivered 0 to 3 times."""
        t = self._completed(pick)
        if t is None or t.stripe_transfer_id is None:
            return
        at_stripe = sum(r.amount_cents for r in self.gateway.reversals_of(t.stripe_transfer_id))
        if at_stripe >= t.amount_cents:
            return
        self.gateway.reverse(t.stripe_transfer_id, min(cents, t.amount_cents - at_stripe))
        for _ in range(delivered):
            self.book_what_stripe_holds(t)

    def book_what_stripe_holds(self, t: models.PayoutTransfer) -> None:
        assert t.stripe_transfer_id is not None
        reversals.book_from_stripe(
            self.store,
            t,
            [r.as_stripe_reversal() for r in self.gateway.reversals_of(t.stripe_transfer_id)],
            now=self.clock.now(),
        )

    # -- invariants -------------------------------------------------------

    @invariant()
    def never_more_back_than_paid_and_nothing_booked_that_stripe_did_not_do(self) -> None:
        for t in self.store.transfers():
            rows = self.store.ledger(transfer_id=t.id)
            back = [r for r in rows if r.entry_type is models.LedgerEntryType.PAYOUT_REVERSED]
            paid = t.amount_cents if t.status is S.COMPLETED else 0
            assert sum(r.amount_cents for r in back) <= paid
            held = (
                {r.id: r.amount_cents for r in self.gateway.reversals_of(t.stripe_transfer_id)}
                if t.stripe_transfer_id
                else {}
            )
            assert len({r.stripe_reversal_id for r in back}) == len(back), "booked twice"
            for row in back:
                assert held.get(row.stripe_reversal_id or "") == row.amount_cents
            assert sum(held.values()) <= paid, "Stripe reversed more than was paid"

    @invariant()
    def net_is_debits_less_credits(self) -> None:
        rows = self.store.ledger()
        debits = sum(r.amount_cents for r in rows if r.direction is models.LedgerDirection.DEBIT)
        credits_ = sum(r.amount_cents for r in rows if r.direction is models.LedgerDirection.CREDIT)
        paid = sum(t.amount_cents for t in self.store.transfers() if t.status is S.COMPLETED)
        assert debits == paid
        assert debits - credits_ >= paid - sum(
            sum(r.amount_cents for r in self.gateway.reversals_of(t.stripe_transfer_id))
            for t in self.store.transfers()
            if t.stripe_transfer_id
        ), "the ledger books more back than Stripe reversed"

    @invariant()
    def terminal_states_never_change(self) -> None:
        for t in self.store.transfers():
            first = self.first_terminal.get(t.id)
            if first is not None:
                assert (t.status, t.stripe_transfer_id, t.failure_code) == (
                    first.status,
                    first.stripe_transfer_id,
                    first.failure_code,
                )
            elif t.status.is_terminal:
                self.first_terminal[t.id] = t

    @invariant()
    def every_transfer_keeps_its_shape(self) -> None:
        for t in self.store.transfers():
            assert (t.stripe_transfer_id is not None) == (t.status is S.COMPLETED)
            assert 0 <= t.attempt_count <= t.max_attempts == MAX_ATTEMPTS

    @invariant()
    def the_ledger_and_jobs_agree(self) -> None:
        # One payout_completed row per completed transfer and none for others, one
        # payout_failed per failed one, sums per job, job complete iff all terminal.
        keys = [e.idempotency_key for e in self.store.ledger()]
        assert len(keys) == len(set(keys))
        for job in self.store.jobs():
            mismatches = reconcile.check_job(
                job, self.store.transfers_of(job.id), self.store.ledger(job_id=job.id)
            )
            assert mismatches == []

    @invariant()
    def stripe_holds_at_most_one_transfer_per_payout(self) -> None:
        for t in self.store.transfers():
            at_stripe = self.gateway.transfers_for(t.id)
            assert len(at_stripe) <= 1
            if t.status is S.FAILED_TERMINAL:
                assert at_stripe == [], "failed for good while a transfer exists at Stripe"
            if t.status is S.COMPLETED:
                (record,) = at_stripe
                assert record.id == t.stripe_transfer_id
                assert (record.amount_cents, record.currency) == (t.amount_cents, t.currency)
                assert record.destination == t.destination_account

    def teardown(self) -> None:
        """Stripe recovers, stalled workers are gone: every transfer must end,
        or wait for an operator with its reason."""
        with self.faults_lock:
            self.faults.clear()
        self.held.clear()
        self.gateway.set_balance(None)
        self.gateway.finish_in_flight()

        def ended() -> bool:
            return all(
                t.status.is_terminal or t.needs_operator is not None for t in self.store.transfers()
            )

        for _ in range(40):
            if ended():
                break
            self.clock.advance(timedelta(hours=2))
            self.tick(concurrency=2)
        assert ended()
        self.terminal_states_never_change()
        self.the_ledger_and_jobs_agree()
        self.stripe_holds_at_most_one_transfer_per_payout()
        # Every reversal in doubt resolved, every webhook delivered: the ledger
        # books exactly what Stripe reversed, once.
        self.clock.advance(timedelta(hours=25))
        for t in self.store.transfers():
            if any(r.status is R.SENDING for r in self.store.reversals_of(t.id)):
                reversals.reverse(
                    self.store, self.gateway, t.id, amount_cents=None, actor="ops-1",
                    reason="resolve", now=self.clock.now(), new_id=lambda: "unused",
                )  # fmt: skip
            if t.stripe_transfer_id is not None:
                self.book_what_stripe_holds(t)
                held = sum(r.amount_cents for r in self.gateway.reversals_of(t.stripe_transfer_id))
                booked = ledger.booked_reversals(self.store.ledger(transfer_id=t.id))
                assert booked == held
        self.never_more_back_than_paid_and_nothing_booked_that_stripe_did_not_do()


PayoutMachine.TestCase.settings = settings(settings(), stateful_step_count=40, deadline=None)
test_payout_invariants = PayoutMachine.TestCase
