"""``payout-core status``: the fleet at a glance, for an operator."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from payout_cli import bootstrap, conventions, output, runner
from payout_cli.commands import views
from payout_core.services import status as status_

__all__ = ["status"]


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Jobs and transfers by state, stuck and failed transfers with reasons, the last runs."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        now = bootstrap.clock().now()
        with bootstrap.open_database(settings, max_size=2) as db:
            shown = status_.status(db.store, now=now)
            shown_as = db.shown_as
        data = {
            "database": shown_as,
            "pause": shown.pause.as_dict(),
            "transfers_by_status": {s.value: n for s, n in shown.counts.items()},
            "due": shown.depth.due,
            "stuck": shown.depth.stuck,
            "needs_operator": shown.depth.needs_operator,
            "jobs": [views.job_dict(j) for j in shown.jobs],
            "needs_operator_transfers": [views.transfer_dict(t) for t in shown.needs_operator],
            "failed_transfers": [views.transfer_dict(t) for t in shown.failed],
            "retrying_transfers": [views.transfer_dict(t) for t in shown.retrying],
            "stuck_transfers": [views.transfer_dict(t) for t in shown.stuck],
            "reversals_in_doubt": [views.reversal_dict(r) for r in shown.reversals_in_doubt],
            "recent_runs": [runner.report_as_dict(r) for r in shown.runs],
            "operator_actions": [views.action_dict(a) for a in shown.actions],
        }
        if as_json:
            output.print_json(data)
            return
        _print_status(data)


def _print_status(data: dict[str, Any]) -> None:
    con = output.console
    con.print(f"database: {data['database']}")
    pause = data["pause"]
    if pause["paused"]:
        con.print(
            f"[bold red]PAUSED[/] by {pause['actor']} since {pause['since']}: {pause['reason']} "
            "(no worker claims a transfer; `payout-core resume` ends it)",
            markup=True,
            highlight=False,
        )
    by_status = data["transfers_by_status"]
    con.print(
        output.table(
            "Transfers",
            [*by_status, "due now", "stuck", "needs operator"],
            [[*by_status.values(), data["due"], data["stuck"], data["needs_operator"]]],
        )
    )
    con.print(
        output.table(
            "Jobs (newest first)",
            ["job", "settlement", "status", "transfers", "completed", "failed", "amount"],
            [
                [
                    j["id"], j["settlement_id"], j["status"], j["total_transfers"],
                    j["completed_count"], j["failed_count"],
                    f"{j['total_amount_cents']} {j['currency']}",
                ]
                for j in data["jobs"]
            ],
        )
    )  # fmt: skip
    waiting = data["needs_operator_transfers"]
    if waiting:
        con.print(
            output.table(
                "Transfers that need an operator (no worker touches them; see the runbook)",
                ["transfer", "user", "amount", "destination", "uncertain", "why"],
                [
                    [
                        t["id"], t["user_id"], f"{t['amount_cents']} {t['currency']}",
                        t["destination_account"], "yes" if t["outcome_uncertain"] else "no",
                        t["needs_operator"],
                    ]
                    for t in waiting
                ],
            )
        )  # fmt: skip
    for title, key in (
        ("Failed transfers (see the runbook in the README)", "failed_transfers"),
        ("Retrying transfers", "retrying_transfers"),
        ("Stuck transfers (lease expired; the next tick takes them over)", "stuck_transfers"),
    ):
        rows = data[key]
        if rows:
            con.print(
                output.table(
                    title,
                    ["transfer", "user", "amount", "attempts", "code", "reason", "next attempt"],
                    [
                        [
                            t["id"], t["user_id"], f"{t['amount_cents']} {t['currency']}",
                            f"{t['attempt_count']}/{t['max_attempts']}", t["failure_code"],
                            t["failure_message"], t["next_attempt_at"],
                        ]
                        for t in rows
                    ],
                )
            )  # fmt: skip
    if data["reversals_in_doubt"]:
        con.print(
            views.reversals_table(
                "Reversals in doubt (Stripe may have reversed them; "
                "`transfers reverse` on the transfer again settles each, never twice)",
                data["reversals_in_doubt"],
            )
        )
    con.print(
        output.table(
            "Recent runs",
            ["started", "claimed", "completed", "retried", "failed", "inbox +/-", "halted/error"],
            [
                [
                    r["started_at"], r["claimed"], r["completed"], r["retried"],
                    r["failed_terminal"],
                    f"{r['settlements_accepted']}/{r['settlements_rejected']}",
                    r["halted_reason"] or r["error"] or "",
                ]
                for r in data["recent_runs"]
            ],
        )
    )  # fmt: skip
    if data["operator_actions"]:
        con.print(views.actions_table("Latest operator actions", data["operator_actions"]))
