"""Stripe's events on PostgreSQL: the event inbox contract, and what only the table shows."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_adapters.postgres import queries as q
from tests.contracts.event_inbox_contract import EventInboxContract, stripe_event
from tests.kit.times import T0

Conn = psycopg.Connection[tuple[Any, ...]]


class TestPostgresEventInbox(EventInboxContract):
    @pytest.fixture
    def inbox(self, pool: psycopg_pool.ConnectionPool) -> postgres.PostgresEventInbox:
        return postgres.PostgresEventInbox(pool)


def test_an_event_is_stored_as_json_with_its_first_outcome(
    pool: psycopg_pool.ConnectionPool, admin: Conn
) -> None:
    inbox = postgres.PostgresEventInbox(pool)
    event = stripe_event("evt_1")
    assert inbox.accept(event)

    inbox.mark_processed("evt_1", outcome="booked 1", now=T0)
    inbox.mark_processed("evt_1", outcome="booked 0", now=T0)

    row = admin.execute(
        "SELECT type, payload, received_at, processed_at, outcome FROM payout_webhook_events"
    ).fetchone()
    assert row == ("transfer.reversed", json.loads(event.payload), T0, T0, "booked 1")


def test_the_unprocessed_events_are_read_from_their_index(admin: Conn) -> None:
    admin.execute(
        "INSERT INTO payout_webhook_events (id, type, payload, processed_at, outcome) "
        "SELECT 'evt_' || n, 'transfer.updated', '{}', now(), 'done' "
        "FROM generate_series(1, 5000) AS n"
    )
    admin.execute("ANALYZE payout_webhook_events")

    plan = admin.execute(
        "EXPLAIN (FORMAT JSON) " + q.QUERIES["unprocessed_events"], {"limit": 100}
    ).fetchone()

    assert plan is not None
    assert "payout_webhook_events_unprocessed_idx" in json.dumps(plan[0])
