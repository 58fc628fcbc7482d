r"""A fleet of ``payout-core loop`` workers paying one batch of winners: figures, no asserts.

    python benchmarks/bench.py run --transfers 600 --workers 4 --latency-ms 200 --rate-limit 20
    python benchmarks/bench.py run --transfers 5000 --gateway simulated --compare
    python benchmarks/bench.py targets            # every target of issue 9, side by side
    python benchmarks/bench.py smoke              # a few seconds; exits 1 unless correct

Each run creates a scratch database next to ``--database-url`` (or
PAYOUT_BENCH_DATABASE_URL; the embedded PostgreSQL when neither is set), seeds
``--transfers`` winners with connected accounts in jobs of ``--job-size``, and
starts ``--workers`` processes of the installed ``payout-core loop``, as an
operator would, each with ``--concurrency`` slots. The gateway is either the
fake Stripe (``tests/fake_stripe``, its own process on loopback, the real
``stripe`` SDK talking to it) answering after ``--latency-ms`` and enforcing
its own limit of ``--stripe-limit`` creates per second, or the simulated
gateway inside each worker (zero latency). ``--rate-limit`` is the fleet's
``PAYOUT_STRIPE_RATE_LIMIT``.

While the workers run, the harness samples, every 50 ms, each worker's claims
(the transfers it holds in ``processing``, from the database, by the worker
named in the claim token) and its resident memory. At the end it reads, from
the database and from the fake Stripe:

- paid per second, from the first payment to the last (start-up excluded), as
  the fake Stripe saw the creates arrive (with the simulated gateway: the
  outcomes' times in the database), and sustained: the middle 90% of them;
- the most creates Stripe received in any one-second window, and its 429s;
- the most transfers one worker held at once, claimed but not finished (an
  upper bound on claimed but not yet sent);
- duplicates: Stripe transfers per payout transfer, ledger rows per transfer;
- peak RSS of a worker, and its RSS when 5,000 had been paid.

``--compare`` runs, on the same server and after the run, the two baselines of
``benchmarks/baselines.py`` at the same size and concurrency (a minimal psycopg
loop doing only the SQL a transfer needs; procrastinate's no-op jobs, from the
``bench`` extra) and prints payout-core's figure as a ratio of each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg

from payout_adapters import embedded
from payout_cli import bootstrap
from payout_cli import settings as settings_
from payout_core import models
from payout_core.services import scheduling

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk_test_bench"
UNLIMITED = 1_000_000.0  # a fleet rate no benchmark reaches: "no limit"
SAMPLE_SECONDS = 0.05


@attrs.frozen(kw_only=True)
class Scenario:
    transfers: int = 1000
    workers: int = 1
    concurrency: int = 8
    latency_ms: float = 0.0
    rate_limit: float | None = None  # the fleet's; None: no limit
    stripe_limit: float | None = None  # the fake Stripe's own, per second
    job_size: int = 1000
    gateway: str = "fake-stripe"  # or "simulated"
    retry_base_seconds: float | None = None  # PAYOUT_RETRY_BASE_SECONDS; None: its default
    timeout_seconds: float = 1800.0

    def describe(self) -> str:
        limit = "none" if self.rate_limit is None else f"{self.rate_limit:g}/s"
        stripe = (
            ""
            if self.gateway == "simulated"
            else f", Stripe {self.latency_ms:g} ms, Stripe limit "
            + ("none" if self.stripe_limit is None else f"{self.stripe_limit:g}/s")
        )
        return (
            f"{self.transfers} transfers in jobs of {self.job_size}, {self.workers} worker(s) x "
            f"concurrency {self.concurrency}, {self.gateway} gateway{stripe}, fleet limit {limit}"
        )


@attrs.frozen(kw_only=True)
class Result:
    scenario: Scenario
    paid: int
    failed: int
    open: int
    seconds: float  # first payment to last
    # Paid per second while the queue was full: the completions from the 5th to
    # the 95th percentile over their time, without the tail of the few
    # transfers a 429 sent back for their retry backoff (30 s at first).
    sustained: float
    stripe_creates: int | None
    stripe_duplicates: int | None
    stripe_429s: int | None
    max_creates_in_a_second: int | None
    ledger_duplicates: int
    max_held_per_worker: int
    peak_rss_mb: float
    rss_at_5000_mb: float | None
    rss_at_end_mb: float
    worker_exits: tuple[int | None, ...]

    @property
    def per_second(self) -> float:
        """Paid per second, first completion to last (start-up excluded)."""
        return (self.paid - 1) / self.seconds if self.seconds > 0 and self.paid > 1 else 0.0

    @property
    def correct(self) -> list[str]:
        """What is wrong with the money, if anything (empty: all paid, once)."""
        problems = []
        if self.open or self.failed:
            problems.append(f"{self.open} open and {self.failed} failed of {self.paid} paid")
        if self.stripe_duplicates:
            problems.append(f"{self.stripe_duplicates} transfers paid twice at Stripe")
        if self.stripe_creates is not None and self.stripe_creates != self.paid:
            problems.append(f"Stripe holds {self.stripe_creates} transfers for {self.paid} paid")
        if self.ledger_duplicates:
            problems.append(f"{self.ledger_duplicates} transfers with two ledger rows")
        if any(code not in (0, -signal.SIGTERM) for code in self.worker_exits):
            problems.append(f"a worker died: exit codes {self.worker_exits}")
        return problems

    def lines(self) -> list[str]:
        out = [
            f"  paid {self.paid} in {self.seconds:.1f} s: {self.per_second:,.1f} transfers/s "
            f"(sustained {self.sustained:,.1f}/s)",
            f"  most held by one worker at once: {self.max_held_per_worker} "
            f"(concurrency {self.scenario.concurrency})",
            f"  worker RSS: peak {self.peak_rss_mb:.0f} MB, at 5,000 paid "
            + ("-" if self.rss_at_5000_mb is None else f"{self.rss_at_5000_mb:.0f} MB")
            + f", at the end {self.rss_at_end_mb:.0f} MB",
        ]
        if self.stripe_creates is not None:
            out.append(
                f"  Stripe: {self.stripe_creates} transfers, {self.stripe_429s} answered 429, "
                f"at most {self.max_creates_in_a_second} creates in any one second"
            )
        problems = self.correct
        out.append("  correct: yes" if not problems else "  NOT CORRECT: " + "; ".join(problems))
        return out


# -- the scratch database and its winners ------------------------------------------------------


@contextlib.contextmanager
def scratch_database(base_url: str) -> Iterator[str]:
    name = f"payout_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(base_url, dbname=name)
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def seed(url: str, scenario: Scenario) -> None:
    """Winners u0..uN with connected accounts, scheduled in jobs of ``job_size``."""
    settings = settings_.Settings(database_url=url)
    bootstrap.migrate(settings)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) "
            "SELECT 'u' || n, 'acct_u' || n FROM generate_series(0, %s - 1) AS n",
            (scenario.transfers,),
        )
    clock = bootstrap.clock()
    with bootstrap.open_database(settings, max_size=2) as db:
        for first in range(0, scenario.transfers, scenario.job_size):
            last = min(first + scenario.job_size, scenario.transfers)
            scheduling.schedule_payout_for_settlement(
                store=db.store,
                settlement=models.Settlement(
                    settlement_id=f"bench-{first}",
                    contest_id=f"bench-{first}",
                    currency="usd",
                    winners=tuple(
                        models.Winner(user_id=f"u{n}", amount_cents=100 + n % 10_000)
                        for n in range(first, last)
                    ),
                ),
                now=clock.now(),
            )


# -- the fake Stripe and the workers -----------------------------------------------------------


@contextlib.contextmanager
def fake_stripe(scenario: Scenario, report: Path) -> Iterator[str]:
    """The fake Stripe in a process of its own; its URL."""
    command = [
        sys.executable,
        "-m",
        "tests.fake_stripe",
        "--latency-ms",
        f"{scenario.latency_ms:g}",
        "--accept-any-account",
        "--api-key",
        FAKE_KEY,
        "--report",
        str(report),
    ]
    if scenario.stripe_limit is not None:
        command += ["--rate-limit", f"{scenario.stripe_limit:g}"]
    process = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the fake Stripe did not start")
        yield str(json.loads(line)["url"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def worker_env(url: str, scenario: Scenario, stripe_url: str | None) -> dict[str, str]:
    rate = UNLIMITED if scenario.rate_limit is None else scenario.rate_limit
    env = {
        **os.environ,
        "PAYOUT_DATABASE_URL": url,
        "PAYOUT_CONCURRENCY": str(scenario.concurrency),
        "PAYOUT_INTERVAL_SECONDS": "0.2",
        "PAYOUT_ADMIN_ADDR": "off",
        "PAYOUT_STRIPE_RATE_LIMIT": f"{rate:g}",
        "PAYOUT_GATEWAY": "simulated" if stripe_url is None else "stripe",
    }
    if stripe_url is not None:
        env |= {"STRIPE_API_KEY": FAKE_KEY, "PAYOUT_STRIPE_API_BASE": stripe_url}
    if scenario.retry_base_seconds is not None:
        env["PAYOUT_RETRY_BASE_SECONDS"] = f"{scenario.retry_base_seconds:g}"
    return env


def rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


@attrs.define
class Samples:
    held: int = 0
    peak_rss: float = 0.0
    rss_at_5000: float | None = None
    rss_last: dict[int, float] = attrs.Factory(dict)


def sample(conn: psycopg.Connection[Any], pids: list[int], samples: Samples) -> int:
    """One sample; how many transfers are still open."""
    rows = conn.execute(
        "SELECT split_part(claim_token, '/', 1), count(*) FROM payout_transfers "
        "WHERE status = 'processing' GROUP BY 1"
    ).fetchall()
    samples.held = max([samples.held, *(n for _w, n in rows)])
    paid, open_ = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), "
        "count(*) FILTER (WHERE status NOT IN ('completed', 'failed_terminal')) "
        "FROM payout_transfers"
    ).fetchone() or (0, 0)
    for pid in pids:
        rss = rss_mb(pid)
        if rss is not None:
            samples.rss_last[pid] = rss
            samples.peak_rss = max(samples.peak_rss, rss)
    if samples.rss_at_5000 is None and paid >= 5000 and samples.rss_last:
        samples.rss_at_5000 = max(samples.rss_last.values())
    return int(open_)


def run(base_url: str, scenario: Scenario) -> Result:
    with scratch_database(base_url) as url, tempfile.TemporaryDirectory() as tmp:
        seed(url, scenario)
        report = Path(tmp) / "stripe.json"
        stripe_url: contextlib.AbstractContextManager[str | None] = (
            contextlib.nullcontext(None)
            if scenario.gateway == "simulated"
            else fake_stripe(scenario, report)
        )
        with stripe_url as stripe:
            exits, samples = run_workers(url, scenario, stripe, Path(tmp))
        stripe_report = json.loads(report.read_text()) if report.exists() else None
        return measure(url, scenario, exits, samples, stripe_report)


def run_workers(
    url: str, scenario: Scenario, stripe_url: str | None, tmp: Path
) -> tuple[tuple[int | None, ...], Samples]:
    command = [str(Path(sys.executable).parent / "payout-core"), "loop"]
    env = worker_env(url, scenario, stripe_url)
    logs = [(tmp / f"worker-{n}.log").open("w") for n in range(scenario.workers)]
    workers = [
        subprocess.Popen(command, env=env, stdout=log, stderr=log)  # noqa: S603
        for log in logs
    ]
    samples = Samples()
    deadline = time.monotonic() + scenario.timeout_seconds
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                if sample(conn, [w.pid for w in workers], samples) == 0:
                    break
                if any(w.poll() is not None for w in workers):
                    break  # a worker died: measure what there is
                time.sleep(SAMPLE_SECONDS)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        exits = tuple(w.wait(timeout=60) for w in workers)
        for log in logs:
            log.close()
    if any(code not in (0, -signal.SIGTERM) for code in exits):
        for n in range(scenario.workers):
            tail = (tmp / f"worker-{n}.log").read_text().splitlines()[-20:]
            print(f"worker {n} exited {exits[n]}; its log ends:", *tail, sep="\n  ")
    return exits, samples


def _pace(times: list[float]) -> tuple[float, float]:
    """Seconds from the first payment to the last, and the payments per second
    of the middle 90% (the 5th to the 95th percentile)."""
    if len(times) < 2:
        return 0.0, 0.0
    low, high = round(0.05 * (len(times) - 1)), round(0.95 * (len(times) - 1))
    middle = times[high] - times[low]
    return times[-1] - times[0], (high - low) / middle if middle > 0 else 0.0


def measure(
    url: str,
    scenario: Scenario,
    exits: tuple[int | None, ...],
    samples: Samples,
    stripe: dict[str, Any] | None,
) -> Result:
    with psycopg.connect(url) as conn:
        paid, failed, open_ = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "count(*) FILTER (WHERE status = 'failed_terminal'), "
            "count(*) FILTER (WHERE status NOT IN ('completed', 'failed_terminal')) "
            "FROM payout_transfers"
        ).fetchone() or (0, 0, 0)
        (ledger_duplicates,) = conn.execute(
            "SELECT count(*) FROM (SELECT transfer_id FROM payout_ledger "
            "GROUP BY transfer_id HAVING count(*) > 1) AS d"
        ).fetchone() or (0,)
        # When each winner was paid: as Stripe saw it (the arrival of each
        # create that made a transfer), or, with the simulated gateway, the
        # outcome's time in the database (the attempt's send time, which is the
        # claim's at zero latency).
        if stripe is not None:
            times = [float(t) for t in stripe["created_at"]]
        else:
            times = [
                t.timestamp()
                for (t,) in conn.execute(
                    "SELECT updated_at FROM payout_transfers WHERE status = 'completed' ORDER BY 1"
                )
            ]
    seconds, sustained = _pace(times)
    return Result(
        scenario=scenario,
        paid=paid,
        failed=failed,
        open=open_,
        seconds=seconds,
        sustained=sustained,
        stripe_creates=None if stripe is None else stripe["transfers"],
        stripe_duplicates=None if stripe is None else stripe["duplicated_payouts"],
        stripe_429s=None if stripe is None else stripe["rate_limited"],
        max_creates_in_a_second=None if stripe is None else stripe["max_creates_in_one_second"],
        ledger_duplicates=ledger_duplicates,
        max_held_per_worker=samples.held,
        peak_rss_mb=samples.peak_rss,
        rss_at_5000_mb=samples.rss_at_5000,
        rss_at_end_mb=max(samples.rss_last.values(), default=0.0),
        worker_exits=exits,
    )


# -- the baselines -----------------------------------------------------------------------------


@attrs.frozen
class Baselines:
    minimal: float  # per second
    procrastinate: float

    def lines(self, ours: float) -> list[str]:
        return [
            f"  minimal psycopg loop: {self.minimal:,.1f}/s; "
            f"payout-core at {ours / self.minimal:.2f} of it",
            f"  procrastinate no-op jobs: {self.procrastinate:,.1f}/s; "
            f"payout-core at {ours / self.procrastinate:.2f} times it",
        ]


def baseline_figures(base_url: str, scenario: Scenario) -> Baselines:
    """The two baselines at ``scenario``'s size and concurrency, each on a
    scratch database of the same server."""
    import baselines  # noqa: PLC0415 - procrastinate (the bench extra) only when asked

    with scratch_database(base_url) as url:
        bootstrap.migrate(settings_.Settings(database_url=url))
        minimal = baselines.minimal_loop(
            url,
            transfers=scenario.transfers,
            concurrency=scenario.concurrency,
            job_size=scenario.job_size,
        )
    with scratch_database(base_url) as url:
        noop = baselines.procrastinate_noop(
            url, jobs=scenario.transfers, concurrency=scenario.concurrency
        )
    return Baselines(minimal=minimal.per_second, procrastinate=noop.per_second)


# -- the command -------------------------------------------------------------------------------


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        transfers=args.transfers,
        workers=args.workers,
        concurrency=args.concurrency,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        stripe_limit=args.stripe_limit,
        job_size=args.job_size,
        gateway=args.gateway,
    )


def report(result: Result) -> None:
    print(result.scenario.describe(), flush=True)
    for line in result.lines():
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["run", "targets", "smoke"], nargs="?", default="run")
    parser.add_argument("--database-url", default=os.environ.get("PAYOUT_BENCH_DATABASE_URL"))
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="the fleet's; default none")
    parser.add_argument("--stripe-limit", type=float, default=None, help="the fake Stripe's")
    parser.add_argument("--job-size", type=int, default=1000)
    parser.add_argument("--gateway", choices=["fake-stripe", "simulated"], default="fake-stripe")
    parser.add_argument("--compare", action="store_true", help="and the two baselines")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="targets: a share of the full sizes"
    )
    args = parser.parse_args()
    base = args.database_url or embedded.start().url
    if args.mode == "run":
        result = run(base, scenario_from(args))
        report(result)
        if args.compare:
            for line in baseline_figures(base, result.scenario).lines(result.per_second):
                print(line, flush=True)
    elif args.mode == "smoke":
        sys.exit(smoke(base))
    else:
        import targets  # noqa: PLC0415 - it imports this module

        targets.run_all(base, scale=args.scale)


def smoke(base_url: str) -> int:
    """A small fleet through the fake Stripe with a limit and latency: exit 1
    unless every winner is paid exactly once (correctness only, never speed)."""
    problems = []
    for scenario in (
        Scenario(
            retry_base_seconds=1,
            transfers=120,
            workers=2,
            concurrency=4,
            latency_ms=20,
            rate_limit=50,
            stripe_limit=40,
            job_size=50,
        ),
        Scenario(transfers=200, workers=2, concurrency=4, gateway="simulated", job_size=150),
    ):
        result = run(base_url, scenario)
        report(result)
        problems += result.correct
        if result.max_held_per_worker > scenario.concurrency:
            problems.append(f"a worker held {result.max_held_per_worker} claims")
    return 1 if problems else 0


if __name__ == "__main__":
    main()
