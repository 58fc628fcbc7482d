"""What a payment gateway can answer, as values.

The gateway adapter translates every response and every failure into one of
these; the state machine decides what each one does to a transfer. Expected
failures are values so that a forgotten ``except`` can never turn a declined
winner into a crashed worker.

=========  ========================================================  ===================
outcome    examples                                                  what it means
=========  ========================================================  ===================
Succeeded  ``tr_...`` returned, also on an idempotent replay          paid
Transient  429, 409 ``idempotency_key_in_use``, connection refused   retry later
Unknown    timeout or reset after sending, 5xx                       may exist at Stripe
Permanent  no such destination, ``amount_too_small``, ...            the winner's or the
                                                                     request's fault
Systemic   401, 403, ``balance_insufficient``                        the platform's fault:
                                                                     stop, fail no one
=========  ========================================================  ===================
"""

from __future__ import annotations

import attrs

__all__ = [
    "Found",
    "GatewayOutcome",
    "LookupOutcome",
    "NotFound",
    "Permanent",
    "Succeeded",
    "Systemic",
    "TransferLookup",
    "TransferRequest",
    "Transient",
    "Unknown",
]


@attrs.frozen(kw_only=True)
class TransferRequest:
    """Everything sent to create one transfer; the same on every retry of a key."""

    amount_cents: int
    currency: str
    destination: str
    transfer_group: str
    idempotency_key: str
    metadata: tuple[tuple[str, str], ...]


@attrs.frozen(kw_only=True)
class TransferLookup:
    """How to find a transfer that may exist at Stripe: by destination (when
    known) and transfer group, matched on ``metadata.payout_transfer_id``."""

    destination: str | None
    transfer_group: str
    payout_transfer_id: str


@attrs.frozen(kw_only=True)
class Succeeded:
    stripe_transfer_id: str
    replayed: bool = False


@attrs.frozen(kw_only=True)
class Transient:
    """Nothing was created by this request; trying again later can succeed."""

    code: str
    message: str


@attrs.frozen(kw_only=True)
class Unknown:
    """The request may have created a transfer.

    ``key_replays_error`` is true after a 5xx: Stripe saved that response under
    the idempotency key, so the key is useless for the next attempt.
    """

    code: str
    message: str
    key_replays_error: bool = False


@attrs.frozen(kw_only=True)
class Permanent:
    """The winner's or the request's fault; retrying cannot help."""

    code: str
    message: str


@attrs.frozen(kw_only=True)
class Systemic:
    """The platform's fault (bad key, no permission, empty balance).

    It would fail every winner alike, so it spends nobody's attempt.
    """

    code: str
    message: str


@attrs.frozen(kw_only=True)
class Found:
    stripe_transfer_id: str


@attrs.frozen(kw_only=True)
class NotFound:
    pass


GatewayOutcome = Succeeded | Transient | Unknown | Permanent | Systemic
LookupOutcome = Found | NotFound | Transient | Unknown | Permanent | Systemic
