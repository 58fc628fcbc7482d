"""Money that comes back: reversing a paid transfer, and booking every reversal
Stripe holds (DESIGN 7, "Reversals").

:func:`reverse` is ``payout-core transfers reverse``: one Stripe reversal under
the deterministic key ``payout-reversal:<transfer_id>:<n>``, written ahead as
an intent, booked as a ``payout_reversed`` credit with an operator-action row.
Its rules (:mod:`payout_core.reversal`) are the transfer's exactly-once rules:
an answer lost in flight leaves the reversal in doubt, and the next run
resolves it (a resend of the same key, or a look-up once Stripe may have
forgotten the key) instead of reversing again.

:func:`book_from_stripe` books the reversals Stripe reports (a webhook's
``transfer.reversed``, a listing): each once, keyed by Stripe's reversal id,
whether payout-core or someone in the dashboard made it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import attrs

from payout_core import errors, idempotency, ledger, models, outcomes, ports
from payout_core import reversal as rules
from payout_core.services import control

__all__ = [
    "MAX_AMOUNT_CENTS",
    "ReversalResult",
    "book_from_stripe",
    "book_transfer_event",
    "reverse",
]

R = models.ReversalStatus
#: The ledger's bound on one row's amount (as Stripe's on one transfer).
MAX_AMOUNT_CENTS = 99_999_999


@attrs.frozen(kw_only=True)
class ReversalResult:
    reversal: models.Reversal  # completed, failed, or still in doubt
    amounts: rules.Amounts  # the transfer's, after it
    resolved_earlier: bool = False  # this run resolved one in doubt, and asked for nothing new


def _transfer(store: ports.PayoutStore, transfer_id: str) -> models.PayoutTransfer:
    transfer = store.get_transfer(transfer_id)
    if transfer is None:
        raise errors.ActionRefused(transfer_id, "no such payout transfer")
    if transfer.status is not models.TransferStatus.COMPLETED or not transfer.stripe_transfer_id:
        raise errors.ActionRefused(
            transfer_id, f"is {transfer.status}; only a completed transfer can be reversed"
        )
    return transfer


def _amounts(store: ports.PayoutStore, transfer: models.PayoutTransfer) -> rules.Amounts:
    return rules.amounts(
        transfer, store.ledger(transfer_id=transfer.id), store.reversals_of(transfer.id)
    )


def _request(r: models.Reversal) -> outcomes.ReversalRequest:
    return outcomes.ReversalRequest(
        stripe_transfer_id=r.stripe_transfer_id,
        amount_cents=r.amount_cents,
        idempotency_key=r.idempotency_key,
        metadata=idempotency.reversal_metadata(r),
    )


def _settle(
    store: ports.PayoutStore,
    transfer: models.PayoutTransfer,
    before: models.Reversal,
    after: models.Reversal,
    *,
    now: datetime,
) -> tuple[models.Reversal, bool]:
    """Write a conclusive answer (nothing for one still in doubt): the
    reversal as stored afterwards, and whether this call wrote it."""
    if after.status is R.SENDING:
        return after, False
    entry = action = None
    if after.status is R.COMPLETED:
        assert after.stripe_reversal_id is not None  # completed means Stripe named it
        entry = ledger.reversal_entry(
            transfer,
            stripe_reversal_id=after.stripe_reversal_id,
            amount_cents=after.amount_cents,
            now=now,
        )
        others = ledger.booked_reversals(
            r
            for r in store.ledger(transfer_id=transfer.id)
            if r.stripe_reversal_id != after.stripe_reversal_id  # a webhook may have booked it
        )
        action = models.OperatorAction(
            action=models.OperatorActionKind.REVERSE,
            actor=after.actor,
            reason=after.reason,
            created_at=now,
            transfer_id=transfer.id,
            before={"paid": transfer.amount_cents, "reversed": others},
            after={
                "reversed": others + after.amount_cents,
                "amount_cents": after.amount_cents,
                "stripe_reversal_id": after.stripe_reversal_id,
                "reversal_key": after.idempotency_key,
            },
        )
    if store.settle_reversal(before=before, after=after, ledger_entry=entry, action=action):
        return after, True
    # Settled meanwhile (a webhook, another run): the stored one is the truth.
    [stored] = [r for r in store.reversals_of(transfer.id) if r.id == before.id]
    return stored, False


def _resolve(
    store: ports.PayoutStore,
    gateway: ports.ReversalGateway,
    transfer: models.PayoutTransfer,
    in_doubt: models.Reversal,
    *,
    now: datetime,
) -> models.Reversal:
    """A reversal whose answer was lost: resend its key while Stripe remembers
    it (a replay or one execution, never a second reversal); after that, look
    for it in the transfer's reversals at Stripe."""
    if now - in_doubt.created_at < rules.KEY_TRUST_WINDOW:
        answer = gateway.create_reversal(_request(in_doubt))
        after = rules.decide(in_doubt, answer, first_send=False, now=now)
    else:
        after = rules.found_at_stripe(
            in_doubt, list(gateway.list_reversals(in_doubt.stripe_transfer_id)), now=now
        )
    return _settle(store, transfer, in_doubt, after, now=now)[0]


def reverse(
    store: ports.PayoutStore,
    gateway: ports.ReversalGateway,
    transfer_id: str,
    *,
    amount_cents: int | None,
    actor: str,
    reason: str,
    now: datetime,
    new_id: Callable[[], str],
) -> ReversalResult:
    """Reverse ``amount_cents`` of a completed transfer (all that is left when
    ``None``). When a reversal of it is in doubt, resolve that one instead and
    ask for nothing new: re-running a command whose answer was lost never
    reverses twice.

    Raises:
        InvalidOperatorAction: no actor or reason, or an amount that is not a
            positive number of cents.
        ActionRefused: no such transfer, not completed, or more than is left
            (the amounts named); nothing was written.
        GatewayUnavailable: Stripe could not be read while resolving.
        StoreUnavailable: the store failed.
    """
    control.validate_actor_and_reason(actor, reason)
    if amount_cents is not None and not (
        type(amount_cents) is int and 0 < amount_cents <= MAX_AMOUNT_CENTS
    ):
        raise errors.InvalidOperatorAction(
            [errors.Problem("amount", f"must be 1..{MAX_AMOUNT_CENTS} cents, got {amount_cents!r}")]
        )
    transfer = _transfer(store, transfer_id)
    earlier = store.reversals_of(transfer.id)
    in_doubt = [r for r in earlier if r.status is R.SENDING]
    if in_doubt:
        resolved = _resolve(store, gateway, transfer, in_doubt[0], now=now)
        return ReversalResult(
            reversal=resolved, amounts=_amounts(store, transfer), resolved_earlier=True
        )
    left = rules.amounts(transfer, store.ledger(transfer_id=transfer.id), earlier)
    amount = left.left if amount_cents is None else amount_cents
    if left.left <= 0 or amount > left.left:
        raise errors.ActionRefused(
            transfer_id, f"cannot reverse {amount} {transfer.currency}: {left} {transfer.currency}"
        )
    sequence = max((r.sequence for r in earlier), default=0) + 1
    asked = models.Reversal(
        id=new_id(),
        transfer_id=transfer.id,
        sequence=sequence,
        idempotency_key=idempotency.reversal_key(transfer.id, sequence),
        stripe_transfer_id=transfer.stripe_transfer_id or "",
        amount_cents=amount,
        currency=transfer.currency,
        actor=actor.strip(),
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    written = store.reversal_intent(asked)
    if isinstance(written, ports.ReversalRefused):
        amounts = f": {written.amounts} {transfer.currency}" if written.amounts else ""
        raise errors.ActionRefused(transfer_id, f"{written.why}{amounts}")
    answer = gateway.create_reversal(_request(written))
    after = rules.decide(written, answer, first_send=True, now=now)
    settled, _ = _settle(store, transfer, written, after, now=now)
    return ReversalResult(reversal=settled, amounts=_amounts(store, transfer))


def book_from_stripe(
    store: ports.PayoutStore,
    transfer: models.PayoutTransfer,
    at_stripe: Iterable[outcomes.StripeReversal],
    *,
    now: datetime,
) -> int:
    """Book each of Stripe's reversals of ``transfer`` not yet in the ledger:
    one payout-core asked for settles its reversal in doubt (with its action
    row); any other (the dashboard's) is a credit row of its own. How many
    this call booked.

    Raises:
        IllegalTransition: the ledger refused a credit (more back than paid).
        StoreUnavailable: the store failed.
    """
    ours = {r.idempotency_key: r for r in store.reversals_of(transfer.id)}
    count = 0
    for held in at_stripe:
        # Booking is idempotent in the store (keyed by Stripe's reversal id): a
        # reversal booked already, by any path, books nothing more here.
        mine = ours.get(held.payout_reversal_key or "")
        if mine is not None and mine.status is R.SENDING:
            after = rules.decide(
                mine, outcomes.Reversed(stripe_reversal_id=held.id), first_send=False, now=now
            )
            settled, wrote = _settle(store, transfer, mine, after, now=now)
            count += wrote
            ours[mine.idempotency_key] = settled
        else:
            entry = ledger.reversal_entry(
                transfer, stripe_reversal_id=held.id, amount_cents=held.amount_cents, now=now
            )
            count += store.book_reversal(entry)
    return count


def book_transfer_event(
    store: ports.PayoutStore,
    gateway: ports.ReversalGateway | None,
    *,
    payout_transfer_id: str | None,
    stripe_transfer_id: str,
    reversals: Iterable[outcomes.StripeReversal],
    complete: bool,
    now: datetime,
) -> str:
    """Apply what a ``transfer.reversed``/``transfer.updated`` event says:
    book every reversal it lists (all of them, listed at Stripe, when the event
    left some out and ``gateway`` can list them). What it did, for the event's
    record.

    Raises:
        GatewayUnavailable: the reversals could not be listed (try again later).
        IllegalTransition: the ledger refused a credit (more back than paid).
        StoreUnavailable: the store failed (try again later).
    """
    transfer = store.get_transfer(payout_transfer_id) if payout_transfer_id else None
    if transfer is None:
        return f"ignored: {stripe_transfer_id} is no payout-core transfer"
    if transfer.stripe_transfer_id != stripe_transfer_id:
        return (
            f"ignored: transfer {transfer.id} is {transfer.status}, recorded as paid by "
            f"{transfer.stripe_transfer_id}, not {stripe_transfer_id} (reconcile reports it)"
        )
    listed = list(reversals)
    partial = ""
    if not complete:
        if gateway is not None:
            listed = list(gateway.list_reversals(stripe_transfer_id))
        else:
            partial = "; the event listed only some, and no Stripe key to list the rest"
    booked = book_from_stripe(store, transfer, listed, now=now)
    return f"booked {booked} of {len(listed)} reversal(s) of transfer {transfer.id}{partial}"
