"""Every deterministic key and label payout-core derives from its own ids.

Determinism is what makes a retry safe: the same transfer always asks Stripe
with the same key, so a lost response is replayed, not paid again.
"""

from __future__ import annotations

import hashlib
import json

from payout_core import models, outcomes

__all__ = [
    "ledger_key",
    "reversal_key",
    "reversal_ledger_key",
    "reversal_metadata",
    "settlement_fingerprint",
    "stripe_idempotency_key",
    "transfer_group",
    "transfer_lookup",
    "transfer_metadata",
    "transfer_request",
]


def stripe_idempotency_key(transfer_id: str, generation: int = 0) -> str:
    """``payout:<id>``, and ``payout:<id>:<generation>`` once a look-up at
    Stripe has confirmed that no transfer exists under earlier keys."""
    if generation < 0:
        raise ValueError(f"key generation must be >= 0, got {generation}")
    return f"payout:{transfer_id}" if generation == 0 else f"payout:{transfer_id}:{generation}"


def ledger_key(transfer_id: str, attempt_number: int) -> str:
    return f"ledger:payout:{transfer_id}:{attempt_number}"


def reversal_key(transfer_id: str, sequence: int) -> str:
    """``payout-reversal:<transfer_id>:<n>``: the n-th reversal payout-core asks
    for this transfer; a resend of the same key can never reverse twice."""
    if sequence < 1:
        raise ValueError(f"a reversal's sequence starts at 1, got {sequence}")
    return f"payout-reversal:{transfer_id}:{sequence}"


def reversal_ledger_key(stripe_reversal_id: str) -> str:
    """A reversal is booked once, whoever saw it first (the command, a webhook,
    reconcile): its ledger row is keyed by Stripe's own id."""
    return f"ledger:reversal:{stripe_reversal_id}"


def reversal_metadata(reversal: models.Reversal) -> tuple[tuple[str, str], ...]:
    return (
        ("payout_reversal_key", reversal.idempotency_key),
        ("payout_transfer_id", reversal.transfer_id),
    )


def transfer_group(contest_id: str) -> str:
    return f"contest:{contest_id}"


def transfer_metadata(transfer: models.PayoutTransfer) -> tuple[tuple[str, str], ...]:
    return (
        ("payout_transfer_id", transfer.id),
        ("payout_job_id", transfer.job_id),
        ("settlement_id", transfer.settlement_id),
        ("contest_id", transfer.contest_id),
        ("user_id", transfer.user_id),
    )


def transfer_request(transfer: models.PayoutTransfer, destination: str) -> outcomes.TransferRequest:
    return outcomes.TransferRequest(
        amount_cents=transfer.amount_cents,
        currency=transfer.currency,
        destination=destination,
        transfer_group=transfer_group(transfer.contest_id),
        idempotency_key=stripe_idempotency_key(transfer.id, transfer.key_generation),
        metadata=transfer_metadata(transfer),
    )


def transfer_lookup(
    transfer: models.PayoutTransfer, destination: str | None
) -> outcomes.TransferLookup:
    return outcomes.TransferLookup(
        destination=destination,
        transfer_group=transfer_group(transfer.contest_id),
        payout_transfer_id=transfer.id,
    )


def settlement_fingerprint(settlement: models.Settlement) -> str:
    """A digest of what the settlement pays, independent of winner order."""
    canonical = {
        "settlement_id": settlement.settlement_id,
        "contest_id": settlement.contest_id,
        "currency": settlement.currency,
        "winners": sorted((w.user_id, w.amount_cents) for w in settlement.winners),
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
