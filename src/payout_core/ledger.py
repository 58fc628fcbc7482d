"""The ledger row an attempt's outcome writes."""

from __future__ import annotations

from datetime import datetime

from payout_core import errors, idempotency, models

__all__ = ["entry_for"]

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
