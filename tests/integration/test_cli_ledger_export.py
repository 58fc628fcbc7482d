"""``payout-core ledger export`` end to end: winners paid by the installed command
(``schedule``, then ``loop --once`` on the simulated gateway), their ledger
exported as CSV and JSON and checked against the database's own rows and jobs;
and the PostgreSQL reader under it, held to what the in-memory one does
(``tests/unit/test_ledger_export.py``)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import psycopg_pool
import pytest

from payout_adapters.postgres.ledger_reader import PostgresLedgerReader
from payout_core.services import ledger_export as lx
from tests.integration import cli_helpers as cli

MICROSECOND = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
# Settlement, currency, winners: the last winner of each has no connected
# account, so their transfer fails and books a payout_failed memo.
CONTESTS = (
    ("stl-usd", "usd", {"u-1": 1500, "u-2": 700, "u-3": 250}),
    ("stl-eur", "eur", {"u-4": 900, "u-5": 90}),
)


@attrs.frozen
class Row:
    """A ledger row as the database holds it (in id order)."""

    key: str
    created_at: datetime
    job_id: str
    direction: str
    amount_cents: int
    currency: str


def ledger(url: str) -> list[Row]:
    return [
        Row(*r)
        for r in cli.query(
            url,
            "SELECT idempotency_key, created_at, job_id::text, direction, amount_cents, currency "
            "FROM payout_ledger ORDER BY id",
        )
    ]


def span(rows: list[Row]) -> tuple[datetime, datetime]:
    """The smallest window holding every row. Rows are booked by the worker's
    clock as each outcome is recorded, several at once: write order (id) is
    not quite time order."""
    times = [r.created_at for r in rows]
    return min(times), max(times) + MICROSECOND


def completed_amounts(url: str, job_id: str) -> tuple[int, int]:
    """(completed transfers, their amounts) of a job, from its transfers."""
    [(count, total)] = cli.query(
        url,
        "SELECT count(*), coalesce(sum(amount_cents), 0)::bigint FROM payout_transfers "
        "WHERE job_id = %s AND status = 'completed'",
        (job_id,),
    )
    return int(count), int(total)


def pay(
    url: str, env: dict[str, str], settlement_id: str, currency: str, winners: dict[str, int]
) -> str:
    """Schedule the settlement and run one tick; its job id."""
    for user in list(winners)[:-1]:
        cli.query(
            url,
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            (user, f"acct_{uuid.uuid4().hex[:12]}"),
        )
    data = cli.settlement(settlement_id, winners, currency=currency)
    scheduled = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(data))
    assert scheduled.returncode == 0, scheduled.describe()
    ticked = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)
    assert ticked.returncode == 0, ticked.describe()
    return str(scheduled.json()["job"]["id"])


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return cli.cli_env(database_url)


@pytest.fixture
def jobs(database_url: str, env: dict[str, str]) -> dict[str, str]:
    """Both contests paid, one tick each; settlement id -> job id."""
    return {s: pay(database_url, env, s, currency, winners) for s, currency, winners in CONTESTS}


def export(env: dict[str, str], since: datetime, until: datetime, *args: str) -> cli.CommandResult:
    return cli.run_cli(
        "ledger",
        "export",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        *args,
        env=env,
    )


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# -- the command ---------------------------------------------------------------------------------


def test_csv_has_every_row_in_write_order_then_totals_that_reconcile_with_the_jobs(
    jobs: dict[str, str], database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    rows = ledger(database_url)
    assert len(rows) == 5  # 3 completed, 2 failed for want of an account
    target = tmp_path / "ledger.csv"
    target.write_text("an older export\n")

    done = export(env, *span(rows), "--output", str(target))

    assert done.returncode == 0, done.describe()
    assert done.stdout == ""
    assert "exported 5 ledger row(s)" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.csv"]  # no temporary left
    raw = target.read_bytes()
    assert raw.startswith(b"record,entry_key,created_at,entry_type,direction,amount_cents,")
    assert raw.count(b"\r\n") == 1 + 5 + 2  # header, rows, one total per currency
    found = table(raw.decode("utf-8"))
    assert [r["record"] for r in found] == ["entry"] * 5 + ["total"] * 2
    entries, totals = found[:5], found[5:]
    assert [r["entry_key"] for r in entries] == [r.key for r in rows]
    assert [r["created_at"] for r in entries] == [lx.iso_utc(r.created_at) for r in rows]
    assert [(r["direction"], int(r["amount_cents"]), r["currency"]) for r in entries] == [
        (r.direction, r.amount_cents, r.currency) for r in rows
    ]
    for total in totals:
        of_currency = [e for e in entries if e["currency"] == total["currency"]]
        for column in ("debit_cents", "credit_cents", "net_cents"):
            assert int(total[column]) == sum(int(e[column]) for e in of_currency)
        assert total["running_net_cents"] == of_currency[-1]["running_net_cents"]
        assert total["entry_key"] == total["amount_cents"] == ""
    by_currency = {t["currency"]: int(t["debit_cents"]) for t in totals}
    for settlement_id, currency, _ in CONTESTS:
        assert by_currency[currency] == completed_amounts(database_url, jobs[settlement_id])[1]
    assert by_currency == {"eur": 900, "usd": 2200}


def test_the_window_takes_since_and_leaves_out_until_whatever_their_offsets(
    jobs: dict[str, str], database_url: str, env: dict[str, str]
) -> None:
    rows = ledger(database_url)
    by_time = sorted(rows, key=lambda r: r.created_at)
    since = by_time[1].created_at.astimezone(timezone(timedelta(hours=2)))
    until = by_time[3].created_at.astimezone(timezone(-timedelta(hours=5)))
    expected = [r.key for r in rows if since <= r.created_at < until]
    assert by_time[1].key in expected
    assert by_time[3].key not in expected

    done = export(env, since, until, "--format", "json")

    assert done.returncode == 0, done.describe()
    document = done.json()
    assert (document["since"], document["until"], document["job_id"]) == (
        lx.iso_utc(since),
        lx.iso_utc(until),
        None,
    )
    assert [r["entry_key"] for r in document["rows"]] == expected
    assert tuple(document["rows"][0]) == lx.ENTRY_COLUMNS


def test_json_of_one_job_has_its_rows_and_its_completed_transfers_as_debits(
    jobs: dict[str, str], database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    rows = ledger(database_url)
    target = tmp_path / "job.json"

    for settlement_id, currency, _ in CONTESTS:
        job_id = jobs[settlement_id]
        done = export(
            env,
            span(rows)[0] - HOUR,
            span(rows)[1] + HOUR,
            "--job",
            job_id.upper(),  # any spelling of the UUID
            "--format",
            "json",
            "--output",
            str(target),
        )

        assert done.returncode == 0, done.describe()
        document = json.loads(target.read_text())
        assert document["job_id"] == job_id
        assert [r["entry_key"] for r in document["rows"]] == [
            r.key for r in rows if r.job_id == job_id
        ]
        [total] = document["totals"]
        completed, amounts = completed_amounts(database_url, job_id)
        [(completed_count,)] = cli.query(
            database_url, "SELECT completed_count FROM payout_jobs WHERE id = %s", (job_id,)
        )
        assert (total["currency"], total["debit_count"], total["debit_cents"]) == (
            currency,
            completed,
            amounts,
        )
        assert completed == completed_count
        assert (total["credit_cents"], total["net_cents"], total["memo_count"]) == (0, amounts, 1)


def test_a_reversal_is_a_credit_that_the_net_takes_off_and_the_debits_keep(
    jobs: dict[str, str], database_url: str, env: dict[str, str]
) -> None:
    # 500 of u-1's 1,500 came back, booked as the reversal flow books it.
    cli.query(
        database_url,
        "INSERT INTO payout_ledger (idempotency_key, entry_type, direction, amount_cents, "
        "currency, transfer_id, job_id, contest_id, user_id, attempt_number, "
        "stripe_transfer_id, stripe_reversal_id) "
        "SELECT 'ledger:reversal:trr_1', 'payout_reversed', 'credit', 500, currency, "
        "transfer_id, job_id, contest_id, user_id, attempt_number, stripe_transfer_id, 'trr_1' "
        "FROM payout_ledger WHERE user_id = 'u-1' AND entry_type = 'payout_completed'",
    )
    rows = ledger(database_url)

    done = export(env, *span(rows), "--job", jobs["stl-usd"], "--format", "json")

    assert done.returncode == 0, done.describe()
    document = done.json()
    credit = document["rows"][-1]
    assert (credit["entry_type"], credit["direction"], credit["stripe_reversal_id"]) == (
        "payout_reversed",
        "credit",
        "trr_1",
    )
    assert (credit["debit_cents"], credit["credit_cents"], credit["net_cents"]) == (0, 500, -500)
    assert credit["running_net_cents"] == 2200 - 500
    [total] = document["totals"]
    assert (total["debit_cents"], total["credit_count"], total["credit_cents"]) == (2200, 1, 500)
    assert total["net_cents"] == 1700
    assert total["debit_cents"] == completed_amounts(database_url, jobs["stl-usd"])[1]


def test_a_text_a_spreadsheet_would_run_is_quoted_in_csv_and_exact_in_json(
    database_url: str, env: dict[str, str]
) -> None:
    pay(database_url, env, "stl-risky", "usd", {"=HYPERLINK(1)": 500, "u-9": 10})
    rows = ledger(database_url)
    window = span(rows)

    as_csv = export(env, *window)
    as_json = export(env, *window, "--format", "json")

    assert as_csv.returncode == as_json.returncode == 0, as_csv.describe() + as_json.describe()
    assert sorted(r["user_id"] for r in table(as_csv.stdout)) == ["", "'=HYPERLINK(1)", "u-9"]
    assert sorted(r["user_id"] for r in as_json.json()["rows"]) == ["=HYPERLINK(1)", "u-9"]


T = "2026-11-01T00:00:00Z"
LATER = "2026-12-01T00:00:00Z"


NO_JOB = "0c0ffee0-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-11-01T00:00", "--until", LATER], "'2026-11-01T00:00' has no UTC"),
        (["--since", "yesterday", "--until", LATER], "--since 'yesterday' is not an ISO 8601 time"),
        (["--since", T, "--until", "2026-13-01"], "--until '2026-13-01' is not an ISO 8601 time"),
        (["--since", T, "--until", T], "--since and --until: since (2026-11-01T00:00:00+00:00)"),
        (["--since", LATER, "--until", T], "must be before until"),
        (["--since", T, "--until", LATER, "--job", "42"], "--job '42' is not a job id (a UUID)"),
        (["--since", T, "--until", LATER, "--job", NO_JOB], f"--job {NO_JOB}: no such payout job"),
        (["--since", T, "--until", LATER, "--format", "xml"], "--format 'xml' is not one of csv,"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_it_and_writes_nothing(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    target = tmp_path / "out" / "ledger.csv"
    target.parent.mkdir()

    done = cli.run_cli("ledger", "export", *args, "--output", str(target), env=env)

    assert done.returncode == 2, done.describe()
    assert message in " ".join(done.stderr.split()), done.describe()
    assert done.stdout == ""
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("where", "message"), [("missing/ledger.csv", "does not exist"), (".", "is a directory")]
)
def test_an_output_that_cannot_be_a_file_exits_2(
    env: dict[str, str], tmp_path: Path, where: str, message: str
) -> None:
    done = cli.run_cli(
        "ledger", "export", "--since", T, "--until", LATER, "--output", str(tmp_path / where),
        env=env,
    )  # fmt: skip

    assert done.returncode == 2, done.describe()
    assert message in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_fails_leaves_the_file_as_it_was(
    empty_database_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "ledger.csv"
    target.write_text("the last good export\n")

    # No schema: the ledger cannot be read.
    done = cli.run_cli(
        "ledger", "export", "--since", T, "--until", LATER, "--output", str(target),
        env=cli.cli_env(empty_database_url),
    )  # fmt: skip

    assert done.returncode == 1, done.describe()
    assert "payout-core migrate" in done.stderr
    assert target.read_text() == "the last good export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.csv"]


# -- the PostgreSQL reader -------------------------------------------------------------------------


def test_the_postgres_reader_gives_the_window_and_one_jobs_rows_in_write_order(
    jobs: dict[str, str], database_url: str, pool: psycopg_pool.ConnectionPool
) -> None:
    reader: lx.LedgerReader = PostgresLedgerReader(pool, batch_size=2)
    rows = ledger(database_url)
    since, until = span(rows)

    def keys(since: datetime, until: datetime, job_id: str | None = None) -> list[str]:
        return [e.idempotency_key for e in reader.entries(since=since, until=until, job_id=job_id)]

    assert keys(since=since, until=until) == [r.key for r in rows]
    start, end = sorted(r.created_at for r in rows)[1:4:2]
    assert keys(since=start, until=end) == [r.key for r in rows if start <= r.created_at < end]
    eur = jobs["stl-eur"]
    assert keys(since=since, until=until, job_id=eur) == [r.key for r in rows if r.job_id == eur]
    assert keys(since=since, until=until, job_id=str(uuid.uuid4())) == []
    assert keys(since=since, until=until, job_id="not-a-uuid") == []
    assert keys(since=until, until=until + HOUR) == []


def test_the_postgres_reader_reads_one_snapshot_across_its_batches(
    jobs: dict[str, str], database_url: str, pool: psycopg_pool.ConnectionPool
) -> None:
    rows = ledger(database_url)
    since, until = span(rows)[0], span(rows)[1] + HOUR
    reader = PostgresLedgerReader(pool, batch_size=2)

    reading = reader.entries(since=since, until=until)
    first = next(reading)
    # A row booked while the export runs, inside its window.
    cli.query(
        database_url,
        "INSERT INTO payout_ledger (idempotency_key, entry_type, direction, amount_cents, "
        "currency, transfer_id, job_id, contest_id, user_id, attempt_number, created_at) "
        "SELECT 'ledger:payout:' || transfer_id || ':99', 'payout_attempt_failed', 'memo', "
        "amount_cents, currency, transfer_id, job_id, contest_id, user_id, 99, %s "
        "FROM payout_ledger ORDER BY id LIMIT 1",
        (span(rows)[1],),
    )
    rest = list(reading)

    assert [e.idempotency_key for e in (first, *rest)] == [r.key for r in rows]
    again = [e.idempotency_key for e in reader.entries(since=since, until=until)]
    assert again == [r.key for r in ledger(database_url)] == [*(r.key for r in rows), again[-1]]
