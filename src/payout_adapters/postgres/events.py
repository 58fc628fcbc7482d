"""Stripe's events on PostgreSQL: ``payout_webhook_events`` (migrations/0010).

The webhook endpoint stores each verified event with :meth:`PostgresEventInbox.accept`
before it answers Stripe; the runner applies them later, in arrival order.
Stripe delivers an event until it is answered 2xx, and sometimes twice: the
event's id is the primary key, so a second delivery stores nothing.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import psycopg_pool

from payout_adapters.postgres import rows
from payout_adapters.postgres.database import Database
from payout_adapters.postgres.queries import QUERIES
from payout_core import ports

__all__ = ["PostgresEventInbox"]


class PostgresEventInbox:
    """:class:`payout_core.ports.EventInbox` on ``payout_webhook_events``.

    The payload is stored as ``jsonb``: it comes back as the same JSON, not
    byte for byte as Stripe sent it (the signature was checked before).
    """

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._db = Database(pool)

    def accept(self, event: ports.StripeEvent) -> bool:
        """See the port; a payload that is not JSON is refused (``ValueError``)."""
        params = rows.EVENTS.params(event)
        try:
            row = self._db.fetch_one("store a Stripe event", QUERIES["accept_event"], params)
        except psycopg.DataError as exc:
            raise ValueError(f"event {event.id}: the payload is not JSON ({exc})") from exc
        return row is not None

    def unprocessed(self, *, limit: int) -> list[ports.StripeEvent]:
        found = self._db.fetch_all(
            "read Stripe's events", QUERIES["unprocessed_events"], {"limit": max(limit, 0)}
        )
        return [rows.EVENTS.from_row(row) for row in found]

    def mark_processed(self, event_id: str, *, outcome: str, now: datetime) -> None:
        with self._db.statements("mark a Stripe event applied") as cursor:
            cursor.execute(
                QUERIES["mark_event_processed"], {"id": event_id, "outcome": outcome, "now": now}
            )
