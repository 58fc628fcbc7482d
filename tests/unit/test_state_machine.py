"""The transfer state machine: every move of its transition table, and no other.

The table is in :mod:`payout_core.state_machine`'s docstring; the rules it keeps
are DESIGN 3's, "Exactly once, under every interleaving". A property test runs
random sequences of events and checks the invariants after each one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import errors, models
from payout_core import state_machine as sm
from tests.kit.builders import transfer
from tests.kit.times import LEASE, MARGIN, T0

S = models.TransferStatus
R = sm.IntentRefusal


def claimed(*, at: datetime = T0, **changes: Any) -> models.PayoutTransfer:
    """A transfer claimed at ``at`` by claim-1."""
    return sm.claim(transfer(**changes), now=at, lease=LEASE, token="claim-1")


def sent(
    t: models.PayoutTransfer | None = None, *, at: datetime = T0, destination: str = "acct_1"
) -> models.PayoutTransfer:
    """``t`` (a fresh claim by default) after its send intent at ``at``."""
    return sm.send(t or claimed(), destination=destination, now=at, margin=MARGIN)


def lost(t: models.PayoutTransfer, *, at: datetime = T0) -> models.PayoutTransfer:
    """A sent transfer whose answer proved nothing, claimed again at ``at``."""
    retried = sm.retry(t, next_attempt_at=at, code="timeout", message="m", now=at)
    return sm.claim(retried, now=at, lease=LEASE, token="claim-again")


# -- claim ---------------------------------------------------------------------------


def test_a_claim_takes_a_lease_by_the_given_time_and_spends_nothing() -> None:
    t = claimed(at=T0 + timedelta(seconds=5))

    assert t.status is S.PROCESSING
    assert t.attempt_count == 0
    assert t.claim_token == "claim-1"
    assert t.lease_expires_at == T0 + timedelta(seconds=5) + LEASE
    assert t.updated_at == T0 + timedelta(seconds=5)
    assert not t.outcome_uncertain
    assert t.abandoned_claims == 0


def test_a_retryable_transfer_is_claimed_only_once_due() -> None:
    later = transfer(status=S.RETRYABLE, attempt_count=1, next_attempt_at=T0 + timedelta(1))

    assert sm.due_at(later) == T0 + timedelta(1)
    assert not sm.is_due(later, T0)
    with pytest.raises(errors.IllegalTransition, match="not due"):
        sm.claim(later, now=T0, lease=LEASE, token="x")
    due = sm.claim(later, now=T0 + timedelta(1), lease=LEASE, token="x")
    assert due.attempt_count == 1


def test_a_pending_transfer_is_due_from_its_creation() -> None:
    t = transfer(created_at=T0 + timedelta(seconds=1), updated_at=T0 + timedelta(seconds=1))
    assert not sm.is_due(t, T0)
    assert sm.is_due(t, T0 + timedelta(seconds=1))


def test_a_held_claim_is_taken_over_only_once_its_lease_expired_counting_the_abandoned_claim() -> (
    None
):
    held = claimed()
    assert sm.due_at(held) == T0 + LEASE
    assert not sm.is_due(held, T0 + LEASE - timedelta(seconds=1))

    taken = sm.claim(held, now=T0 + LEASE, lease=LEASE, token="claim-2")

    assert taken.claim_token == "claim-2"
    assert taken.abandoned_claims == 1
    # It wrote no intent: the take-over has nothing to doubt and nothing was spent.
    assert (taken.attempt_count, taken.outcome_uncertain) == (0, False)


def test_a_take_over_of_a_claim_that_wrote_an_intent_is_uncertain() -> None:
    held = sent()

    taken = sm.claim(held, now=T0 + LEASE, lease=LEASE, token="claim-2")

    assert (taken.attempt_count, taken.outcome_uncertain) == (1, True)
    assert taken.key_first_sent_at == T0


def test_claims_that_keep_expiring_are_abandoned_too_often() -> None:
    t = claimed()
    now = T0
    for _ in range(sm.ABANDONED_CLAIMS_LIMIT - 2):
        now += LEASE
        t = sm.claim(t, now=now, lease=LEASE, token="again")
    assert not sm.abandoned_too_often(t)
    t = sm.claim(t, now=now + LEASE, lease=LEASE, token="again")

    assert sm.abandoned_too_often(t)
    assert "claims in a row expired" in sm.abandoned_reason(t)
    assert "nothing was sent under the current key" in sm.abandoned_reason(t)
    assert "may exist at Stripe" in sm.abandoned_reason(sent(t, at=now + LEASE))


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED_TERMINAL])
def test_terminal_transfers_are_never_due_nor_claimed(status: models.TransferStatus) -> None:
    done = transfer(
        status=status,
        attempt_count=1,
        stripe_transfer_id="tr_1" if status is S.COMPLETED else None,
    )

    assert sm.due_at(done) is None
    assert not sm.is_due(done, T0 + timedelta(days=365))
    with pytest.raises(errors.IllegalTransition):
        sm.claim(done, now=T0, lease=LEASE, token="x")


def test_a_transfer_that_needs_an_operator_is_never_due() -> None:
    waiting = sm.escalate(claimed(), reason="look-ups keep failing", now=T0)

    assert sm.due_at(waiting) is None
    assert not sm.is_due(waiting, T0 + timedelta(days=365))
    with pytest.raises(errors.IllegalTransition, match="not due"):
        sm.claim(waiting, now=T0 + timedelta(days=365), lease=LEASE, token="x")


# -- send: the write-ahead intent ----------------------------------------------------


def test_an_intent_spends_an_attempt_pins_the_destination_and_starts_the_doubt() -> None:
    t = sent(at=T0 + timedelta(seconds=3))

    assert (t.status, t.attempt_count, t.key_sends) == (S.PROCESSING, 1, 1)
    assert t.destination_account == "acct_1"
    assert t.outcome_uncertain
    assert t.key_first_sent_at == t.last_send_at == t.updated_at == T0 + timedelta(seconds=3)


def test_a_resend_of_an_uncertain_key_spends_nothing_and_keeps_its_first_use() -> None:
    first = sent()
    again = lost(first, at=T0 + timedelta(hours=1))

    resent = sent(again, at=T0 + timedelta(hours=1))

    assert (resent.attempt_count, resent.key_sends, resent.key_generation) == (1, 2, 0)
    assert resent.key_first_sent_at == T0
    assert resent.last_send_at == T0 + timedelta(hours=1)


def test_an_intent_after_a_conclusive_answer_opens_a_new_attempt_under_the_new_key() -> None:
    moved = sm.new_key_generation(sent(), now=T0)
    retried = sm.retry(moved, next_attempt_at=T0, code="not_found", message="m", now=T0)

    later = T0 + timedelta(days=1)

    second = sent(sm.claim(retried, now=later, lease=LEASE, token="c2"), at=later)

    assert (second.attempt_count, second.key_generation, second.key_sends) == (2, 1, 1)
    assert second.key_first_sent_at == second.last_send_at == later


def refusal(t: models.PayoutTransfer, *, at: datetime = T0, **changes: Any) -> R | None:
    args: dict[str, Any] = {
        "token": t.claim_token,
        "destination": "acct_1",
        "now": at,
        "margin": MARGIN,
    }
    return sm.refuse_send(t, **{**args, **changes})


def test_an_intent_is_refused_to_a_claim_that_is_not_the_current_one() -> None:
    t = claimed()
    assert refusal(t) is None
    assert refusal(t, token="someone-else") is R.STALE_CLAIM
    assert refusal(t, token=None) is R.STALE_CLAIM
    assert refusal(transfer()) is R.STALE_CLAIM  # not claimed at all


def test_an_intent_needs_the_send_margin_left_on_the_lease() -> None:
    t = claimed()
    assert refusal(t, at=T0 + LEASE - MARGIN) is None
    assert refusal(t, at=T0 + LEASE - MARGIN + timedelta(microseconds=1)) is R.LEASE_TOO_SHORT


def test_an_intent_to_another_destination_than_the_pinned_one_is_refused() -> None:
    t = lost(sent())

    assert refusal(t, destination="acct_2") is R.DESTINATION_CHANGED
    with pytest.raises(errors.IllegalTransition, match="destination_changed"):
        sm.send(t, destination="acct_2", now=T0, margin=MARGIN)


def test_an_uncertain_key_is_resent_only_while_stripe_surely_remembers_it() -> None:
    t = lost(sent())
    assert sm.key_trusted(t, T0 + sm.KEY_TRUST_WINDOW - timedelta(microseconds=1))
    assert not sm.key_trusted(t, T0 + sm.KEY_TRUST_WINDOW)
    late = attrs.evolve(t, lease_expires_at=T0 + sm.KEY_TRUST_WINDOW + LEASE)

    assert refusal(late, at=T0 + sm.KEY_TRUST_WINDOW - timedelta(seconds=1)) is None
    assert refusal(late, at=T0 + sm.KEY_TRUST_WINDOW) is R.KEY_UNTRUSTED


def test_a_key_that_replays_an_error_is_never_resent() -> None:
    saved_500 = sm.retry(
        sent(), next_attempt_at=T0, code="api_error", message="500", key_replays_error=True, now=T0
    )
    t = sm.claim(saved_500, now=T0, lease=LEASE, token="c2")

    assert not sm.key_trusted(t, T0)
    assert refusal(t) is R.KEY_UNTRUSTED


def test_a_new_attempt_needs_an_attempt_left() -> None:
    spent = claimed(status=S.RETRYABLE, attempt_count=5, max_attempts=5, next_attempt_at=T0)
    assert refusal(spent) is R.NO_ATTEMPT_LEFT
    with pytest.raises(errors.IllegalTransition, match="no_attempt_left"):
        sent(spent)


def test_a_resend_needs_no_attempt_left() -> None:
    t = lost(sent(claimed(max_attempts=1)))
    assert t.attempts_left == 0
    assert refusal(t) is None


# -- conclusive answers ---------------------------------------------------------------


def test_a_new_key_generation_ends_the_doubt_about_the_old_key() -> None:
    t = attrs.evolve(lost(sent()), key_replays_error=True, lookup_failures=2)

    moved = sm.new_key_generation(t, now=T0 + timedelta(seconds=9))

    assert moved.key_generation == 1
    assert (moved.outcome_uncertain, moved.key_replays_error) == (False, False)
    assert (moved.key_first_sent_at, moved.key_sends, moved.lookup_failures) == (None, 0, 0)
    assert moved.attempt_count == 1  # the attempt under the old key stays spent
    assert moved.destination_account == "acct_1"  # still pinned
    assert moved.updated_at == T0 + timedelta(seconds=9)


def test_a_new_key_generation_may_refund_the_attempt_the_platform_wasted() -> None:
    refunded = sm.new_key_generation(sent(), now=T0, refund=True)
    assert (refunded.attempt_count, refunded.key_generation) == (0, 1)
    with pytest.raises(errors.IllegalTransition, match="refund"):
        sm.new_key_generation(claimed(), now=T0, refund=True)


def test_a_refusal_saved_under_the_key_ends_the_doubt_and_allows_failing() -> None:
    t = sm.key_refused(sent(), now=T0)
    assert not t.outcome_uncertain
    assert t.key_generation == 0

    failed = sm.fail(t, code="account_invalid", message="m", now=T0)

    assert (failed.status, failed.failure_code, failed.attempt_count) == (
        S.FAILED_TERMINAL,
        "account_invalid",
        1,
    )
    assert (failed.claim_token, failed.lease_expires_at, failed.next_attempt_at) == (
        None,
        None,
        None,
    )


def test_completing_records_the_stripe_id_ends_the_doubt_and_the_claim() -> None:
    t = sm.complete(sent(), stripe_transfer_id="tr_1", now=T0)

    assert (t.status, t.stripe_transfer_id, t.claim_token, t.lease_expires_at) == (
        S.COMPLETED,
        "tr_1",
        None,
        None,
    )
    assert not t.outcome_uncertain


def test_completing_without_an_id_or_without_a_send_is_refused() -> None:
    with pytest.raises(errors.IllegalTransition, match="without an id"):
        sm.complete(sent(), stripe_transfer_id="", now=T0)
    with pytest.raises(errors.IllegalTransition, match="without a send"):
        sm.complete(claimed(), stripe_transfer_id="tr_1", now=T0)


# -- inconclusive answers, failing and waiting ------------------------------------------


def test_a_retry_keeps_the_doubt_as_it_is() -> None:
    uncertain = sm.retry(sent(), next_attempt_at=T0, code="timeout", message="m", now=T0)
    assert (uncertain.status, uncertain.outcome_uncertain) == (S.RETRYABLE, True)
    assert (uncertain.claim_token, uncertain.lease_expires_at) == (None, None)
    certain = sm.retry(
        sm.new_key_generation(sent(), now=T0),
        next_attempt_at=T0,
        code="not_found",
        message="m",
        now=T0,
    )
    assert (certain.status, certain.outcome_uncertain) == (S.RETRYABLE, False)


def test_a_key_that_replays_an_error_stays_so_until_the_key_moves_on() -> None:
    t = sm.retry(
        sent(), next_attempt_at=T0, code="api_error", message="500", key_replays_error=True, now=T0
    )
    t = sm.retry(
        sm.claim(t, now=T0, lease=LEASE, token="c2"),
        next_attempt_at=T0,
        code="rate_limit",
        message="429 on the look-up",
        lookup_failed=True,
        now=T0,
    )
    assert t.key_replays_error
    assert t.lookup_failures == 1

    moved = sm.new_key_generation(sm.claim(t, now=T0, lease=LEASE, token="c3"), now=T0)

    assert (moved.key_replays_error, moved.lookup_failures, moved.key_generation) == (False, 0, 1)


def test_failed_look_ups_are_counted_in_a_row() -> None:
    t = sent()
    for n in (1, 2):
        t = sm.retry(t, next_attempt_at=T0, code="c", message="m", lookup_failed=True, now=T0)
        assert t.lookup_failures == n
        t = sm.claim(t, now=T0, lease=LEASE, token=f"c{n}")
    t = sm.retry(t, next_attempt_at=T0, code="c", message="m", now=T0)
    assert t.lookup_failures == 0


def test_failing_is_refused_while_a_transfer_may_exist_at_stripe() -> None:
    with pytest.raises(errors.IllegalTransition, match="may exist at Stripe"):
        sm.fail(sent(), code="account_invalid", message="m", now=T0)


def test_failing_before_any_send_spends_an_attempt_of_its_own() -> None:
    failed = sm.fail(
        claimed(), code=sm.ACCOUNT_NOT_CONNECTED, message="m", now=T0, spend_attempt=True
    )
    assert (failed.status, failed.attempt_count) == (S.FAILED_TERMINAL, 1)
    with pytest.raises(errors.IllegalTransition, match="without an attempt"):
        sm.fail(claimed(), code="c", message="m", now=T0)
    spent = claimed(status=S.RETRYABLE, attempt_count=5, next_attempt_at=T0)
    with pytest.raises(errors.IllegalTransition, match="none is left"):
        sm.fail(spent, code="c", message="m", now=T0, spend_attempt=True)


def test_a_release_gives_the_claim_back_as_it_was() -> None:
    first = sm.release(claimed(), now=T0, reason="authentication_error")
    assert (first.status, first.attempt_count, first.failure_code) == (
        S.PENDING,
        0,
        "authentication_error",
    )
    assert (first.claim_token, first.lease_expires_at) == (None, None)
    later = sm.release(
        claimed(status=S.RETRYABLE, attempt_count=2, next_attempt_at=T0, failure_code="timeout"),
        now=T0,
    )
    assert (later.status, later.attempt_count, later.failure_code) == (S.RETRYABLE, 2, "timeout")


def test_a_release_after_an_intent_keeps_the_attempt_and_the_doubt() -> None:
    t = sm.release(sent(), now=T0, next_attempt_at=T0 + MARGIN, reason="authentication_error")
    assert (t.status, t.attempt_count, t.outcome_uncertain) == (S.RETRYABLE, 1, True)
    assert t.next_attempt_at == T0 + MARGIN


def test_an_escalated_transfer_waits_for_an_operator_with_its_reason() -> None:
    t = sm.escalate(sent(), reason="look-ups keep failing", now=T0, lookup_failed=True)
    assert (t.status, t.needs_operator, t.outcome_uncertain) == (
        S.RETRYABLE,
        "look-ups keep failing",
        True,
    )
    assert t.lookup_failures == 1
    assert t.claim_token is None
    with pytest.raises(errors.IllegalTransition, match="without why"):
        sm.escalate(claimed(), reason="", now=T0)


# -- an operator's moves (rule 7, DESIGN 7) ----------------------------------------------


def waiting_for_an_operator(*, uncertain: bool = True) -> models.PayoutTransfer:
    # Without doubt: a claim of a transfer whose first attempt ended (its ledger row written).
    t = sent() if uncertain else claimed(status=S.RETRYABLE, attempt_count=1, next_attempt_at=T0)
    return sm.escalate(t, reason="claims keep expiring", now=T0)


def test_an_operator_who_found_the_transfer_at_stripe_completes_it() -> None:
    done = sm.resolve_found(waiting_for_an_operator(), stripe_transfer_id="tr_1", now=T0)

    assert (done.status, done.stripe_transfer_id, done.needs_operator, done.outcome_uncertain) == (
        S.COMPLETED,
        "tr_1",
        None,
        False,
    )
    assert done.attempt_count == 1


def test_an_operator_who_found_nothing_fails_the_attempt_in_doubt_or_one_of_its_own() -> None:
    in_doubt = sm.resolve_absent(waiting_for_an_operator(), message="none", now=T0)
    no_doubt = sm.resolve_absent(waiting_for_an_operator(uncertain=False), message="none", now=T0)

    assert (in_doubt.status, in_doubt.failure_code, in_doubt.attempt_count) == (
        S.FAILED_TERMINAL,
        sm.RESOLVED_ABSENT,
        1,  # the attempt whose outcome was in doubt, not yet in the ledger
    )
    assert (no_doubt.status, no_doubt.attempt_count) == (S.FAILED_TERMINAL, 2)
    assert in_doubt.needs_operator is None


def test_only_a_transfer_waiting_for_an_operator_is_resolved_by_hand() -> None:
    for event in ("resolve_found", "resolve_absent"):
        with pytest.raises(errors.IllegalTransition, match="needs no operator"):
            EVENTS[event](transfer(status=S.RETRYABLE, attempt_count=1))
    with pytest.raises(errors.IllegalTransition, match="without a send"):
        sm.resolve_found(
            sm.escalate(claimed(), reason="r", now=T0), stripe_transfer_id="tr_1", now=T0
        )


def test_a_reissue_is_a_new_pending_transfer_for_the_same_winner_linked_to_the_failed_one() -> None:
    failed = sm.resolve_absent(waiting_for_an_operator(), message="none", now=T0)

    new = sm.reissue(failed, new_id="t-2", now=T0 + timedelta(hours=1))

    assert (new.id, new.reissue_of, new.status, new.attempt_count, new.key_generation) == (
        "t-2",
        failed.id,
        S.PENDING,
        0,
        0,
    )
    assert (new.user_id, new.amount_cents, new.job_id) == (
        failed.user_id,
        failed.amount_cents,
        failed.job_id,
    )
    assert new.destination_account is None  # read again at its first send
    with pytest.raises(errors.IllegalTransition):
        sm.reissue(transfer(status=S.RETRYABLE, attempt_count=1), new_id="t-3", now=T0)
    with pytest.raises(errors.IllegalTransition):
        sm.reissue(failed, new_id=failed.id, now=T0)


# -- only the table's moves --------------------------------------------------------------

EVENTS: dict[str, Callable[[models.PayoutTransfer], models.PayoutTransfer]] = {
    "claim": lambda t: sm.claim(t, now=T0 + timedelta(days=30), lease=LEASE, token="z"),
    "send": lambda t: sm.send(t, destination="acct_1", now=T0, margin=MARGIN),
    "new_key_generation": lambda t: sm.new_key_generation(t, now=T0),
    "key_refused": lambda t: sm.key_refused(t, now=T0),
    "complete": lambda t: sm.complete(t, stripe_transfer_id="tr_z", now=T0),
    "retry": lambda t: sm.retry(t, next_attempt_at=T0, code="c", message="m", now=T0),
    "fail": lambda t: sm.fail(t, code="c", message="m", now=T0, spend_attempt=True),
    "release": lambda t: sm.release(t, now=T0),
    "escalate": lambda t: sm.escalate(t, reason="why", now=T0),
    "resolve_found": lambda t: sm.resolve_found(t, stripe_transfer_id="tr_z", now=T0),
    "resolve_absent": lambda t: sm.resolve_absent(t, message="none at Stripe", now=T0),
}


def test_every_event_of_the_table_is_tested_here() -> None:
    assert set(EVENTS) == set(sm.TRANSITIONS)


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED_TERMINAL])
def test_nothing_leaves_a_terminal_state(event: str, status: models.TransferStatus) -> None:
    done = transfer(
        status=status,
        attempt_count=1,
        stripe_transfer_id="tr_1" if status is S.COMPLETED else None,
        failure_code=None if status is S.COMPLETED else "c",
    )
    with pytest.raises(errors.IllegalTransition):
        EVENTS[event](done)


@pytest.mark.parametrize("event", sorted(set(EVENTS) - {"claim"}))
@pytest.mark.parametrize("status", [S.PENDING, S.RETRYABLE])
def test_only_a_claim_moves_a_waiting_transfer(event: str, status: models.TransferStatus) -> None:
    waiting = transfer(status=status, attempt_count=1 if status is S.RETRYABLE else 0)
    with pytest.raises(errors.IllegalTransition):
        EVENTS[event](waiting)


# -- any sequence of events keeps the invariants -------------------------------------------

DESTINATIONS = ("acct_1", "acct_2")

Step = tuple[str, int, bool, int]
"""An event, the seconds of database time before it, a flag, a destination index."""


def apply(t: models.PayoutTransfer, step: Step, now: datetime) -> models.PayoutTransfer:
    """One event, as a store or an attempt may apply it (raising when refused)."""
    name, _, flag, dest = step
    match name:
        case "claim":
            return sm.claim(t, now=now, lease=LEASE, token=f"claim-{now.isoformat()}")
        case "send":
            return sm.send(t, destination=DESTINATIONS[dest], now=now, margin=MARGIN)
        case "new_key_generation":
            return sm.new_key_generation(t, now=now, refund=flag)
        case "key_refused":
            return sm.key_refused(t, now=now)
        case "complete":
            return sm.complete(t, stripe_transfer_id="tr_z", now=now)
        case "retry":
            return sm.retry(
                t,
                next_attempt_at=now + timedelta(seconds=30),
                code="c",
                message="m",
                key_replays_error=flag,
                lookup_failed=dest == 1,
                now=now,
            )
        case "fail":
            return sm.fail(t, code="c", message="m", now=now, spend_attempt=flag)
        case "release":
            return sm.release(t, now=now)
        case "escalate":
            return sm.escalate(t, reason="why", now=now, lookup_failed=flag)
        case "resolve_found":
            return sm.resolve_found(t, stripe_transfer_id="tr_op", now=now)
        case "resolve_absent":
            return sm.resolve_absent(t, message="none at Stripe", now=now)
    raise AssertionError(name)


def check_invariants(before: models.PayoutTransfer, t: models.PayoutTransfer) -> None:
    assert (t.stripe_transfer_id is not None) == (t.status is S.COMPLETED)
    assert 0 <= t.attempt_count <= t.max_attempts
    if t.outcome_uncertain:
        assert t.key_first_sent_at is not None
        assert t.last_send_at is not None
        assert t.destination_account is not None
        assert t.status is not S.FAILED_TERMINAL, "never failed while a transfer may exist"
    assert (t.claim_token is not None) == (t.status is S.PROCESSING)
    assert (t.lease_expires_at is not None) == (t.status is S.PROCESSING)
    if before.destination_account is not None:
        assert t.destination_account == before.destination_account, "a pinned destination moved"
    assert t.key_generation >= before.key_generation
    assert t.needs_operator is None or not t.status.is_terminal


steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(EVENTS)),
        st.sampled_from([0, 1, 30, 61, 600, 3600, 23 * 3600, 2 * 86400]),
        st.booleans(),
        st.integers(min_value=0, max_value=1),
    ),
    max_size=40,
)


@given(steps)
def test_any_sequence_of_events_keeps_the_invariants(events: list[Step]) -> None:
    t = transfer(max_attempts=3)
    now = T0
    for step in events:
        name = step[0]
        now += timedelta(seconds=step[1])
        before = t
        try:
            t = apply(t, step, now)
        except errors.IllegalTransition:
            continue
        assert before.status in sm.TRANSITIONS[name][0]
        assert not before.status.is_terminal, "nothing leaves a terminal state"
        check_invariants(before, t)


# As an attempt uses them: a conclusion that ends the doubt is followed at once
# by what that conclusion means, so the transfer never rests in a state with
# every attempt spent, nothing in doubt, and nothing decided.
ATTEMPT_STEPS = (
    "claim",
    "intent",
    "succeeded",
    "inconclusive",
    "declined",
    "no_account",
    "not_found",
    "balance_insufficient",
    "halt",
    "escalate",
)


def conclude(t: models.PayoutTransfer, name: str, now: datetime) -> models.PayoutTransfer:
    match name:
        case "claim":
            return sm.claim(t, now=now, lease=LEASE, token=f"claim-{now.isoformat()}")
        case "intent":
            return sm.send(t, destination=t.destination_account or "acct_1", now=now, margin=MARGIN)
        case "succeeded":
            return sm.complete(t, stripe_transfer_id="tr_z", now=now)
        case "inconclusive":
            return sm.retry(t, next_attempt_at=now, code="timeout", message="m", now=now)
        case "declined":
            return sm.fail(sm.key_refused(t, now=now), code="declined", message="m", now=now)
        case "no_account":
            return sm.fail(t, code="no_account", message="m", now=now, spend_attempt=True)
        case "not_found":
            moved = sm.new_key_generation(t, now=now)
            if moved.attempts_left <= 0:
                return sm.fail(moved, code=sm.MAX_ATTEMPTS_EXCEEDED, message="m", now=now)
            return sm.retry(moved, next_attempt_at=now, code="c", message="m", now=now)
        case "balance_insufficient":
            return sm.release(sm.new_key_generation(t, now=now, refund=True), now=now)
        case "halt":
            return sm.release(t, now=now, reason="authentication_error")
        case "escalate":
            return sm.escalate(t, reason="why", now=now)
    raise AssertionError(name)


@given(
    st.lists(
        st.tuples(st.sampled_from(ATTEMPT_STEPS), st.sampled_from([0, 61, 3600, 86400])),
        max_size=40,
    )
)
def test_attempts_never_leave_a_transfer_stuck_with_every_attempt_spent(
    events: list[tuple[str, int]],
) -> None:
    t = transfer(max_attempts=2)
    now = T0
    for name, seconds in events:
        now += timedelta(seconds=seconds)
        before = t
        try:
            t = conclude(t, name, now)
        except errors.IllegalTransition:
            continue
        check_invariants(before, t)
        if not t.status.is_terminal and not t.outcome_uncertain:
            assert t.attempt_count < t.max_attempts, "every attempt spent, nothing decided"
        if t.key_generation == before.key_generation and before.key_first_sent_at is not None:
            assert t.key_first_sent_at == before.key_first_sent_at, "a key's first use moved"
