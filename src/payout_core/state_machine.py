"""The transfer state machine: the whole transition table, in one place.

It is one long module on purpose: the table below and the event functions that
keep it are one idea, read top to bottom beside DESIGN.md's table (STYLE.md);
split by event, a reader would lose the table that says which moves exist.

Read it next to DESIGN.md section 3 and docs/exactly-once.md. Each event is a
function that takes a transfer and returns a new one; an event from a status
not listed for it raises :class:`~payout_core.errors.IllegalTransition`. Both
stores apply these functions (the PostgreSQL store repeats their guards in
SQL: ``WHERE status = 'processing' AND claim_token = ...``), always with the
*database's* time (rule 1): a worker's clock never decides whether a lease
expired, a transfer is due or a key is too old.

==================  ========================================  =====================
event               from                                      to
==================  ========================================  =====================
claim               pending or retryable and due; processing  processing
                    whose lease expired (its worker died)
send (the intent)   processing, lease with the send margin     processing, uncertain
                    left; a new attempt, or a resend of an
                    uncertain key Stripe still remembers
new_key_generation  processing, the current key conclusively   processing
                    created nothing
key_refused         processing, Stripe saved a refusal under   processing
                    the current key
complete            processing                                completed
retry               processing                                retryable
fail                processing, nothing may exist at Stripe   failed_terminal
release             processing: the claim is given back       pending or retryable
escalate            processing: needs an operator             pending or retryable,
                                                              never claimed again
resolve_found       pending or retryable, needing an          completed
                    operator, who showed Stripe holds it
resolve_absent      pending or retryable, needing an          failed_terminal
                    operator, who showed Stripe holds none
==================  ========================================  =====================

``completed`` and ``failed_terminal`` are terminal: no event leaves them. A
failed winner is paid again by a new transfer (:func:`reissue`), linked to the
failed one, which stays as it is.

An *attempt* is spent by the send intent that opens it, and lasts until a
conclusive answer for its key: resending an uncertain key spends nothing. A
claim that never wrote an intent sent nothing, spent nothing and leaves no
doubt; one that did leaves the transfer uncertain, so whoever takes it over
knows, from the stored row alone, that Stripe may hold a transfer.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from payout_core import errors, models

__all__ = [
    "ABANDONED_CLAIMS_LIMIT",
    "KEY_TRUST_WINDOW",
    "LOOKUP_FAILURES_LIMIT",
    "TRANSITIONS",
    "IntentRefusal",
    "abandoned_reason",
    "abandoned_too_often",
    "check_reissue",
    "check_resolution",
    "claim",
    "complete",
    "due_at",
    "escalate",
    "fail",
    "is_due",
    "key_refused",
    "key_trusted",
    "new_key_generation",
    "refuse_send",
    "reissue",
    "release",
    "resolve_absent",
    "resolve_found",
    "retry",
    "send",
]

S = models.TransferStatus

TRANSITIONS: Final[dict[str, tuple[frozenset[models.TransferStatus], str]]] = {
    "claim": (frozenset({S.PENDING, S.RETRYABLE, S.PROCESSING}), "processing"),
    "send": (frozenset({S.PROCESSING}), "processing"),
    "new_key_generation": (frozenset({S.PROCESSING}), "processing"),
    "key_refused": (frozenset({S.PROCESSING}), "processing"),
    "complete": (frozenset({S.PROCESSING}), "completed"),
    "retry": (frozenset({S.PROCESSING}), "retryable"),
    "fail": (frozenset({S.PROCESSING}), "failed_terminal"),
    "release": (frozenset({S.PROCESSING}), "pending or retryable"),
    "escalate": (frozenset({S.PROCESSING}), "pending or retryable, needing an operator"),
    "resolve_found": (frozenset({S.PENDING, S.RETRYABLE}), "completed"),
    "resolve_absent": (frozenset({S.PENDING, S.RETRYABLE}), "failed_terminal"),
}

# Failure codes payout-core itself assigns (the gateway's own codes pass through).
ACCOUNT_NOT_CONNECTED: Final = "stripe_account_not_connected"
MAX_ATTEMPTS_EXCEEDED: Final = "max_attempts_exceeded"
RESOLVED_ABSENT: Final = "resolved_absent"

#: Stripe prunes idempotency keys about 24 hours after their first use. For 23
#: hours, sending the same key again is the conclusive test of what it did.
KEY_TRUST_WINDOW: Final = timedelta(hours=23)
#: Look-ups that may fail in a row before the transfer needs an operator (rule 7).
LOOKUP_FAILURES_LIMIT: Final = 5
#: Claims that may expire in a row, without an outcome, before the transfer
#: needs an operator instead of another worker to kill (rule 7).
ABANDONED_CLAIMS_LIMIT: Final = 3


class IntentRefusal(enum.StrEnum):
    """Why a send intent was not written (and so nothing may be sent)."""

    STALE_CLAIM = "stale_claim"  # the claim was taken over: the newer one owns the transfer
    LEASE_TOO_SHORT = "lease_too_short"  # less than the send margin left on the lease
    KEY_UNTRUSTED = "key_untrusted"  # the key may be pruned, or can only replay an error
    NO_ATTEMPT_LEFT = "no_attempt_left"  # a new attempt, but every attempt is spent
    DESTINATION_CHANGED = "destination_changed"  # another destination than the pinned one


def _guard(transfer: models.PayoutTransfer, event: str) -> None:
    allowed, _ = TRANSITIONS[event]
    if transfer.status not in allowed:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, event)


def due_at(transfer: models.PayoutTransfer) -> datetime | None:
    """When :func:`claim` may take the transfer (the schema's ``claimable_at``):
    a held claim when its lease expires, otherwise at ``next_attempt_at``, and
    never before the transfer exists. ``None`` once terminal, or while it needs
    an operator."""
    if transfer.needs_operator is not None:
        return None
    if transfer.status is S.PROCESSING:
        return transfer.lease_expires_at
    if transfer.status in (S.PENDING, S.RETRYABLE):
        return transfer.next_attempt_at or transfer.created_at
    return None


def is_due(transfer: models.PayoutTransfer, now: datetime) -> bool:
    """Whether :func:`claim` may take this transfer at database time ``now``."""
    due = due_at(transfer)
    return due is not None and due <= now


def claim(
    transfer: models.PayoutTransfer, *, now: datetime, lease: timedelta, token: str
) -> models.PayoutTransfer:
    """Take the transfer, at database time ``now``, until ``now + lease``.

    A claim spends nothing and changes no doubt: the send intent does both.
    Taking over an expired lease counts one more abandoned claim.
    """
    _guard(transfer, "claim")
    if not is_due(transfer, now):
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "claim (not due)")
    taken_over = transfer.status is S.PROCESSING
    return attrs.evolve(
        transfer,
        status=S.PROCESSING,
        claim_token=token,
        lease_expires_at=now + lease,
        abandoned_claims=transfer.abandoned_claims + 1 if taken_over else 0,
        updated_at=now,
    )


def abandoned_too_often(transfer: models.PayoutTransfer) -> bool:
    """Whether an expired claim is one too many in a row (rule 7): the stores
    :func:`escalate` such a transfer instead of claiming it."""
    return (
        transfer.status is S.PROCESSING and transfer.abandoned_claims + 1 >= ABANDONED_CLAIMS_LIMIT
    )


def abandoned_reason(transfer: models.PayoutTransfer) -> str:
    return (
        f"{transfer.abandoned_claims + 1} claims in a row expired without an outcome "
        "(a worker died or stalled each time); "
        + (
            "a transfer may exist at Stripe"
            if transfer.outcome_uncertain
            else "nothing was sent under the current key"
        )
    )


def key_trusted(transfer: models.PayoutTransfer, now: datetime) -> bool:
    """Whether sending the current key again is a conclusive test (rule 5):
    Stripe still remembers it (first used less than 23 hours ago, by database
    time) and it does not just replay an error."""
    return (
        not transfer.key_replays_error
        and transfer.key_first_sent_at is not None
        and now - transfer.key_first_sent_at < KEY_TRUST_WINDOW
    )


def refuse_send(
    transfer: models.PayoutTransfer,
    *,
    token: str | None,
    destination: str,
    now: datetime,
    margin: timedelta,
) -> IntentRefusal | None:
    """Why the send intent of claim ``token`` may not be written at database
    time ``now``, or ``None`` when it may (rule 2). The stores ask this under
    their lock, or repeat it in SQL."""
    if transfer.status is not S.PROCESSING or token is None or transfer.claim_token != token:
        return IntentRefusal.STALE_CLAIM
    if transfer.lease_expires_at is None or transfer.lease_expires_at - now < margin:
        return IntentRefusal.LEASE_TOO_SHORT
    if transfer.destination_account not in (None, destination):
        return IntentRefusal.DESTINATION_CHANGED
    if transfer.outcome_uncertain:
        if not key_trusted(transfer, now):
            return IntentRefusal.KEY_UNTRUSTED
    elif transfer.attempts_left <= 0:
        return IntentRefusal.NO_ATTEMPT_LEFT
    return None


def send(
    transfer: models.PayoutTransfer,
    *,
    destination: str,
    now: datetime,
    margin: timedelta,
) -> models.PayoutTransfer:
    """The write-ahead send intent, at database time ``now`` (rule 2).

    Pins the destination (rule 3), records when the key was first used and
    when this send began, and makes the outcome uncertain (rule 4). A send of
    a key that is not uncertain opens a new attempt and spends it; a resend of
    an uncertain key resolves the open attempt and spends nothing (rule 5).
    """
    _guard(transfer, "send")
    refusal = refuse_send(
        transfer, token=transfer.claim_token, destination=destination, now=now, margin=margin
    )
    if refusal is not None:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, f"send: {refusal}")
    resend = transfer.outcome_uncertain
    return attrs.evolve(
        transfer,
        destination_account=destination,
        attempt_count=transfer.attempt_count if resend else transfer.attempt_count + 1,
        key_first_sent_at=transfer.key_first_sent_at if resend else now,
        key_sends=transfer.key_sends + 1 if resend else 1,
        last_send_at=now,
        outcome_uncertain=True,
        updated_at=now,
    )


def new_key_generation(
    transfer: models.PayoutTransfer, *, now: datetime, refund: bool = False
) -> models.PayoutTransfer:
    """Move to a fresh idempotency key: only once the current one is known to
    have created nothing (a look-up found nothing after the send margin, or
    Stripe saved a refusal under it). That ends the doubt about it.

    ``refund`` gives the attempt back: it ended for the platform's fault
    (``balance_insufficient``), not the winner's (rule 6).
    """
    _guard(transfer, "new_key_generation")
    if refund and transfer.attempt_count < 1:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "refund no attempt")
    return attrs.evolve(
        transfer,
        attempt_count=transfer.attempt_count - 1 if refund else transfer.attempt_count,
        key_generation=transfer.key_generation + 1,
        key_first_sent_at=None,
        key_sends=0,
        outcome_uncertain=False,
        key_replays_error=False,
        platform_refused=False,
        lookup_failures=0,
        updated_at=now,
    )


def key_refused(transfer: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    """Stripe answered the current key with a refusal it saved under it (a
    400/402/404 but ``idempotency_error``): the key created nothing and never
    will, so the doubt about it ends (rule 4)."""
    _guard(transfer, "key_refused")
    return attrs.evolve(transfer, outcome_uncertain=False, key_replays_error=False, updated_at=now)


def _settled(transfer: models.PayoutTransfer, **changes: Any) -> models.PayoutTransfer:
    """Leave ``processing``: the claim ends, and with an outcome recorded, the
    run of abandoned claims ends too."""
    return attrs.evolve(
        transfer, lease_expires_at=None, claim_token=None, abandoned_claims=0, **changes
    )


def _waiting_status(transfer: models.PayoutTransfer) -> models.TransferStatus:
    return (
        S.PENDING
        if transfer.attempt_count == 0 and not transfer.outcome_uncertain
        else (S.RETRYABLE)
    )


def _paid(
    transfer: models.PayoutTransfer, stripe_transfer_id: str, now: datetime, **changes: Any
) -> models.PayoutTransfer:
    """Completed by ``stripe_transfer_id``: the doubt and the failures end."""
    if not stripe_transfer_id:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "complete without an id")
    if transfer.attempt_count < 1:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "complete without a send"
        )
    return _settled(
        transfer,
        status=S.COMPLETED,
        stripe_transfer_id=stripe_transfer_id,
        failure_code=None,
        failure_message=None,
        outcome_uncertain=False,
        key_replays_error=False,
        platform_refused=False,
        lookup_failures=0,
        next_attempt_at=None,
        updated_at=now,
        **changes,
    )


def complete(
    transfer: models.PayoutTransfer, *, stripe_transfer_id: str, now: datetime
) -> models.PayoutTransfer:
    _guard(transfer, "complete")
    return _paid(transfer, stripe_transfer_id, now)


def _check_at_rest(transfer: models.PayoutTransfer) -> None:
    """A transfer left waiting has an attempt left, or a doubt to resolve: one
    with neither must fail (the stores refuse such a row too)."""
    if not transfer.outcome_uncertain and transfer.attempts_left <= 0:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "wait with every attempt spent and no doubt"
        )


def retry(
    transfer: models.PayoutTransfer,
    *,
    next_attempt_at: datetime,
    code: str,
    message: str,
    key_replays_error: bool = False,
    lookup_failed: bool = False,
    now: datetime,
) -> models.PayoutTransfer:
    """Try again at ``next_attempt_at``. The doubt stays as it is: only a
    conclusive answer (:func:`complete`, :func:`new_key_generation`,
    :func:`fail`) ends it. ``key_replays_error`` marks the key as useless for
    resending; ``lookup_failed`` counts a failed look-up."""
    _guard(transfer, "retry")
    _check_at_rest(transfer)
    return _settled(
        transfer,
        status=S.RETRYABLE,
        next_attempt_at=next_attempt_at,
        failure_code=code,
        failure_message=message,
        key_replays_error=transfer.key_replays_error or key_replays_error,
        # A failed look-up says nothing of the key; any other answer is the latest.
        platform_refused=transfer.platform_refused if lookup_failed else False,
        lookup_failures=transfer.lookup_failures + 1 if lookup_failed else 0,
        updated_at=now,
    )


def fail(
    transfer: models.PayoutTransfer,
    *,
    code: str,
    message: str,
    now: datetime,
    spend_attempt: bool = False,
) -> models.PayoutTransfer:
    """Fail for good. Refused while a transfer for it may exist at Stripe.

    ``spend_attempt`` books the failure as an attempt of its own (the winner
    has no connected account: the attempt ended before any send).
    """
    _guard(transfer, "fail")
    if transfer.outcome_uncertain:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "fail while a transfer may exist at Stripe"
        )
    if spend_attempt and transfer.attempts_left <= 0:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "spend an attempt when none is left"
        )
    attempts = transfer.attempt_count + 1 if spend_attempt else transfer.attempt_count
    if attempts < 1:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, "fail without an attempt"
        )
    return _settled(
        transfer,
        status=S.FAILED_TERMINAL,
        attempt_count=attempts,
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
    message: str | None = None,
    platform_refused: bool = False,
) -> models.PayoutTransfer:
    """Give the claim back; what the transfer spent and doubts stays as it is
    (a systemic halt, a stop, an intent refused, a look-up too early).
    ``platform_refused``: the key was just answered with the platform's fault."""
    _guard(transfer, "release")
    _check_at_rest(transfer)
    return _settled(
        transfer,
        status=_waiting_status(transfer),
        next_attempt_at=next_attempt_at
        if next_attempt_at is not None
        else transfer.next_attempt_at,
        failure_code=reason if reason is not None else transfer.failure_code,
        failure_message=message if reason is not None else transfer.failure_message,
        platform_refused=platform_refused or transfer.platform_refused,
        updated_at=now,
    )


def escalate(
    transfer: models.PayoutTransfer, *, reason: str, now: datetime, lookup_failed: bool = False
) -> models.PayoutTransfer:
    """Stop trying and wait for an operator (rule 7): no claim takes the
    transfer again; its job stays open; its doubt stays as it is.
    ``lookup_failed`` counts the failed look-up that made it so."""
    _guard(transfer, "escalate")
    _check_at_rest(transfer)
    if not reason:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "escalate without why")
    return _settled(
        transfer,
        status=_waiting_status(transfer),
        needs_operator=reason,
        lookup_failures=transfer.lookup_failures + 1 if lookup_failed else transfer.lookup_failures,
        updated_at=now,
    )


def _guard_operator(transfer: models.PayoutTransfer, event: str) -> None:
    _guard(transfer, event)
    if transfer.needs_operator is None:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, f"{event} a transfer that needs no operator"
        )


def resolve_found(
    transfer: models.PayoutTransfer, *, stripe_transfer_id: str, now: datetime
) -> models.PayoutTransfer:
    """An operator showed that Stripe holds ``stripe_transfer_id`` for this
    transfer (rule 7): it completed, by the attempt that sent it."""
    _guard_operator(transfer, "resolve_found")
    return _paid(transfer, stripe_transfer_id, now, needs_operator=None)


def resolve_absent(
    transfer: models.PayoutTransfer, *, message: str, now: datetime
) -> models.PayoutTransfer:
    """An operator showed that Stripe holds no transfer for this one, after the
    send margin (rule 7): it fails for good, and may be reissued. The doubt's
    attempt is the one that fails; with no doubt, the failure is an attempt of
    its own (the earlier ones are already in the ledger)."""
    _guard_operator(transfer, "resolve_absent")
    attempts = transfer.attempt_count if transfer.outcome_uncertain else transfer.attempt_count + 1
    if not 1 <= attempts <= transfer.max_attempts:
        raise errors.IllegalTransition(
            transfer.id, transfer.status.value, f"fail as attempt {attempts}"
        )
    return _settled(
        transfer,
        status=S.FAILED_TERMINAL,
        attempt_count=attempts,
        failure_code=RESOLVED_ABSENT,
        failure_message=message,
        outcome_uncertain=False,
        key_replays_error=False,
        platform_refused=False,
        lookup_failures=0,
        next_attempt_at=None,
        needs_operator=None,
        updated_at=now,
    )


def reissue(failed: models.PayoutTransfer, *, new_id: str, now: datetime) -> models.PayoutTransfer:
    """A new transfer paying the winner of ``failed`` again: same job, contest,
    user and amount, a fresh id (so a fresh idempotency key), no destination
    pinned yet (the winner's account is read again at its first send)."""
    if failed.status is not S.FAILED_TERMINAL:
        raise errors.IllegalTransition(failed.id, failed.status.value, "reissue")
    if new_id == failed.id:
        raise errors.IllegalTransition(failed.id, failed.status.value, "reissue under its own id")
    return models.PayoutTransfer(
        id=new_id,
        job_id=failed.job_id,
        settlement_id=failed.settlement_id,
        contest_id=failed.contest_id,
        user_id=failed.user_id,
        amount_cents=failed.amount_cents,
        currency=failed.currency,
        max_attempts=failed.max_attempts,
        reissue_of=failed.id,
        created_at=now,
        updated_at=now,
    )


_RESOLVED_BY: Final = {
    S.COMPLETED: models.OperatorActionKind.RESOLVE_FOUND,
    S.FAILED_TERMINAL: models.OperatorActionKind.RESOLVE_ABSENT,
}


def check_resolution(
    before: models.PayoutTransfer, after: models.PayoutTransfer, action: models.OperatorAction
) -> None:
    """What a store refuses to write as a resolution: ``after`` must close
    ``before`` (:func:`resolve_found`, :func:`resolve_absent`) as ``action`` says.

    Raises:
        ValueError: the caller passed what no resolution makes (a bug).
    """
    if after.id != before.id or after.status not in _RESOLVED_BY:
        raise ValueError(f"cannot resolve transfer {before.id} as {after.status} {after.id}")
    if action.action is not _RESOLVED_BY[after.status] or action.transfer_id != before.id:
        raise ValueError(f"{action.action} does not resolve transfer {before.id} as {after.status}")


def check_reissue(
    failed: models.PayoutTransfer, reissued: models.PayoutTransfer, action: models.OperatorAction
) -> None:
    """What a store refuses to write as a reissue: ``reissued`` must be
    :func:`reissue` of ``failed`` (same job, contest, user), recorded by ``action``.

    Raises:
        ValueError: the caller passed what no reissue makes (a bug).
    """
    same_winner = (reissued.job_id, reissued.contest_id, reissued.user_id) == (
        failed.job_id,
        failed.contest_id,
        failed.user_id,
    )
    if reissued.reissue_of != failed.id or not same_winner:
        raise ValueError(f"transfer {reissued.id} is not a reissue of {failed.id}")
    if action.action is not models.OperatorActionKind.REISSUE or action.transfer_id != failed.id:
        raise ValueError(f"{action.action} does not reissue transfer {failed.id}")
