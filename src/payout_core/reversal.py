"""A reversal's rules, as pure functions: how much may come back, and what
each answer of Stripe does to a reversal payout-core asked for.

The exactly-once rules of a transfer (DESIGN 3) hold for a reversal too:

* **Write-ahead intent.** The reversal's row is written ``sending`` before the
  request leaves; a reversal in doubt stays so until a conclusive answer for
  its key (``payout-reversal:<transfer_id>:<n>``).
* **One at a time.** A transfer has at most one reversal in doubt; a new one
  waits until that one is resolved, so a re-run of a command whose answer was
  lost resolves it instead of reversing again.
* **Resolve by resending while the key is trusted** (23 hours, as for
  transfers): Stripe replays what the key did, or executes it once. After
  that, the transfer's reversals at Stripe are listed and matched on
  ``metadata.payout_reversal_key``.
* **Never more back than was paid**: the amount left is what was paid less
  every reversal booked (payout-core's and the dashboard's).

=================================  ====================  ==========================
answer                             first send            resend of a key in doubt
=================================  ====================  ==========================
``Reversed``                       completed             completed
``Permanent``, conclusive          failed                failed
``Systemic``
``Transient``, other ``Systemic``  failed (nothing left  in doubt
                                   for Stripe)
``Unknown``                        in doubt              in doubt
=================================  ====================  ==========================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import attrs

from payout_core import ledger, models, outcomes
from payout_core import state_machine as sm

__all__ = [
    "KEY_TRUST_WINDOW",
    "Amounts",
    "amounts",
    "check_settlement",
    "decide",
    "found_at_stripe",
    "not_at_stripe",
]

R = models.ReversalStatus
#: As for a transfer's key: for 23 hours a resend is the conclusive test.
KEY_TRUST_WINDOW: Final = sm.KEY_TRUST_WINDOW


@attrs.frozen(kw_only=True)
class Amounts:
    """A completed transfer's money, in its minor unit."""

    paid: int
    reversed: int  # booked in the ledger (payout-core's reversals and the dashboard's)
    in_doubt: int  # asked for, answer not yet known (not booked)

    @property
    def left(self) -> int:
        return self.paid - self.reversed - self.in_doubt

    def __str__(self) -> str:
        doubt = f", {self.in_doubt} in doubt" if self.in_doubt else ""
        return f"paid {self.paid}, reversed {self.reversed}{doubt}, {self.left} left"


def amounts(
    transfer: models.PayoutTransfer,
    rows: Sequence[models.LedgerEntry],
    reversals: Sequence[models.Reversal],
) -> Amounts:
    booked = {r.stripe_reversal_id for r in rows if r.stripe_reversal_id is not None}
    return Amounts(
        paid=transfer.amount_cents if transfer.status is models.TransferStatus.COMPLETED else 0,
        reversed=ledger.booked_reversals(rows),
        in_doubt=sum(
            r.amount_cents
            for r in reversals
            if r.status is R.SENDING and r.stripe_reversal_id not in booked
        ),
    )


def _completed(
    reversal: models.Reversal, stripe_reversal_id: str, now: datetime
) -> models.Reversal:
    return attrs.evolve(
        reversal,
        status=R.COMPLETED,
        stripe_reversal_id=stripe_reversal_id,
        failure_code=None,
        failure_message=None,
        updated_at=now,
    )


def _failed(reversal: models.Reversal, code: str, message: str, now: datetime) -> models.Reversal:
    return attrs.evolve(
        reversal, status=R.FAILED, failure_code=code, failure_message=message, updated_at=now
    )


def decide(
    reversal: models.Reversal,
    answer: outcomes.ReversalOutcome,
    *,
    first_send: bool,
    now: datetime,
) -> models.Reversal:
    """The reversal after Stripe's ``answer`` (see the table above); unchanged
    while it stays in doubt."""
    if reversal.status is not R.SENDING:
        raise ValueError(f"reversal {reversal.id} is {reversal.status}, not in doubt")
    match answer:
        case outcomes.Reversed(stripe_reversal_id=stripe_id):
            return _completed(reversal, stripe_id, now)
        case outcomes.Permanent(code=code, message=message):
            return _failed(reversal, code, message, now)
        case outcomes.Systemic(code=code, message=message, conclusive=conclusive) if (
            conclusive or first_send
        ):
            return _failed(reversal, code, message, now)
        case outcomes.Transient(code=code, message=message) if first_send:
            return _failed(reversal, code, message, now)
        case _:
            return reversal


def found_at_stripe(
    reversal: models.Reversal, at_stripe: Sequence[outcomes.StripeReversal], *, now: datetime
) -> models.Reversal:
    """After the key may be forgotten: the reversal Stripe lists under its key
    completes it; none fails it (nothing can still run 23 hours on)."""
    for held in at_stripe:
        if held.payout_reversal_key == reversal.idempotency_key:
            return _completed(reversal, held.id, now)
    return not_at_stripe(reversal, now=now)


def not_at_stripe(reversal: models.Reversal, *, now: datetime) -> models.Reversal:
    return _failed(
        reversal,
        "not_found",
        f"Stripe lists no reversal under {reversal.idempotency_key}: nothing came back",
        now,
    )


def check_settlement(
    before: models.Reversal,
    after: models.Reversal,
    ledger_entry: models.LedgerEntry | None,
    action: models.OperatorAction | None,
) -> None:
    """What a store refuses to write as a reversal's answer: ``after`` settles
    ``before`` (:func:`decide`), completed with its credit and the action that
    asked for it, or failed with neither.

    Raises:
        ValueError: the caller passed what no settlement makes (a bug).
    """
    if after.id != before.id or after.status is R.SENDING:
        raise ValueError(f"cannot settle reversal {before.id} as {after.status} {after.id}")
    completed = after.status is R.COMPLETED
    if completed != (ledger_entry is not None) or completed != (action is not None):
        raise ValueError(f"a {after.status} reversal books a credit and an action iff completed")
    if ledger_entry is not None and (
        ledger_entry.stripe_reversal_id,
        ledger_entry.amount_cents,
        ledger_entry.transfer_id,
    ) != (after.stripe_reversal_id, after.amount_cents, after.transfer_id):
        raise ValueError(f"{ledger_entry.idempotency_key} is not the credit of {after.id}")
    if action is not None and (action.action, action.transfer_id) != (
        models.OperatorActionKind.REVERSE,
        after.transfer_id,
    ):
        raise ValueError(f"{action.action} does not reverse transfer {after.transfer_id}")
