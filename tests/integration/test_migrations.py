"""`migrate`: each file once, in order, under a lock; a changed file is refused."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import uuid
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from payout_adapters import postgres
from payout_adapters.postgres import migrator
from payout_core import errors, ledger, models, ports
from tests.integration import pg_workers
from tests.kit import builders as b
from tests.kit.times import T0

SHIPPED = migrator.default_directory()
NAMES = sorted(p.name for p in SHIPPED.glob("*.sql"))
TABLES = {
    "payout_jobs",
    "payout_transfers",
    "payout_ledger",
    "user_stripe_accounts",
    "payout_settlement_inbox",
    "payout_scheduler_runs",
    "payout_rate_schedule",
    "payout_control",
    "payout_operator_actions",
    "payout_reversals",
    "payout_webhook_events",
    "payout_schema_migrations",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def bookkeeping(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, checksum FROM payout_schema_migrations ORDER BY name"
        ).fetchall()
    return [(str(name), str(checksum)) for name, checksum in rows]


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A copy of the shipped migrations that a test may change."""
    directory = tmp_path / "migrations"
    shutil.copytree(SHIPPED, directory)
    return directory


def test_the_source_checkout_migrations_are_found() -> None:
    assert Path(__file__).resolve().parents[2] / "migrations" == SHIPPED
    assert NAMES[0].startswith("0001_")


def test_a_fresh_database_gets_every_migration_in_order(empty_database_url: str) -> None:
    assert postgres.migrate(empty_database_url) == NAMES

    assert tables(empty_database_url) == TABLES
    assert bookkeeping(empty_database_url) == [
        (name, hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest()) for name in NAMES
    ]


def test_pending_migrations_are_listed_without_being_applied(
    empty_database_url: str, migrations_dir: Path
) -> None:
    assert postgres.pending_migrations(empty_database_url, migrations_dir) == NAMES
    assert tables(empty_database_url) == set()

    postgres.migrate(empty_database_url, migrations_dir)
    (migrations_dir / "0900_next.sql").write_text("SELECT 1;\n")

    assert postgres.pending_migrations(empty_database_url, migrations_dir) == ["0900_next.sql"]


def test_a_second_run_applies_nothing(empty_database_url: str) -> None:
    postgres.migrate(empty_database_url)
    before = bookkeeping(empty_database_url)

    assert postgres.migrate(empty_database_url) == []
    assert bookkeeping(empty_database_url) == before


def test_migrating_through_a_pool_leaves_the_pool_transactional(empty_database_url: str) -> None:
    pool = postgres.connect_pool(empty_database_url, max_size=1)
    try:
        assert postgres.migrate(pool) == NAMES
        with pool.connection() as conn:
            assert conn.autocommit is False
            assert conn.execute("SELECT count(*) FROM payout_jobs").fetchone() == (0,)
    finally:
        pool.close()


def test_two_processes_migrating_at_once_apply_each_file_once(
    empty_database_url: str, migrations_dir: Path
) -> None:
    # A slow last file keeps the first process inside the lock while the second arrives.
    (migrations_dir / "0900_slow.sql").write_text("SELECT pg_sleep(0.5);\n")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    results = context.Queue()
    processes = [
        context.Process(
            target=pg_workers.migrate_when_told,
            args=(empty_database_url, str(migrations_dir), start, results),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    applied = sorted((results.get(timeout=60) for _ in processes), key=len)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    # One applied everything while holding the lock; the other waited, then found nothing.
    assert applied == [[], [*NAMES, "0900_slow.sql"]]
    assert [name for name, _ in bookkeeping(empty_database_url)] == [*NAMES, "0900_slow.sql"]


def test_a_file_changed_after_it_was_applied_is_refused_by_name(
    empty_database_url: str, migrations_dir: Path
) -> None:
    postgres.migrate(empty_database_url, migrations_dir)
    changed = migrations_dir / NAMES[1]
    changed.write_text(changed.read_text() + "\n-- an afterthought\n")
    (migrations_dir / "0900_more.sql").write_text("CREATE TABLE more_things (id int);\n")

    with pytest.raises(postgres.MigrationError, match=NAMES[1]) as refused:
        postgres.migrate(empty_database_url, migrations_dir)

    assert refused.value.name == NAMES[1]
    assert "changed after it was applied" in str(refused.value)
    assert "more_things" not in tables(empty_database_url)  # nothing ran


def test_a_failing_migration_is_rolled_back_and_named(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);\n")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )

    with pytest.raises(postgres.MigrationError, match=r"0002_bad\.sql") as failed:
        postgres.migrate(empty_database_url, tmp_path)

    assert "no_such_table" in str(failed.value)
    assert {"good", "payout_schema_migrations"} == tables(empty_database_url)
    assert [name for name, _ in bookkeeping(empty_database_url)] == ["0001_good.sql"]


def test_a_misnamed_file_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;\n")

    with pytest.raises(postgres.MigrationError, match=r"1_first\.sql"):
        postgres.migrate(empty_database_url, tmp_path)


def test_two_files_with_one_number_are_refused(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;\n")

    with pytest.raises(postgres.MigrationError, match="same number"):
        postgres.migrate(empty_database_url, tmp_path)


def test_a_database_newer_than_the_files_is_refused(
    empty_database_url: str, migrations_dir: Path
) -> None:
    postgres.migrate(empty_database_url, migrations_dir)
    (migrations_dir / NAMES[-1]).unlink()

    with pytest.raises(postgres.MigrationError, match="not among this version's files"):
        postgres.migrate(empty_database_url, migrations_dir)


def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"

    with pytest.raises(errors.StoreUnavailable, match="migrate"):
        postgres.migrate(unreachable)


def migrate_up_to(url: str, migrations_dir: Path, first_held_back: str) -> list[Path]:
    """Apply the files before ``first_held_back`` only; the files held back, to
    apply with ``migrate`` once the test has written what an older release would."""
    later = sorted(p for p in migrations_dir.glob("*.sql") if p.name >= first_held_back)
    held_back = migrations_dir.parent / "later"
    held_back.mkdir()
    for path in later:
        path.rename(held_back / path.name)
    postgres.migrate(url, migrations_dir)
    for path in later:
        (held_back / path.name).rename(path)
    return later


def insert_a_job_paid_and_failed(
    conn: psycopg.Connection[tuple[object, ...]], job: uuid.UUID, paid: uuid.UUID, failed: uuid.UUID
) -> None:
    """A complete job of two 1500 usd transfers, u-1's paid by tr_1 and u-2's
    failed, as an older release wrote them."""
    conn.execute(
        "INSERT INTO payout_jobs (id, settlement_id, contest_id, currency, status, "
        "total_transfers, total_amount_cents, completed_count, failed_count, "
        "settlement_fingerprint, completed_at) "
        "VALUES (%s, 's-1', 'c-1', 'usd', 'complete', 2, 3000, 1, 1, %s, now())",
        (job, "0" * 64),
    )
    conn.execute(
        "INSERT INTO payout_transfers (id, job_id, settlement_id, contest_id, user_id, "
        "amount_cents, currency, status, attempt_count, stripe_transfer_id, failure_code) "
        "VALUES (%s, %s, 's-1', 'c-1', 'u-1', 1500, 'usd', 'completed', 1, 'tr_1', NULL), "
        "(%s, %s, 's-1', 'c-1', 'u-2', 1500, 'usd', 'failed_terminal', 1, NULL, 'x')",
        (paid, job, failed, job),
    )


def test_resolve_and_reissue_migrate_a_database_holding_payouts(
    empty_database_url: str, migrations_dir: Path
) -> None:
    later = migrate_up_to(empty_database_url, migrations_dir, "0008")
    job, paid, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        insert_a_job_paid_and_failed(conn, job, paid, failed)
        conn.execute(
            "INSERT INTO payout_operator_actions (action, actor, reason) "
            "VALUES ('pause', 'ops-1', 'why')"
        )

    assert postgres.migrate(empty_database_url, migrations_dir) == [p.name for p in later]

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        kept = conn.execute(
            "SELECT id, status, reissue_of FROM payout_transfers ORDER BY user_id"
        ).fetchall()
        assert kept == [(paid, "completed", None), (failed, "failed_terminal", None)]
        assert conn.execute("SELECT action FROM payout_operator_actions").fetchall() == [("pause",)]
        # The failed winner may be paid again, once; the paid one may not.
        insert = (
            "INSERT INTO payout_transfers (id, job_id, settlement_id, contest_id, user_id, "
            "amount_cents, currency, reissue_of) "
            "VALUES (%s, %s, 's-1', 'c-1', %s, 1500, 'usd', %s)"
        )
        conn.execute(insert, (uuid.uuid4(), job, "u-2", failed))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (uuid.uuid4(), job, "u-1", None))


def test_reversals_migrate_a_database_holding_payouts(
    empty_database_url: str, migrations_dir: Path
) -> None:
    later = migrate_up_to(empty_database_url, migrations_dir, "0009")
    job, paid, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        insert_a_job_paid_and_failed(conn, job, paid, failed)
        conn.execute(
            "INSERT INTO payout_ledger (idempotency_key, entry_type, direction, amount_cents, "
            "currency, transfer_id, job_id, contest_id, user_id, attempt_number, "
            "stripe_transfer_id, failure_code) VALUES "
            "('ledger:payout:' || %(paid)s || ':1', 'payout_completed', 'debit', 1500, 'usd', "
            " %(paid)s, %(job)s, 'c-1', 'u-1', 1, 'tr_1', NULL), "
            "('ledger:payout:' || %(failed)s || ':1', 'payout_failed', 'memo', 1500, 'usd', "
            " %(failed)s, %(job)s, 'c-1', 'u-2', 1, NULL, 'x')",
            {"paid": paid, "failed": failed, "job": job},
        )
        conn.execute(
            "INSERT INTO payout_operator_actions (action, actor, reason, transfer_id) "
            "VALUES ('reissue', 'ops-1', 'why', %s)",
            (failed,),
        )

    assert postgres.migrate(empty_database_url, migrations_dir) == [p.name for p in later]

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        kept = conn.execute(
            "SELECT entry_type, direction, stripe_reversal_id FROM payout_ledger ORDER BY id"
        ).fetchall()
        assert kept == [("payout_completed", "debit", None), ("payout_failed", "memo", None)]
    # The adapters work on it: the payment recorded before may come back, once, in full.
    pool = postgres.connect_pool(empty_database_url, max_size=2)
    try:
        store = postgres.PostgresStore(pool)
        transfer = store.get_transfer(str(paid))
        assert transfer is not None
        now = T0
        asked = b.reversal(transfer, amount_cents=1000, now=now)
        assert isinstance(store.reversal_intent(asked), models.Reversal)
        dashboard = ledger.reversal_entry(
            transfer, stripe_reversal_id="trr_dash", amount_cents=500, now=now
        )
        assert store.book_reversal(dashboard)
        with pytest.raises(errors.IllegalTransition, match="too much"):
            store.book_reversal(
                ledger.reversal_entry(
                    transfer, stripe_reversal_id="trr_2", amount_cents=1001, now=now
                )
            )
        events = postgres.PostgresEventInbox(pool)
        event = ports.StripeEvent(
            id="evt_1", type="transfer.reversed", payload="{}", received_at=now
        )
        assert events.accept(event)
        assert events.unprocessed(limit=10) == [event]
    finally:
        pool.close()
