"""The PostgreSQL account directory and settlement inbox keep their ports' contracts."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_core import ports
from tests.contracts.directory_contract import Connect, DirectoryContract, Disconnect
from tests.contracts.inbox_contract import InboxContract, Send
from tests.kit import builders as b
from tests.kit.times import T0

Conn = psycopg.Connection[tuple[Any, ...]]


class TestPostgresAccountDirectory(DirectoryContract):
    @pytest.fixture
    def pg_directory(self, pool: psycopg_pool.ConnectionPool) -> postgres.PostgresAccountDirectory:
        return postgres.PostgresAccountDirectory(pool)

    @pytest.fixture
    def directory(self, pg_directory: postgres.PostgresAccountDirectory) -> ports.AccountDirectory:
        return pg_directory

    @pytest.fixture
    def connect(self, pg_directory: postgres.PostgresAccountDirectory) -> Connect:
        return pg_directory.set_account

    @pytest.fixture
    def disconnect(self, admin: Conn) -> Disconnect:
        # The adapter has no way to disconnect: the service that owns the
        # accounts deletes the row, as it would.
        def disconnect(user_id: str) -> None:
            admin.execute("DELETE FROM user_stripe_accounts WHERE user_id = %s", (user_id,))

        return disconnect


class TestPostgresInbox(InboxContract):
    @pytest.fixture
    def inbox(self, pool: psycopg_pool.ConnectionPool) -> ports.SettlementInbox:
        return postgres.PostgresInbox(pool)

    @pytest.fixture
    def send(self, admin: Conn) -> Send:
        # As another service does, in a transaction of its own (README, "The settlement inbox").
        def send(settlement_id: str, payload: str) -> int:
            row = admin.execute(
                "INSERT INTO payout_settlement_inbox (settlement_id, payload) "
                "VALUES (%s, %s::jsonb) RETURNING id",
                (settlement_id, payload),
            ).fetchone()
            assert row is not None
            return int(row[0])

        return send

    @pytest.fixture
    def job_id(self, pool: psycopg_pool.ConnectionPool) -> str:
        job, _ = b.schedule(postgres.PostgresStore(pool), b.settlement("u-1"), now=T0)
        return job.id
