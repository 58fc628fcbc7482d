"""One transfer, whole: what ``payout-core transfers show`` prints.

The transfer with its attempts and key generations, its ledger rows, the
operator actions on it, the reversals asked for it, and what Stripe holds for
it (one look-up, on the fleet's read budget when the gateway paces its
requests).
"""

from __future__ import annotations

import attrs

from payout_core import idempotency, models, outcomes, ports

__all__ = ["KeyUse", "TransferView", "view_transfer"]


@attrs.frozen(kw_only=True)
class KeyUse:
    """The idempotency key of one generation, and what the transfer knows of it."""

    generation: int
    key: str
    current: bool


@attrs.frozen(kw_only=True)
class TransferView:
    transfer: models.PayoutTransfer
    keys: list[KeyUse]  # every generation so far, the current one last
    ledger: list[models.LedgerEntry]  # in write order
    actions: list[models.OperatorAction]  # newest first
    reversals: list[models.Reversal]  # those payout-core asked for, first first
    at_stripe: outcomes.LookupOutcome | None  # None: Stripe was not asked


def view_transfer(
    store: ports.PayoutStore,
    transfer_id: str,
    *,
    gateway: ports.PaymentGateway | None,
) -> TransferView | None:
    """The transfer ``transfer_id`` whole, or ``None`` when the store has none.
    With ``gateway``, one look-up says what Stripe holds for it (by its pinned
    destination when it has one).

    Raises:
        StoreUnavailable: the store could not be read.
    """
    transfer = store.get_transfer(transfer_id)
    if transfer is None:
        return None
    keys = [
        KeyUse(
            generation=g,
            key=idempotency.stripe_idempotency_key(transfer.id, g),
            current=g == transfer.key_generation,
        )
        for g in range(transfer.key_generation + 1)
    ]
    at_stripe = None
    if gateway is not None:
        at_stripe = gateway.find_transfer(
            idempotency.transfer_lookup(transfer, transfer.destination_account)
        )
    return TransferView(
        transfer=transfer,
        keys=keys,
        ledger=store.ledger(transfer_id=transfer.id),
        actions=store.operator_actions(limit=100, transfer_id=transfer.id),
        reversals=store.reversals_of(transfer.id),
        at_stripe=at_stripe,
    )
