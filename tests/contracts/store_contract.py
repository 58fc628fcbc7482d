"""The contract every :class:`payout_core.ports.PayoutStore` keeps.

The in-memory store (``tests/unit/test_memory_store.py``) and the PostgreSQL
store (``tests/integration``) run these very tests, so a downstream test on
the in-memory store means what it says. The suite uses only the port's
methods, never an adapter's own.

A subclass provides the fixture ``store``: a fresh, empty store. The fixture
``clock`` (a :class:`~payout_adapters.memory.ManualClock` at
:data:`~tests.kit.times.T0`) is provided here and may be overridden.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import attrs
import pytest

from payout_adapters.memory import ManualClock
from payout_core import errors, ledger, models, ports
from payout_core import reversal as rules
from payout_core import state_machine as sm
from tests.kit import builders as b
from tests.kit.times import LEASE, MARGIN, T0

S = models.TransferStatus
J = models.JobStatus
Entry = models.LedgerEntryType


class StoreContract:
    """Behaviour of a payout store, from scheduling to the ledger."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(T0)

    # -- scheduling ---------------------------------------------------------------

    def test_scheduling_writes_the_job_and_all_its_transfers(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        stl = b.settlement(("u-2", 2500), ("u-10", 1000), ("u-1", 1500))
        job = b.make_job(stl, now=clock.now())
        transfers = b.make_transfers(job, stl, now=clock.now())

        result = store.schedule(job, transfers)

        assert result == ports.ScheduleResult(job=job, created=True)
        assert store.get_job(job.id) == job
        assert store.find_job("s-1") == job
        # Ordered by user id, byte by byte: "u-1" < "u-10" < "u-2".
        assert store.transfers_of(job.id) == sorted(transfers, key=lambda t: t.user_id)
        assert [t.user_id for t in store.transfers_of(job.id)] == ["u-1", "u-10", "u-2"]
        for t in transfers:
            assert store.get_transfer(t.id) == t

    def test_scheduling_a_known_settlement_again_returns_its_job_and_writes_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        stl = b.settlement("u-1", "u-2")
        job, transfers = b.schedule(store, stl, now=clock.now())
        clock.advance(60)
        again = b.make_job(stl, now=clock.now())

        result = store.schedule(again, b.make_transfers(again, stl, now=clock.now()))

        assert result == ports.ScheduleResult(job=job, created=False)
        assert store.get_job(again.id) is None
        assert store.transfers_of(job.id) == sorted(transfers, key=lambda t: t.user_id)
        assert store.transfers_of(again.id) == []
        assert sum(store.transfer_counts().values()) == 2

    def test_a_winner_paid_by_another_settlement_of_the_contest_is_refused_and_nothing_written(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1", "u-2", settlement_id="s-1"), now=clock.now())
        other = b.settlement("u-3", "u-2", "u-1", settlement_id="s-2")
        job = b.make_job(other, now=clock.now())
        transfers = b.make_transfers(job, other, now=clock.now())

        with pytest.raises(errors.DuplicatePayout) as refused:
            store.schedule(job, transfers)

        assert refused.value.contest_id == "c-1"
        assert refused.value.user_ids == ("u-1", "u-2")
        assert store.find_job("s-2") is None
        assert store.get_job(job.id) is None
        assert all(store.get_transfer(t.id) is None for t in transfers)
        assert sum(store.transfer_counts().values()) == 2

    def test_the_same_winner_may_be_paid_in_another_contest(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1", settlement_id="s-1"), now=clock.now())

        job, _ = b.schedule(
            store, b.settlement("u-1", settlement_id="s-2", contest_id="c-2"), now=clock.now()
        )

        assert store.find_job("s-2") == job

    # -- claiming -----------------------------------------------------------------

    def test_a_claim_takes_pending_transfers_under_a_lease_by_the_stores_clock_spending_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [t] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        clock.advance(5)

        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")

        assert claimed.id == t.id
        assert claimed.status is S.PROCESSING
        # The send intent spends the attempt, not the claim.
        assert claimed.attempt_count == 0
        assert claimed.claim_token == "w-1"
        assert claimed.lease_expires_at == clock.now() + LEASE
        assert claimed.updated_at == clock.now()
        assert claimed.outcome_uncertain is False
        assert store.get_transfer(t.id) == claimed

    def test_a_claim_takes_at_most_limit_transfers_oldest_due_first(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        later = b.settlement("u-1", "u-2", settlement_id="s-later", contest_id="c-later")
        _, newer = b.schedule(store, later, now=clock.now() + timedelta(minutes=1))
        _, older = b.schedule(store, b.settlement("u-1", "u-2", "u-3"), now=clock.now())
        clock.advance(timedelta(minutes=2))

        assert store.claim_due(limit=0, lease=LEASE, token="w-0") == []
        first = store.claim_due(limit=2, lease=LEASE, token="w-1")
        rest = store.claim_due(limit=10, lease=LEASE, token="w-2")

        # Same due time: by id.
        assert [t.id for t in first] == sorted(t.id for t in older)[:2]
        assert [t.id for t in rest] == [
            sorted(t.id for t in older)[2],
            *sorted(t.id for t in newer),
        ]
        assert store.claim_due(limit=10, lease=LEASE, token="w-3") == []

    def test_a_transfer_under_a_running_lease_is_not_claimed_again(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        clock.advance(LEASE - timedelta(seconds=1))

        assert store.claim_due(limit=10, lease=LEASE, token="w-2") == []
        assert store.get_transfer(claimed.id) == claimed

    def test_a_retryable_transfer_is_claimed_only_once_it_is_due(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [first] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        later = b.retried(first, now=clock.now(), after=timedelta(seconds=30))
        assert b.record_outcome(store, first, later, now=clock.now())

        clock.advance(29)
        assert store.claim_due(limit=10, lease=LEASE, token="w-2") == []
        clock.advance(1)
        [second] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        assert (second.id, second.attempt_count, second.claim_token) == (first.id, 1, "w-2")

    def test_an_expired_claim_that_wrote_no_intent_is_taken_over_spending_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [abandoned] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        clock.advance(LEASE)

        [taken] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        assert taken.id == abandoned.id
        assert taken.attempt_count == 0
        assert taken.claim_token == "w-2"
        assert taken.lease_expires_at == clock.now() + LEASE
        assert taken.abandoned_claims == 1
        # It sent nothing: there is no doubt to resolve.
        assert taken.outcome_uncertain is False

    def test_an_expired_claim_that_wrote_an_intent_is_taken_over_uncertain(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [abandoned] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        intent = store.write_intent(claimed=abandoned, destination="acct_1", margin=MARGIN)
        assert isinstance(intent, models.PayoutTransfer)
        clock.advance(LEASE)

        [taken] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        # The dead worker may have reached Stripe: the stored row says so.
        assert taken.outcome_uncertain is True
        assert (taken.attempt_count, taken.destination_account) == (1, "acct_1")
        assert taken.key_first_sent_at == intent.key_first_sent_at

    def test_terminal_transfers_are_never_claimed(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1", "u-2"), now=clock.now())
        one, two = store.claim_due(limit=10, lease=LEASE, token="w-1")
        assert b.record_outcome(store, one, b.completed(one, now=clock.now()), now=clock.now())
        assert b.record_outcome(store, two, b.failed(two, now=clock.now()), now=clock.now())
        clock.advance(timedelta(days=30))

        assert store.claim_due(limit=10, lease=LEASE, token="w-2") == []
        assert store.queue_depth() == ports.QueueDepth(due=0, stuck=0)

    def test_the_first_claim_moves_the_job_from_pending_to_processing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, _ = b.schedule(store, b.settlement("u-1", "u-2"), now=clock.now())
        assert store.list_jobs(status=J.PENDING) == [job]
        clock.advance(5)

        store.claim_due(limit=1, lease=LEASE, token="w-1")

        started = store.get_job(job.id)
        assert started is not None
        assert started.status is J.PROCESSING
        assert (started.completed_count, started.failed_count) == (0, 0)
        assert started.updated_at == clock.now()
        assert started.completed_at is None
        assert store.list_jobs(status=J.PENDING) == []

    def test_concurrent_claims_never_hand_one_transfer_to_two_callers(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        winners = [f"u-{n:03d}" for n in range(60)]
        _, transfers = b.schedule(store, b.settlement(*winners), now=clock.now())
        start = threading.Barrier(8)
        claims: dict[str, list[str]] = {}
        failures: list[BaseException] = []

        def worker(token: str) -> None:
            mine: list[str] = []
            try:
                start.wait()
                while batch := store.claim_due(limit=3, lease=LEASE, token=token):
                    mine.extend(t.id for t in batch)
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)
            claims[token] = mine

        threads = [threading.Thread(target=worker, args=(f"w-{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert failures == []
        taken = Counter(t for ids in claims.values() for t in ids)
        assert sorted(taken) == sorted(t.id for t in transfers)
        assert set(taken.values()) == {1}
        for token, ids in claims.items():
            for transfer_id in ids:
                stored = store.get_transfer(transfer_id)
                assert stored is not None
                assert (stored.claim_token, stored.attempt_count) == (token, 0)

    # -- send intents (DESIGN 3, rule 2) ---------------------------------------------

    def _claimed(
        self, store: ports.PayoutStore, clock: ManualClock, *, max_attempts: int = 5
    ) -> models.PayoutTransfer:
        b.schedule(store, b.settlement("u-1"), now=clock.now(), max_attempts=max_attempts)
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        return claimed

    def _in_doubt(
        self, store: ports.PayoutStore, clock: ManualClock, *, key_replays_error: bool = False
    ) -> models.PayoutTransfer:
        """A claimed transfer sent once to acct_1, whose answer was lost (or was a
        saved 500), recorded as retryable: uncertain."""
        claimed = self._claimed(store, clock)
        first = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)
        assert isinstance(first, models.PayoutTransfer)
        lost = sm.retry(
            first,
            next_attempt_at=clock.now(),
            code="api_error" if key_replays_error else "timeout",
            message="no conclusive answer",
            key_replays_error=key_replays_error,
            now=clock.now(),
        )
        assert store.record(claimed=first, updated=lost, ledger_entry=None, now=clock.now())
        return first

    def test_an_intent_pins_the_destination_spends_the_attempt_and_starts_the_doubt(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        claimed = self._claimed(store, clock)
        clock.advance(3)

        intent = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)

        assert isinstance(intent, models.PayoutTransfer)
        assert intent.destination_account == "acct_1"
        assert (intent.attempt_count, intent.key_sends) == (1, 1)
        assert intent.outcome_uncertain is True
        # The store's time, not the caller's.
        assert intent.key_first_sent_at == intent.last_send_at == clock.now()
        assert store.get_transfer(claimed.id) == intent

    def test_a_resend_of_an_uncertain_key_spends_nothing_and_keeps_its_first_use(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        first = self._in_doubt(store, clock)
        clock.advance(timedelta(hours=22))
        [again] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        resend = store.write_intent(claimed=again, destination="acct_1", margin=MARGIN)

        assert isinstance(resend, models.PayoutTransfer)
        assert (resend.attempt_count, resend.key_sends, resend.key_generation) == (1, 2, 0)
        assert resend.key_first_sent_at == first.key_first_sent_at
        assert resend.last_send_at == clock.now()

    def test_no_intent_for_a_claim_that_was_taken_over(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        claimed = self._claimed(store, clock)
        clock.advance(LEASE)
        [newer] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        refused = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)

        assert refused is sm.IntentRefusal.STALE_CLAIM
        assert store.get_transfer(claimed.id) == newer

    def test_no_intent_without_the_send_margin_left_on_the_lease_by_the_stores_clock(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        claimed = self._claimed(store, clock)
        clock.advance(LEASE - MARGIN + timedelta(seconds=1))

        refused = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)

        assert refused is sm.IntentRefusal.LEASE_TOO_SHORT
        assert store.get_transfer(claimed.id) == claimed

    def test_no_intent_to_another_destination_than_the_pinned_one(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        claimed = self._claimed(store, clock)
        first = store.write_intent(claimed=claimed, destination="acct_old", margin=MARGIN)
        assert isinstance(first, models.PayoutTransfer)

        refused = store.write_intent(claimed=first, destination="acct_new", margin=MARGIN)

        assert refused is sm.IntentRefusal.DESTINATION_CHANGED
        assert store.get_transfer(claimed.id) == first

    def test_no_resend_of_a_key_stripe_may_have_forgotten(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        first = self._in_doubt(store, clock)
        clock.advance(sm.KEY_TRUST_WINDOW)
        [again] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        refused = store.write_intent(claimed=again, destination="acct_1", margin=MARGIN)

        assert refused is sm.IntentRefusal.KEY_UNTRUSTED
        assert store.get_transfer(first.id) == again

    def test_no_resend_of_a_key_that_replays_an_error(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        self._in_doubt(store, clock, key_replays_error=True)
        [again] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        refused = store.write_intent(claimed=again, destination="acct_1", margin=MARGIN)

        assert refused is sm.IntentRefusal.KEY_UNTRUSTED

    def test_a_pinned_destination_cannot_be_changed_by_an_outcome(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        claimed = self._claimed(store, clock)
        first = store.write_intent(claimed=claimed, destination="acct_old", margin=MARGIN)
        assert isinstance(first, models.PayoutTransfer)
        moved = attrs.evolve(
            sm.complete(first, stripe_transfer_id="tr_1", now=T0), destination_account="acct_new"
        )

        with pytest.raises(errors.IllegalTransition):
            store.record(claimed=first, updated=moved, ledger_entry=None, now=clock.now())

        assert store.get_transfer(claimed.id) == first

    # -- nothing waits forever without a name (rule 7) -------------------------------

    def test_a_claim_that_expires_too_often_in_a_row_goes_to_an_operator(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, [t] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        for n in range(sm.ABANDONED_CLAIMS_LIMIT):
            assert [c.id for c in store.claim_due(limit=10, lease=LEASE, token=f"w-{n}")] == [t.id]
            clock.advance(LEASE)

        assert store.claim_due(limit=10, lease=LEASE, token="w-last") == []

        [waiting] = store.needing_operator()
        assert waiting.id == t.id
        assert waiting.needs_operator is not None
        assert "claims in a row expired" in waiting.needs_operator
        assert (waiting.status, waiting.claim_token, waiting.lease_expires_at) == (
            S.PENDING,
            None,
            None,
        )
        assert store.queue_depth() == ports.QueueDepth(due=0, stuck=0, needs_operator=1)
        clock.advance(timedelta(days=7))
        assert store.claim_due(limit=10, lease=LEASE, token="w-later") == []
        stored_job = store.get_job(job.id)
        assert stored_job is not None
        assert stored_job.status is J.PROCESSING  # open until an operator decides

    def test_every_claim_abandoned_too_often_is_escalated_whatever_the_claims_limit(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [doomed] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        for n in range(sm.ABANDONED_CLAIMS_LIMIT):
            assert [c.id for c in store.claim_due(limit=1, lease=LEASE, token=f"w-{n}")] == [
                doomed.id
            ]
            clock.advance(LEASE / 2)
            if n == sm.ABANDONED_CLAIMS_LIMIT - 1:
                # Due before the doomed one's last lease ends: first in line.
                b.schedule(store, b.settlement("u-2", "u-3", settlement_id="s-2"), now=clock.now())
            clock.advance(LEASE / 2)

        [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-next")

        assert claimed.user_id in ("u-2", "u-3")
        assert [t.id for t in store.needing_operator()] == [doomed.id]

    def test_a_paused_claim_still_escalates_what_was_abandoned_too_often(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [doomed] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        for n in range(sm.ABANDONED_CLAIMS_LIMIT):
            store.claim_due(limit=1, lease=LEASE, token=f"w-{n}")
            clock.advance(LEASE)
        store.set_paused(b.operator_action("pause", clock.now()))

        assert store.claim_due(limit=1, lease=LEASE, token="w-paused") == []
        assert [t.id for t in store.needing_operator()] == [doomed.id]

    def test_an_outcome_ends_the_run_of_abandoned_claims(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        for n in range(sm.ABANDONED_CLAIMS_LIMIT - 1):
            store.claim_due(limit=10, lease=LEASE, token=f"w-{n}")
            clock.advance(LEASE)
        [survivor] = store.claim_due(limit=10, lease=LEASE, token="w-survivor")
        assert survivor.abandoned_claims == sm.ABANDONED_CLAIMS_LIMIT - 1
        back = b.released(survivor, now=clock.now())
        assert b.record_outcome(store, survivor, back, now=clock.now(), book=False)

        [again] = store.claim_due(limit=10, lease=LEASE, token="w-next")

        assert again.abandoned_claims == 0
        assert store.needing_operator() == []

    # -- recording outcomes -------------------------------------------------------

    def test_a_worker_whose_lease_was_taken_over_cannot_record(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, _ = b.schedule(store, b.settlement("u-1"), now=clock.now())
        [old] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        clock.advance(LEASE)
        [new] = store.claim_due(limit=10, lease=LEASE, token="w-2")

        recorded = b.record_outcome(store, old, b.completed(old, now=clock.now()), now=clock.now())

        assert recorded is False
        assert store.get_transfer(old.id) == new
        assert store.ledger() == []
        stored_job = store.get_job(job.id)
        assert stored_job is not None
        assert (stored_job.status, stored_job.completed_count) == (J.PROCESSING, 0)

    def test_a_claim_of_another_attempt_or_token_cannot_record(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        outcome = b.completed(claimed, now=clock.now())

        other_token = attrs.evolve(claimed, claim_token="w-9")
        other_attempt = attrs.evolve(claimed, attempt_count=2)
        for stale in (other_token, other_attempt):
            assert b.record_outcome(store, stale, outcome, now=clock.now()) is False

        assert store.get_transfer(claimed.id) == claimed
        assert store.ledger() == []

    def test_an_outcome_is_recorded_once_for_its_claim(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        done = b.completed(claimed, now=clock.now())

        assert b.record_outcome(store, claimed, done, now=clock.now()) is True
        assert b.record_outcome(store, claimed, done, now=clock.now()) is False

        assert store.get_transfer(claimed.id) == done
        assert len(store.ledger(transfer_id=claimed.id)) == 1

    def test_a_released_claim_returns_to_pending_without_spending_the_attempt(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1"), now=clock.now())
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        back = b.released(claimed, now=clock.now())

        assert b.record_outcome(store, claimed, back, now=clock.now(), book=False)

        stored = store.get_transfer(claimed.id)
        assert stored == back
        assert stored is not None
        assert (stored.status, stored.attempt_count, stored.claim_token) == (S.PENDING, 0, None)
        assert store.ledger() == []
        [again] = store.claim_due(limit=10, lease=LEASE, token="w-2")
        assert again.attempt_count == 0

    def test_the_last_outcome_completes_the_job_with_its_counts(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, _ = b.schedule(store, b.settlement("u-1", "u-2", "u-3"), now=clock.now())
        paid, declined, late = store.claim_due(limit=10, lease=LEASE, token="w")
        clock.advance(1)
        b.record_outcome(store, paid, b.completed(paid, now=clock.now()), now=clock.now())
        b.record_outcome(store, declined, b.failed(declined, now=clock.now()), now=clock.now())

        halfway = store.get_job(job.id)
        assert halfway is not None
        assert (halfway.status, halfway.completed_count, halfway.failed_count) == (
            J.PROCESSING,
            1,
            1,
        )
        assert halfway.completed_at is None

        clock.advance(1)
        b.record_outcome(store, late, b.completed(late, now=clock.now()), now=clock.now())

        done = store.get_job(job.id)
        assert done is not None
        assert (done.status, done.completed_count, done.failed_count) == (J.COMPLETE, 2, 1)
        assert done.completed_at == clock.now()
        assert done.updated_at == clock.now()
        assert (done.total_transfers, done.total_amount_cents) == (3, 3000)
        assert store.list_jobs(status=J.COMPLETE) == [done]

    def test_ledger_rows_come_back_in_write_order_and_filter_by_job_and_transfer(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job_a, _ = b.schedule(store, b.settlement("u-1", "u-2", settlement_id="s-a"), now=T0)
        other = b.settlement("u-1", settlement_id="s-b", contest_id="c-b")
        job_b, _ = b.schedule(store, other, now=T0)
        claimed = {
            (t.job_id, t.user_id): t for t in store.claim_due(limit=10, lease=LEASE, token="w-1")
        }
        a1, a2, b1 = claimed[job_a.id, "u-1"], claimed[job_a.id, "u-2"], claimed[job_b.id, "u-1"]
        written: list[models.LedgerEntry] = []
        for t, outcome in [(b1, b.completed), (a2, b.retried), (a1, b.completed)]:
            clock.advance(1)
            updated = outcome(t, now=clock.now())
            entry = ledger.entry_for(updated, now=clock.now())
            assert store.record(claimed=t, updated=updated, ledger_entry=entry, now=clock.now())
            written.append(entry)
        clock.advance(timedelta(minutes=1))
        [a2_again] = store.claim_due(limit=10, lease=LEASE, token="w-2")
        last = b.completed(a2_again, now=clock.now())
        entry = ledger.entry_for(last, now=clock.now())
        assert store.record(claimed=a2_again, updated=last, ledger_entry=entry, now=clock.now())
        written.append(entry)

        assert store.ledger() == written
        assert store.ledger(job_id=job_a.id) == written[1:]
        assert store.ledger(transfer_id=a2.id) == [written[1], written[3]]
        assert [e.entry_type for e in store.ledger(transfer_id=a2.id)] == [
            Entry.PAYOUT_ATTEMPT_FAILED,
            Entry.PAYOUT_COMPLETED,
        ]
        assert store.ledger(job_id=job_b.id, transfer_id=b1.id) == [written[0]]
        assert store.ledger(job_id=job_b.id, transfer_id=a1.id) == []

    def test_a_ledger_key_already_booked_is_refused_and_the_outcome_is_not_written(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, _ = b.schedule(store, b.settlement("u-1"), now=clock.now())
        [first] = store.claim_due(limit=10, lease=LEASE, token="w-1")
        assert b.record_outcome(store, first, b.retried(first, now=clock.now()), now=clock.now())
        [booked] = store.ledger()
        clock.advance(timedelta(minutes=1))
        [second] = store.claim_due(limit=10, lease=LEASE, token="w-2")
        done = b.completed(second, now=clock.now())
        # A bug: the second attempt booked under the first attempt's key.
        reused = attrs.evolve(
            ledger.entry_for(done, now=clock.now()), idempotency_key=booked.idempotency_key
        )

        with pytest.raises(errors.IllegalTransition):
            store.record(claimed=second, updated=done, ledger_entry=reused, now=clock.now())

        assert store.ledger() == [booked]
        assert store.get_transfer(second.id) == second
        stored_job = store.get_job(job.id)
        assert stored_job is not None
        assert (stored_job.status, stored_job.completed_count) == (J.PROCESSING, 0)

    # -- reads ----------------------------------------------------------------------

    def test_unknown_ids_find_nothing(self, store: ports.PayoutStore) -> None:
        unknown = b.new_id()
        assert store.get_job(unknown) is None
        assert store.find_job("s-unknown") is None
        assert store.get_transfer(unknown) is None
        assert store.transfers_of(unknown) == []
        assert store.ledger(job_id=unknown) == []
        assert store.ledger(transfer_id=unknown) == []

    def test_jobs_are_listed_newest_first_by_status_up_to_limit(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        jobs = []
        for n in range(3):
            stl = b.settlement("u-1", settlement_id=f"s-{n}", contest_id=f"c-{n}")
            jobs.append(b.schedule(store, stl, now=clock.now())[0])
            clock.advance(60)
        store.claim_due(limit=1, lease=LEASE, token="w-1")  # the oldest job's
        started = store.get_job(jobs[0].id)

        assert store.list_jobs() == [jobs[2], jobs[1], started]
        assert store.list_jobs(limit=2) == [jobs[2], jobs[1]]
        assert store.list_jobs(status=J.PENDING) == [jobs[2], jobs[1]]
        assert store.list_jobs(status=J.PROCESSING) == [started]
        assert store.list_jobs(status=J.COMPLETE) == []

    def test_transfers_are_listed_most_recently_updated_first_by_status(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [t1, t2, t3] = b.schedule(store, b.settlement("u-1", "u-2", "u-3"), now=clock.now())
        clock.advance(1)
        [c1] = store.claim_due(limit=1, lease=LEASE, token="w-1")
        clock.advance(1)
        [c2] = store.claim_due(limit=1, lease=LEASE, token="w-2")
        clock.advance(1)
        done = b.completed(c1, now=clock.now())
        b.record_outcome(store, c1, done, now=clock.now())
        pending = store.list_transfers(status=S.PENDING)

        assert store.list_transfers() == [done, c2, *pending]
        assert store.list_transfers(limit=2) == [done, c2]
        assert store.list_transfers(status=S.PROCESSING) == [c2]
        assert store.list_transfers(status=S.COMPLETED) == [done]
        assert len(pending) == 1
        assert {c1.id, c2.id, pending[0].id} == {t1.id, t2.id, t3.id}

    def test_transfer_counts_name_every_status(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        assert store.transfer_counts() == dict.fromkeys(models.TransferStatus, 0)
        b.schedule(store, b.settlement("u-1", "u-2", "u-3", "u-4"), now=clock.now())
        one, two, three = store.claim_due(limit=3, lease=LEASE, token="w-1")
        b.record_outcome(store, one, b.completed(one, now=clock.now()), now=clock.now())
        b.record_outcome(store, two, b.retried(two, now=clock.now()), now=clock.now())
        del three  # still processing

        assert store.transfer_counts() == {
            S.PENDING: 1,
            S.PROCESSING: 1,
            S.RETRYABLE: 1,
            S.COMPLETED: 1,
            S.FAILED_TERMINAL: 0,
        }

    def test_queue_depth_counts_due_transfers_and_stuck_claims(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1", "u-2", "u-3"), now=clock.now())
        assert store.queue_depth() == ports.QueueDepth(due=3, stuck=0)
        one, two = store.claim_due(limit=2, lease=LEASE, token="w-1")
        b.record_outcome(store, two, b.retried(two, now=clock.now()), now=clock.now())
        del one  # its worker dies holding it

        assert store.queue_depth() == ports.QueueDepth(due=1, stuck=0)
        clock.advance(LEASE)
        # The retry (30 s) is due, the pending one still is, and the lease expired.
        assert store.queue_depth() == ports.QueueDepth(due=3, stuck=1)

    def test_a_run_is_inserted_then_updated_and_recent_runs_are_newest_first(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        assert store.recent_runs() == []
        runs = []
        for _ in range(3):
            runs.append(models.RunReport(id=b.new_id(), started_at=clock.now()))
            store.record_run(runs[-1])
            clock.advance(300)
        finished = attrs.evolve(runs[0], finished_at=clock.now(), claimed=4, completed=3, retried=1)

        store.record_run(finished)

        assert store.recent_runs() == [runs[2], runs[1], finished]
        assert store.recent_runs(limit=1) == [runs[2]]
        failed = attrs.evolve(runs[2], finished_at=clock.now(), error="StoreUnavailable: gone")
        store.record_run(failed)
        assert store.recent_runs(limit=1) == [failed]

    # -- the fleet-wide pause ---------------------------------------------------------

    def test_while_paused_nothing_is_claimed_and_a_resume_claims_again(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        b.schedule(store, b.settlement("u-1", "u-2"), now=clock.now())
        assert store.pause_state() == models.PauseState()

        paused = store.set_paused(b.operator_action("pause", clock.now()))

        assert (paused.paused, paused.actor, paused.reason) == (True, "ops-1", "why")
        assert paused.since == clock.now()
        assert store.pause_state() == paused
        assert store.claim_due(limit=10, lease=LEASE, token="w-1") == []
        clock.advance(60)
        resumed = store.set_paused(b.operator_action("resume", clock.now()))
        assert resumed == models.PauseState()
        assert len(store.claim_due(limit=10, lease=LEASE, token="w-1")) == 2

    def test_every_pause_and_resume_is_recorded_with_the_state_before_and_after(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        store.set_paused(b.operator_action("pause", clock.now()))
        clock.advance(5)
        # Again: recorded again, and the pause is now the second one's.
        store.set_paused(b.operator_action("pause", clock.now()))
        clock.advance(5)
        store.set_paused(b.operator_action("resume", clock.now()))

        newest, again, first = store.operator_actions()

        assert [a.action.value for a in (first, again, newest)] == ["pause", "pause", "resume"]
        assert [a.created_at for a in (first, again, newest)] == [
            T0,
            T0 + timedelta(seconds=5),
            T0 + timedelta(seconds=10),
        ]
        assert {(a.actor, a.reason, a.transfer_id) for a in (first, again, newest)} == {
            ("ops-1", "why", None)
        }
        assert first.before == models.PauseState().as_dict()
        assert first.after == again.before
        assert first.after is not None
        assert first.after["paused"] is True
        assert again.after == newest.before
        assert again.after is not None
        assert again.after["since"] == (T0 + timedelta(seconds=5)).isoformat()
        assert newest.after == models.PauseState().as_dict()
        assert store.operator_actions(limit=1) == [newest]

    def test_the_actions_of_one_transfer_leave_out_the_fleets(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [t] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        store.set_paused(b.operator_action("pause", clock.now()))

        assert store.operator_actions(transfer_id=t.id) == []
        assert store.operator_actions(transfer_id=b.new_id()) == []
        assert len(store.operator_actions()) == 1

    # -- every job and transfer, page by page (reconcile) -----------------------------

    def test_jobs_after_pages_through_every_job_in_id_order(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        for n in range(5):
            stl = b.settlement("u-1", settlement_id=f"s-{n}", contest_id=f"c-{n}")
            b.schedule(store, stl, now=clock.now())
        store.claim_due(limit=1, lease=LEASE, token="w-1")  # pages show jobs as stored now

        pages: list[list[models.PayoutJob]] = []
        after: str | None = None
        while page := store.jobs_after(after, limit=2):
            pages.append(page)
            after = page[-1].id

        assert [len(p) for p in pages] == [2, 2, 1]
        every = [job for page in pages for job in page]
        assert [j.id for j in every] == sorted(j.id for j in store.list_jobs())
        assert every == [store.get_job(j.id) for j in every]
        assert store.jobs_after(None, limit=0) == []

    def test_transfer_histories_page_through_a_jobs_transfers_in_id_order_with_their_ledger(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, _ = b.schedule(store, b.settlement("u-1", "u-2", "u-3", "u-4", "u-5"), now=T0)
        claimed = store.claim_due(limit=3, lease=LEASE, token="w-1")
        # Another job's transfers and ledger rows are no part of this job's pages.
        b.schedule(store, b.settlement("u-1", settlement_id="s-2", contest_id="c-2"), now=T0)
        paid, declined, retried = claimed
        assert b.record_outcome(store, paid, b.completed(paid, now=T0), now=T0)
        assert b.record_outcome(store, declined, b.failed(declined, now=T0), now=T0)
        assert b.record_outcome(store, retried, b.retried(retried, now=T0), now=T0)
        clock.advance(timedelta(minutes=1))
        for again in store.claim_due(limit=10, lease=LEASE, token="w-2"):
            # The retried one gets a second ledger row, the other job's its first.
            if again.id == retried.id or again.job_id != job.id:
                assert b.record_outcome(store, again, b.completed(again, now=T0), now=T0)

        pages: list[list[ports.TransferHistory]] = []
        after: str | None = None
        while page := store.transfer_histories(job.id, after=after, limit=2):
            pages.append(page)
            after = page[-1].transfer.id

        assert [len(p) for p in pages] == [2, 2, 1]
        every = [h for page in pages for h in page]
        assert [h.transfer.id for h in every] == sorted(t.id for t in store.transfers_of(job.id))
        for history in every:
            assert history.transfer == store.get_transfer(history.transfer.id)
            assert list(history.ledger) == store.ledger(transfer_id=history.transfer.id)
        assert sorted(len(h.ledger) for h in every) == [0, 0, 1, 1, 2]
        assert store.transfer_histories(b.new_id(), after=None, limit=10) == []

    # -- transfers resolve and transfers reissue (DESIGN 7) ------------------------------

    def _needing_operator(
        self, store: ports.PayoutStore, clock: ManualClock, *winners: str
    ) -> tuple[models.PayoutJob, models.PayoutTransfer]:
        """A job of ``winners`` (u-1 alone by default) whose first claimed
        transfer was sent once to acct_1 and then escalated to an operator
        (its look-ups kept failing): retryable, uncertain, needing an operator."""
        job, _ = b.schedule(store, b.settlement(*(winners or ("u-1",))), now=clock.now())
        [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-1")
        intent = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)
        assert isinstance(intent, models.PayoutTransfer)
        waiting = sm.escalate(
            intent, reason="look-ups keep failing", now=clock.now(), lookup_failed=True
        )
        assert store.record(claimed=intent, updated=waiting, ledger_entry=None, now=clock.now())
        assert store.get_transfer(waiting.id) == waiting
        return job, waiting

    def _failed(
        self, store: ports.PayoutStore, clock: ManualClock, *winners: str
    ) -> tuple[models.PayoutJob, models.PayoutTransfer]:
        """A job of ``winners`` (u-1 alone by default) whose first claimed
        transfer Stripe declined for good."""
        job, _ = b.schedule(store, b.settlement(*(winners or ("u-1",))), now=clock.now())
        [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-1")
        failed = b.failed(claimed, now=clock.now())
        assert b.record_outcome(store, claimed, failed, now=clock.now())
        return job, failed

    def _job(self, store: ports.PayoutStore, job_id: str) -> models.PayoutJob:
        job = store.get_job(job_id)
        assert job is not None
        return job

    def _actions_at(
        self, clock: ManualClock, *actions: models.OperatorAction
    ) -> list[models.OperatorAction]:
        """``actions`` as a store records them now, newest first."""
        return [attrs.evolve(a, created_at=clock.now()) for a in reversed(actions)]

    def test_a_transfer_stripe_holds_is_resolved_as_completed_and_completes_its_job(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, waiting = self._needing_operator(store, clock)
        clock.advance(timedelta(hours=1))
        after, entry, action = b.resolution(waiting, found=True, now=clock.now())

        assert store.resolve(before=waiting, after=after, ledger_entry=entry, action=action)

        assert store.get_transfer(waiting.id) == after
        assert (after.status, after.stripe_transfer_id, after.needs_operator) == (
            S.COMPLETED,
            "tr_found",
            None,
        )
        assert store.ledger() == [entry]
        assert entry.entry_type is Entry.PAYOUT_COMPLETED
        done = self._job(store, job.id)
        assert (done.status, done.completed_count, done.failed_count) == (J.COMPLETE, 1, 0)
        assert done.completed_at == done.updated_at == clock.now()
        assert store.operator_actions(transfer_id=waiting.id) == self._actions_at(clock, action)
        assert store.needing_operator() == []
        assert store.queue_depth() == ports.QueueDepth(due=0, stuck=0, needs_operator=0)

    def test_a_transfer_stripe_holds_none_of_is_resolved_as_failed_and_counted(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, waiting = self._needing_operator(store, clock, "u-1", "u-2")
        clock.advance(timedelta(hours=1))
        after, entry, action = b.resolution(waiting, found=False, now=clock.now())

        assert store.resolve(before=waiting, after=after, ledger_entry=entry, action=action)

        stored = store.get_transfer(waiting.id)
        assert stored == after
        assert (after.status, after.failure_code, after.outcome_uncertain) == (
            S.FAILED_TERMINAL,
            sm.RESOLVED_ABSENT,
            False,
        )
        assert store.ledger() == [entry]
        assert entry.entry_type is Entry.PAYOUT_FAILED
        # The other winner is still to be paid: the job stays open.
        still_open = self._job(store, job.id)
        assert (still_open.status, still_open.completed_count, still_open.failed_count) == (
            J.PROCESSING,
            0,
            1,
        )
        assert still_open.completed_at is None
        [recorded] = store.operator_actions()
        assert recorded == self._actions_at(clock, action)[0]
        assert recorded.before == waiting.as_summary()
        assert recorded.after == after.as_summary()

    def test_a_resolve_decided_on_a_transfer_that_changed_since_writes_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, waiting = self._needing_operator(store, clock)
        clock.advance(60)
        found = b.resolution(waiting, found=True, now=clock.now())
        absent = b.resolution(waiting, found=False, now=clock.now())
        # An operator decided on an older reading of the row.
        older = attrs.evolve(waiting, updated_at=waiting.updated_at - timedelta(seconds=1))
        late = b.resolution(older, found=True, now=clock.now())

        assert not store.resolve(before=older, after=late[0], ledger_entry=late[1], action=late[2])
        # Two operators at once: the first one's verdict stands, alone.
        assert store.resolve(before=waiting, after=found[0], ledger_entry=found[1], action=found[2])
        assert not store.resolve(
            before=waiting, after=absent[0], ledger_entry=absent[1], action=absent[2]
        )

        assert store.get_transfer(waiting.id) == found[0]
        assert store.ledger() == [found[1]]
        assert store.operator_actions() == self._actions_at(clock, found[2])
        stored_job = self._job(store, job.id)
        assert (stored_job.completed_count, stored_job.failed_count) == (1, 0)

    def test_a_transfer_that_needs_no_operator_is_not_resolved(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, [pending] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-1")
        retried = b.retried(claimed, now=clock.now(), uncertain=True)
        assert b.record_outcome(store, claimed, retried, now=clock.now())
        booked = store.ledger()
        # A verdict as if it needed one (the state machine would refuse it).
        after, entry, action = b.resolution(
            attrs.evolve(retried, needs_operator="made up"), found=True, now=clock.now()
        )

        assert not store.resolve(before=retried, after=after, ledger_entry=entry, action=action)

        assert store.get_transfer(pending.id) == retried
        assert store.ledger() == booked
        assert store.operator_actions() == []

    def test_a_resolve_the_ledger_refuses_writes_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, waiting = self._needing_operator(store, clock, "u-1", "u-2")
        [other] = store.claim_due(limit=1, lease=LEASE, token="w-2")
        assert b.record_outcome(store, other, b.completed(other, now=clock.now()), now=T0)
        [booked] = store.ledger()
        before_job = store.get_job(job.id)
        after, entry, action = b.resolution(waiting, found=True, now=clock.now())
        # A bug: the verdict booked under another transfer's key.
        reused = attrs.evolve(entry, idempotency_key=booked.idempotency_key)

        with pytest.raises(errors.IllegalTransition):
            store.resolve(before=waiting, after=after, ledger_entry=reused, action=action)

        assert store.get_transfer(waiting.id) == waiting
        assert store.ledger() == [booked]
        assert store.get_job(job.id) == before_job
        assert store.operator_actions() == []

    def test_a_failed_winner_is_reissued_as_a_new_transfer_and_the_job_reopens(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, failed = self._failed(store, clock)
        closed = self._job(store, job.id)
        assert closed.status is J.COMPLETE
        clock.advance(timedelta(days=1))
        reissued, action = b.reissue(failed, now=clock.now())

        assert store.reissue(failed=failed, reissued=reissued, action=action)

        assert store.get_transfer(reissued.id) == reissued
        assert (reissued.reissue_of, reissued.status, reissued.user_id) == (
            failed.id,
            S.PENDING,
            "u-1",
        )
        assert store.get_transfer(failed.id) == failed
        assert {t.id for t in store.transfers_of(job.id)} == {failed.id, reissued.id}
        assert store.get_job(job.id) == attrs.evolve(
            closed,
            status=J.PROCESSING,
            total_transfers=2,
            total_amount_cents=2000,
            completed_at=None,
            updated_at=clock.now(),
        )
        assert store.operator_actions(transfer_id=failed.id) == self._actions_at(clock, action)
        # It is live: the next claim takes it.
        [claimed] = store.claim_due(limit=10, lease=LEASE, token="w-2")
        assert claimed.id == reissued.id

    def test_a_failed_transfer_is_reissued_once(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, failed = self._failed(store, clock)
        first, action = b.reissue(failed, now=clock.now())
        assert store.reissue(failed=failed, reissued=first, action=action)
        [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-2")
        again = b.failed(claimed, now=clock.now())
        assert b.record_outcome(store, claimed, again, now=clock.now())
        closed_again = self._job(store, job.id)

        second, twice = b.reissue(failed, now=clock.now())
        assert not store.reissue(failed=failed, reissued=second, action=twice)

        assert store.get_transfer(second.id) is None
        assert len(store.transfers_of(job.id)) == 2
        assert store.operator_actions() == self._actions_at(clock, action)
        assert self._job(store, job.id) == closed_again
        assert (closed_again.status, closed_again.total_transfers) == (J.COMPLETE, 2)
        # The reissue that failed too is the one to reissue next.
        third, next_action = b.reissue(again, now=clock.now())
        assert store.reissue(failed=again, reissued=third, action=next_action)

    def test_no_reissue_while_a_live_transfer_pays_the_winner(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, failed = self._failed(store, clock)
        # A winner whose only transfer failed may be scheduled again ...
        other, [live] = b.schedule(store, b.settlement("u-1", settlement_id="s-2"), now=T0)
        assert store.get_transfer(live.id) == live

        # ... and then is paid by that transfer, not by a reissue as well.
        reissued, action = b.reissue(failed, now=clock.now())
        assert not store.reissue(failed=failed, reissued=reissued, action=action)

        assert store.get_transfer(reissued.id) is None
        stored_job = self._job(store, job.id)
        assert (stored_job.status, stored_job.total_transfers) == (J.COMPLETE, 1)
        assert store.operator_actions() == []
        assert other.total_transfers == 1

    def test_a_second_live_transfer_for_a_winner_is_still_refused(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, failed = self._failed(store, clock)
        reissued, action = b.reissue(failed, now=clock.now())
        assert store.reissue(failed=failed, reissued=reissued, action=action)
        again = b.settlement("u-2", "u-1", settlement_id="s-2")
        job = b.make_job(again, now=clock.now())

        with pytest.raises(errors.DuplicatePayout) as refused:
            store.schedule(job, b.make_transfers(job, again, now=clock.now()))

        assert refused.value.user_ids == ("u-1",)
        assert store.find_job("s-2") is None

    def test_only_a_stored_failed_transfer_is_reissued(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, [pending] = b.schedule(store, b.settlement("u-1"), now=clock.now())
        # As if it had failed: the stored row says otherwise.
        story = attrs.evolve(pending, status=S.FAILED_TERMINAL, failure_code="made_up")
        reissued, action = b.reissue(story, now=clock.now())

        assert not store.reissue(failed=story, reissued=reissued, action=action)

        assert store.get_transfer(reissued.id) is None
        assert store.get_job(job.id) == job
        assert store.operator_actions() == []

    def test_concurrent_reissues_of_one_failed_transfer_make_one(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, failed = self._failed(store, clock)
        attempts = [b.reissue(failed, now=clock.now()) for _ in range(6)]
        start = threading.Barrier(len(attempts))
        results: list[bool] = []
        failures: list[BaseException] = []

        def operator(reissued: models.PayoutTransfer, action: models.OperatorAction) -> None:
            try:
                start.wait()
                results.append(store.reissue(failed=failed, reissued=reissued, action=action))
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)

        threads = [threading.Thread(target=operator, args=attempt) for attempt in attempts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert failures == []
        assert sorted(results) == [False] * 5 + [True]
        assert len(store.transfers_of(job.id)) == 2
        assert len(store.operator_actions()) == 1
        stored_job = self._job(store, job.id)
        assert (stored_job.total_transfers, stored_job.total_amount_cents) == (2, 2000)

    def test_an_action_on_a_transfer_must_name_it(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        job, failed = self._failed(store, clock)
        reissued, action = b.reissue(failed, now=clock.now())
        nameless = attrs.evolve(action, transfer_id=None)

        # Refused before the store is touched (the schema's check refuses it too:
        # tests/integration/test_schema.py).
        with pytest.raises(ValueError, match="does not reissue"):
            store.reissue(failed=failed, reissued=reissued, action=nameless)

        assert store.get_transfer(reissued.id) is None
        assert store.operator_actions() == []
        stored_job = self._job(store, job.id)
        assert stored_job.total_transfers == 1

    # -- money that comes back (DESIGN 7, "Reversals") -----------------------------------

    def _paid(
        self, store: ports.PayoutStore, clock: ManualClock, amount_cents: int = 1500
    ) -> models.PayoutTransfer:
        """u-1 paid ``amount_cents`` through the store's own steps."""
        return b.paid(store, b.settlement(("u-1", amount_cents)), now=clock.now())

    def _intent(self, store: ports.PayoutStore, asked: models.Reversal) -> models.Reversal:
        written = store.reversal_intent(asked)
        assert isinstance(written, models.Reversal), written
        return written

    def _refused(self, store: ports.PayoutStore, asked: models.Reversal) -> ports.ReversalRefused:
        refused = store.reversal_intent(asked)
        assert isinstance(refused, ports.ReversalRefused), refused
        return refused

    def _failed_reversal(
        self, store: ports.PayoutStore, clock: ManualClock, amount_cents: int = 1500
    ) -> tuple[models.PayoutTransfer, models.Reversal, models.Reversal]:
        """u-1 paid 1500, and a first reversal of ``amount_cents`` Stripe refused:
        the transfer, the intent, the reversal as settled."""
        transfer = self._paid(store, clock)
        written = self._intent(
            store, b.reversal(transfer, amount_cents=amount_cents, now=clock.now())
        )
        failed = b.reversal_failed(written, now=clock.now())
        assert store.settle_reversal(before=written, after=failed, ledger_entry=None, action=None)
        return transfer, written, failed

    def _payment(
        self, store: ports.PayoutStore, transfer: models.PayoutTransfer
    ) -> models.LedgerEntry:
        [payment] = store.ledger(transfer_id=transfer.id)
        assert payment.entry_type is Entry.PAYOUT_COMPLETED
        return payment

    def _credits(self, store: ports.PayoutStore, transfer_id: str) -> list[models.LedgerEntry]:
        return [
            e
            for e in store.ledger(transfer_id=transfer_id)
            if e.entry_type is Entry.PAYOUT_REVERSED
        ]

    def test_a_reversal_intent_is_written_sending_at_the_stores_time(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        clock.advance(60)
        # The caller's clock is an hour behind: the store's time is the intent's.
        asked = b.reversal(transfer, amount_cents=500, now=clock.now() - timedelta(hours=1))

        written = store.reversal_intent(asked)

        assert written == attrs.evolve(asked, created_at=clock.now(), updated_at=clock.now())
        assert isinstance(written, models.Reversal)
        assert written.status is models.ReversalStatus.SENDING
        assert store.reversals_of(transfer.id) == [written]

    def test_no_reversal_of_a_transfer_that_was_not_paid(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        _, declined = self._failed(store, clock, "u-2")
        _, [pending] = b.schedule(store, b.settlement("u-1", settlement_id="s-2"), now=T0)
        stranger = attrs.evolve(pending, id=b.new_id(), stripe_transfer_id="tr_x")

        for transfer in (pending, declined):
            refused = self._refused(store, b.reversal(transfer, now=clock.now()))
            assert "not completed" in refused.why
            assert refused.amounts is None
            assert store.reversals_of(transfer.id) == []
        assert self._refused(store, b.reversal(stranger, now=clock.now())).why == (
            "no such transfer"
        )

    def test_no_reversal_of_more_than_is_left_and_the_amounts_are_named(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        # 400 came back through Stripe's dashboard (a webhook booked it).
        assert store.book_reversal(
            ledger.reversal_entry(
                transfer, stripe_reversal_id="trr_dash", amount_cents=400, now=clock.now()
            )
        )

        refused = self._refused(store, b.reversal(transfer, amount_cents=1101, now=clock.now()))

        assert "more than is left" in refused.why
        assert refused.amounts == rules.Amounts(paid=1500, reversed=400, in_doubt=0)
        assert refused.amounts.left == 1100
        assert store.reversals_of(transfer.id) == []
        self._intent(store, b.reversal(transfer, amount_cents=1100, now=clock.now()))

    def test_no_new_reversal_while_another_is_in_doubt(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        first = self._intent(store, b.reversal(transfer, amount_cents=500, now=clock.now()))

        refused = self._refused(
            store, b.reversal(transfer, amount_cents=100, sequence=2, now=clock.now())
        )

        assert "in doubt" in refused.why
        assert first.idempotency_key in refused.why
        assert refused.amounts == rules.Amounts(paid=1500, reversed=0, in_doubt=500)
        assert store.reversals_of(transfer.id) == [first]

    def test_a_sequence_already_used_or_skipped_is_refused(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer, _, failed = self._failed_reversal(store, clock, amount_cents=500)

        again = self._refused(store, b.reversal(transfer, amount_cents=500, now=clock.now()))
        skipped = self._refused(
            store, b.reversal(transfer, amount_cents=500, sequence=3, now=clock.now())
        )

        assert "sequence 1 is not the next one (2)" in again.why
        assert "sequence 3 is not the next one (2)" in skipped.why
        assert store.reversals_of(transfer.id) == [failed]
        self._intent(store, b.reversal(transfer, amount_cents=500, sequence=2, now=clock.now()))

    def test_a_completed_reversal_books_its_credit_and_the_action_once(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        payment = self._payment(store, transfer)
        written = self._intent(store, b.reversal(transfer, amount_cents=500, now=clock.now()))
        clock.advance(2)
        after, entry, action = b.reversal_succeeded(transfer, written, now=clock.now())

        assert store.settle_reversal(before=written, after=after, ledger_entry=entry, action=action)
        assert not store.settle_reversal(
            before=written, after=after, ledger_entry=entry, action=action
        )

        assert store.reversals_of(transfer.id) == [after]
        assert store.ledger(transfer_id=transfer.id) == [payment, entry]
        assert store.operator_actions(transfer_id=transfer.id) == self._actions_at(clock, action)

    def test_the_reversals_in_doubt_are_listed_oldest_first_until_settled(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        first_paid = self._paid(store, clock)
        second_paid = b.paid(
            store, b.settlement(("u-2", 900), settlement_id="s-2"), now=clock.now()
        )
        first = self._intent(store, b.reversal(first_paid, amount_cents=500, now=clock.now()))
        clock.advance(1)
        second = self._intent(store, b.reversal(second_paid, amount_cents=900, now=clock.now()))

        assert store.reversals_in_doubt(limit=10) == [first, second]
        assert store.reversals_in_doubt(limit=1) == [first]

        after, entry, action = b.reversal_succeeded(first_paid, first, now=clock.now())
        assert store.settle_reversal(before=first, after=after, ledger_entry=entry, action=action)
        assert store.reversals_in_doubt(limit=10) == [second]
        failed = b.reversal_failed(second, now=clock.now())
        assert store.settle_reversal(before=second, after=failed, ledger_entry=None, action=None)
        assert store.reversals_in_doubt(limit=10) == []

    def test_a_failed_reversal_books_nothing_and_ends_the_doubt(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer, _, failed = self._failed_reversal(store, clock)

        assert store.reversals_of(transfer.id) == [failed]
        assert store.ledger() == [self._payment(store, transfer)]
        assert store.operator_actions() == []
        # Nothing came back, and nothing is in doubt: all of it may be asked for again.
        self._intent(store, b.reversal(transfer, sequence=2, now=clock.now()))

    def test_an_answer_to_a_reversal_settled_meanwhile_writes_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer, written, failed = self._failed_reversal(store, clock)
        # A second answer to the same intent (a resend's, a webhook's): too late.
        after, entry, action = b.reversal_succeeded(transfer, written, now=clock.now())

        assert not store.settle_reversal(
            before=written, after=after, ledger_entry=entry, action=action
        )

        assert store.reversals_of(transfer.id) == [failed]
        assert store.ledger() == [self._payment(store, transfer)]
        assert store.operator_actions() == []

    def test_a_credit_a_webhook_booked_first_is_not_booked_again_by_the_settlement(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        # All of it: counted twice, the credit would exceed the payment.
        written = self._intent(store, b.reversal(transfer, now=clock.now()))
        after, entry, action = b.reversal_succeeded(transfer, written, now=clock.now())
        assert store.book_reversal(entry)  # the webhook came first

        assert store.settle_reversal(before=written, after=after, ledger_entry=entry, action=action)

        assert self._credits(store, transfer.id) == [entry]
        assert store.reversals_of(transfer.id) == [after]
        assert store.operator_actions(transfer_id=transfer.id) == self._actions_at(clock, action)

    def test_a_reversal_made_elsewhere_is_booked_once(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        entry = ledger.reversal_entry(
            transfer, stripe_reversal_id="trr_dash", amount_cents=1500, now=clock.now()
        )

        assert store.book_reversal(entry)
        assert not store.book_reversal(entry)

        assert self._credits(store, transfer.id) == [entry]
        assert store.reversals_of(transfer.id) == []

    def test_a_credit_beyond_what_was_paid_is_refused_and_nothing_booked(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        _, [unpaid] = b.schedule(store, b.settlement("u-2", settlement_id="s-2"), now=T0)
        first = ledger.reversal_entry(
            transfer, stripe_reversal_id="trr_1", amount_cents=1000, now=clock.now()
        )
        assert store.book_reversal(first)
        booked = store.ledger()
        too_much = ledger.reversal_entry(
            transfer, stripe_reversal_id="trr_2", amount_cents=501, now=clock.now()
        )
        never_paid = attrs.evolve(
            too_much,
            idempotency_key="ledger:reversal:trr_3",
            stripe_reversal_id="trr_3",
            transfer_id=unpaid.id,
            user_id="u-2",
        )

        with pytest.raises(errors.IllegalTransition, match="1500 usd, 1000 came back already"):
            store.book_reversal(too_much)
        with pytest.raises(errors.IllegalTransition, match="never paid"):
            store.book_reversal(never_paid)

        assert store.ledger() == booked
        assert store.book_reversal(attrs.evolve(too_much, amount_cents=500))

    def test_a_settlement_the_ledger_refuses_writes_nothing(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        written = self._intent(store, b.reversal(transfer, amount_cents=1000, now=clock.now()))
        # Meanwhile 1000 came back through the dashboard: 2000 of 1500 cannot be.
        dashboard = ledger.reversal_entry(
            transfer, stripe_reversal_id="trr_dash", amount_cents=1000, now=clock.now()
        )
        assert store.book_reversal(dashboard)
        booked = store.ledger()
        after, entry, action = b.reversal_succeeded(transfer, written, now=clock.now())

        with pytest.raises(errors.IllegalTransition, match="too much"):
            store.settle_reversal(before=written, after=after, ledger_entry=entry, action=action)

        assert store.reversals_of(transfer.id) == [written]
        assert store.ledger() == booked
        assert store.operator_actions() == []

    def test_reversals_are_listed_first_first(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer, _, failed = self._failed_reversal(store, clock, amount_cents=100)
        second = self._intent(
            store, b.reversal(transfer, amount_cents=200, sequence=2, now=clock.now())
        )
        done, entry, action = b.reversal_succeeded(transfer, second, now=clock.now())
        assert store.settle_reversal(before=second, after=done, ledger_entry=entry, action=action)
        third = self._intent(
            store, b.reversal(transfer, amount_cents=300, sequence=3, now=clock.now())
        )

        assert store.reversals_of(transfer.id) == [failed, done, third]
        assert store.reversals_of(b.new_id()) == []
        assert store.reversals_of("not an id") == []

    def test_concurrent_intents_for_one_transfer_write_one(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        asked = [b.reversal(transfer, amount_cents=900, now=clock.now()) for _ in range(6)]
        start = threading.Barrier(len(asked))
        results: list[models.Reversal | ports.ReversalRefused] = []
        failures: list[BaseException] = []

        def operator(reversal: models.Reversal) -> None:
            try:
                start.wait()
                results.append(store.reversal_intent(reversal))
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)

        threads = [threading.Thread(target=operator, args=(r,)) for r in asked]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert failures == []
        written = [r for r in results if isinstance(r, models.Reversal)]
        assert len(written) == 1
        assert store.reversals_of(transfer.id) == written

    def test_what_no_reversal_step_makes_is_refused_before_the_store_is_touched(
        self, store: ports.PayoutStore, clock: ManualClock
    ) -> None:
        transfer = self._paid(store, clock)
        written = self._intent(store, b.reversal(transfer, amount_cents=500, now=clock.now()))
        after, entry, action = b.reversal_succeeded(transfer, written, now=clock.now())
        failed = b.reversal_failed(written, now=clock.now())
        booked = store.ledger()

        with pytest.raises(ValueError, match="iff completed"):
            store.settle_reversal(before=written, after=after, ledger_entry=entry, action=None)
        with pytest.raises(ValueError, match="iff completed"):
            store.settle_reversal(before=written, after=failed, ledger_entry=entry, action=None)
        with pytest.raises(ValueError, match="not the credit"):
            store.settle_reversal(
                before=written,
                after=after,
                ledger_entry=attrs.evolve(entry, amount_cents=499),
                action=action,
            )
        with pytest.raises(ValueError, match="an intent is sending"):
            store.reversal_intent(attrs.evolve(after, id=b.new_id(), sequence=2))
        with pytest.raises(ValueError, match="not a reversal"):
            store.book_reversal(booked[0])

        assert store.reversals_of(transfer.id) == [written]
        assert store.ledger() == booked
