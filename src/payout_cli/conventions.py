"""What every command shares: exit codes, the refusal of bad input, the
``--database-url`` option, settings from the environment and flags, and the
parsing of a time given on the command line.

Exit codes: 0 success; 1 runtime failure; 2 bad usage or bad input (the
message names what is wrong, and nothing was written).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import typer

from payout_adapters import postgres
from payout_cli import output
from payout_cli import settings as settings_
from payout_core import errors

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "BadInput",
    "DatabaseUrl",
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


class BadInput(Exception):
    """Refuse with exit code 2; the message says what is wrong."""


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Map refusals to exit 2 and failures to exit 1, with a message and no traceback."""
    try:
        yield
    except (
        BadInput,
        settings_.ConfigError,
        errors.InvalidSettlement,
        errors.InvalidOperatorAction,
        errors.ActionRefused,
        errors.SettlementConflict,
        errors.DuplicatePayout,
    ) as refusal:
        output.error(str(refusal))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except postgres.MigrationError as exc:
        output.error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None
    except errors.PayoutError as exc:
        output.error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None


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
