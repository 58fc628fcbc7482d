"""The security of the money path (issue 12), on a real PostgreSQL and the real command.

* The ledger, the audit trail and settled reversals refuse UPDATE, DELETE and
  TRUNCATE even from the tables' owner (not only from a superuser's session).
* A LOGIN member of ``payout_worker`` runs ``loop`` and ``webhooks serve``; one
  of ``payout_operator`` the operator's commands; each is refused everything
  else: no schema change, no TRUNCATE, no change to the ledger, the audit
  trail, who is paid or how much (migration 0012).
* Every pooled connection has a ``statement_timeout``: a statement stuck behind
  a lock is cancelled and surfaces as ``StoreUnavailable``, never a hang;
  migrations run with their own, longer one.
* ``/readyz`` answers 503 within a second while the database is down, and the
  admin endpoint listens on loopback unless told otherwise.

Roles belong to the server, not a database: each test makes LOGIN roles of
unique names and drops them; the group roles are the migration's own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from payout_adapters import postgres
from payout_cli import admin as admin_
from payout_cli import bootstrap, runner, settings
from payout_cli import metrics as metrics_
from payout_core import errors, models, outcomes
from payout_core.services import reversals
from tests import fake_stripe
from tests.fake_stripe import webhooks as deliveries
from tests.integration import cli_helpers as cli
from tests.integration import test_schema as rows
from tests.integration.conftest import PostgresServer
from tests.kit.waiting import wait_for

Conn = psycopg.Connection[tuple[Any, ...]]

WORKER, OPERATOR, SERVICE = "payout_worker", "payout_operator", "payout_service"
WHO = ("--actor", "ops-1", "--reason", "INC-12: checking the roles")


# -- roles and databases of a test's own ------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def login_role(admin_url: str, *, member_of: str | None = None) -> Iterator[str]:
    """A LOGIN role of a unique name (a member of ``member_of``), dropped at the end."""
    name = unique("payout_it_login")
    create = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name))
    if member_of is not None:
        create = sql.SQL("{} IN ROLE {}").format(create, sql.Identifier(member_of))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def as_role(url: str, role: str) -> str:
    return make_conninfo(url, user=role)


@pytest.fixture
def worker_url(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    with login_role(postgres_server.admin_url, member_of=WORKER) as role:
        yield as_role(database_url, role)


@pytest.fixture
def operator_url(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    with login_role(postgres_server.admin_url, member_of=OPERATOR) as role:
        yield as_role(database_url, role)


@pytest.fixture
def service_url(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    with login_role(postgres_server.admin_url, member_of=SERVICE) as role:
        yield as_role(database_url, role)


def paid_transfer(conn: Conn) -> None:
    """rows.TRANSFER completed by tr_1 and booked as paid, with a pause and a
    settled reversal: a row of every table that must keep its rows."""
    rows.insert_job(conn)
    rows.insert_transfer(conn, status="completed", stripe_transfer_id="tr_1")
    rows.insert_ledger(conn, rows.ledger_row())
    rows.insert_action(conn, "pause", None)
    settled = rows.insert_reversal(conn)
    conn.execute(rows.SETTLE + " WHERE id = %s", ("completed", "trr_1", None, settled))


# -- append-only, even from the owner ---------------------------------------------------------


@pytest.fixture(scope="module")
def owner_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database owned, and migrated from nothing, by a role that is neither
    a superuser nor allowed to create roles (payout_worker exists already: the
    session's template database made it), holding a paid transfer."""
    name = unique("payout_it_owned")
    with login_role(postgres_server.admin_url) as owner:
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        try:
            url = as_role(postgres_server.url(name), owner)
            assert "0012_worker_role.sql" in postgres.migrate(url)  # and any after it
            assert postgres.migrate(url) == []  # the roles exist: nothing to do, nothing refused
            with psycopg.connect(url, autocommit=True) as conn:
                paid_transfer(conn)
            yield url
        finally:
            postgres_server.drop_database(name)


def test_the_owner_is_an_ordinary_role_that_owns_the_tables(owner_url: str) -> None:
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, r.rolcreaterole, c.relowner = r.oid FROM pg_roles AS r, "
            "pg_class AS c WHERE r.rolname = current_user AND c.oid = 'payout_ledger'::regclass"
        ).fetchone()

    assert row == (False, False, True)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payout_ledger SET amount_cents = 1",
        "DELETE FROM payout_ledger",
        "TRUNCATE payout_ledger",
        "TRUNCATE payout_transfers CASCADE",  # takes the ledger with it
        "UPDATE payout_operator_actions SET reason = 'nothing happened'",
        "DELETE FROM payout_operator_actions",
        "TRUNCATE payout_operator_actions",
        "UPDATE payout_reversals SET failure_message = 'on second thoughts'",
        "DELETE FROM payout_reversals",
        "TRUNCATE payout_reversals",
    ],
)
def test_append_only_tables_refuse_their_owner(owner_url: str, statement: str) -> None:
    with psycopg.connect(owner_url) as conn:
        with pytest.raises(psycopg.errors.RestrictViolation, match=r"append-only|never changes"):
            conn.execute(statement)
        conn.rollback()
        kept = conn.execute(
            "SELECT (SELECT count(*) FROM payout_ledger), "
            "(SELECT count(*) FROM payout_operator_actions), "
            "(SELECT count(*) FROM payout_reversals WHERE failure_message IS NULL)"
        ).fetchone()

    assert kept == (1, 1, 1)


# -- least privilege: what each role may not do ---------------------------------------------

BOTH_REFUSED = [
    "UPDATE payout_ledger SET amount_cents = 1",
    "DELETE FROM payout_ledger",
    "TRUNCATE payout_ledger",
    "UPDATE payout_operator_actions SET reason = 'x'",
    "DELETE FROM payout_operator_actions",
    # Who is paid, how much, by which job: written once, nobody's to change.
    "UPDATE payout_transfers SET amount_cents = 1",
    "UPDATE payout_transfers SET user_id = 'u-2'",
    "UPDATE payout_transfers SET job_id = job_id",
    "UPDATE payout_reversals SET amount_cents = 1",
    "DELETE FROM payout_transfers",
    "DELETE FROM payout_reversals",
    "DELETE FROM payout_scheduler_runs",
    "TRUNCATE payout_jobs CASCADE",
    "TRUNCATE payout_rate_schedule",
    "UPDATE payout_settlement_inbox SET payload = '{}'",
    "INSERT INTO payout_schema_migrations (name, checksum) VALUES ('9999_x.sql', repeat('0', 64))",
    # The schema: no object of theirs, no change to ours.
    "CREATE TABLE payout_shadow (id int)",
    "CREATE FUNCTION payout_shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "ALTER TABLE payout_transfers ADD COLUMN shadow int",
    "ALTER TABLE payout_ledger DISABLE TRIGGER payout_ledger_append_only",
    "DROP TRIGGER payout_ledger_append_only ON payout_ledger",
    "DROP TABLE payout_ledger",
    # A superuser's way past every trigger.
    "SET session_replication_role = replica",
]
WORKER_REFUSED = [
    # The pause and the connected accounts are the operators'.
    "UPDATE payout_control SET paused = false",
    "SELECT paused FROM payout_control FOR UPDATE",
    "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES ('u-9', 'acct_9')",
    "UPDATE user_stripe_accounts SET stripe_account_id = 'acct_elsewhere'",
    # So is asking Stripe for money back, and reopening a job.
    "INSERT INTO payout_reversals (id, transfer_id, sequence, idempotency_key, "
    "stripe_transfer_id, amount_cents, currency, actor, reason) VALUES (gen_random_uuid(), "
    f"'{rows.TRANSFER}', 2, 'payout-reversal:{rows.TRANSFER}:2', 'tr_1', 1, 'usd', 'w', 'w')",
    "UPDATE payout_jobs SET total_amount_cents = 1",
]
SERVICE_REFUSED = [
    # A service asks for payouts; paying, and every record of it, is not its own.
    "UPDATE payout_transfers SET status = 'completed'",
    "UPDATE payout_jobs SET status = 'complete'",
    "SELECT * FROM payout_ledger",
    "INSERT INTO payout_ledger (idempotency_key) VALUES ('x')",
    "SELECT * FROM user_stripe_accounts",
    "UPDATE payout_control SET paused = true",
    "SELECT * FROM payout_operator_actions",
    "SELECT * FROM payout_reversals",
    "UPDATE payout_settlement_inbox SET status = 'accepted'",
    "INSERT INTO payout_rate_schedule DEFAULT VALUES",
    "SELECT * FROM payout_webhook_events",
]
OPERATOR_REFUSED = [
    # The runner's own records, and Stripe's events as they came.
    "UPDATE payout_settlement_inbox SET status = 'rejected', rejected_reason = 'x'",
    "UPDATE payout_scheduler_runs SET error = 'x'",
    "INSERT INTO payout_webhook_events (id, type, payload) VALUES ('evt_forged', 'x', '{}')",
]


@pytest.mark.parametrize(
    ("role", "statement"),
    [(r, s) for s in BOTH_REFUSED for r in ("worker", "operator", "service")]
    + [("worker", s) for s in WORKER_REFUSED]
    + [("operator", s) for s in OPERATOR_REFUSED]
    + [("service", s) for s in SERVICE_REFUSED],
)
def test_each_role_is_refused_everything_it_does_not_need(
    admin: Conn, request: pytest.FixtureRequest, role: str, statement: str
) -> None:
    paid_transfer(admin)
    url: str = request.getfixturevalue(f"{role}_url")  # a login of that role

    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_no_role_owns_anything_nor_may_create_in_the_schema(admin: Conn) -> None:
    for role in (WORKER, OPERATOR, SERVICE):
        held = admin.execute(
            "SELECT has_schema_privilege(%(role)s, current_schema(), 'CREATE'), "
            "(SELECT count(*) FROM pg_class WHERE relowner = %(role)s::regrole), "
            "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
            "  AND c.relkind = 'r' AND (has_table_privilege(%(role)s, c.oid, 'TRUNCATE')"
            "  OR has_table_privilege(%(role)s, c.oid, 'DELETE')"
            "  OR has_table_privilege(%(role)s, c.oid, 'TRIGGER')))",
            {"role": role},
        ).fetchone()
        rolled = admin.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()

        assert held == (False, 0, 0), role
        assert rolled == (False, False, False, False, False), role


# -- least privilege: each role does its work --------------------------------------------------


@pytest.fixture
def stripe() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running(fake_stripe.FakeStripe()) as server:
        yield server


def test_a_worker_login_runs_the_loop_and_an_operator_login_the_operators_commands(
    database_url: str,
    worker_url: str,
    operator_url: str,
    stripe: fake_stripe.FakeStripeServer,
    tmp_path: Path,
) -> None:
    stripe_env = {"STRIPE_API_KEY": stripe.api_key, "PAYOUT_STRIPE_API_BASE": stripe.url}
    worker = cli.cli_env(worker_url, **stripe_env)
    operator = cli.cli_env(operator_url, **stripe_env)
    for user, account in (("u-1", "acct_1One"), ("u-2", "acct_1Two")):
        stripe.fake.add_account(account)
        assert cli.run_cli("accounts", "set", user, account, env=operator).returncode == 0
    # u-3 has no account yet: failed, then reissued once it has one.
    stdin = json.dumps(cli.settlement("stl-op", {"u-1": 1000, "u-3": 700}))
    assert cli.run_cli("schedule", "-", env=operator, stdin=stdin).returncode == 0
    # Another service's settlement, through the inbox.
    cli.query(
        database_url,
        "INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES (%s, %s)",
        ("stl-inbox", json.dumps(cli.settlement("stl-inbox", {"u-2": 500}))),
    )

    looped = cli.run_cli("loop", "--once", env=worker)

    assert looped.returncode == 0, looped.describe()
    assert statuses(database_url) == [
        ("u-1", "completed"),
        ("u-2", "completed"),
        ("u-3", "failed_terminal"),
    ]
    [(paid, failed)] = cli.query(
        database_url,
        "SELECT (SELECT id::text FROM payout_transfers WHERE user_id = 'u-1'), "
        "(SELECT id::text FROM payout_transfers WHERE user_id = 'u-3')",
    )

    def as_operator(*args: str) -> None:
        done = cli.run_cli(*args, env=operator)
        assert done.returncode == 0, done.describe()

    as_operator("pause", *WHO)
    as_operator("status", "--json")
    as_operator("resume", *WHO)
    stripe.fake.add_account("acct_1Three")
    as_operator("accounts", "set", "u-3", "acct_1Three")
    as_operator("transfers", "reissue", failed, *WHO)
    looped_again = cli.run_cli("loop", "--once", env=worker)
    assert looped_again.returncode == 0, looped_again.describe()
    assert statuses(database_url)[-2:] == [("u-3", "completed"), ("u-3", "failed_terminal")]
    as_operator("transfers", "reverse", paid, "--amount", "300", *WHO)
    as_operator("transfers", "show", paid)
    as_operator("reconcile")
    as_operator(
        "ledger", "export", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"
    )

    # Stripe's events: stored and applied by the worker (a dashboard reversal).
    [(stripe_transfer,)] = cli.query(
        database_url, "SELECT stripe_transfer_id FROM payout_transfers WHERE user_id = 'u-1'"
    )
    dashboard = stripe.fake.reverse_transfer(stripe_transfer, 200)
    event = stripe.fake.event_for(stripe_transfer, "transfer.reversed")
    serve_env = {
        **worker,
        "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0",
        "STRIPE_WEBHOOK_SECRET": deliveries.DEFAULT_SECRET,
    }
    with cli.start_loop(env=serve_env, directory=tmp_path, command=("webhooks", "serve")) as serve:
        assert deliveries.deliver(serve.webhooks_url(), event) == [200]
        wait_for(
            "the event applied",
            lambda: cli.query(
                database_url, "SELECT outcome FROM payout_webhook_events WHERE outcome IS NOT NULL"
            ),
        )
        serve.terminate()
        assert serve.wait() == 0, serve.describe()

    booked = cli.query(
        database_url,
        "SELECT amount_cents, stripe_reversal_id FROM payout_ledger "
        "WHERE entry_type = 'payout_reversed' ORDER BY id",
    )
    assert [a for a, _ in booked] == [300, 200]
    assert booked[1][1] == dashboard["id"]
    actions = cli.query(database_url, "SELECT action FROM payout_operator_actions ORDER BY id")
    assert actions == [("pause",), ("resume",), ("reissue",), ("reverse",)]


def statuses(database_url: str) -> list[tuple[Any, ...]]:
    return cli.query(
        database_url, "SELECT user_id, status FROM payout_transfers ORDER BY user_id, status"
    )


@pytest.mark.parametrize(
    ("args", "table"),
    [
        (("pause", *WHO), "payout_control"),
        (("accounts", "set", "u-1", "acct_1Elsewhere"), "user_stripe_accounts"),
    ],
    ids=["pause", "accounts-set"],
)
def test_a_worker_login_cannot_run_an_operators_command(
    database_url: str, worker_url: str, args: tuple[str, ...], table: str
) -> None:
    refused = cli.run_cli(*args, env=cli.cli_env(worker_url))

    assert refused.returncode == 1, refused.describe()  # not the operator's input
    assert f"permission denied for table {table}" in refused.output
    assert "payout_operator" in refused.output
    assert "Traceback" not in refused.output
    assert cli.query(database_url, "SELECT paused FROM payout_control") == [(False,)]
    assert cli.query(database_url, "SELECT count(*) FROM user_stripe_accounts") == [(0,)]


def test_a_worker_settles_an_operators_reversal_that_stripes_event_reports(
    admin: Conn, worker_url: str, operator_url: str
) -> None:
    """The webhook receiver's one write on the operators' behalf: a reversal
    left in doubt by `transfers reverse` is settled by Stripe's event, with
    the operator's audit row."""
    rows.insert_job(admin)
    rows.insert_transfer(admin, status="completed", stripe_transfer_id="tr_1", attempt_count=1)
    rows.insert_ledger(admin, rows.ledger_row())
    now = datetime(2026, 11, 30, tzinfo=UTC)
    key = f"payout-reversal:{rows.TRANSFER}:1"
    asked = models.Reversal(
        id=str(uuid.uuid4()),
        transfer_id=str(rows.TRANSFER),
        sequence=1,
        idempotency_key=key,
        stripe_transfer_id="tr_1",
        amount_cents=400,
        currency="usd",
        actor="ops-1",
        reason="disqualified",
        created_at=now,
        updated_at=now,
    )
    with stores(operator_url) as operator:
        assert isinstance(operator.reversal_intent(asked), models.Reversal)
    reported = outcomes.StripeReversal(
        id="trr_1",
        stripe_transfer_id="tr_1",
        amount_cents=400,
        currency="usd",
        created_at=now,
        payout_reversal_key=key,
    )

    with stores(worker_url) as worker:
        transfer = worker.get_transfer(str(rows.TRANSFER))
        assert transfer is not None
        booked = reversals.book_from_stripe(worker, transfer, [reported], now=now)

    assert booked == 1
    assert admin.execute("SELECT status FROM payout_reversals").fetchall() == [("completed",)]
    assert admin.execute("SELECT action, actor FROM payout_operator_actions").fetchall() == [
        ("reverse", "ops-1")
    ]


@contextlib.contextmanager
def stores(url: str, **pool_options: Any) -> Iterator[postgres.PostgresStore]:
    pool = postgres.connect_pool(url, max_size=2, **pool_options)
    try:
        yield postgres.PostgresStore(pool)
    finally:
        pool.close()


def test_a_service_login_enqueues_in_its_transaction_and_reads_its_payouts_back(
    database_url: str, service_url: str
) -> None:
    settlement = {
        "settlement_id": "stl-svc",
        "contest_id": "c-svc",
        "currency": "usd",
        "winners": [{"user_id": "u-1", "amount_cents": 700}],
    }
    with postgres.connect(service_url) as payouts, psycopg.connect(service_url) as conn:
        with conn.transaction():
            payout = payouts.enqueue(conn, settlement)
        assert payouts.schedule(settlement) == payouts.get(payout.id)
        assert payouts.status(payout.id) is models.JobStatus.PENDING
        conn.execute(
            "INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES (%s, %s)",
            ("stl-other", Jsonb({**settlement, "settlement_id": "stl-other"})),
        )
        conn.commit()
    assert cli.query(database_url, "SELECT count(*) FROM payout_settlement_inbox") == [(1,)]


# -- roles are the server's: made once, or asked for --------------------------------------------


def test_the_roles_are_made_once_per_server_and_a_role_that_may_not_is_told_how(
    tmp_path: Path,
) -> None:
    # A server of this test's own: a new one has neither role (and goes with the test).
    with cli.dedicated_postgres(tmp_path / "pg") as server:
        superuser = server.url
        owner, databases = "payout_owner", [f"payout_{n}" for n in ("owned", "a", "b")]
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute("CREATE ROLE payout_owner LOGIN")  # no CREATEROLE
            for name in databases:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            conn.execute("ALTER DATABASE payout_owned OWNER TO payout_owner")
        owned = as_role(make_conninfo(superuser, dbname="payout_owned"), owner)

        with pytest.raises(postgres.MigrationError) as refused:
            postgres.migrate(owned)
        assert refused.value.name == "0012_worker_role.sql"
        assert "CREATE ROLE payout_worker NOLOGIN" in str(refused.value)
        assert postgres.pending_migrations(owned)[0] == "0012_worker_role.sql"

        # Several databases of the server migrating at once: one makes the roles.
        failures: list[BaseException] = []

        def migrate(name: str) -> None:
            try:
                postgres.migrate(make_conninfo(superuser, dbname=name))
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=migrate, args=(n,)) for n in databases[1:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=cli.COMMAND_DEADLINE)
        assert failures == []

        # Now the owner's migration finds them, and grants its own tables.
        assert postgres.migrate(owned)[0] == "0012_worker_role.sql"
        with psycopg.connect(superuser) as conn:
            made = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s, %s) ORDER BY 1",
                (WORKER, OPERATOR, SERVICE),
            ).fetchall()
        assert made == [(OPERATOR,), (SERVICE,), (WORKER,)]


# -- statement_timeout -----------------------------------------------------------------------


def test_every_pooled_connection_runs_with_the_configured_statement_timeout(
    database_url: str,
) -> None:
    configured = settings.Settings(database_url=database_url, statement_timeout_seconds=2.5)
    with bootstrap.open_database(configured, max_size=1) as db, db.pool.connection() as conn:
        shown = conn.execute("SHOW statement_timeout").fetchone()
    # The connection string's own options are kept beside it.
    pool = postgres.connect_pool(
        make_conninfo(database_url, options="-c lock_timeout=1234"), max_size=1
    )
    try:
        with pool.connection() as conn:
            both = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
            ).fetchone()
    finally:
        pool.close()

    assert shown == ("2500ms",)
    assert both == ("30s", "1234ms")  # postgres.DEFAULT_STATEMENT_TIMEOUT_SECONDS


def test_a_statement_over_the_timeout_is_cancelled_and_reported_as_store_unavailable(
    database_url: str,
) -> None:
    with (
        psycopg.connect(database_url) as locker,
        stores(database_url, statement_timeout=0.2) as store,
    ):
        # A stuck session holding a lock the worker needs. Against a hang, should the
        # timeout not apply: the server ends that session after 20 s, and the read
        # below then succeeds, which fails the test instead.
        locker.execute("SET idle_in_transaction_session_timeout = '20s'")
        locker.execute("LOCK TABLE payout_control IN ACCESS EXCLUSIVE MODE")

        with pytest.raises(errors.StoreUnavailable, match="statement timeout"):
            store.pause_state()

        locker.rollback()
        assert store.pause_state().paused is False  # the pool's connection is fine


def test_migrations_run_with_their_own_longer_statement_timeout(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_slow.sql").write_text(
        "SELECT pg_sleep(0.5);\n"
        "DO $$ BEGIN\n"
        "  IF current_setting('statement_timeout') <> '1h' THEN\n"
        "    RAISE EXCEPTION 'statement_timeout is %', current_setting('statement_timeout');\n"
        "  END IF;\n"
        "END $$;\n"
    )
    pool = postgres.connect_pool(empty_database_url, max_size=1, statement_timeout=0.2)
    try:
        applied = postgres.migrate(pool, tmp_path)
        with pool.connection() as conn:
            after = conn.execute("SHOW statement_timeout").fetchone()
    finally:
        pool.close()

    assert applied == ["0001_slow.sql"]
    assert after == ("200ms",)  # the pooled connection went back as it came


# -- the admin endpoint ----------------------------------------------------------------------


def get(url: str, *, timeout: float) -> int:
    """The status of a GET; raises on no answer within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_readyz_answers_503_within_a_second_while_the_database_is_down(tmp_path: Path) -> None:
    with cli.dedicated_postgres(tmp_path / "pg") as server:
        postgres.migrate(server.url)
        env = cli.cli_env(
            server.url, PAYOUT_ADMIN_ADDR="127.0.0.1:0", PAYOUT_INTERVAL_SECONDS="3600"
        )
        with cli.start_loop("--gateway", "simulated", env=env, directory=tmp_path) as loop:
            readyz = f"{loop.admin_url()}/readyz"
            wait_for("ready", lambda: get(readyz, timeout=5) == 200)

            server.stop()
            # A bound against hangs, not a measurement: the one second.
            statuses = [get(readyz, timeout=1.0) for _ in range(3)]
            healthz = get(f"{loop.admin_url()}/healthz", timeout=1.0)
            server.start()
            wait_for("ready again", lambda: get(readyz, timeout=5) == 200)
            assert loop.running(), loop.describe()

    assert statuses == [503, 503, 503]
    assert healthz == 200


def admin_server(
    ready: Callable[[], bool], *, host: str, deadline: float = admin_.READY_DEADLINE_SECONDS
) -> admin_.AdminServer:
    return admin_.AdminServer(
        settings.AdminAddress(host, 0),
        runner.Registry(interval_seconds=60),
        metrics_.Metrics(),
        ready=ready,
        ready_deadline=deadline,
    )


def test_readyz_answers_503_in_time_when_the_check_hangs_and_runs_one_check_at_a_time() -> None:
    release = threading.Event()
    checks: list[float] = []

    def hanging() -> bool:
        checks.append(time.monotonic())
        release.wait(30)
        return True

    server = admin_server(hanging, host="127.0.0.1", deadline=0.2)
    server.start()
    try:
        readyz = f"http://{server.bound}/readyz"
        hung = [get(readyz, timeout=5) for _ in range(3)]
        checks_while_hung = len(checks)
        release.set()
        wait_for("the hung check to end", lambda: get(readyz, timeout=5) == 200)
    finally:
        server.close()

    assert hung == [503, 503, 503]
    assert checks_while_hung == 1  # shared by the three probes, not a thread each


def test_the_admin_endpoint_listens_on_loopback_unless_told_otherwise() -> None:
    default = settings.Settings.from_sources({}).admin_addr
    assert default is not None
    server = admin_server(lambda: True, host=default.host)
    server.start()
    try:
        bound = server.bound
        assert bound.host == "127.0.0.1"
        assert get(f"http://{bound}/healthz", timeout=5) == 200
        # This host's address on its network, if it has one: nothing listens there.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routes, sends nothing
            outside = probe.getsockname()[0]
        if not outside.startswith("127."):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outside, bound.port), timeout=5).close()
    finally:
        server.close()
