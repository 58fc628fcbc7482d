"""The PostgreSQL store: the store contract suite, and what only a database can show."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import attrs
import psycopg
import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_adapters.memory import ManualClock
from payout_adapters.postgres import database, rows
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, ledger, models, ports, validation
from payout_core import reversal as rules
from payout_core import state_machine as sm
from payout_core.services import scheduling
from tests.contracts.store_contract import StoreContract
from tests.integration.test_schema import wait_until_blocked_or_done
from tests.kit import builders as b
from tests.kit.times import LEASE, T0
from tests.kit.waiting import wait_for

Conn = psycopg.Connection[tuple[Any, ...]]


class TestPostgresStoreKeepsTheStoreContract(StoreContract):
    """The contract suite the in-memory store passes, unchanged, on PostgreSQL."""

    @pytest.fixture
    def store(
        self, pool: psycopg_pool.ConnectionPool, clock: ManualClock
    ) -> postgres.PostgresStore:
        # The test clock stands for the database's: the suite moves time on both stores.
        return postgres.PostgresStore(pool, clock=clock)


# -- what the contract cannot show ---------------------------------------------------


@pytest.fixture
def database_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def pg_store(
    pool: psycopg_pool.ConnectionPool, database_clock: ManualClock
) -> postgres.PostgresStore:
    return postgres.PostgresStore(pool, clock=database_clock)


def settle(
    store: ports.PayoutStore,
    *winners: tuple[str, int],
    settlement_id: str = "s-1",
    contest_id: str = "c-1",
    max_attempts: int = 5,
) -> models.PayoutJob:
    settlement = validation.parse_settlement(
        {
            "settlement_id": settlement_id,
            "contest_id": contest_id,
            "currency": "usd",
            "winners": [{"user_id": u, "amount_cents": a} for u, a in winners],
        }
    )
    return scheduling.schedule_payout_for_settlement(
        store=store, settlement=settlement, now=T0, max_attempts=max_attempts
    ).job


def claim_one(store: ports.PayoutStore, token: str) -> models.PayoutTransfer:
    (claimed,) = store.claim_due(limit=1, lease=LEASE, token=token)
    return claimed


# -- scheduling ------------------------------------------------------------------


def test_the_table_shows_the_stripe_idempotency_key_in_use(
    pg_store: postgres.PostgresStore, admin: Conn
) -> None:
    settle(pg_store, ("u-1", 1500))
    claimed = claim_one(pg_store, "c-1")
    sent = pg_store.write_intent(claimed=claimed, destination="acct_1", margin=LEASE / 10)
    assert isinstance(sent, models.PayoutTransfer)
    first = admin.execute("SELECT idempotency_key FROM payout_transfers").fetchone()

    # A look-up found nothing at Stripe: the next attempt goes out under a new key.
    moved_on = sm.retry(
        sm.new_key_generation(sent, now=T0), next_attempt_at=T0, code="x", message="x", now=T0
    )
    assert pg_store.record(claimed=sent, updated=moved_on, ledger_entry=None, now=T0)

    second = admin.execute("SELECT idempotency_key FROM payout_transfers").fetchone()
    assert (first, second) == ((f"payout:{claimed.id}",), (f"payout:{claimed.id}:1",))


def test_a_refused_write_names_the_constraint(pg_store: postgres.PostgresStore) -> None:
    job = settle(pg_store, ("u-1", 1500))
    (transfer,) = pg_store.transfers_of(job.id)
    too_much = validation.MAX_AMOUNT_CENTS + 1
    other = attrs.evolve(
        job, id=str(uuid.uuid4()), settlement_id="s-2", total_amount_cents=too_much
    )
    bad = attrs.evolve(
        transfer,
        id=str(uuid.uuid4()),
        job_id=other.id,
        settlement_id="s-2",
        user_id="u-2",
        amount_cents=too_much,
    )

    with pytest.raises(errors.StoreRefused, match="payout_transfers_amount_cents_check"):
        pg_store.schedule(other, [bad])
    assert pg_store.find_job("s-2") is None


def test_a_winner_twice_in_one_job_is_refused_by_the_schema_and_nothing_written(
    pg_store: postgres.PostgresStore,
) -> None:
    """The store writes the plan the core validated, without judging it again;
    what got past the core, the partial unique index still refuses."""
    twice = b.settlement("u-1", "u-2", "u-1")  # built by hand: never validated
    job = b.make_job(twice, now=T0)

    with pytest.raises(errors.DuplicatePayout, match="u-1"):
        pg_store.schedule(job, b.make_transfers(job, twice, now=T0))

    assert pg_store.find_job("s-1") is None
    assert pg_store.transfers_of(job.id) == []


# -- claims ----------------------------------------------------------------------


def test_claims_and_intents_compute_what_the_state_machine_computes(
    pg_store: postgres.PostgresStore, database_clock: ManualClock
) -> None:
    job = settle(pg_store, ("u-1", 1500), max_attempts=2)
    (pending,) = pg_store.transfers_of(job.id)
    margin = timedelta(seconds=60)

    first = claim_one(pg_store, "claim-1")
    assert first == sm.claim(pending, now=T0, lease=LEASE, token="claim-1")
    database_clock.advance(2)
    intent = pg_store.write_intent(claimed=first, destination="acct_1", margin=margin)
    assert intent == sm.send(first, destination="acct_1", now=database_clock.now(), margin=margin)

    # Its worker died after the intent: the take-over knows, from the row alone.
    database_clock.advance(LEASE)
    second = claim_one(pg_store, "claim-2")
    assert isinstance(intent, models.PayoutTransfer)
    assert second == sm.claim(intent, now=database_clock.now(), lease=LEASE, token="claim-2")
    assert (second.outcome_uncertain, second.attempt_count) == (True, 1)

    # The resend of the uncertain key spends nothing.
    resend = pg_store.write_intent(claimed=second, destination="acct_1", margin=margin)
    assert resend == sm.send(second, destination="acct_1", now=database_clock.now(), margin=margin)
    assert isinstance(resend, models.PayoutTransfer)
    assert (resend.attempt_count, resend.key_sends) == (1, 2)
    assert pg_store.get_transfer(resend.id) == resend


def test_the_intent_guard_in_sql_is_the_state_machines(
    pg_store: postgres.PostgresStore, database_clock: ManualClock
) -> None:
    """The SQL repeats sm.refuse_send; whatever it refuses, the refusal named
    is the one the state machine gives for the stored row."""
    settle(pg_store, ("u-1", 1500))
    claimed = claim_one(pg_store, "claim-1")
    margin = timedelta(seconds=60)
    database_clock.advance(LEASE - margin + timedelta(seconds=1))

    refused = pg_store.write_intent(claimed=claimed, destination="acct_1", margin=margin)

    assert refused is sm.IntentRefusal.LEASE_TOO_SHORT
    assert refused == sm.refuse_send(
        claimed, token="claim-1", destination="acct_1", now=database_clock.now(), margin=margin
    )
    assert pg_store.get_transfer(claimed.id) == claimed


def test_without_a_test_clock_the_database_decides_the_time(
    pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    store = postgres.PostgresStore(pool)
    settle(store, ("u-1", 1500))  # created at T0, in the past

    (claimed,) = store.claim_due(limit=1, lease=LEASE, token="claim-1")

    row = admin.execute("SELECT now(), lease_expires_at FROM payout_transfers").fetchone()
    assert row is not None
    database_now, lease_expires_at = row
    assert claimed.lease_expires_at == lease_expires_at
    # The claim's transaction ran before this one: its now() is a little earlier.
    assert timedelta(0) <= database_now + LEASE - lease_expires_at < timedelta(seconds=30)


def test_a_claim_is_committed_before_it_returns(
    pg_store: postgres.PostgresStore, admin: Conn
) -> None:
    job = settle(pg_store, ("u-1", 1500))

    claimed = claim_one(pg_store, "claim-1")

    seen = admin.execute("SELECT status, claim_token FROM payout_transfers").fetchone()
    assert seen == ("processing", "claim-1")
    assert claimed.job_id == job.id
    stored = pg_store.get_job(job.id)
    assert stored is not None
    assert stored.status is models.JobStatus.PROCESSING


# -- reversals --------------------------------------------------------------------


def test_a_reversal_intent_waits_for_a_credit_being_booked_and_counts_it(
    pg_store: postgres.PostgresStore, database_url: str, admin: Conn
) -> None:
    """The intent locks the transfer as the ledger's trigger does, then reads in
    a statement of its own: a dashboard reversal booked at that very moment is
    counted, never overlooked."""
    transfer = b.paid(pg_store, b.settlement(("u-1", 1500)), now=T0)
    dashboard = ledger.reversal_entry(
        transfer, stripe_reversal_id="trr_dash", amount_cents=1000, now=T0
    )
    answers: list[models.Reversal | ports.ReversalRefused] = []
    with psycopg.connect(database_url) as webhook:
        params = rows.LEDGER.params(dashboard, prefix="ledger_")
        webhook.execute(QUERIES["book_reversal"], params)  # not committed yet
        operator = threading.Thread(
            target=lambda: answers.append(
                pg_store.reversal_intent(b.reversal(transfer, amount_cents=1000, now=T0))
            )
        )
        operator.start()
        wait_until_blocked_or_done(admin, operator)
        webhook.commit()
        operator.join(timeout=10)

    [answer] = answers
    assert isinstance(answer, ports.ReversalRefused), answer
    assert answer.amounts == rules.Amounts(paid=1500, reversed=1000, in_doubt=0)
    assert pg_store.reversals_of(transfer.id) == []


# -- ids, failures -----------------------------------------------------------------


def test_ids_that_are_not_uuids_find_nothing(pg_store: postgres.PostgresStore) -> None:
    assert pg_store.get_job("job-1") is None
    assert pg_store.get_transfer("not a uuid") is None
    assert pg_store.transfers_of("job-1") == []
    assert pg_store.ledger(job_id="job-1") == []


def test_a_database_that_cannot_be_reached_is_unavailable() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1"
    with pytest.raises(errors.StoreUnavailable, match="connect"):
        postgres.connect_pool(unreachable, open_timeout=1)

    pool = psycopg_pool.NullConnectionPool(unreachable, timeout=1, open=True)
    try:
        with pytest.raises(errors.StoreUnavailable, match="claim"):
            postgres.PostgresStore(pool).claim_due(limit=1, lease=LEASE, token="t")
    finally:
        pool.close()


def test_connections_the_server_dropped_are_replaced_without_a_failure(
    pg_store: postgres.PostgresStore, pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    job = settle(pg_store, ("u-1", 1500))
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    admin.execute("SELECT pg_terminate_backend(pid) " + others)
    # Dropped: the server's sessions are gone (pg_terminate_backend only signals them).
    wait_for(
        "the terminated sessions to end",
        lambda: admin.execute("SELECT count(*) " + others).fetchone() == (0,),
    )

    assert pg_store.get_job(job.id) == job
    assert not pool.closed


class _CutOffConnection:
    """A pooled connection whose session the server ended mid-statement: psycopg
    leaves it ACTIVE, not closed, and refuses to change its autocommit."""

    closed = False

    def __init__(self) -> None:
        self.autocommit_value = False

    @property
    def autocommit(self) -> bool:
        return self.autocommit_value

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if self.autocommit_value and not value:
            raise psycopg.ProgrammingError(
                "can't change 'autocommit' now: connection in transaction status ACTIVE"
            )
        self.autocommit_value = value

    def close(self) -> None:
        self.closed = True


class _OneConnectionPool:
    def __init__(self, conn: _CutOffConnection) -> None:
        self.conn = conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[_CutOffConnection]:
        yield self.conn


def test_a_session_cut_off_mid_statement_is_reported_unavailable_and_closed() -> None:
    # The chaos suite's seed 336560: a database restart cut off a claim's
    # pipeline; putting the connection back out of autocommit raised a
    # ProgrammingError that hid the outage (no StoreUnavailable) and failed the tick.
    conn = _CutOffConnection()
    db = database.Database(cast(psycopg_pool.ConnectionPool, _OneConnectionPool(conn)))

    def cut_off() -> None:
        with db.autocommit("claim due transfers"):
            raise psycopg.OperationalError("cannot exit pipeline mode while busy")

    with pytest.raises(errors.StoreUnavailable, match="claim due transfers: the database failed"):
        cut_off()
    assert conn.closed  # the pool replaces it


def test_a_database_without_the_schema_says_to_migrate(empty_database_url: str) -> None:
    pool = postgres.connect_pool(empty_database_url, max_size=1)
    try:
        with pytest.raises(errors.StoreUnavailable, match="payout-core migrate"):
            postgres.PostgresStore(pool).find_job("s-1")
    finally:
        pool.close()


# -- connected accounts and the inbox ---------------------------------------------


@pytest.fixture
def directory(pool: psycopg_pool.ConnectionPool) -> postgres.PostgresAccountDirectory:
    return postgres.PostgresAccountDirectory(pool)


def test_a_user_is_paid_to_the_account_last_connected(
    directory: postgres.PostgresAccountDirectory,
) -> None:
    assert directory.account_for("u-1") is None
    directory.set_account("u-1", "acct_first")
    directory.set_account("u-1", "acct_second")

    assert directory.account_for("u-1") == "acct_second"


def test_only_an_acct_id_can_be_connected(directory: postgres.PostgresAccountDirectory) -> None:
    directory.set_account("u-1", "acct_first")

    with pytest.raises(ValueError, match="tr_123"):
        directory.set_account("u-1", "tr_123")

    assert directory.account_for("u-1") == "acct_first"


@pytest.fixture
def inbox(pool: psycopg_pool.ConnectionPool) -> postgres.PostgresInbox:
    return postgres.PostgresInbox(pool)


def test_the_inbox_gives_new_rows_oldest_first_until_each_has_a_verdict(
    inbox: postgres.PostgresInbox, pg_store: postgres.PostgresStore, admin: Conn
) -> None:
    for settlement_id, payload in [("s-1", {"settlement_id": "s-1"}), ("s-2", ["garbage"])]:
        admin.execute(
            "INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES (%s, %s)",
            (settlement_id, json.dumps(payload)),
        )
    first, second = inbox.unprocessed(limit=10)
    assert (first.settlement_id, first.payload) == ("s-1", {"settlement_id": "s-1"})
    assert (second.settlement_id, second.payload) == ("s-2", ["garbage"])

    job = settle(pg_store, ("u-1", 1500))
    inbox.mark_accepted(first.id, job_id=job.id, now=T0)
    inbox.mark_rejected(second.id, reason="payload: must be a JSON object", now=T0)
    inbox.mark_rejected(first.id, reason="too late", now=T0)  # the first verdict stays

    assert inbox.unprocessed(limit=10) == []
    rows = admin.execute(
        "SELECT status, job_id::text, rejected_reason, taken_at FROM payout_settlement_inbox "
        "ORDER BY id"
    ).fetchall()
    assert rows == [
        ("accepted", job.id, None, T0),
        ("rejected", None, "payload: must be a JSON object", T0),
    ]


def _the_adapters_fit_their_ports(pool: psycopg_pool.ConnectionPool) -> None:
    """Never run: mypy checks each adapter against the port it implements."""
    store: ports.PayoutStore = postgres.PostgresStore(pool)
    directory: ports.AccountDirectory = postgres.PostgresAccountDirectory(pool)
    inbox: ports.SettlementInbox = postgres.PostgresInbox(pool)
    del store, directory, inbox
