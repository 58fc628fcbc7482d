"""``payout-core ledger export`` on a long ledger: rows per second and peak memory.

Schedules winners on a scratch PostgreSQL database (``bench.seed``), books
``--rows`` ledger rows for them with one INSERT (each transfer: some failed
attempts, memos, then its completion, a debit, and for one in ten a partial
reversal, a credit; the schema's checks and triggers hold),
then runs the installed command, as an accountant would, over a tenth of the
window and over all of it, in CSV and in JSON, its output to /dev/null, and
prints for each run the rows per second and the command's peak RSS (from
``wait4``). Memory that stays flat is the same peak for a tenth and for all.

    python benchmarks/ledger_export_bench.py --rows 1000000
    python benchmarks/ledger_export_bench.py --rows 20000       # smoke
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import psycopg
from bench import Scenario, scratch_database, seed

from payout_adapters import embedded

__all__ = ["main"]

START = datetime(2026, 1, 1, tzinfo=UTC)  # the first row's time; one row per second after it
ROWS_PER_TRANSFER = 4  # on average: 0 to 6 failed attempts, the completion, a tenth reversed

# Transfer n gets 1 + n % 7 attempts: a memo for each failed one, then its
# completion (a debit); one in ten then has half its amount reversed (a
# credit, after the debit it reverses, as migration 0009's trigger wants).
# Row r (in write order) is booked r seconds after START, so a window of
# seconds is a window of rows.
_BOOK: str = """
INSERT INTO payout_ledger (
    idempotency_key, entry_type, direction, amount_cents, currency, transfer_id, job_id,
    contest_id, user_id, attempt_number, stripe_transfer_id, stripe_reversal_id,
    failure_code, created_at)
SELECT CASE WHEN a > t.k THEN 'ledger:reversal:trr_bench_' || t.n
            ELSE 'ledger:payout:' || t.id || ':' || a END,
       CASE WHEN a < t.k THEN 'payout_attempt_failed'
            WHEN a = t.k THEN 'payout_completed' ELSE 'payout_reversed' END,
       CASE WHEN a < t.k THEN 'memo' WHEN a = t.k THEN 'debit' ELSE 'credit' END,
       CASE WHEN a > t.k THEN greatest(t.amount_cents / 2, 1) ELSE t.amount_cents END,
       t.currency, t.id, t.job_id, t.contest_id, t.user_id, least(a, t.k),
       CASE WHEN a >= t.k THEN 'tr_bench_' || t.n END,
       CASE WHEN a > t.k THEN 'trr_bench_' || t.n END,
       CASE WHEN a < t.k THEN 'api_error' END,
       %(start)s::timestamptz
           + row_number() OVER (ORDER BY t.n, a) * interval '1 second'
FROM (SELECT id, job_id, contest_id, user_id, amount_cents, currency,
             row_number() OVER (ORDER BY job_id, user_id) AS n,
             1 + row_number() OVER (ORDER BY job_id, user_id) %% 7 AS k
      FROM payout_transfers) AS t
CROSS JOIN LATERAL generate_series(1, t.k + (t.n %% 10 = 0)::integer) AS a
ORDER BY t.n, a
LIMIT %(rows)s
"""


def book_ledger(url: str, rows: int) -> None:
    """``rows`` ledger rows over freshly scheduled transfers (``bench.seed``)."""
    transfers = rows // ROWS_PER_TRANSFER + 1
    seed(url, Scenario(transfers=transfers, job_size=10_000))
    with psycopg.connect(url) as conn:
        conn.execute(_BOOK, {"start": START, "rows": rows})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE payout_ledger")


@attrs.frozen(kw_only=True)
class Run:
    fmt: str
    rows: int
    seconds: float
    peak_rss_mb: float
    summary: str  # what the command printed on stderr: its row count and totals

    def line(self) -> str:
        return (
            f"{self.fmt:4} {self.rows:>9,} rows in {self.seconds:6.1f} s: "
            f"{self.rows / self.seconds:>9,.0f} rows/s, peak RSS {self.peak_rss_mb:5.1f} MB"
        )


def export(url: str, *, fmt: str, rows: int) -> Run:
    """The installed command over the first ``rows`` rows, to /dev/null."""
    command = [
        str(Path(sys.executable).parent / "payout-core"),
        "ledger",
        "export",
        "--since",
        START.isoformat(),
        "--until",
        (START + timedelta(seconds=rows + 1)).isoformat(),
        "--format",
        fmt,
    ]
    env = {**os.environ, "PAYOUT_DATABASE_URL": url}
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - the installed command of this interpreter
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # wait4: this child's own peak RSS (getrusage's children figure is the
    # largest of all children so far).
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    summary = process.stderr.read().decode()
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"the export failed ({process.returncode}):\n{summary}")
    return Run(
        fmt=fmt, rows=rows, seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024, summary=summary
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("PAYOUT_BENCH_DATABASE_URL"))
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    base = args.database_url or embedded.start().url
    with scratch_database(base) as url:
        started = time.perf_counter()
        book_ledger(url, args.rows)
        print(f"ledger: {args.rows:,} rows booked in {time.perf_counter() - started:.1f} s")
        runs = []
        for fmt in ("csv", "json"):
            for rows in (args.rows // 10, args.rows):
                runs.append(export(url, fmt=fmt, rows=rows))
                print(runs[-1].line(), flush=True)
        print(f"the command said, of all the rows:\n{runs[-1].summary}", end="")


if __name__ == "__main__":
    main()
