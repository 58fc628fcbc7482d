"""``payout-core demo``: a whole payout on an embedded PostgreSQL and a simulated Stripe.

It seeds a settlement of 50 winners (one without a connected account), runs
ticks until every transfer is terminal while the simulated gateway loses
responses, answers 500 and rate-limits, then prints what happened. Nothing
here is special-cased for the demo except short retry delays: it is the same
scheduling service, the same ticks and the same PostgreSQL store as production.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from payout_cli import bootstrap, conventions, logs, output
from payout_core import models, reconcile
from payout_core.services import scheduling

if TYPE_CHECKING:
    from payout_adapters.memory import gateway as simulated

__all__ = ["demo", "run_demo"]

WINNERS = 50
DEADLINE_SECONDS = 25.0


def demo(
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the simulated faults.")
    ] = None,
) -> None:
    """Pay 50 winners through a simulated Stripe with faults, on an embedded PostgreSQL."""
    with conventions.exit_codes():
        code = run_demo(seed=seed)
    raise typer.Exit(code)


def _seed(db: bootstrap.Database, run: str) -> models.Settlement:
    winners = []
    for n in range(1, WINNERS + 1):
        user = f"demo-{run}-user-{n:02d}"
        # Prizes fall with the rank: 500.00 for the first, a few dollars for the last.
        winners.append(models.Winner(user_id=user, amount_cents=max(50_000 // n, 500)))
        if n != WINNERS:  # the last winner never connected a Stripe account
            db.directory.set_account(user, f"acct_demo{run}{n:02d}")
    return models.Settlement(
        settlement_id=f"demo-settlement-{run}",
        contest_id=f"demo-contest-{run}",
        currency="usd",
        winners=tuple(winners),
    )


def run_demo(*, seed: int | None = None) -> int:
    """Run the demo; 0 when every transfer ended terminal and the ledger reconciles."""
    # The progress bar's module takes a while to load; only the demo needs it.
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    # The progress bar and the summary say what happens; logs only for errors.
    logs.configure(level=logging.ERROR)
    run = uuid.uuid4().hex[:8]
    output.note("payout-core demo: simulated Stripe (NO MONEY MOVES), embedded PostgreSQL")
    with bootstrap.open_demo_database() as db:
        worker, gateway = bootstrap.demo_worker(db, seed=seed if seed is not None else int(run, 16))
        output.note(f"database: {db.shown_as}")
        settlement = _seed(db, run)
        job = scheduling.schedule_payout_for_settlement(
            store=db.store, settlement=settlement, now=worker.clock.now()
        ).job
        output.note(
            f"scheduled job {job.id}: {job.total_transfers} winners, "
            f"{job.total_amount_cents / 100:,.2f} {job.currency.upper()}"
        )
        started = time.monotonic()
        ticks = 0
        with Progress(
            TextColumn("paying winners"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=output.console,
            transient=False,
        ) as progress:
            bar = progress.add_task("pay", total=job.total_transfers, detail="")
            while True:
                report = worker.tick(threading.Event())
                ticks += 1
                current = db.store.get_job(job.id) or job
                done = current.completed_count + current.failed_count
                progress.update(
                    bar,
                    completed=done,
                    detail=f"tick {ticks}: {report.completed} paid, {report.retried} retrying",
                )
                if current.status is models.JobStatus.COMPLETE:
                    break
                if time.monotonic() - started > DEADLINE_SECONDS:
                    output.error("the demo did not finish in time")
                    return 1
                time.sleep(0.2)
        transfers = db.store.transfers_of(job.id)
        ledger = db.store.ledger(job_id=job.id)
    mismatches = [str(m) for m in reconcile.check_job(current, transfers, ledger)]
    mismatches += _paid_once(transfers, gateway)
    _summary(current, transfers, ledger, f"{ticks} ticks, {time.monotonic() - started:.1f} s")
    for m in mismatches:
        output.error(f"MISMATCH {m}")
    if not mismatches:
        output.console.print(
            f"simulated Stripe holds exactly one transfer for each of the "
            f"{current.completed_count} completed payouts, and none for the "
            f"{current.failed_count} failed one(s); the ledger reconciles."
        )
    output.console.print(
        "\nTo run the same against Stripe's test mode:\n"
        "  export STRIPE_API_KEY=sk_test_...            # a test-mode secret key\n"
        "  payout-core migrate\n"
        "  payout-core accounts set USER_ID acct_...    # each winner's test connected account\n"
        "  payout-core schedule settlement.json\n"
        "  payout-core loop --once                      # or `loop` to keep running\n"
        "  payout-core status && payout-core reconcile",
        markup=False,
    )
    return 0 if not mismatches else 1


def _paid_once(
    transfers: list[models.PayoutTransfer], gateway: simulated.SimulatedGateway
) -> list[str]:
    """Each completed transfer has exactly its one transfer at (simulated) Stripe,
    and every other has none."""
    found = []
    for t in transfers:
        at_stripe = [r.id for r in gateway.transfers_for(t.id)]
        expected = [t.stripe_transfer_id] if t.stripe_transfer_id else []
        if at_stripe != expected:
            found.append(f"transfer {t.id}: Stripe holds {at_stripe}, payout-core {expected}")
    return found


def _summary(
    job: models.PayoutJob,
    transfers: list[models.PayoutTransfer],
    ledger: list[models.LedgerEntry],
    took: str,
) -> None:
    by_status: dict[str, list[models.PayoutTransfer]] = {}
    for t in transfers:
        by_status.setdefault(t.status.value, []).append(t)
    output.console.print(
        output.table(
            f"Job {job.id} ({took})",
            ["status", "transfers", "amount", "attempts"],
            [
                [
                    status,
                    len(ts),
                    f"{sum(t.amount_cents for t in ts) / 100:,.2f} {job.currency.upper()}",
                    sum(t.attempt_count for t in ts),
                ]
                for status, ts in sorted(by_status.items())
            ],
        )
    )
    for t in by_status.get("failed_terminal", []):
        output.console.print(f"  failed: {t.user_id}: {t.failure_code} ({t.failure_message})")
    kinds: dict[str, tuple[int, int]] = {}
    for row in ledger:
        n, total = kinds.get(row.entry_type.value, (0, 0))
        kinds[row.entry_type.value] = (n + 1, total + row.amount_cents)
    output.console.print(
        output.table(
            "Ledger",
            ["entry type", "rows", "amount"],
            [[k, n, f"{total / 100:,.2f}"] for k, (n, total) in sorted(kinds.items())],
        )
    )
