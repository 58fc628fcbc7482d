"""The commands that set a database up and feed it: ``migrate``, ``schedule``
and ``accounts set``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from payout_cli import bootstrap, conventions, output
from payout_cli.commands import views
from payout_core import validation
from payout_core.services import scheduling

__all__ = ["accounts_set", "migrate", "schedule"]


def migrate(database_url: conventions.DatabaseUrl = None) -> None:
    """Apply pending database migrations (safe to run from several hosts at once)."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        applied, shown_as = bootstrap.migrate(settings)
        if applied:
            output.note(f"applied {len(applied)} migration(s) to {shown_as}: {', '.join(applied)}")
        else:
            output.note(f"{shown_as} is up to date; nothing to apply")


def _read_settlement_json(source: str) -> object:
    """The settlement JSON in ``source`` (a file, or ``-``), read by the core's
    JSON rule (:func:`payout_core.validation.loads`: numbers exact, as the
    inbox reads them)."""
    if source == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise conventions.BadInput(f"cannot read {source}: {exc.strerror}") from None
        name = source
    try:
        text = data.decode("utf-8-sig")  # a byte order mark is no content (RFC 8259)
    except UnicodeDecodeError as exc:
        raise conventions.BadInput(
            f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded)"
        ) from None
    try:
        return validation.loads(text)
    except ValueError as exc:
        raise conventions.BadInput(f"{name} is not valid JSON: {exc}") from None


def schedule(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="Settlement JSON, or - for stdin.")
    ],
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Schedule the payout of a settlement; prints its job (the same job when run again)."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        # Checked (once) and planned before touching the database: bad input writes nothing.
        planned = scheduling.plan(
            _read_settlement_json(source),
            now=bootstrap.clock().now(),
            max_attempts=settings.max_attempts,
        )
        with bootstrap.open_database(settings, max_size=2) as db:
            result = scheduling.store_plan(db.store, planned)
        output.print_json({"created": result.created, "job": views.job_dict(result.job)})


def accounts_set(
    user_id: Annotated[str, typer.Argument(help="The winner's user id.")],
    account_id: Annotated[str, typer.Argument(help="Their Stripe connected account, acct_...")],
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Connect a user to the Stripe account that receives their winnings."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        # The one rule for both ids, as every door and the directories keep it.
        problems = validation.account_problems(user_id, account_id, fields=("USER_ID", "ACCT_ID"))
        if problems:
            raise conventions.BadInput("; ".join(f"{p.field} {p.message}" for p in problems))
        with bootstrap.open_database(settings, max_size=2) as db:
            db.directory.set_account(user_id, account_id)
        output.note(f"user {user_id} is paid to {account_id}")
