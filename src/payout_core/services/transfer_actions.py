"""An operator's hand on one transfer: resolve and reissue (DESIGN 7).

Each action is checked against Stripe before anything is written, names who
did it and why, and is written in one unit of work with its audit row (the
state before and after), its ledger row and the job's counts:

* :func:`resolve_found`: a transfer that needs an operator (rule 7) was paid
  by the Stripe transfer the operator names; Stripe must hold it, for this
  transfer, with its amount, currency, group and pinned destination.
* :func:`resolve_absent`: it was not paid; Stripe must hold no transfer for it,
  and no request for it may still be running there (the send margin has passed
  since its last send). It fails for good, and can then be reissued.
* :func:`reissue`: a ``failed_terminal`` winner is paid again, once the cause is
  fixed (say they connected an account): a new transfer, linked to the failed
  one, under a new idempotency key. Refused while Stripe holds any transfer for
  the failed one.

Every refusal raises :class:`~payout_core.errors.ActionRefused`, naming what
disagrees, and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from payout_core import errors, idempotency, ledger, models, outcomes, ports, validation
from payout_core import state_machine as sm
from payout_core.services import control, stripe_side

__all__ = [
    "reissue",
    "resolve_absent",
    "resolve_found",
    "validate_stripe_transfer_id",
    "validate_transfer_id",
]

_STRIPE_TRANSFER_ID = re.compile(r"tr_[A-Za-z0-9]{1,250}")
K = models.OperatorActionKind


def validate_stripe_transfer_id(stripe_transfer_id: str) -> None:
    """Refuse what cannot be a Stripe transfer id.

    Raises:
        InvalidOperatorAction: naming the problem; nothing was written.
    """
    if not _STRIPE_TRANSFER_ID.fullmatch(stripe_transfer_id):
        raise errors.InvalidOperatorAction(
            [
                errors.Problem(
                    "found", f"{stripe_transfer_id!r} is not a Stripe transfer id (tr_...)"
                )
            ]
        )


def validate_transfer_id(transfer_id: str) -> None:
    """Refuse what cannot be a payout transfer's id (a UUID), before any look-up.

    Raises:
        InvalidOperatorAction: naming the problem; nothing was written.
    """
    problem = validation.transfer_id_problem(transfer_id)
    if problem is not None:
        raise errors.InvalidOperatorAction([problem])


def _needing_operator(store: ports.PayoutStore, transfer_id: str) -> models.PayoutTransfer:
    transfer = _get(store, transfer_id)
    if transfer.needs_operator is None:
        raise errors.ActionRefused(
            transfer_id,
            f"is {transfer.status} and needs no operator; only a transfer that needs one "
            "is resolved by hand",
        )
    return transfer


def _get(store: ports.PayoutStore, transfer_id: str) -> models.PayoutTransfer:
    transfer = store.get_transfer(transfer_id)
    if transfer is None:
        raise errors.ActionRefused(transfer_id, "no such payout transfer")
    return transfer


def _action(
    kind: models.OperatorActionKind,
    before: models.PayoutTransfer,
    after: models.PayoutTransfer,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> models.OperatorAction:
    return models.OperatorAction(
        action=kind,
        actor=actor.strip(),
        reason=reason,
        created_at=now,
        transfer_id=before.id,
        before=before.as_summary(),
        after=after.as_summary(),
    )


def _resolve(
    store: ports.PayoutStore,
    kind: models.OperatorActionKind,
    before: models.PayoutTransfer,
    decide: Callable[[], models.PayoutTransfer],
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> models.PayoutTransfer:
    try:
        after = decide()
    except errors.IllegalTransition as exc:
        raise errors.ActionRefused(before.id, str(exc)) from None
    written = store.resolve(
        before=before,
        after=after,
        ledger_entry=ledger.entry_for(after, now=now),
        action=_action(kind, before, after, actor=actor, reason=reason, now=now),
    )
    if not written:
        raise errors.ActionRefused(
            before.id, "changed while it was being checked; look again and retry"
        )
    return after


def resolve_found(
    store: ports.PayoutStore,
    records: ports.TransferRecords,
    transfer_id: str,
    stripe_transfer_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> models.PayoutTransfer:
    """Close a transfer that needs an operator as paid by ``stripe_transfer_id``.

    Raises:
        InvalidOperatorAction: no actor or reason, no transfer id, or not a
            Stripe transfer id.
        ActionRefused: the transfer needs no operator, or Stripe disagrees.
        GatewayUnavailable: Stripe could not be read; nothing was written.
        StoreUnavailable: nothing was written.
    """
    control.validate_actor_and_reason(actor, reason)
    validate_transfer_id(transfer_id)
    validate_stripe_transfer_id(stripe_transfer_id)
    before = _needing_operator(store, transfer_id)
    held = records.retrieve_transfer(stripe_transfer_id)
    match held:
        case outcomes.StripeTransfer():
            pass
        case outcomes.NotFound():
            raise errors.ActionRefused(
                transfer_id, f"Stripe holds no transfer {stripe_transfer_id}"
            )
        case _:
            raise errors.GatewayUnavailable(held.code, held.message)
    differences = [
        f"{name} is {at_stripe!r} at Stripe, {recorded!r} here"
        for name, at_stripe, recorded in stripe_side.disagreements(
            held,
            amount_cents=before.amount_cents,
            currency=before.currency,
            destination=before.destination_account,
            contest_id=before.contest_id,
            payout_transfer_id=before.id,
        )
    ]
    if differences:
        raise errors.ActionRefused(
            transfer_id,
            f"Stripe's {stripe_transfer_id} is not this transfer's payment: "
            + "; ".join(differences),
        )
    return _resolve(
        store,
        K.RESOLVE_FOUND,
        before,
        lambda: sm.resolve_found(before, stripe_transfer_id=stripe_transfer_id, now=now),
        actor=actor,
        reason=reason,
        now=now,
    )


def _held_at_stripe(records: ports.TransferRecords, transfer: models.PayoutTransfer) -> list[str]:
    """Every Stripe transfer made for ``transfer``, in its contest's group,
    to any destination (a look-up by destination fails once it was deleted)."""
    query = outcomes.TransferQuery(transfer_group=idempotency.transfer_group(transfer.contest_id))
    return [r.id for r in records.list_transfers(query) if r.payout_transfer_id == transfer.id]


def resolve_absent(
    store: ports.PayoutStore,
    records: ports.TransferRecords,
    transfer_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    margin: timedelta,
) -> models.PayoutTransfer:
    """Close a transfer that needs an operator as never paid: it fails for good
    (``resolved_absent``) and may then be reissued. ``margin`` is the send
    margin (:func:`payout_core.attempt.send_margin`): no request for it may
    still be running at Stripe.

    Raises:
        InvalidOperatorAction: no actor or reason, or no transfer id.
        ActionRefused: the transfer needs no operator, a send may still be
            running, or Stripe holds a transfer for it.
        GatewayUnavailable: Stripe could not be read; nothing was written.
        StoreUnavailable: nothing was written.
    """
    control.validate_actor_and_reason(actor, reason)
    validate_transfer_id(transfer_id)
    before = _needing_operator(store, transfer_id)
    if before.last_send_at is not None and before.last_send_at + margin > now:
        raise errors.ActionRefused(
            transfer_id,
            f"its last send began at {before.last_send_at.isoformat()}; a request may still "
            f"be running at Stripe until {(before.last_send_at + margin).isoformat()}",
        )
    held = _held_at_stripe(records, before)
    if held:
        raise errors.ActionRefused(
            transfer_id,
            f"Stripe holds {', '.join(held)} for it: resolve it with --found {held[-1]}",
        )
    message = f"no transfer at Stripe, resolved by {actor.strip()}: {reason}"
    return _resolve(
        store,
        K.RESOLVE_ABSENT,
        before,
        lambda: sm.resolve_absent(before, message=message, now=now),
        actor=actor,
        reason=reason,
        now=now,
    )


def reissue(
    store: ports.PayoutStore,
    records: ports.TransferRecords,
    transfer_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    new_id: Callable[[], str],
) -> models.PayoutTransfer:
    """Pay the winner of a ``failed_terminal`` transfer again: a new pending
    transfer (``new_id()``), linked to the failed one; its job reopens until
    the new one is terminal. Returns the new transfer.

    Raises:
        InvalidOperatorAction: no actor or reason, or no transfer id.
        ActionRefused: the transfer did not fail, was reissued already, another
            transfer pays the winner, or Stripe holds a transfer for it.
        GatewayUnavailable: Stripe could not be read; nothing was written.
        StoreUnavailable: nothing was written.
    """
    control.validate_actor_and_reason(actor, reason)
    validate_transfer_id(transfer_id)
    failed = _get(store, transfer_id)
    if failed.status is not models.TransferStatus.FAILED_TERMINAL:
        raise errors.ActionRefused(
            transfer_id, f"is {failed.status}; only a failed_terminal transfer is reissued"
        )
    held = _held_at_stripe(records, failed)
    if held:
        raise errors.ActionRefused(
            transfer_id,
            f"Stripe holds {', '.join(held)} for it: the winner was paid; "
            "reconcile reports it as failed_but_paid",
        )
    reissued = sm.reissue(failed, new_id=new_id(), now=now)
    action = models.OperatorAction(
        action=K.REISSUE,
        actor=actor.strip(),
        reason=reason,
        created_at=now,
        transfer_id=failed.id,
        before=failed.as_summary(),
        after={"reissued_as": reissued.id, **reissued.as_summary()},
    )
    if not store.reissue(failed=failed, reissued=reissued, action=action):
        raise errors.ActionRefused(
            transfer_id,
            "was reissued already, or another live or completed transfer pays "
            f"user {failed.user_id} in contest {failed.contest_id}",
        )
    return reissued
