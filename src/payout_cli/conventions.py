"""What every command shares: exit codes, the refusal of bad input, the
``--database-url`` option, an operator's ``--actor`` and ``--reason``,
settings from the environment and flags, and the parsing of a time given on
the command line.

Exit codes: 0 success; 1 runtime failure; 2 bad usage or bad input (the
message names what is wrong, and nothing was written).

Exit 2 is for what the caller asked, refused for a reason the message names
and that asking again unchanged cannot cure: input that breaks a rule of
:mod:`payout_core.validation` (a settlement, an account, an operator's
arguments, a setting), a settlement id already scheduled with other contents
or a winner another settlement pays (the settlement as given can never be
scheduled), and an operator's action that the transfer's record or Stripe
contradicts. Everything else is exit 1: the database or Stripe failing, a
constraint of the database refusing a write the validation let through
(``StoreRefused``, a rule the core does not know: never "bad input"), a guard
catching a bug (``IllegalTransition``), and any unexpected exception.
docs/bad-input.md has the table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import typer
from rich import markup

from payout_adapters import postgres
from payout_cli import output
from payout_cli import settings as settings_
from payout_core import errors

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "Actor",
    "BadInput",
    "DatabaseUrl",
    "Reason",
    "exit_codes",
    "parse_time",
    "settings_from",
]

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (default: $PAYOUT_DATABASE_URL, else an embedded PostgreSQL).",
        show_default=False,
    ),
]

Actor = Annotated[
    str, typer.Option("--actor", help="Who does this (a name the audit trail keeps).")
]
Reason = Annotated[str, typer.Option("--reason", help="Why (the audit trail keeps it).")]


class BadInput(Exception):
    """Refuse with exit code 2; the message says what is wrong."""


def _fail(message: str, code: int) -> typer.Exit:
    # The message quotes the caller's input: a "[u-1]" in it is text, not
    # markup for output.error to swallow (or a "[/x]" to crash it).
    output.error(markup.escape(message))
    return typer.Exit(code)


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Map refusals to exit 2 and failures to exit 1, with a message and no traceback."""
    try:
        yield
    except (
        BadInput,
        settings_.ConfigError,
        errors.InvalidInput,
        errors.SettlementConflict,
        errors.DuplicatePayout,
        errors.ActionRefused,
    ) as refusal:
        raise _fail(str(refusal), EXIT_BAD_INPUT) from None
    except errors.StoreRefused as exc:
        raise _fail(f"{exc}. Not a problem with your input: report it", EXIT_FAILURE) from None
    except (postgres.MigrationError, errors.PayoutError) as exc:
        raise _fail(str(exc), EXIT_FAILURE) from None


def settings_from(**flags: object) -> settings_.Settings:
    """The settings of this command: the environment, then its flags on top."""
    return settings_.Settings.from_sources(os.environ, flags)


def parse_time(flag: str, text: str) -> datetime:
    """A time given as ``flag``: ISO 8601 with its UTC offset.

    Raises:
        BadInput: naming the flag and what it accepts.
    """
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"{flag} {text!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    if when.utcoffset() is None:
        raise BadInput(f"{flag} {text!r} has no UTC offset (add Z or +00:00)")
    return when
