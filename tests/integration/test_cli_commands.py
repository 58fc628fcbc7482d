"""Every command of the installed ``payout-core``, run as a user runs it: exit codes,
what it prints, and what the database holds afterwards.

Each test has a database of its own (``database_url``, migrated, or
``empty_database_url``) and passes it to the command in ``PAYOUT_DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from payout_adapters.postgres import migrator
from tests.integration import cli_helpers as cli

TABLES = (
    "payout_jobs",
    "payout_transfers",
    "payout_ledger",
    "user_stripe_accounts",
    "payout_settlement_inbox",
    "payout_scheduler_runs",
    "payout_schema_migrations",
)


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return cli.cli_env(database_url)


def jobs(url: str) -> list[tuple[object, ...]]:
    return cli.query(
        url, "SELECT id::text, settlement_id, status, total_transfers FROM payout_jobs ORDER BY 1"
    )


def transfers(url: str) -> dict[str, tuple[object, ...]]:
    """user_id -> (status, amount_cents, stripe_transfer_id, failure_code)."""
    rows = cli.query(
        url,
        "SELECT user_id, status, amount_cents, stripe_transfer_id, failure_code "
        "FROM payout_transfers",
    )
    return {str(r[0]): r[1:] for r in rows}


def connect(url: str, accounts: dict[str, str]) -> None:
    """Connected accounts written directly (where the test is about something else)."""
    for user, account in accounts.items():
        cli.query(
            url,
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            (user, account),
        )


# -- migrate -----------------------------------------------------------------------------------


def test_migrate_applies_every_migration_and_a_second_run_has_nothing_to_apply(
    empty_database_url: str,
) -> None:
    env = cli.cli_env(empty_database_url)
    files = [m.name for m in migrator.migration_files(migrator.default_directory())]

    first = cli.run_cli("migrate", env=env)

    assert first.returncode == 0, first.describe()
    assert f"applied {len(files)} migration(s)" in first.stderr
    for name in files:
        assert name in first.stderr
    applied = cli.query(empty_database_url, "SELECT name FROM payout_schema_migrations ORDER BY 1")
    assert [r[0] for r in applied] == files
    for table in TABLES:
        assert cli.query(empty_database_url, "SELECT to_regclass(%s) IS NOT NULL", (table,)) == [
            (True,)
        ]

    second = cli.run_cli("migrate", env=env)

    assert second.returncode == 0, second.describe()
    assert "nothing to apply" in second.stderr
    assert "applied" not in second.stderr
    again = cli.query(empty_database_url, "SELECT name FROM payout_schema_migrations ORDER BY 1")
    assert again == applied


def test_loop_refuses_an_unmigrated_database_and_says_to_migrate(empty_database_url: str) -> None:
    done = cli.run_cli(
        "loop", "--once", "--gateway", "simulated", env=cli.cli_env(empty_database_url)
    )

    assert done.returncode == 1, done.describe()
    assert "payout-core migrate" in done.stderr
    assert cli.query(empty_database_url, "SELECT to_regclass('payout_jobs')") == [(None,)]


# -- schedule ----------------------------------------------------------------------------------


def test_schedule_prints_the_job_and_running_it_again_prints_the_same_job(
    database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    data = cli.settlement("stl-1", {"u-1": 1500, "u-2": 700, "u-3": 250})
    path = tmp_path / "settlement.json"
    path.write_text(json.dumps(data))

    first = cli.run_cli("schedule", str(path), env=env)

    assert first.returncode == 0, first.describe()
    printed = first.json()
    assert printed["created"] is True
    job = printed["job"]
    assert (job["settlement_id"], job["contest_id"], job["currency"]) == (
        "stl-1",
        "contest-of-stl-1",
        "usd",
    )
    assert (job["status"], job["total_transfers"], job["total_amount_cents"]) == (
        "pending",
        3,
        2450,
    )
    assert jobs(database_url) == [(job["id"], "stl-1", "pending", 3)]
    assert transfers(database_url) == {
        "u-1": ("pending", 1500, None, None),
        "u-2": ("pending", 700, None, None),
        "u-3": ("pending", 250, None, None),
    }

    # The same settlement from standard input, its keys in another order.
    again = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(data, sort_keys=True, indent=1))

    assert again.returncode == 0, again.describe()
    assert again.json() == {"created": False, "job": job}
    assert jobs(database_url) == [(job["id"], "stl-1", "pending", 3)]
    assert len(transfers(database_url)) == 3


def test_schedule_refuses_input_that_is_not_json_and_writes_nothing(
    database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    not_json = cli.run_cli("schedule", "-", env=env, stdin='{"settlement_id": "stl-1",\n')

    assert not_json.returncode == 2, not_json.describe()
    assert "standard input is not valid JSON" in not_json.stderr
    assert "line 2" in not_json.stderr

    missing = cli.run_cli("schedule", str(tmp_path / "nowhere.json"), env=env)

    assert missing.returncode == 2, missing.describe()
    assert "cannot read" in missing.stderr
    assert "nowhere.json" in missing.stderr
    assert jobs(database_url) == []


def test_schedule_refuses_a_bad_settlement_naming_every_problem_and_writes_nothing(
    database_url: str, env: dict[str, str]
) -> None:
    bad = {
        "settlement_id": "",
        "contest_id": "c-1",
        "currency": "USD",
        "winners": [
            {"user_id": "u-1", "amount_cents": 15.5},
            {"user_id": "u-1", "amount_cents": -3},
            {"user_id": "u-2", "amount_cents": "100"},
        ],
        "paid": True,
    }

    done = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(bad))

    assert done.returncode == 2, done.describe()
    for problem in (
        "settlement_id: must not be empty",
        "currency: must be an ISO 4217 code",
        "winners[0].amount_cents: must be an integer number of minor units, got float 15.5",
        "winners[1].user_id: duplicate user 'u-1'",
        "winners[1].amount_cents: must be greater than 0",
        "winners[2].amount_cents: must be an integer number of minor units, got str",
        "paid: is not a known field",
    ):
        assert problem in done.stderr, done.describe()
    assert "7 problem(s)" in done.stderr
    assert done.stdout == ""
    assert jobs(database_url) == []
    assert transfers(database_url) == {}


def test_schedule_refuses_a_changed_settlement_under_a_known_id(
    database_url: str, env: dict[str, str]
) -> None:
    original = cli.settlement("stl-1", {"u-1": 1500, "u-2": 700})
    first = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(original))
    assert first.returncode == 0, first.describe()
    job_id = first.json()["job"]["id"]

    changed = cli.settlement("stl-1", {"u-1": 1500, "u-2": 7000})
    done = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(changed))

    assert done.returncode == 2, done.describe()
    assert f"settlement 'stl-1' is already scheduled as job {job_id}" in done.stderr
    assert "different contents" in done.stderr
    assert done.stdout == ""
    assert jobs(database_url) == [(job_id, "stl-1", "pending", 2)]
    assert transfers(database_url) == {
        "u-1": ("pending", 1500, None, None),
        "u-2": ("pending", 700, None, None),
    }


# -- accounts ----------------------------------------------------------------------------------


def test_accounts_set_connects_a_user_and_refuses_what_is_not_an_account_id(
    database_url: str, env: dict[str, str]
) -> None:
    def accounts() -> list[tuple[object, ...]]:
        return cli.query(
            database_url, "SELECT user_id, stripe_account_id FROM user_stripe_accounts"
        )

    done = cli.run_cli("accounts", "set", "u-1", "acct_1Winner", env=env)

    assert done.returncode == 0, done.describe()
    assert "u-1" in done.stderr
    assert "acct_1Winner" in done.stderr
    assert accounts() == [("u-1", "acct_1Winner")]

    moved = cli.run_cli("accounts", "set", "u-1", "acct_2Other", env=env)

    assert moved.returncode == 0, moved.describe()
    assert accounts() == [("u-1", "acct_2Other")]

    refused = cli.run_cli("accounts", "set", "u-1", "nope", env=env)

    assert refused.returncode == 2, refused.describe()
    assert "ACCT_ID 'nope' is not a Stripe connected account id" in refused.stderr
    assert accounts() == [("u-1", "acct_2Other")]


# -- loop --once -------------------------------------------------------------------------------


def test_loop_once_with_the_simulated_gateway_pays_the_scheduled_transfers(
    database_url: str, env: dict[str, str]
) -> None:
    winners = {"u-1": 1500, "u-2": 700, "u-3": 250}
    connect(database_url, {u: f"acct_{u.replace('-', '')}" for u in winners})
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", winners))
    )
    assert scheduled.returncode == 0, scheduled.describe()
    job_id = scheduled.json()["job"]["id"]

    done = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)

    assert done.returncode == 0, done.describe()
    assert "NO MONEY MOVES" in done.stderr
    paid = transfers(database_url)
    assert {u: (s, a) for u, (s, a, _, _) in paid.items()} == {
        u: ("completed", a) for u, a in winners.items()
    }
    assert all(str(stripe_id).startswith("tr_") for _, _, stripe_id, _ in paid.values())
    assert jobs(database_url) == [(job_id, "stl-1", "complete", 3)]
    ledger = cli.query(
        database_url,
        "SELECT user_id, entry_type, amount_cents FROM payout_ledger ORDER BY user_id",
    )
    assert ledger == [(u, "payout_completed", a) for u, a in sorted(winners.items())]
    runs = cli.query(database_url, "SELECT claimed, completed, error FROM payout_scheduler_runs")
    assert runs == [(3, 3, None)]


def test_loop_refuses_to_start_without_a_stripe_key(database_url: str, env: dict[str, str]) -> None:
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", {"u-1": 100}))
    )
    assert scheduled.returncode == 0, scheduled.describe()

    done = cli.run_cli("loop", "--once", env=env)

    assert done.returncode == 2, done.describe()
    assert "STRIPE_API_KEY is not set" in done.stderr
    assert "--gateway simulated" in done.stderr
    assert cli.query(database_url, "SELECT count(*) FROM payout_scheduler_runs") == [(0,)]
    assert transfers(database_url) == {"u-1": ("pending", 100, None, None)}


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("PAYOUT_BATCH_SIZE", "0", "a whole number from 1 to"),
        ("PAYOUT_INTERVAL_SECONDS", "soon", "a number greater than 0"),
        ("PAYOUT_GATEWAY", "paypal", "one of stripe, simulated"),
        ("PAYOUT_ADMIN_ADDR", "everywhere", "host:port"),
        ("PAYOUT_DATABASE_TIMEOUT_SECONDS", "-1", "a number greater than 0"),
        # Rule 8 of the exactly-once rules: settings that would break them.
        ("PAYOUT_LEASE_SECONDS", "100", "must be at least twice the send margin"),
        ("PAYOUT_RETRY_MAX_SECONDS", "45", "must be at least the send margin"),
        ("PAYOUT_STRIPE_TIMEOUT_SECONDS", "600", "must be at least twice the send margin"),
    ],
)
def test_a_bad_setting_exits_2_naming_the_variable_and_what_it_accepts(
    database_url: str, variable: str, value: str, accepted: str
) -> None:
    env = cli.cli_env(database_url, **{variable: value})

    done = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)

    assert done.returncode == 2, done.describe()
    assert variable in done.stderr
    assert accepted in done.stderr
    assert cli.query(database_url, "SELECT count(*) FROM payout_scheduler_runs") == [(0,)]


def test_a_malformed_stripe_key_is_refused_without_being_echoed(database_url: str) -> None:
    secret = "pk_live_51HonestlyNotASecretKeyButShapedLikeOne"
    env = cli.cli_env(database_url, STRIPE_API_KEY=secret)

    done = cli.run_cli("loop", "--once", env=env)

    assert done.returncode == 2, done.describe()
    assert "STRIPE_API_KEY is not valid" in done.stderr
    assert "HonestlyNotASecret" not in done.output


# -- status and reconcile ----------------------------------------------------------------------


def test_status_reports_jobs_transfers_failures_and_runs_as_the_database_holds_them(
    database_url: str, env: dict[str, str]
) -> None:
    connect(database_url, {"u-1": "acct_1", "u-2": "acct_2"})
    for data in (
        cli.settlement("stl-paid", {"u-1": 1500, "u-2": 700, "u-3": 250}),
        cli.settlement("stl-later", {"u-4": 999}),
    ):
        scheduled = cli.run_cli("schedule", "-", env=env, stdin=json.dumps(data))
        assert scheduled.returncode == 0, scheduled.describe()
        if data["settlement_id"] == "stl-paid":
            ticked = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)
            assert ticked.returncode == 0, ticked.describe()

    as_json = cli.run_cli("status", "--json", env=env)

    assert as_json.returncode == 0, as_json.describe()
    status = as_json.json()
    by_status = dict(
        cli.query(database_url, "SELECT status, count(*) FROM payout_transfers GROUP BY 1")
    )
    assert {k: v for k, v in status["transfers_by_status"].items() if v} == by_status
    assert by_status == {"completed": 2, "failed_terminal": 1, "pending": 1}
    assert status["due"] == 1
    assert status["stuck"] == 0
    assert sorted(j["id"] for j in status["jobs"]) == [j[0] for j in jobs(database_url)]
    assert {j["settlement_id"]: j["status"] for j in status["jobs"]} == {
        "stl-paid": "complete",
        "stl-later": "pending",
    }
    (failed,) = status["failed_transfers"]
    assert (failed["user_id"], failed["failure_code"]) == ("u-3", "stripe_account_not_connected")
    assert status["retrying_transfers"] == []
    assert status["stuck_transfers"] == []
    (run,) = status["recent_runs"]
    assert (run["claimed"], run["completed"], run["failed_terminal"]) == (3, 2, 1)
    assert cli.query(database_url, "SELECT count(*) FROM payout_scheduler_runs") == [(1,)]

    for_people = cli.run_cli("status", env=env)

    assert for_people.returncode == 0, for_people.describe()
    for text in (
        "Transfers",
        "Jobs (newest first)",
        "stl-paid",
        "stl-later",
        "Failed transfers",
        "stripe_account_not_connected",
        "Recent runs",
        failed["id"],
    ):
        assert text in for_people.stdout, for_people.describe()


def test_reconcile_passes_a_clean_database_and_names_a_job_whose_counts_were_corrupted(
    database_url: str, env: dict[str, str]
) -> None:
    connect(database_url, {"u-1": "acct_1"})
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", {"u-1": 5, "u-2": 6}))
    )
    assert scheduled.returncode == 0, scheduled.describe()
    job_id = scheduled.json()["job"]["id"]
    ticked = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)
    assert ticked.returncode == 0, ticked.describe()

    clean = cli.run_cli("reconcile", env=env)

    assert clean.returncode == 0, clean.describe()
    assert "1 job(s) and 2 transfer(s) checked" in clean.stderr
    assert "0 finding(s)" in clean.stderr
    assert "FINDING" not in clean.output

    cli.query(
        database_url,
        "UPDATE payout_jobs SET completed_count = completed_count - 1 WHERE id = %s",
        (job_id,),
    )
    corrupted = cli.run_cli("reconcile", env=env)

    assert corrupted.returncode == 1, corrupted.describe()
    findings = [line for line in corrupted.stdout.splitlines() if line.startswith("FINDING")]
    assert findings == [
        f"FINDING invariant: job {job_id}: counts say 0 completed and 1 failed, "
        "its transfers say 1 and 1"
    ]
    assert "1 finding(s)" in corrupted.stderr


# -- demo --------------------------------------------------------------------------------------


def test_demo_pays_every_connected_winner_on_a_fresh_embedded_database(tmp_path: Path) -> None:
    """The README's first command, as on a fresh machine: an empty home directory."""
    home = tmp_path / "home"
    home.mkdir()
    env = cli.cli_env(HOME=str(home))
    for name in list(env):
        if name.startswith("XDG_") and name != "XDG_RUNTIME_DIR":
            del env[name]
    data_dir = home / ".local" / "share" / "payout-core" / "postgres"
    try:
        done = cli.run_cli("demo", env=env, cwd=tmp_path)
    finally:
        # The demo leaves its server running for the next command, on purpose.
        cli.stop_embedded(data_dir)

    assert done.returncode == 0, done.describe()
    assert "NO MONEY MOVES" in done.output
    assert f"embedded PostgreSQL in {data_dir}" in done.output
    assert "exactly one transfer for each of the 49 completed payouts" in done.stdout
    assert "stripe_account_not_connected" in done.stdout
    assert "the ledger reconciles" in done.stdout
    assert "STRIPE_API_KEY=sk_test_..." in done.stdout
    assert "FINDING" not in done.output
    assert os.listdir(data_dir)
