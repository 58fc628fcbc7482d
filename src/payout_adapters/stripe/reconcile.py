"""Checking a completed transfer against Stripe's record of it (``payout-core reconcile``)."""

from __future__ import annotations

from payout_adapters.stripe import gateway as gateway_
from payout_core import idempotency, models

__all__ = ["check_completed"]


def check_completed(gateway: gateway_.StripeGateway, transfer: models.PayoutTransfer) -> list[str]:
    """What differs between a completed transfer and the Stripe transfer it names:
    one line per mismatch, none when they agree."""
    subject = f"transfer {transfer.id}"
    if transfer.stripe_transfer_id is None:
        return [f"{subject}: completed without a stripe_transfer_id"]
    remote = gateway.retrieve_transfer(transfer.stripe_transfer_id)
    if not isinstance(remote, gateway_.RemoteTransfer):
        return [
            f"{subject}: could not read {transfer.stripe_transfer_id} at Stripe: {remote.message}"
        ]
    found: list[str] = []
    expected = {
        "amount": transfer.amount_cents,
        "currency": transfer.currency,
        "destination": transfer.destination_account,
        "transfer_group": idempotency.transfer_group(transfer.contest_id),
        "metadata.payout_transfer_id": transfer.id,
    }
    actual = {
        "amount": remote.amount,
        "currency": remote.currency,
        "destination": remote.destination,
        "transfer_group": remote.transfer_group,
        "metadata.payout_transfer_id": remote.payout_transfer_id,
    }
    for name, value in expected.items():
        if actual[name] != value:
            found.append(
                f"{subject}: Stripe's {remote.id} has {name} {actual[name]!r}, "
                f"payout-core recorded {value!r}"
            )
    if remote.reversed or remote.amount_reversed:
        found.append(
            f"{subject}: Stripe's {remote.id} was reversed ({remote.amount_reversed} reversed)"
        )
    return found
