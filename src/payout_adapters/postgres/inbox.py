"""The settlement inbox on PostgreSQL: settlements other services write.

The table is ``payout_settlement_inbox``; the runner takes its rows each tick.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import psycopg.types.json
import psycopg_pool

from payout_adapters.postgres import rows
from payout_adapters.postgres.database import Database
from payout_adapters.postgres.queries import QUERIES
from payout_core import ports, validation

__all__ = ["PostgresInbox"]


class PostgresInbox:
    """:class:`payout_core.ports.SettlementInbox` on ``payout_settlement_inbox``.

    Other services insert rows themselves, in their own transactions::

        INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES ($1, $2);
    """

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._db = Database(pool)

    def unprocessed(self, *, limit: int) -> list[ports.InboxItem]:
        with self._db.statements("read the settlement inbox") as cursor:
            # The payload as the core reads JSON: numbers exact (1e2 and 100.0
            # are the amount 100, as from the command line), and a payload it
            # cannot read (nested deeper than Python parses) an Unreadable, for
            # the row to be rejected instead of failing every tick.
            psycopg.types.json.set_json_loads(validation.payload_from_json, cursor)
            found = cursor.execute(QUERIES["inbox_unprocessed"], {"limit": limit}).fetchall()
        return [
            ports.InboxItem(
                id=row["id"],
                settlement_id=row["settlement_id"],
                payload=row["payload"],
                received_at=row["received_at"],
            )
            for row in found
        ]

    def mark_accepted(self, item_id: int, *, job_id: str, now: datetime) -> None:
        key = rows.as_uuid(job_id)
        if key is None:
            raise ValueError(f"job id must be a UUID, got {job_id!r}")
        with self._db.transaction("mark an inbox row accepted") as cursor:
            cursor.execute(
                QUERIES["inbox_mark_accepted"], {"id": item_id, "job_id": key, "now": now}
            )

    def mark_rejected(self, item_id: int, *, reason: str, now: datetime) -> None:
        with self._db.transaction("mark an inbox row rejected") as cursor:
            cursor.execute(
                QUERIES["inbox_mark_rejected"], {"id": item_id, "reason": reason, "now": now}
            )
