"""The values payout-core works with.

All models are frozen: a state change returns a new object (see
:mod:`payout_core.state_machine`). Money is always an ``int`` of minor units
next to its ISO 4217 currency; times are timezone-aware.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final

import attrs

__all__ = [
    "JobStatus",
    "LedgerDirection",
    "LedgerEntry",
    "LedgerEntryType",
    "OperatorAction",
    "OperatorActionKind",
    "PauseState",
    "PayoutJob",
    "PayoutTransfer",
    "Reversal",
    "ReversalStatus",
    "RunReport",
    "Settlement",
    "TransferStatus",
    "Winner",
]


def _aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise ValueError(f"{attribute.name} must be a timezone-aware datetime, got {value!r}")


# How many times a transfer is tried before it fails for good, unless told otherwise
# (PAYOUT_MAX_ATTEMPTS, WorkerSettings.max_attempts, Payouts.max_attempts).
DEFAULT_MAX_ATTEMPTS: Final = 5


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
    PAYOUT_REVERSED = "payout_reversed"  # (part of) a paid transfer came back


class LedgerDirection(enum.StrEnum):
    DEBIT = "debit"  # money left the platform's balance
    CREDIT = "credit"  # money came back to it (a reversal)
    MEMO = "memo"  # a record of an attempt; no money moved


class ReversalStatus(enum.StrEnum):
    SENDING = "sending"  # its intent is durable; Stripe may have reversed (in doubt)
    COMPLETED = "completed"  # Stripe reversed it; booked in the ledger
    FAILED = "failed"  # Stripe reversed nothing under its key


@attrs.frozen(kw_only=True)
class Winner:
    user_id: str
    amount_cents: int


@attrs.frozen(kw_only=True)
class Settlement:
    """What a contest platform decided: who won how much.

    Build it from JSON with :func:`payout_core.validation.parse_settlement`, or
    here and have it checked by :func:`payout_core.validation.check_settlement`
    (``schedule_payout_for_settlement`` does): either checks every rule once,
    and nothing after it checks again.
    """

    settlement_id: str
    contest_id: str
    currency: str
    winners: tuple[Winner, ...]

    @property
    def total_amount_cents(self) -> int:
        return sum(w.amount_cents for w in self.winners)


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

    Besides the fields of DESIGN 3 it carries what the exactly-once rules need
    (DESIGN 3, "Exactly once, under every interleaving"; docs/exactly-once.md):

    * ``destination_account``: pinned by the first send intent, never changed.
    * ``key_generation``: which idempotency key is current (0 is ``payout:<id>``);
      it moves on only once the current key is known to have created nothing.
    * ``key_first_sent_at`` / ``last_send_at`` / ``key_sends``: from the send
      intents, in the database's time: when the current key was first sent
      (Stripe forgets keys about 24 hours later), when the latest send began,
      and how many sends the current key has had.
    * ``outcome_uncertain``: a request with the current key may have created a
      transfer at Stripe. Set by every send intent, cleared only by a
      conclusive answer for that key. While set, the transfer never fails.
    * ``key_replays_error``: the current key can only replay an error (a saved
      5xx, ``idempotency_error``): only a look-up can decide.
    * ``platform_refused``: the latest answer under the current key was the
      platform's fault (401, 403); if a look-up then finds nothing, the
      attempt is given back, not counted against the winner.
    * ``claim_token``: the current claim (a worker whose lease was taken over
      cannot record over the newer one).
    * ``lookup_failures`` / ``abandoned_claims``: look-ups that failed in a row,
      and claims in a row that expired without an outcome; past a bound the
      transfer ``needs_operator`` (the reason), and no claim takes it.
    * ``reissue_of``: the failed transfer this one replaces (DESIGN 7): one
      live or completed transfer per contest and user, any number of failed.
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
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    next_attempt_at: datetime | None = attrs.field(default=None, validator=_aware)
    lease_expires_at: datetime | None = attrs.field(default=None, validator=_aware)
    claim_token: str | None = None
    destination_account: str | None = None
    stripe_transfer_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    key_generation: int = 0
    key_first_sent_at: datetime | None = attrs.field(default=None, validator=_aware)
    last_send_at: datetime | None = attrs.field(default=None, validator=_aware)
    key_sends: int = 0
    outcome_uncertain: bool = False
    key_replays_error: bool = False
    platform_refused: bool = False
    lookup_failures: int = 0
    abandoned_claims: int = 0
    needs_operator: str | None = None
    # The failed_terminal transfer this one pays again (``transfers reissue``).
    reissue_of: str | None = None
    created_at: datetime = attrs.field(validator=_aware)
    updated_at: datetime = attrs.field(validator=_aware)

    @property
    def attempts_left(self) -> int:
        return self.max_attempts - self.attempt_count

    def as_summary(self) -> dict[str, object]:
        """What an operator action's ``before`` and ``after`` record of it."""
        return {
            "status": self.status.value,
            "attempt_count": self.attempt_count,
            "key_generation": self.key_generation,
            "outcome_uncertain": self.outcome_uncertain,
            "needs_operator": self.needs_operator,
            "destination_account": self.destination_account,
            "stripe_transfer_id": self.stripe_transfer_id,
            "failure_code": self.failure_code,
            "reissue_of": self.reissue_of,
        }


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
    stripe_reversal_id: str | None = None  # a payout_reversed row: Stripe's trr_...
    created_at: datetime = attrs.field(validator=_aware)


@attrs.frozen(kw_only=True)
class Reversal:
    """One reversal payout-core asked Stripe for (``transfers reverse``): money
    of a completed transfer coming back. Its row is the write-ahead intent
    (DESIGN 3, rule 2): written ``sending`` before the request leaves, under
    the key ``payout-reversal:<transfer_id>:<sequence>``, and in doubt until a
    conclusive answer for that key. Reversals made in Stripe's dashboard have
    no row here, only their ledger row."""

    id: str
    transfer_id: str
    sequence: int  # the n of its key: 1, 2, ... per transfer
    idempotency_key: str
    stripe_transfer_id: str
    amount_cents: int
    currency: str
    actor: str
    reason: str
    status: ReversalStatus = ReversalStatus.SENDING
    stripe_reversal_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    created_at: datetime = attrs.field(validator=_aware)  # the intent, by the store's clock
    updated_at: datetime = attrs.field(validator=_aware)


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


@attrs.frozen(kw_only=True)
class PauseState:
    """Whether the fleet is paused (``payout_control``), by whom, why, since when.

    While paused, no worker claims a transfer; those in flight finish.
    """

    paused: bool = False
    actor: str | None = None
    reason: str | None = None
    since: datetime | None = attrs.field(default=None, validator=_aware)

    def as_dict(self) -> dict[str, object]:
        return {
            "paused": self.paused,
            "actor": self.actor,
            "reason": self.reason,
            "since": None if self.since is None else self.since.isoformat(),
        }


class OperatorActionKind(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    RESOLVE_FOUND = "resolve_found"  # a transfer needing an operator: Stripe holds it
    RESOLVE_ABSENT = "resolve_absent"  # a transfer needing an operator: Stripe holds none
    REISSUE = "reissue"  # a failed_terminal winner paid again, by a new transfer
    REVERSE = "reverse"  # (part of) a paid transfer reversed at Stripe


@attrs.frozen(kw_only=True)
class OperatorAction:
    """One thing an operator did by hand (a row of ``payout_operator_actions``,
    append-only): who, why, what, on which transfer if any, the state before
    and after, when."""

    action: OperatorActionKind
    actor: str
    reason: str
    created_at: datetime = attrs.field(validator=_aware)
    transfer_id: str | None = None
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None
