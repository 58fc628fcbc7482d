"""The ledger row an attempt's outcome writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from payout_core import errors, idempotency, models

__all__ = ["booked_reversals", "entry_for", "reversal_entry"]

_KIND = {
    models.TransferStatus.COMPLETED: (
        models.LedgerEntryType.PAYOUT_COMPLETED,
        models.LedgerDirection.DEBIT,
    ),
    models.TransferStatus.FAILED_TERMINAL: (
        models.LedgerEntryType.PAYOUT_FAILED,
        models.LedgerDirection.MEMO,
    ),
    models.TransferStatus.RETRYABLE: (
        models.LedgerEntryType.PAYOUT_ATTEMPT_FAILED,
        models.LedgerDirection.MEMO,
    ),
}


def entry_for(transfer: models.PayoutTransfer, *, now: datetime) -> models.LedgerEntry:
    """The row for attempt ``transfer.attempt_count`` ending in ``transfer.status``.

    Its key, ``ledger:payout:<transfer id>:<attempt>``, is unique in the ledger,
    so an attempt can never be booked twice.
    """
    if transfer.status not in _KIND:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "book in the ledger")
    entry_type, direction = _KIND[transfer.status]
    return models.LedgerEntry(
        idempotency_key=idempotency.ledger_key(transfer.id, transfer.attempt_count),
        entry_type=entry_type,
        direction=direction,
        amount_cents=transfer.amount_cents,
        currency=transfer.currency,
        transfer_id=transfer.id,
        job_id=transfer.job_id,
        contest_id=transfer.contest_id,
        user_id=transfer.user_id,
        attempt_number=transfer.attempt_count,
        stripe_transfer_id=transfer.stripe_transfer_id,
        failure_code=transfer.failure_code,
        created_at=now,
    )


def reversal_entry(
    transfer: models.PayoutTransfer, *, stripe_reversal_id: str, amount_cents: int, now: datetime
) -> models.LedgerEntry:
    """The credit row of one reversal at Stripe of ``transfer`` (completed),
    whoever made it. Keyed by Stripe's reversal id: booked once, whether the
    command, a webhook or reconcile saw it first."""
    if transfer.status is not models.TransferStatus.COMPLETED:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "book a reversal")
    return models.LedgerEntry(
        idempotency_key=idempotency.reversal_ledger_key(stripe_reversal_id),
        entry_type=models.LedgerEntryType.PAYOUT_REVERSED,
        direction=models.LedgerDirection.CREDIT,
        amount_cents=amount_cents,
        currency=transfer.currency,
        transfer_id=transfer.id,
        job_id=transfer.job_id,
        contest_id=transfer.contest_id,
        user_id=transfer.user_id,
        attempt_number=transfer.attempt_count,
        stripe_transfer_id=transfer.stripe_transfer_id,
        stripe_reversal_id=stripe_reversal_id,
        created_at=now,
    )


def booked_reversals(rows: Iterable[models.LedgerEntry]) -> int:
    """How much of a transfer the ledger books as come back."""
    return sum(
        r.amount_cents for r in rows if r.entry_type is models.LedgerEntryType.PAYOUT_REVERSED
    )
