r"""How fast one worker process pays transfers on PostgreSQL. Prints figures; asserts nothing.

    python benchmarks/throughput.py --transfers 5000 --concurrency 8 --latency-ms 0
    PAYOUT_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        python benchmarks/throughput.py

It creates a scratch database next to the one in PAYOUT_BENCH_DATABASE_URL (the
embedded PostgreSQL when unset), schedules settlements of ``--job-size`` winners
(100 by default), then
runs ticks with the simulated gateway until every transfer is terminal. With
``--latency-ms`` the gateway sleeps like a real Stripe call, which shows how
concurrency hides network time. The scratch database is dropped at the end.

It runs the tick in this process, with no command, no fake Stripe and no
second worker: the smallest measure of the engine, for comparing two trees
side by side (``compare.py``). ``bench.py`` measures a fleet as an operator
runs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import attrs
from bench import scratch_database

from payout_adapters import embedded
from payout_adapters.memory import InMemoryAccountDirectory
from payout_cli import bootstrap
from payout_cli import settings as settings_
from payout_core import models
from payout_core.services import scheduling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--job-size", type=int, default=100, help="winners per settlement (one job each)"
    )
    args = parser.parse_args()

    base = os.environ.get("PAYOUT_BENCH_DATABASE_URL") or embedded.start().url
    with scratch_database(base) as url:
        settings = settings_.Settings(
            database_url=url,
            gateway=settings_.GatewayKind.SIMULATED,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
        )
        bootstrap.migrate(settings)
        with bootstrap.open_database(settings) as db:
            run(settings, db, args)


def run(settings: settings_.Settings, db: bootstrap.Database, args: argparse.Namespace) -> None:
    latency = args.latency_ms / 1000
    worker = bootstrap.worker(
        settings,
        db,
        gateway=bootstrap.simulated_gateway(clock=bootstrap.clock(), latency=(latency, latency)),
    )
    # The accounts in memory and one tick for the whole run: the engine alone,
    # measured as earlier trees measure it (compare.py runs both side by side).
    directory = InMemoryAccountDirectory()
    worker = attrs.evolve(
        worker,
        directory=directory,
        settings=attrs.evolve(worker.settings, max_batches=1_000_000),
    )

    started = time.perf_counter()
    for s in range(0, args.transfers, args.job_size):
        winners = tuple(
            models.Winner(user_id=f"u{n}", amount_cents=100 + n)
            for n in range(s, min(s + args.job_size, args.transfers))
        )
        for w in winners:
            directory.set_account(w.user_id, f"acct_{w.user_id}")
        scheduling.schedule_payout_for_settlement(
            store=db.store,
            settlement=models.Settlement(
                settlement_id=f"bench-{s}", contest_id="bench", currency="usd", winners=winners
            ),
            now=worker.clock.now(),
        )
    scheduled = time.perf_counter() - started

    tick_seconds: list[float] = []
    paid = 0
    started = time.perf_counter()
    while paid < args.transfers:
        t0 = time.perf_counter()
        report = worker.tick()
        tick_seconds.append(time.perf_counter() - t0)
        if report.claimed == 0:
            break
        paid += report.completed
    elapsed = time.perf_counter() - started

    print(
        f"scheduled {args.transfers} transfers in {scheduled:.2f} s "
        f"({args.transfers / scheduled:,.0f}/s)"
    )
    print(
        f"paid {paid} transfers in {elapsed:.2f} s: {paid / elapsed:,.0f} transfers/s "
        f"(concurrency {args.concurrency}, batch {args.batch_size}, "
        f"gateway latency {args.latency_ms:g} ms, {len(tick_seconds)} tick(s), "
        f"median tick {statistics.median(tick_seconds):.2f} s)"
    )
    print(
        f"per transfer: {1000 * elapsed / max(paid, 1):.2f} ms of wall time "
        "(claim share + gateway call + outcome transaction)"
    )


if __name__ == "__main__":
    main()
