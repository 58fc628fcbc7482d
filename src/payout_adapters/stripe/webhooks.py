"""Stripe's webhook events: the signature checked with the SDK, the JSON read.

:func:`verify` is the only door: an event whose ``Stripe-Signature`` does not
verify against the endpoint's secret, or whose timestamp is older than the
tolerance (5 minutes, Stripe's default, against replays), is refused before
anything is stored. :func:`transfer_event` reads what payout-core needs from a
``transfer.*`` event (the transfer and its reversals) into core values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import stripe

from payout_core import outcomes, ports

__all__ = ["TOLERANCE_SECONDS", "TRANSFER_EVENTS", "WebhookRefused", "transfer_event", "verify"]

#: Stripe's default: a signed request older than this is a replay.
TOLERANCE_SECONDS: Final = 300
#: The events that carry a transfer's reversals; every other type is acknowledged and ignored.
TRANSFER_EVENTS: Final = frozenset({"transfer.reversed", "transfer.updated"})


class WebhookRefused(Exception):
    """The request is not a verified Stripe event; the message says why (no secret in it)."""


def verify(
    payload: bytes,
    signature: str | None,
    *,
    secret: str,
    received_at: datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> ports.StripeEvent:
    """The event in ``payload``, once its signature verifies.

    Raises:
        WebhookRefused: no or a bad signature, a timestamp past the tolerance,
            or not an event.
    """
    if not signature:
        raise WebhookRefused("no Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
    except UnicodeDecodeError:
        raise WebhookRefused("the body is not UTF-8") from None
    except stripe.SignatureVerificationError as exc:
        raise WebhookRefused(f"signature refused: {exc.user_message or exc}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise WebhookRefused("the body is not JSON") from None
    if not isinstance(body, dict) or body.get("object") != "event":
        raise WebhookRefused("the body is not a Stripe event")
    event_id, event_type = body.get("id"), body.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise WebhookRefused("the event has no id or type")
    return ports.StripeEvent(id=event_id, type=event_type, payload=text, received_at=received_at)


@attrs.frozen(kw_only=True)
class TransferEvent:
    """What a ``transfer.*`` event says of one transfer."""

    stripe_transfer_id: str
    payout_transfer_id: str | None  # metadata.payout_transfer_id: payout-core made it
    reversals: tuple[outcomes.StripeReversal, ...]
    complete: bool  # False: Stripe left reversals out (has_more); list them


def _when(value: object) -> datetime:
    return datetime.fromtimestamp(value if isinstance(value, int) else 0, tz=UTC)


def _reversal(data: dict[str, Any], stripe_transfer_id: str) -> outcomes.StripeReversal:
    metadata = data.get("metadata") or {}
    key = metadata.get("payout_reversal_key") if isinstance(metadata, dict) else None
    return outcomes.StripeReversal(
        id=str(data["id"]),
        stripe_transfer_id=stripe_transfer_id,
        amount_cents=int(data["amount"]),
        currency=str(data["currency"]),
        created_at=_when(data.get("created")),
        payout_reversal_key=key if isinstance(key, str) else None,
    )


def transfer_event(event: ports.StripeEvent) -> TransferEvent | None:
    """The transfer and reversals a ``transfer.reversed``/``transfer.updated``
    event carries; ``None`` for any other event.

    Raises:
        ValueError: the event's transfer is malformed.
    """
    if event.type not in TRANSFER_EVENTS:
        return None
    try:
        transfer = json.loads(event.payload)["data"]["object"]
        stripe_transfer_id = str(transfer["id"])
        metadata = transfer.get("metadata") or {}
        listed = transfer.get("reversals") or {}
        data = listed.get("data") or []
        reversals = tuple(_reversal(r, stripe_transfer_id) for r in data)
        complete = not listed.get("has_more", False)
        if int(transfer.get("amount_reversed") or 0) > sum(r.amount_cents for r in reversals):
            complete = False  # more came back than the event lists
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"event {event.id}: malformed transfer ({exc!r})") from None
    pid = metadata.get("payout_transfer_id") if isinstance(metadata, dict) else None
    return TransferEvent(
        stripe_transfer_id=stripe_transfer_id,
        payout_transfer_id=pid if isinstance(pid, str) else None,
        reversals=reversals,
        complete=complete,
    )
