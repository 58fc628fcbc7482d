"""What a payment gateway can answer, as values.

The gateway adapter translates every response and every failure into one of
these; the state machine decides what each one does to a transfer. Expected
failures are values so that a forgotten ``except`` can never turn a declined
winner into a crashed worker.

=========  ========================================================  ===================
outcome    examples                                                  what it means
=========  ========================================================  ===================
Succeeded  ``tr_...`` returned, also on an idempotent replay          paid
Transient  429, connection refused                                   this request made
                                                                     nothing; retry later
Unknown    timeout or reset after sending, 5xx, 409                  may exist at Stripe
           ``idempotency_key_in_use``, ``idempotency_error``
Permanent  no such destination, ``amount_too_small``, ...            the winner's or the
                                                                     request's fault
Systemic   401, 403, ``balance_insufficient``                        the platform's fault:
                                                                     stop, fail no one
=========  ========================================================  ===================

Which answers are *conclusive* for an idempotency key (DESIGN 3, "Exactly
once", rule 4): a success, a ``Permanent`` (a 400/402/404 that Stripe saved
under the key: the key created nothing), and a ``Systemic`` with
``conclusive=True`` (``balance_insufficient``, saved the same way). Every other
answer ends nothing: an earlier request with the key may still create a
transfer.
"""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = [
    "Found",
    "GatewayOutcome",
    "LookupOutcome",
    "NotFound",
    "Permanent",
    "RetrieveOutcome",
    "ReversalOutcome",
    "ReversalRequest",
    "Reversed",
    "StripeReversal",
    "StripeTransfer",
    "Succeeded",
    "Systemic",
    "TransferLookup",
    "TransferQuery",
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
    """The request may have created a transfer, or one sent earlier with the
    same key may still create one.

    ``key_replays_error`` is true when the key can only ever answer this error
    again: a 5xx Stripe saved under it, or ``idempotency_error`` (the key was
    first used with other parameters). Sending it again proves nothing; only a
    look-up can decide.
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
    ``conclusive`` is true when Stripe executed the request and saved this
    refusal under the idempotency key (``balance_insufficient``): the key
    created nothing and would replay the refusal for a day, so the transfer
    moves to its next key. A 401 or 403 is refused before execution and
    concludes nothing.
    """

    code: str
    message: str
    conclusive: bool = False


@attrs.frozen(kw_only=True)
class Found:
    stripe_transfer_id: str


@attrs.frozen(kw_only=True)
class NotFound:
    pass


GatewayOutcome = Succeeded | Transient | Unknown | Permanent | Systemic
LookupOutcome = Found | NotFound | Transient | Unknown | Permanent | Systemic


@attrs.frozen(kw_only=True)
class StripeTransfer:
    """A transfer as Stripe holds it (``reconcile``, ``transfers resolve``)."""

    id: str
    amount_cents: int
    currency: str
    destination: str | None
    transfer_group: str | None
    payout_transfer_id: str | None  # ``metadata.payout_transfer_id``
    created_at: datetime
    amount_reversed: int = 0
    reversed: bool = False


@attrs.frozen(kw_only=True)
class TransferQuery:
    """Which of Stripe's transfers to list: one transfer group's, or every one
    created at or after ``created_since`` (or both filters at once)."""

    transfer_group: str | None = None
    created_since: datetime | None = None


RetrieveOutcome = StripeTransfer | NotFound | Transient | Unknown | Permanent | Systemic


@attrs.frozen(kw_only=True)
class ReversalRequest:
    """Everything sent to reverse (part of) one transfer at Stripe; the same on
    every retry of its key (``payout-reversal:<transfer_id>:<n>``)."""

    stripe_transfer_id: str
    amount_cents: int
    idempotency_key: str
    metadata: tuple[tuple[str, str], ...]  # carries payout_reversal_key, payout_transfer_id


@attrs.frozen(kw_only=True)
class Reversed:
    """Stripe reversed the amount; ``replayed`` when the key's first answer came back."""

    stripe_reversal_id: str
    replayed: bool = False


ReversalOutcome = Reversed | Transient | Unknown | Permanent | Systemic
"""What Create Reversal answers: the same classes, and the same table, as a transfer's."""


@attrs.frozen(kw_only=True)
class StripeReversal:
    """A reversal as Stripe holds it, made by payout-core or in the dashboard."""

    id: str  # trr_...
    stripe_transfer_id: str
    amount_cents: int
    currency: str
    created_at: datetime
    payout_reversal_key: str | None = None  # metadata.payout_reversal_key: payout-core made it
