"""How long ``reconcile`` takes on a long history, and how much memory it holds.

Pays ``--transfers`` winners (in contests of ``--job-size``) through the real
worker code on a scratch PostgreSQL database, against the simulated Stripe in
this process, then reconciles the whole history both ways and prints:

* the database side: every job's invariants, page by page (seconds, transfers/s);
* the Stripe side: the listing of every contest's group, matched (seconds), and
  the number of list requests it made, which at the fleet's read budget is what
  a real run waits for (requests / ``PAYOUT_STRIPE_RATE_LIMIT`` seconds);
* the peak RSS growth of the process during the reconciliation.

    python benchmarks/reconcile_bench.py --transfers 100000 --job-size 1000
    python benchmarks/reconcile_bench.py --transfers 2000 --job-size 100   # smoke
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Iterator

import attrs
from bench import scratch_database

from payout_adapters import embedded
from payout_adapters.memory import SimulatedGateway
from payout_cli import bootstrap
from payout_cli import settings as settings_
from payout_core import models, outcomes
from payout_core.services import reconciliation, scheduling

__all__ = ["main"]


class _CountingRecords:
    """The simulated Stripe's records, counting the list requests (pages)."""

    def __init__(self, inner: SimulatedGateway, page_size: int) -> None:
        self.inner = inner
        self.page_size = page_size
        self.listed = 0
        self.retrieved = 0

    def list_transfers(self, query: outcomes.TransferQuery) -> Iterator[outcomes.StripeTransfer]:
        self.listed += 1  # the first page, even an empty one
        for n, transfer in enumerate(self.inner.list_transfers(query)):
            if n and n % self.page_size == 0:
                self.listed += 1
            yield transfer

    def retrieve_transfer(self, stripe_transfer_id: str) -> outcomes.RetrieveOutcome:
        self.retrieved += 1
        return self.inner.retrieve_transfer(stripe_transfer_id)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pay_history(url: str, transfers: int, job_size: int) -> SimulatedGateway:
    """Pay ``transfers`` winners with the worker ``loop`` runs, through a
    simulated Stripe; that Stripe, which now holds the history."""
    settings = settings_.Settings(
        database_url=url,
        gateway=settings_.GatewayKind.SIMULATED,
        batch_size=500,
        concurrency=8,
        lease_seconds=300,
    )
    bootstrap.migrate(settings)
    with bootstrap.open_database(settings, max_size=12) as db:
        with db.pool.connection() as conn:
            conn.execute(
                "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) "
                "SELECT 'u' || n, 'acct_u' || n FROM generate_series(0, %s - 1) AS n",
                (transfers,),
            )
        gateway = bootstrap.simulated_gateway(clock=bootstrap.clock())
        worker = bootstrap.worker(settings, db, gateway=gateway)
        # One tick pays all that is due: the history, not the loop's pace, is measured.
        worker = attrs.evolve(worker, settings=attrs.evolve(worker.settings, max_batches=1_000_000))
        for first in range(0, transfers, job_size):
            last = min(first + job_size, transfers)
            scheduling.schedule_payout_for_settlement(
                store=db.store,
                settlement=models.Settlement(
                    settlement_id=f"history-{first}",
                    contest_id=f"history-{first}",
                    currency="usd",
                    winners=tuple(
                        models.Winner(user_id=f"u{n}", amount_cents=100 + n % 10_000)
                        for n in range(first, last)
                    ),
                ),
                now=worker.clock.now(),
            )
        while db.store.queue_depth().due:
            worker.tick()
    return gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("PAYOUT_BENCH_DATABASE_URL"))
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--job-size", type=int, default=100)
    parser.add_argument("--read-rate", type=float, default=20.0, help="the fleet's read budget")
    args = parser.parse_args()
    base = args.database_url or embedded.start().url
    with scratch_database(base) as url:
        started = time.perf_counter()
        gateway = pay_history(url, args.transfers, args.job_size)
        print(
            f"history: {args.transfers:,} transfers in contests of {args.job_size:,} "
            f"paid in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        with bootstrap.open_database(settings_.Settings(database_url=url), max_size=2) as db:
            store = db.store
            records = _CountingRecords(gateway, page_size=100)
            stages: dict[str, float] = {}
            before_mb = _peak_rss_mb()
            started = time.perf_counter()

            def progress(p: reconciliation.Progress) -> None:
                stages[p.stage] = time.perf_counter()

            result = reconciliation.reconcile_all(store, records, progress=progress)
            done = time.perf_counter()
    database_s = stages["database"] - started
    stripe_s = done - stages["database"]
    print(f"findings: {len(result.findings)} (expected 0); jobs {result.jobs:,}", flush=True)
    print(
        f"database side: {database_s:.1f} s ({result.transfers / database_s:,.0f} transfers/s)",
        flush=True,
    )
    print(
        f"Stripe side, matched in process: {stripe_s:.1f} s; {records.listed:,} list requests "
        f"and {records.retrieved} retrieves = {records.listed / args.read_rate:,.0f} s "
        f"at a read budget of {args.read_rate:g}/s",
        flush=True,
    )
    print(f"peak RSS growth during reconcile: {_peak_rss_mb() - before_mb:,.0f} MB", flush=True)
    if result.findings:
        sys.exit(1)


if __name__ == "__main__":
    main()
