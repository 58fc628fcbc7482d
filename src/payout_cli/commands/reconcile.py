"""``payout-core reconcile``: the database's own invariants, then Stripe's side
both ways."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from payout_cli import bootstrap, conventions, logs, output
from payout_cli import progress as progress_
from payout_core.services import reconciliation

__all__ = ["reconcile_command"]


Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="List every Stripe transfer created from this ISO 8601 time on (with its "
        "offset, e.g. 2026-11-01T00:00:00+00:00), instead of each contest's group.",
        show_default=False,
    ),
]


def _parse_since(since: str | None) -> datetime | None:
    return None if since is None else conventions.parse_time("--since", since)


def reconcile_command(
    since: Since = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Check the database's own invariants, then Stripe's side both ways. Exit 1 with
    one line per finding, 0 with a summary."""
    with conventions.exit_codes():
        when = _parse_since(since)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            records = bootstrap.stripe_if_configured(settings, limiter=db.rate_limiter)
            if records is None and when is not None:
                raise conventions.BadInput(
                    "--since lists Stripe's transfers, and STRIPE_API_KEY is not set"
                )
            with progress_.shown_on_terminal() as show:
                result = reconciliation.reconcile_all(db.store, records, since=when, progress=show)
    if as_json:
        output.print_json(result.as_dict())
    else:
        for finding in result.findings:
            output.console.print(f"FINDING {logs.scrub(str(finding))}", markup=False)
        stripe_note = (
            f"{result.stripe_transfers} Stripe transfer(s) listed ({result.scope}), "
            f"{result.in_flight} in flight, {result.others} not payout-core's"
            if records is not None
            else "Stripe not checked (no STRIPE_API_KEY, or the simulated gateway)"
        )
        output.note(
            f"{result.jobs} job(s) and {result.transfers} transfer(s) checked; {stripe_note}; "
            f"{len(result.findings)} finding(s)"
        )
    if not result.ok:
        raise typer.Exit(conventions.EXIT_FAILURE)
