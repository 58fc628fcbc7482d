"""The long-running commands: ``loop`` (the worker, with its admin server and,
on a small installation, the webhook receiver) and ``webhooks serve``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from payout_cli import admin, bootstrap, conventions, logs, output, runner
from payout_cli import metrics as metrics_
from payout_cli import settings as settings_

__all__ = ["loop", "webhooks_serve"]


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
    with bootstrap.open_database(settings) as db:
        bootstrap.require_current_schema(db)
        worker = bootstrap.worker(settings, db, metrics=metrics)

        def observe_queue() -> None:
            pause = db.store.pause_state()
            registry.update(pause=pause)
            metrics.observe_queue(db.store.transfer_counts(), db.store.queue_depth(), pause)

        registry = runner.Registry(interval_seconds=settings.interval_seconds)
        loop_runner = runner.Runner(
            tick=worker.tick,
            interval_seconds=settings.interval_seconds,
            clock=worker.clock,
            registry=registry,
            metrics=metrics,
            observe_queue=observe_queue,
            tick_budget=worker.settings.batch_size * worker.settings.max_batches,
        )
        receiver = None
        if settings.webhook_addr is not None:  # one process for a small installation
            receiver = bootstrap.build_webhook_receiver(
                settings, db, address=settings.webhook_addr, clock=worker.clock
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
                clock=bootstrap.clock(),
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
