"""The transfer state machine: the whole transition table, in one place.

Read it next to DESIGN.md section 3. Each event is a function that takes a
transfer and returns a new one; an event from a status not listed for it raises
:class:`~payout_core.errors.IllegalTransition`. The PostgreSQL store repeats
the same guards in SQL (``WHERE status = 'processing' AND claim_token = ...``).

=================  ==========================================  ===============
event              from                                        to
=================  ==========================================  ===============
claim              pending; retryable and due; processing       processing
                   whose lease expired (its worker died)
new_key_generation processing (after a look-up found nothing)  processing
send               processing (destination pinned, key sent)   processing
complete           processing                                  completed
retry              processing                                  retryable
fail               processing, and no transfer may exist at    failed_terminal
                   Stripe (``outcome_uncertain`` is false)
release            processing (systemic halt, or a look-up     pending or
                   that could not decide): the attempt is      retryable
                   given back
=================  ==========================================  ===============

``completed`` and ``failed_terminal`` are terminal: no event leaves them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from payout_core import errors, models

__all__ = [
    "TRANSITIONS",
    "claim",
    "complete",
    "due_at",
    "fail",
    "is_due",
    "new_key_generation",
    "release",
    "retry",
    "send",
]

S = models.TransferStatus

TRANSITIONS: Final[dict[str, tuple[frozenset[models.TransferStatus], str]]] = {
    "claim": (frozenset({S.PENDING, S.RETRYABLE, S.PROCESSING}), "processing"),
    "new_key_generation": (frozenset({S.PROCESSING}), "processing"),
    "send": (frozenset({S.PROCESSING}), "processing"),
    "complete": (frozenset({S.PROCESSING}), "completed"),
    "retry": (frozenset({S.PROCESSING}), "retryable"),
    "fail": (frozenset({S.PROCESSING}), "failed_terminal"),
    "release": (frozenset({S.PROCESSING}), "pending or retryable"),
}

# Failure codes payout-core itself assigns (the gateway's own codes pass through).
ACCOUNT_NOT_CONNECTED: Final = "stripe_account_not_connected"
MAX_ATTEMPTS_EXCEEDED: Final = "max_attempts_exceeded"


def _guard(transfer: models.PayoutTransfer, event: str) -> None:
    allowed, _ = TRANSITIONS[event]
    if transfer.status not in allowed:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, event)


def due_at(transfer: models.PayoutTransfer) -> datetime | None:
    """When :func:`claim` may take the transfer (the schema's ``claimable_at``):
    a held claim when its lease expires, otherwise at ``next_attempt_at``, and
    never before the transfer exists. ``None`` once terminal."""
    if transfer.status is S.PROCESSING:
        return transfer.lease_expires_at
    if transfer.status in (S.PENDING, S.RETRYABLE):
        return transfer.next_attempt_at or transfer.created_at
    return None


def is_due(transfer: models.PayoutTransfer, now: datetime) -> bool:
    """Whether :func:`claim` may take this transfer now."""
    due = due_at(transfer)
    return due is not None and due <= now


def claim(
    transfer: models.PayoutTransfer, *, now: datetime, lease: timedelta, token: str
) -> models.PayoutTransfer:
    """Take the transfer for one attempt.

    The claim spends an attempt while one is left. A transfer whose attempts are
    all spent is only claimed to *resolve* it (a look-up at Stripe, never a new
    send): that happens when its last attempt ended unknown or its worker died
    during it. Taking over an expired lease marks the outcome uncertain: the
    dead worker may have reached Stripe.
    """
    _guard(transfer, "claim")
    if not is_due(transfer, now):
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "claim (not due)")
    counted = transfer.attempt_count < transfer.max_attempts
    return attrs.evolve(
        transfer,
        status=S.PROCESSING,
        attempt_count=transfer.attempt_count + 1 if counted else transfer.attempt_count,
        claim_counted=counted,
        claim_token=token,
        lease_expires_at=now + lease,
        outcome_uncertain=transfer.outcome_uncertain or transfer.status is S.PROCESSING,
        updated_at=now,
    )


def new_key_generation(transfer: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    """Move to a fresh idempotency key. Only after a look-up found no transfer at
    Stripe: the old key can then create nothing, and a new one is safe."""
    _guard(transfer, "new_key_generation")
    return attrs.evolve(
        transfer,
        key_generation=transfer.key_generation + 1,
        key_first_sent_at=None,
        key_replays_error=False,
        outcome_uncertain=False,
        updated_at=now,
    )


def send(
    transfer: models.PayoutTransfer, *, destination: str, now: datetime
) -> models.PayoutTransfer:
    """About to send the current key: pin the destination (a retry under the same
    key must send the same parameters) and note when the key was first used
    (Stripe forgets keys after about 24 hours)."""
    _guard(transfer, "send")
    if transfer.destination_account not in (None, destination):
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "send to another destination than before"
        )
    return attrs.evolve(
        transfer,
        destination_account=destination,
        key_first_sent_at=transfer.key_first_sent_at or now,
        updated_at=now,
    )


def _settled(transfer: models.PayoutTransfer, **changes: Any) -> models.PayoutTransfer:
    """Leave ``processing``: the claim ends."""
    return attrs.evolve(transfer, lease_expires_at=None, claim_token=None, **changes)


def complete(
    transfer: models.PayoutTransfer, *, stripe_transfer_id: str, now: datetime
) -> models.PayoutTransfer:
    _guard(transfer, "complete")
    if not stripe_transfer_id:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "complete without an id")
    return _settled(
        transfer,
        status=S.COMPLETED,
        stripe_transfer_id=stripe_transfer_id,
        failure_code=None,
        failure_message=None,
        outcome_uncertain=False,
        key_replays_error=False,
        next_attempt_at=None,
        updated_at=now,
    )


def retry(
    transfer: models.PayoutTransfer,
    *,
    next_attempt_at: datetime,
    code: str,
    message: str,
    uncertain: bool = False,
    key_replays_error: bool = False,
    now: datetime,
) -> models.PayoutTransfer:
    """Try again at ``next_attempt_at``.

    ``uncertain`` records that this attempt may have created a transfer;
    uncertainty is only ever cleared by a look-up or a success.
    """
    _guard(transfer, "retry")
    return _settled(
        transfer,
        status=S.RETRYABLE,
        next_attempt_at=next_attempt_at,
        failure_code=code,
        failure_message=message,
        outcome_uncertain=transfer.outcome_uncertain or uncertain,
        key_replays_error=key_replays_error,
        updated_at=now,
    )


def fail(
    transfer: models.PayoutTransfer, *, code: str, message: str, now: datetime
) -> models.PayoutTransfer:
    """Fail for good. Refused while a transfer for it may exist at Stripe."""
    _guard(transfer, "fail")
    if transfer.outcome_uncertain:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "fail while a transfer may exist at Stripe"
        )
    return _settled(
        transfer,
        status=S.FAILED_TERMINAL,
        failure_code=code,
        failure_message=message,
        next_attempt_at=None,
        updated_at=now,
    )


def release(
    transfer: models.PayoutTransfer,
    *,
    now: datetime,
    next_attempt_at: datetime | None = None,
    reason: str | None = None,
) -> models.PayoutTransfer:
    """Give the claim back without spending the attempt (DESIGN: systemic errors)."""
    _guard(transfer, "release")
    attempts = transfer.attempt_count - 1 if transfer.claim_counted else transfer.attempt_count
    return _settled(
        transfer,
        status=S.PENDING if attempts == 0 else S.RETRYABLE,
        attempt_count=attempts,
        claim_counted=False,
        next_attempt_at=next_attempt_at
        if next_attempt_at is not None
        else transfer.next_attempt_at,
        failure_code=reason if reason is not None else transfer.failure_code,
        updated_at=now,
    )
