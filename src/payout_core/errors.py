"""Every exception payout-core raises on purpose.

Expected failures of a payout (a declined transfer, a timeout) are *values*
(:mod:`payout_core.outcomes`), never exceptions. What is raised is a refusal of
bad input, a refusal of what the record holds, a bug caught by a guard, or an
infrastructure failure::

    PayoutError
    ├── InvalidInput             the caller's input breaks a rule of :mod:`~payout_core.validation`;
    │   │                        carries every problem; nothing was written
    │   ├── InvalidSettlement    a settlement (the schedule command, the inbox, the library)
    │   ├── InvalidOperatorAction  an operator's command: who, why, which transfer, how much
    │   └── InvalidAccount       a user id or a Stripe connected account id (also a ValueError)
    ├── SettlementConflict       a known settlement_id arrived with other contents
    ├── DuplicatePayout          a winner of this contest is already in another settlement
    ├── ActionRefused            an operator's action contradicts the record or Stripe
    ├── IllegalTransition        a transfer was asked to make a move the state machine forbids
    ├── StoreRefused             the store refused a write, as one of its constraints does
    └── InfrastructureError      the store or a gateway could not do its job (retry later)
        ├── StoreUnavailable     the database did not answer
        └── GatewayUnavailable   Stripe could not be read (a list or a look-up failed)

Whose fault each is decides the command line's exit code
(:func:`payout_cli.conventions.exit_codes`): the first four branches refuse
what the caller asked, for a reason the message names, and exit 2; the others
are not the caller's input and exit 1. In particular a :class:`StoreRefused`
is never "bad input": validation runs before anything is written, so a
constraint that still refuses is a rule the core does not know (a bug, or a
schema changed under it), and says which constraint it was.
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
    "InvalidAccount",
    "InvalidInput",
    "InvalidOperatorAction",
    "InvalidSettlement",
    "PayoutError",
    "Problem",
    "SettlementConflict",
    "StoreRefused",
    "StoreUnavailable",
]

#: The problems a message lists; ``problems`` always holds them all. (A
#: settlement of 100,000 bad winners would otherwise be a message of megabytes,
#: in a terminal, a log line and the inbox row's ``rejected_reason``.)
PROBLEMS_SHOWN = 100


class PayoutError(Exception):
    """Root of every exception payout-core raises deliberately."""


@attrs.frozen
class Problem:
    """One thing wrong with an input: where (``winners[2].amount_cents``) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _listed(problems: tuple[Problem, ...], separator: str, prefix: str = "") -> str:
    shown = [f"{prefix}{p}" for p in problems[:PROBLEMS_SHOWN]]
    if len(problems) > PROBLEMS_SHOWN:
        shown.append(f"{prefix}... and {len(problems) - PROBLEMS_SHOWN} more problem(s)")
    return separator.join(shown)


class InvalidInput(PayoutError):
    """The caller's input breaks a rule, found before anything was written.

    ``problems`` lists every problem found, not just the first, so the caller
    can fix the whole input at once.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._describe())

    def _describe(self) -> str:
        return _listed(self.problems, "; ")


class InvalidSettlement(InvalidInput):
    """The settlement is malformed. Nothing was written."""

    def _describe(self) -> str:
        lines = _listed(self.problems, "\n", "  - ")
        return f"invalid settlement ({len(self.problems)} problem(s)):\n{lines}"


class InvalidOperatorAction(InvalidInput):
    """An operator's command is missing what it needs (who, why) or names what
    cannot be (a transfer id that is no UUID, an amount that is no amount).
    Nothing was written."""


class InvalidAccount(InvalidInput, ValueError):
    """A user id or a Stripe connected account id breaks the one rule of
    :func:`payout_core.validation.account_problems`. Nothing was written.

    Also a :class:`ValueError`, which the account directories raised before
    there was a type for it.
    """


class StoreRefused(PayoutError):
    """The store refused a write, as its constraint ``constraint`` does
    (a CHECK, a key, a trigger of the schema, or the same rule in the in-memory
    store). Nothing was written.

    Not the caller's bad input: every input is validated before it is written,
    so a refusal that still comes is a rule the core does not know: a bug, or a
    schema changed under the code. Trying again will not help.
    """

    def __init__(self, constraint: str, message: str) -> None:
        self.constraint = constraint
        self.message = message
        super().__init__(f"the store refused the write (constraint {constraint}): {message}")


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
