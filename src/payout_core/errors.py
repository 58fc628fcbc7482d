"""Every exception payout-core raises on purpose.

Expected failures of a payout (a declined transfer, a timeout) are *values*
(:mod:`payout_core.outcomes`), never exceptions. What is raised is a refusal of
bad input, a bug caught by a guard, or an infrastructure failure::

    PayoutError
    ├── InvalidSettlement        the settlement breaks the rules; carries every problem
    ├── SettlementConflict       a known settlement_id arrived with other contents
    ├── DuplicatePayout          a winner of this contest is already in another settlement
    ├── IllegalTransition        a transfer was asked to make a move the state machine forbids
    ├── InvalidOperatorAction    an operator's command lacks who or why
    ├── ActionRefused            an operator's action contradicts the record or Stripe
    └── InfrastructureError      the store or a gateway could not do its job (retry later)
        ├── StoreUnavailable     the database did not answer
        └── GatewayUnavailable   Stripe could not be read (a list or a look-up failed)
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = [
    "ActionRefused",
    "DuplicatePayout",
    "GatewayUnavailable",
    "IllegalTransition",
    "InfrastructureError",
    "InvalidOperatorAction",
    "InvalidSettlement",
    "PayoutError",
    "Problem",
    "SettlementConflict",
    "StoreUnavailable",
]


class PayoutError(Exception):
    """Root of every exception payout-core raises deliberately."""


@attrs.frozen
class Problem:
    """One thing wrong with an input: where (``winners[2].amount_cents``) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidSettlement(PayoutError):
    """The settlement is malformed. Nothing was written.

    ``problems`` lists every problem found, not just the first, so the caller
    can fix the whole settlement at once.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid settlement ({len(self.problems)} problem(s)):\n{lines}")


class InvalidOperatorAction(PayoutError):
    """An operator's command is missing what it needs (who, why). Nothing was written."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class ActionRefused(PayoutError):
    """An operator's action on a transfer was refused: the transfer is not in a
    state it applies to, or Stripe contradicts it. Nothing was written.

    ``transfer_id`` names the transfer; the message says what disagrees.
    """

    def __init__(self, transfer_id: str, message: str) -> None:
        self.transfer_id = transfer_id
        super().__init__(f"transfer {transfer_id}: {message}")


class SettlementConflict(PayoutError):
    """``settlement_id`` is already scheduled with different winners, amounts or currency.

    A changed settlement is never silently ignored nor paid twice: a correction
    must come as a new settlement after the old job is dealt with.
    """

    def __init__(self, settlement_id: str, existing_job_id: str) -> None:
        self.settlement_id = settlement_id
        self.existing_job_id = existing_job_id
        super().__init__(
            f"settlement {settlement_id!r} is already scheduled as job {existing_job_id} "
            "with different contents; a changed settlement is refused, not paid twice"
        )


class DuplicatePayout(PayoutError):
    """A winner is already being paid for this contest by another settlement."""

    def __init__(self, contest_id: str, user_ids: Iterable[str]) -> None:
        self.contest_id = contest_id
        self.user_ids: tuple[str, ...] = tuple(sorted(user_ids))
        super().__init__(
            f"contest {contest_id!r} already has a payout for user(s) "
            f"{', '.join(self.user_ids)} in another settlement; nothing was written"
        )


class IllegalTransition(PayoutError):
    """A transfer was asked to move in a way the state machine does not allow.

    This is a bug in the caller, never an expected outcome: it is raised rather
    than asserted so that ``python -O`` cannot remove the guard.
    """

    def __init__(self, transfer_id: str, status: str, event: str) -> None:
        self.transfer_id = transfer_id
        self.status = status
        self.event = event
        super().__init__(f"transfer {transfer_id}: {event!r} is not allowed from {status!r}")


class InfrastructureError(PayoutError):
    """A dependency failed; the operation may succeed if tried again later."""


class StoreUnavailable(InfrastructureError):
    """The store (database) could not be reached or failed mid-operation."""


class GatewayUnavailable(InfrastructureError):
    """Stripe could not be read, so whatever needed it cannot be decided.

    ``code`` is the failure's code (``rate_limited``, ``api_connection_error``, ...).
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"Stripe could not be read ({code}): {message}")
