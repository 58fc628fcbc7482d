"""The transfer state machine: every move of DESIGN 3's table, and no other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import errors, models
from payout_core import state_machine as sm

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
LEASE = timedelta(minutes=10)
S = models.TransferStatus


def transfer(**changes: object) -> models.PayoutTransfer:
    base = models.PayoutTransfer(
        id="t1",
        job_id="j1",
        settlement_id="s1",
        contest_id="c1",
        user_id="u1",
        amount_cents=1500,
        currency="usd",
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def claimed(**changes: object) -> models.PayoutTransfer:
    return sm.claim(transfer(**changes), now=T0, lease=LEASE, token="claim-1")


def test_claiming_a_pending_transfer_spends_an_attempt_and_takes_a_lease() -> None:
    t = claimed()
    assert t.status is S.PROCESSING
    assert t.attempt_count == 1
    assert t.claim_counted
    assert t.claim_token == "claim-1"
    assert t.lease_expires_at == T0 + LEASE
    assert not t.outcome_uncertain


def test_a_retryable_transfer_is_claimed_only_once_due() -> None:
    later = transfer(status=S.RETRYABLE, attempt_count=1, next_attempt_at=T0 + timedelta(1))
    assert not sm.is_due(later, T0)
    with pytest.raises(errors.IllegalTransition):
        sm.claim(later, now=T0, lease=LEASE, token="x")
    due = sm.claim(later, now=T0 + timedelta(1), lease=LEASE, token="x")
    assert due.attempt_count == 2


def test_an_expired_lease_is_taken_over_and_marks_the_outcome_uncertain() -> None:
    held = claimed()
    assert not sm.is_due(held, T0 + LEASE - timedelta(seconds=1))
    taken = sm.claim(held, now=T0 + LEASE, lease=LEASE, token="claim-2")
    assert taken.attempt_count == 2
    assert taken.claim_token == "claim-2"
    assert taken.outcome_uncertain


def test_a_claim_with_no_attempts_left_only_resolves() -> None:
    parked = transfer(status=S.RETRYABLE, attempt_count=5, max_attempts=5, outcome_uncertain=True)
    t = sm.claim(parked, now=T0, lease=LEASE, token="x")
    assert t.attempt_count == 5
    assert not t.claim_counted


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED_TERMINAL])
def test_terminal_transfers_are_never_claimed(status: models.TransferStatus) -> None:
    done = transfer(status=status, stripe_transfer_id="tr_1" if status is S.COMPLETED else None)
    assert not sm.is_due(done, T0 + timedelta(days=365))
    with pytest.raises(errors.IllegalTransition):
        sm.claim(done, now=T0, lease=LEASE, token="x")


def test_completing_records_the_stripe_id_and_ends_the_claim() -> None:
    t = sm.complete(claimed(), stripe_transfer_id="tr_1", now=T0)
    assert (t.status, t.stripe_transfer_id, t.claim_token, t.lease_expires_at) == (
        S.COMPLETED,
        "tr_1",
        None,
        None,
    )


def test_completing_without_an_id_is_refused() -> None:
    with pytest.raises(errors.IllegalTransition):
        sm.complete(claimed(), stripe_transfer_id="", now=T0)


def test_a_retry_keeps_uncertainty_until_a_look_up_clears_it() -> None:
    t = sm.retry(claimed(), next_attempt_at=T0, code="timeout", message="m", uncertain=True, now=T0)
    t = sm.claim(t, now=T0, lease=LEASE, token="c2")
    t = sm.retry(t, next_attempt_at=T0, code="rate_limit", message="m", now=T0)
    assert t.outcome_uncertain
    t = sm.new_key_generation(sm.claim(t, now=T0, lease=LEASE, token="c3"), now=T0)
    assert not t.outcome_uncertain
    assert t.key_generation == 1


def test_failing_is_refused_while_a_transfer_may_exist_at_stripe() -> None:
    t = claimed(outcome_uncertain=True)
    with pytest.raises(errors.IllegalTransition, match="may exist at Stripe"):
        sm.fail(t, code="account_invalid", message="m", now=T0)


def test_release_gives_the_attempt_back() -> None:
    first = sm.release(claimed(), now=T0, reason="authentication_error")
    assert (first.status, first.attempt_count) == (S.PENDING, 0)
    later = sm.release(claimed(status=S.RETRYABLE, attempt_count=2, next_attempt_at=T0), now=T0)
    assert (later.status, later.attempt_count) == (S.RETRYABLE, 2)


def test_release_of_a_resolving_claim_spends_nothing_it_did_not_take() -> None:
    parked = transfer(status=S.RETRYABLE, attempt_count=5, outcome_uncertain=True)
    t = sm.release(sm.claim(parked, now=T0, lease=LEASE, token="x"), now=T0)
    assert (t.status, t.attempt_count) == (S.RETRYABLE, 5)


def test_sending_pins_the_destination() -> None:
    t = sm.send(claimed(), destination="acct_1", now=T0)
    assert (t.destination_account, t.key_first_sent_at) == ("acct_1", T0)
    again = sm.send(t, destination="acct_1", now=T0 + timedelta(1))
    assert again.key_first_sent_at == T0
    with pytest.raises(errors.IllegalTransition, match="another destination"):
        sm.send(t, destination="acct_2", now=T0)


EVENTS = {
    "claim": lambda t: sm.claim(t, now=T0 + timedelta(days=30), lease=LEASE, token="z"),
    "complete": lambda t: sm.complete(t, stripe_transfer_id="tr_z", now=T0),
    "retry": lambda t: sm.retry(t, next_attempt_at=T0, code="c", message="m", now=T0),
    "fail": lambda t: sm.fail(t, code="c", message="m", now=T0),
    "release": lambda t: sm.release(t, now=T0),
    "new_key_generation": lambda t: sm.new_key_generation(t, now=T0),
    "send": lambda t: sm.send(t, destination="acct_1", now=T0),
}


@given(st.lists(st.sampled_from(sorted(EVENTS)), max_size=30))
def test_any_sequence_of_events_keeps_the_invariants(events: list[str]) -> None:
    t = transfer(max_attempts=3)
    for event in events:
        before = t
        try:
            t = EVENTS[event](t)
        except errors.IllegalTransition:
            allowed, _ = sm.TRANSITIONS[event]
            assert before.status not in allowed or event in ("claim", "fail", "send")
            continue
        assert before.status in sm.TRANSITIONS[event][0]
        assert not before.status.is_terminal, "nothing leaves a terminal state"
        assert (t.stripe_transfer_id is not None) == (t.status is S.COMPLETED)
        assert 0 <= t.attempt_count <= t.max_attempts
        assert (t.claim_token is not None) == (t.status is S.PROCESSING)
