"""Deterministic keys: the same transfer always asks Stripe the same way."""

from __future__ import annotations

import pytest

from payout_core import idempotency, validation
from tests.kit import builders as b


def test_the_first_key_is_payout_and_the_transfer_id() -> None:
    assert idempotency.stripe_idempotency_key("t-1") == "payout:t-1"


def test_later_generations_append_their_number() -> None:
    assert idempotency.stripe_idempotency_key("t-1", 2) == "payout:t-1:2"


def test_a_negative_generation_is_a_bug() -> None:
    with pytest.raises(ValueError, match="generation"):
        idempotency.stripe_idempotency_key("t-1", -1)


def test_the_ledger_key_names_the_transfer_and_the_attempt() -> None:
    assert idempotency.ledger_key("t-1", 3) == "ledger:payout:t-1:3"


def test_the_request_carries_group_metadata_and_the_current_key() -> None:
    request = idempotency.transfer_request(b.transfer(key_generation=1), "acct_9")
    assert request.idempotency_key == "payout:t-1:1"
    assert request.transfer_group == "contest:c-1"
    assert request.destination == "acct_9"
    assert (request.amount_cents, request.currency) == (1500, "usd")
    assert dict(request.metadata) == {
        "payout_transfer_id": "t-1",
        "payout_job_id": "j-1",
        "settlement_id": "s-1",
        "contest_id": "c-1",
        "user_id": "u-1",
    }


def test_the_look_up_matches_on_the_payout_transfer_id() -> None:
    lookup = idempotency.transfer_lookup(b.transfer(), None)
    assert (lookup.payout_transfer_id, lookup.transfer_group, lookup.destination) == (
        "t-1",
        "contest:c-1",
        None,
    )


def test_the_fingerprint_ignores_winner_order_but_not_amounts() -> None:
    payload = {
        "settlement_id": "s",
        "contest_id": "c",
        "currency": "usd",
        "winners": [{"user_id": "a", "amount_cents": 1}, {"user_id": "b", "amount_cents": 2}],
    }
    one = validation.parse_settlement(payload)
    reordered = validation.parse_settlement({**payload, "winners": payload["winners"][::-1]})
    changed = validation.parse_settlement(
        {
            **payload,
            "winners": [{"user_id": "a", "amount_cents": 1}, {"user_id": "b", "amount_cents": 3}],
        }
    )
    assert idempotency.settlement_fingerprint(one) == idempotency.settlement_fingerprint(reordered)
    assert idempotency.settlement_fingerprint(one) != idempotency.settlement_fingerprint(changed)
