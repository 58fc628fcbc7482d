"""The values payout-core works with.

All models are frozen: a state change returns a new object (see
:mod:`payout_core.state_machine`). Money is always an ``int`` of minor units
next to its ISO 4217 currency; times are timezone-aware.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "JobStatus",
    "LedgerDirection",
    "LedgerEntry",
    "LedgerEntryType",
    "PayoutJob",
    "PayoutTransfer",
    "RunReport",
    "Settlement",
    "TransferStatus",
    "Winner",
]


def _aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise ValueError(f"{attribute.name} must be a timezone-aware datetime, got {value!r}")


class TransferStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    FAILED_TERMINAL = "failed_terminal"

    @property
    def is_terminal(self) -> bool:
        return self in (TransferStatus.COMPLETED, TransferStatus.FAILED_TERMINAL)


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"


class LedgerEntryType(enum.StrEnum):
    PAYOUT_COMPLETED = "payout_completed"
    PAYOUT_ATTEMPT_FAILED = "payout_attempt_failed"
    PAYOUT_FAILED = "payout_failed"


class LedgerDirection(enum.StrEnum):
    DEBIT = "debit"  # money left the platform's balance
    MEMO = "memo"  # a record of an attempt; no money moved


@attrs.frozen(kw_only=True)
class Winner:
    user_id: str
    amount_cents: int


@attrs.frozen(kw_only=True)
class Settlement:
    """What a contest platform decided: who won how much.

    Build it with :func:`payout_core.validation.parse_settlement`, which checks
    every rule; the scheduling service checks again before writing anything.
    """

    settlement_id: str
    contest_id: str
    currency: str
    winners: tuple[Winner, ...]

    @property
    def total_amount_cents(self) -> int:
        return sum(w.amount_cents for w in self.winners)

    def to_payload(self) -> dict[str, object]:
        """The settlement JSON of DESIGN 6 (the ``schedule`` command and the inbox take it)."""
        return {
            "settlement_id": self.settlement_id,
            "contest_id": self.contest_id,
            "currency": self.currency,
            "winners": [
                {"user_id": w.user_id, "amount_cents": w.amount_cents} for w in self.winners
            ],
        }


@attrs.frozen(kw_only=True)
class PayoutJob:
    """One per settlement; its counts are derived from its transfers."""

    id: str
    settlement_id: str
    contest_id: str
    currency: str
    status: JobStatus
    total_transfers: int
    total_amount_cents: int
    completed_count: int = 0
    failed_count: int = 0
    # sha256 of the canonical settlement: how a changed resubmission is recognised.
    settlement_fingerprint: str
    created_at: datetime = attrs.field(validator=_aware)
    updated_at: datetime = attrs.field(validator=_aware)
    completed_at: datetime | None = attrs.field(default=None, validator=_aware)


@attrs.frozen(kw_only=True)
class PayoutTransfer:
    """One winner's payout and where it stands.

    Besides the fields of DESIGN 3 it carries what the state machine needs to
    never pay twice:

    * ``key_generation``: which idempotency key is current (0 is ``payout:<id>``);
      it only moves on after a look-up confirmed no transfer exists at Stripe.
    * ``outcome_uncertain``: an earlier attempt may have created a transfer at
      Stripe (timeout, dropped connection, 5xx, abandoned claim). While set, the
      transfer is looked up at Stripe before it can ever fail terminally.
    * ``key_replays_error``: the current key has a 5xx saved under it at Stripe,
      so sending it again would only replay that error; look up first.
    * ``key_first_sent_at``: when the current key was first sent; Stripe prunes
      keys after about 24 hours, after which a look-up must come first.
    * ``claim_token`` / ``claim_counted``: identify the current claim (a worker
      whose lease was taken over cannot record over the newer one) and whether
      it spent an attempt (so a systemic halt can give it back).
    """

    id: str
    job_id: str
    settlement_id: str
    contest_id: str
    user_id: str
    amount_cents: int
    currency: str
    status: TransferStatus = TransferStatus.PENDING
    attempt_count: int = 0
    max_attempts: int = 5
    next_attempt_at: datetime | None = attrs.field(default=None, validator=_aware)
    lease_expires_at: datetime | None = attrs.field(default=None, validator=_aware)
    claim_token: str | None = None
    claim_counted: bool = False
    destination_account: str | None = None
    stripe_transfer_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    key_generation: int = 0
    key_first_sent_at: datetime | None = attrs.field(default=None, validator=_aware)
    outcome_uncertain: bool = False
    key_replays_error: bool = False
    created_at: datetime = attrs.field(validator=_aware)
    updated_at: datetime = attrs.field(validator=_aware)

    @property
    def attempts_left(self) -> int:
        return self.max_attempts - self.attempt_count


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """One row of the append-only ledger: the outcome of one attempt."""

    idempotency_key: str
    entry_type: LedgerEntryType
    direction: LedgerDirection
    amount_cents: int
    currency: str
    transfer_id: str
    job_id: str
    contest_id: str
    user_id: str
    attempt_number: int
    stripe_transfer_id: str | None = None
    failure_code: str | None = None
    created_at: datetime = attrs.field(validator=_aware)


@attrs.frozen(kw_only=True)
class RunReport:
    """What one tick of the runner did (a row of ``payout_scheduler_runs``)."""

    id: str
    started_at: datetime = attrs.field(validator=_aware)
    finished_at: datetime | None = attrs.field(default=None, validator=_aware)
    settlements_accepted: int = 0
    settlements_rejected: int = 0
    claimed: int = 0
    completed: int = 0
    retried: int = 0
    failed_terminal: int = 0
    released: int = 0
    stale: int = 0
    halted_reason: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.halted_reason is None
