"""``payout-core``: parses, builds adapters from settings, calls a service, prints.

Exit codes: 0 success; 1 runtime failure; 2 bad usage or bad input (the
message names what is wrong, and nothing was written).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import attrs
import typer
from rich.table import Table

from payout_adapters import clock as clock_
from payout_adapters import postgres
from payout_cli import admin, bootstrap, conventions, logs, output, runner
from payout_cli import metrics as metrics_
from payout_cli import progress as progress_
from payout_cli import settings as settings_
from payout_cli.ledger_cli import ledger_app
from payout_core import attempt, models, outcomes, validation
from payout_core.services import (
    control,
    inspection,
    intake,
    reconciliation,
    reversals,
    scheduling,
    tick,
    transfer_actions,
)
from payout_core.services import status as status_

if TYPE_CHECKING:
    from payout_adapters.stripe import gateway as stripe_adapter

__all__ = ["app", "main"]

# Locals in a traceback could show a key or a token (Typer's docs warn of it).
app = typer.Typer(
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
    help="Pay contest winnings to Stripe connected accounts, exactly once.",
)
accounts_app = typer.Typer(no_args_is_help=True, help="Connected accounts of winners.")
transfers_app = typer.Typer(no_args_is_help=True, help="One payout transfer, for an operator.")
webhooks_app = typer.Typer(no_args_is_help=True, help="Stripe's signed webhook events.")
app.add_typer(accounts_app, name="accounts")
app.add_typer(transfers_app, name="transfers")
app.add_typer(ledger_app, name="ledger")
app.add_typer(webhooks_app, name="webhooks")


def _job_dict(job: models.PayoutJob) -> dict[str, Any]:
    fields = attrs.asdict(job)
    fields.pop("settlement_fingerprint")
    return fields


def _transfer_dict(t: models.PayoutTransfer) -> dict[str, Any]:
    keep = (
        "id", "job_id", "contest_id", "user_id", "amount_cents", "currency", "status",
        "attempt_count", "max_attempts", "next_attempt_at", "lease_expires_at",
        "destination_account", "stripe_transfer_id", "failure_code", "failure_message",
        "key_generation", "key_first_sent_at", "last_send_at", "outcome_uncertain",
        "needs_operator", "reissue_of",
    )  # fmt: skip
    fields = attrs.asdict(t)
    return {k: fields[k] for k in keep}


@app.command()
def migrate(database_url: conventions.DatabaseUrl = None) -> None:
    """Apply pending database migrations (safe to run from several hosts at once)."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        url, shown_as = bootstrap.resolve_database_url(settings)
        applied = postgres.migrate(url)
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


@app.command()
def schedule(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="Settlement JSON, or - for stdin.")
    ],
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Schedule the payout of a settlement; prints its job (the same job when run again)."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        # Validate before touching the database: bad input writes nothing.
        settlement = validation.parse_settlement(_read_settlement_json(source))
        with bootstrap.open_database(settings, max_size=2) as db:
            result = scheduling.schedule_payout_for_settlement(
                store=db.store,
                settlement=settlement,
                now=clock_.SystemClock().now(),
                max_attempts=settings.max_attempts,
            )
        output.print_json({"created": result.created, "job": _job_dict(result.job)})


@accounts_app.command("set")
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


@app.command()
def loop(
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    gateway: Annotated[
        str | None, typer.Option("--gateway", help="stripe (default) or simulated.")
    ] = None,
    interval: Annotated[
        float | None, typer.Option("--interval", help="Seconds between ticks (300).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Transfers claimed at once (100).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Transfers in flight at once (8).")
    ] = None,
    admin_addr: Annotated[
        str | None,
        typer.Option("--admin-addr", help="host:port of the admin HTTP server, or off."),
    ] = None,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Run the worker: take settlements, pay due transfers, every interval, until stopped."""
    with conventions.exit_codes():
        settings = conventions.settings_from(
            gateway=gateway,
            interval_seconds=interval,
            batch_size=batch_size,
            concurrency=concurrency,
            admin_addr=admin_addr,
            database_url=database_url,
        )
        logs.configure()
        metrics = metrics_.Metrics()
        bootstrap.require_gateway_settings(settings)
        if settings.webhook_addr is not None:
            bootstrap.require_webhook_settings(settings)
        code = _run_loop(settings, metrics, once=once)
    raise typer.Exit(code)


def _run_loop(settings: settings_.Settings, metrics: metrics_.Metrics, *, once: bool) -> int:
    clock = clock_.SystemClock()
    worker = bootstrap.worker_settings(settings)
    with bootstrap.open_database(settings) as db:
        bootstrap.require_current_schema(db)
        # Every worker of the fleet takes its Stripe requests from one schedule.
        gateway = bootstrap.build_gateway(settings, metrics=metrics, limiter=db.rate_limiter)
        # Claims track the budget the gateway sends under (the simulated one has none).
        limiter = None if settings.gateway is settings_.GatewayKind.SIMULATED else db.rate_limiter
        # Claim tokens name the worker holding them: host and process.
        worker_name = f"{socket.gethostname()}:{os.getpid()}"

        def one_tick(stop: threading.Event) -> models.RunReport:
            def take_inbox(report: models.RunReport) -> models.RunReport:
                taken = intake.take_settlements(
                    inbox=db.inbox,
                    store=db.store,
                    now=clock.now(),
                    max_attempts=settings.max_attempts,
                )
                return attrs.evolve(
                    report,
                    settlements_accepted=taken.accepted,
                    settlements_rejected=taken.rejected,
                )

            return tick.run_tick(
                store=db.store,
                directory=db.directory,
                gateway=gateway,
                clock=clock,
                settings=worker,
                stop=stop,
                before_claiming=take_inbox,
                limiter=limiter,
                worker=worker_name,
            )

        def observe_queue() -> None:
            pause = db.store.pause_state()
            registry.update(pause=pause)
            metrics.observe_queue(db.store.transfer_counts(), db.store.queue_depth(), pause)

        registry = runner.Registry(interval_seconds=settings.interval_seconds)
        loop_runner = runner.Runner(
            tick=one_tick,
            interval_seconds=settings.interval_seconds,
            clock=clock,
            registry=registry,
            metrics=metrics,
            observe_queue=observe_queue,
            tick_budget=worker.batch_size * worker.max_batches,
        )
        receiver = None
        if settings.webhook_addr is not None:  # one process for a small installation
            receiver = bootstrap.build_webhook_receiver(
                settings, db, address=settings.webhook_addr, clock=clock
            )
        server = None
        if settings.admin_addr is not None:
            server = admin.AdminServer(settings.admin_addr, registry, metrics, ready=db.ping)
            server.start()
            output.note(
                f"admin endpoints on http://{server.bound}/ (healthz, readyz, admin/jobs, metrics)"
            )

        def stop(signum: int, _frame: object) -> None:
            output.note(f"received {signal.Signals(signum).name}: finishing in-flight transfers")
            loop_runner.stop.set()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            if receiver is not None:
                receiver.start()
                output.note(f"Stripe webhooks on {receiver.url}")
            output.note(f"payout-core loop on {db.shown_as}")
            if once:
                report = loop_runner.run_once()
                if report.halted_reason:
                    output.error(f"halted: {report.halted_reason}")
                elif report.error:
                    output.error(f"tick failed: {report.error}")
                return 0 if report.succeeded else conventions.EXIT_FAILURE
            loop_runner.run_forever()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if server is not None:
                server.close()
            if receiver is not None:
                receiver.close()


@webhooks_app.command("serve")
def webhooks_serve(
    webhook_addr: Annotated[
        str | None,
        typer.Option(
            "--webhook-addr",
            help="host:port to listen on (default $PAYOUT_WEBHOOK_ADDR, else "
            "127.0.0.1:9109; port 0 picks a free one).",
        ),
    ] = None,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Receive Stripe's signed webhook events on /stripe/webhooks, until stopped.

    Each event is verified with STRIPE_WEBHOOK_SECRET (400 and nothing written
    otherwise), stored once by its id, answered 200, then applied: every
    reversal a transfer.reversed or transfer.updated event reports is booked once.
    """
    from payout_cli import webhooks as webhooks_  # noqa: PLC0415 - loads the stripe SDK

    with conventions.exit_codes():
        settings = conventions.settings_from(webhook_addr=webhook_addr, database_url=database_url)
        bootstrap.require_webhook_settings(settings)
        logs.configure()
        stopped = threading.Event()
        with bootstrap.open_database(settings) as db:
            bootstrap.require_current_schema(db)
            receiver = bootstrap.build_webhook_receiver(
                settings,
                db,
                address=settings.webhook_addr or webhooks_.DEFAULT_ADDR,
                clock=clock_.SystemClock(),
            )

            def stop(signum: int, _frame: object) -> None:
                output.note(f"received {signal.Signals(signum).name}: stopping")
                stopped.set()

            previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
            receiver.start()
            try:
                output.note(f"Stripe webhooks on {receiver.url}")
                stopped.wait()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                receiver.close()


def main() -> None:
    app()


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Jobs and transfers by state, stuck and failed transfers with reasons, the last runs."""
    with conventions.exit_codes():
        settings = conventions.settings_from(database_url=database_url)
        now = clock_.SystemClock().now()
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
            "jobs": [_job_dict(j) for j in shown.jobs],
            "needs_operator_transfers": [_transfer_dict(t) for t in shown.needs_operator],
            "failed_transfers": [_transfer_dict(t) for t in shown.failed],
            "retrying_transfers": [_transfer_dict(t) for t in shown.retrying],
            "stuck_transfers": [_transfer_dict(t) for t in shown.stuck],
            "recent_runs": [runner.report_as_dict(r) for r in shown.runs],
            "operator_actions": [_action_dict(a) for a in shown.actions],
        }
        if as_json:
            output.print_json(data)
            return
        _print_status(data)


def _action_dict(action: models.OperatorAction) -> dict[str, Any]:
    return {
        "action": action.action.value,
        "actor": action.actor,
        "reason": action.reason,
        "transfer_id": action.transfer_id,
        "before": action.before,
        "after": action.after,
        "created_at": action.created_at.isoformat(),
    }


def _actions_table(title: str, actions: list[dict[str, Any]]) -> Table:
    return output.table(
        title,
        ["when", "action", "by", "why", "transfer"],
        [
            [a["created_at"], a["action"], a["actor"], a["reason"], a["transfer_id"] or ""]
            for a in actions
        ],
    )


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
        con.print(_actions_table("Latest operator actions", data["operator_actions"]))


Actor = Annotated[
    str, typer.Option("--actor", help="Who does this (a name the audit trail keeps).")
]
Reason = Annotated[str, typer.Option("--reason", help="Why (the audit trail keeps it).")]


@app.command()
def pause(actor: Actor, reason: Reason, database_url: conventions.DatabaseUrl = None) -> None:
    """Pause the whole fleet: no worker claims a transfer from its next claim on.

    Transfers in flight finish and are recorded. Workers keep serving their
    admin endpoints and taking settlements from the inbox.
    """
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            state = control.pause(
                db.store, actor=actor, reason=reason, now=clock_.SystemClock().now()
            )
        output.note(f"the fleet is paused by {state.actor}: {state.reason}")


@app.command()
def resume(actor: Actor, reason: Reason, database_url: conventions.DatabaseUrl = None) -> None:
    """End a pause: workers claim transfers again from their next tick."""
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            control.resume(db.store, actor=actor, reason=reason, now=clock_.SystemClock().now())
        output.note(f"the fleet is resumed by {actor.strip()}")


def _lookup_dict(found: outcomes.LookupOutcome | None) -> dict[str, Any]:
    match found:
        case None:
            return {"asked": False}
        case outcomes.Found(stripe_transfer_id=stripe_id):
            return {"asked": True, "found": True, "stripe_transfer_id": stripe_id}
        case outcomes.NotFound():
            return {"asked": True, "found": False}
        case _:
            return {"asked": True, "error": f"{found.code}: {found.message}"}


@transfers_app.command("show")
def transfers_show(
    transfer_id: Annotated[str, typer.Argument(help="The payout transfer's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """The transfer, its keys, its ledger rows, the actions on it, and what Stripe holds."""
    with conventions.exit_codes():
        if (problem := validation.transfer_id_problem(transfer_id)) is not None:
            raise conventions.BadInput(problem.message)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            gateway = bootstrap.stripe_if_configured(settings, limiter=db.rate_limiter)
            shown = inspection.view_transfer(db.store, transfer_id, gateway=gateway)
        if shown is None:
            raise conventions.BadInput(f"no payout transfer {transfer_id!r}")
        data: dict[str, Any] = {
            "transfer": _transfer_dict(shown.transfer),
            "keys": [attrs.asdict(k) for k in shown.keys],
            "ledger": [
                {
                    "entry_type": e.entry_type.value,
                    "direction": e.direction.value,
                    "amount_cents": e.amount_cents,
                    "attempt_number": e.attempt_number,
                    "stripe_transfer_id": e.stripe_transfer_id,
                    "failure_code": e.failure_code,
                    "created_at": e.created_at.isoformat(),
                }
                for e in shown.ledger
            ],
            "actions": [_action_dict(a) for a in shown.actions],
            "reversals": [
                {
                    "key": r.idempotency_key,
                    "amount_cents": r.amount_cents,
                    "status": r.status.value,
                    "stripe_reversal_id": r.stripe_reversal_id,
                    "failure_code": r.failure_code,
                    "actor": r.actor,
                    "reason": r.reason,
                    "created_at": r.created_at.isoformat(),
                }
                for r in shown.reversals
            ],
            "at_stripe": _lookup_dict(shown.at_stripe),
        }
        if as_json:
            output.print_json(data)
            return
        con = output.console
        t = data["transfer"]
        con.print(
            output.table(
                f"Transfer {t['id']}",
                ["field", "value"],
                [[k, "" if v is None else str(v)] for k, v in t.items()],
            )
        )
        con.print(
            output.table(
                "Idempotency keys (one per attempt that ended; the current one last)",
                ["generation", "key", "current"],
                [[k["generation"], k["key"], "yes" if k["current"] else ""] for k in data["keys"]],
            )
        )
        con.print(
            output.table(
                "Ledger",
                ["when", "entry", "amount", "attempt", "stripe transfer", "code"],
                [
                    [
                        e["created_at"], e["entry_type"], e["amount_cents"], e["attempt_number"],
                        e["stripe_transfer_id"] or "", e["failure_code"] or "",
                    ]
                    for e in data["ledger"]
                ],
            )
        )  # fmt: skip
        if data["actions"]:
            con.print(_actions_table("Operator actions on this transfer", data["actions"]))
        if data["reversals"]:
            con.print(
                output.table(
                    "Reversals asked by payout-core (sending: Stripe's answer not yet known)",
                    ["when", "key", "amount", "status", "stripe reversal", "by", "why"],
                    [
                        [
                            r["created_at"], r["key"], r["amount_cents"], r["status"],
                            r["stripe_reversal_id"] or r["failure_code"] or "", r["actor"],
                            r["reason"],
                        ]
                        for r in data["reversals"]
                    ],
                )
            )  # fmt: skip
        stripe = data["at_stripe"]
        if not stripe["asked"]:
            con.print("Stripe not asked: no STRIPE_API_KEY (or the simulated gateway).")
        elif "error" in stripe:
            con.print(f"Stripe could not be asked: {logs.scrub(stripe['error'])}", markup=False)
        elif stripe["found"]:
            con.print(f"At Stripe: {stripe['stripe_transfer_id']}", markup=False)
        else:
            con.print("At Stripe: no transfer for this payout.")


def _stripe_for_operator(
    settings: settings_.Settings, db: bootstrap.Database
) -> stripe_adapter.StripeGateway:
    return bootstrap.build_operator_stripe(settings, limiter=db.rate_limiter)


@transfers_app.command("resolve")
def transfers_resolve(
    transfer_id: Annotated[str, typer.Argument(help="The payout transfer's id.")],
    actor: Actor,
    reason: Reason,
    found: Annotated[
        str | None,
        typer.Option("--found", help="Stripe holds this transfer (tr_...) for it: completed."),
    ] = None,
    absent: Annotated[
        bool,
        typer.Option("--absent", help="Stripe holds none for it: failed (it may be reissued)."),
    ] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Close a transfer that needs an operator, after checking the claim at Stripe.

    --found checks that Stripe's transfer exists and is this one's payment
    (amount, currency, pinned destination, group, metadata.payout_transfer_id);
    --absent checks that Stripe holds none and no send can still be running.
    Either refuses, writing nothing, when Stripe disagrees.
    """
    with conventions.exit_codes():
        if (found is None) == (not absent):
            raise conventions.BadInput("give exactly one of --found tr_... and --absent")
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        if found is not None:
            transfer_actions.validate_stripe_transfer_id(found)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            records = _stripe_for_operator(settings, db)
            now = clock_.SystemClock().now()
            if found is not None:
                closed = transfer_actions.resolve_found(
                    db.store, records, transfer_id, found, actor=actor, reason=reason, now=now
                )
            else:
                closed = transfer_actions.resolve_absent(
                    db.store,
                    records,
                    transfer_id,
                    actor=actor,
                    reason=reason,
                    now=now,
                    margin=attempt.send_margin(timedelta(seconds=settings.stripe_timeout_seconds)),
                )
        output.note(f"transfer {closed.id} is {closed.status} (resolved by {actor.strip()})")


@transfers_app.command("reissue")
def transfers_reissue(
    transfer_id: Annotated[str, typer.Argument(help="The failed_terminal transfer's id.")],
    actor: Actor,
    reason: Reason,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Pay a failed_terminal winner again, once the cause is fixed: a new transfer
    for the same contest and user, linked to the failed one, under a new
    idempotency key. Refused while Stripe holds any transfer for the failed one."""
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            records = _stripe_for_operator(settings, db)
            new = transfer_actions.reissue(
                db.store,
                records,
                transfer_id,
                actor=actor,
                reason=reason,
                now=clock_.SystemClock().now(),
                new_id=lambda: str(uuid.uuid4()),
            )
        output.console.print(new.id, markup=False)
        output.note(
            f"transfer {transfer_id} is reissued as {new.id}; the next tick pays it "
            f"and its job stays open until then"
        )


@transfers_app.command("reverse")
def transfers_reverse(
    transfer_id: Annotated[str, typer.Argument(help="The completed payout transfer's id.")],
    actor: Actor,
    reason: Reason,
    amount: Annotated[
        str | None,
        typer.Option(
            "--amount",
            help="Minor units (cents) to reverse, 1 to 99999999 (default: all that is left).",
            show_default=False,
        ),
    ] = None,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Reverse (part of) a completed transfer at Stripe: money comes back.

    One Stripe reversal under the key payout-reversal:<transfer>:<n>, written
    ahead as an intent and booked as a payout_reversed credit with an audit
    row. If Stripe's answer is lost, run the same command again: it resolves
    that reversal (never reversing twice) instead of asking for a new one.
    """
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        # The one amount rule, as for a settlement's amounts (1e2 is 100).
        cents = None if amount is None else validation.parse_amount(amount, "--amount")
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            stripe = _stripe_for_operator(settings, db)
            result = reversals.reverse(
                db.store,
                stripe,
                transfer_id,
                amount_cents=cents,
                actor=actor,
                reason=reason,
                now=clock_.SystemClock().now(),
                new_id=lambda: str(uuid.uuid4()),
            )
        r = result.reversal
        what = "resolved the reversal in doubt" if result.resolved_earlier else "asked"
        money = f"{r.amount_cents} {r.currency}"
        if r.status is models.ReversalStatus.COMPLETED:
            output.console.print(r.stripe_reversal_id, markup=False)
            output.note(
                f"{what}: {money} of transfer {r.transfer_id} reversed at Stripe as "
                f"{r.stripe_reversal_id}; {result.amounts} {r.currency}"
            )
            return
        if r.status is models.ReversalStatus.FAILED:
            output.error(
                f"{what}: Stripe reversed nothing under {r.idempotency_key} "
                f"({r.failure_code}: {r.failure_message}); nothing was booked"
            )
        else:
            output.error(
                f"{what}: Stripe's answer to {r.idempotency_key} ({money}) is not known; the "
                "reversal may exist. Run the same command again to resolve it: it resends "
                "the same key, which can never reverse twice."
            )
    raise typer.Exit(conventions.EXIT_FAILURE)


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


@app.command(name="reconcile")
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


@app.command()
def demo(
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the simulated faults.")
    ] = None,
) -> None:
    """Pay 50 winners through a simulated Stripe with faults, on an embedded PostgreSQL."""
    from payout_cli import demo as demo_  # noqa: PLC0415 - rich progress only loads here

    with conventions.exit_codes():
        code = demo_.run_demo(seed=seed)
    raise typer.Exit(code)
