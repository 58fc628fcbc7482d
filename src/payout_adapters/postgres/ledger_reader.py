"""The ledger export's reader on PostgreSQL: one snapshot, streamed from a server-side cursor.

:class:`PostgresLedgerReader` implements
:class:`payout_core.services.ledger_export.LedgerReader`. An export runs in
one read-only REPEATABLE READ transaction (``read_one_snapshot``), so every
row comes from one moment and rows booked meanwhile are not half in it; the
rows come through a named (server-side) cursor, ``batch_size`` at a time, so
the process holds one batch whatever the window holds. Rows become models
through the column map :data:`payout_adapters.postgres.rows.LEDGER`, like
every other ledger read; the statements are ``ledger_in_window`` and
``ledger_of_job_in_window`` of ``sql/queries.sql``.

The connection stays borrowed from the pool for as long as the caller
iterates (the export writes each row before it asks for the next): the one
place an adapter holds a connection across the caller's work, and a long
transaction holds back vacuum while it lasts (seconds per million rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg_pool
from psycopg.rows import dict_row

from payout_adapters.postgres import rows, translate
from payout_adapters.postgres.queries import QUERIES
from payout_core import models

__all__ = ["PostgresLedgerReader"]


class PostgresLedgerReader:
    """Borrows a connection of ``pool`` for each export; never closes the pool."""

    def __init__(self, pool: psycopg_pool.ConnectionPool, *, batch_size: int = 2000) -> None:
        self._pool = pool
        self._batch_size = batch_size

    def entries(
        self, *, since: datetime, until: datetime, job_id: str | None = None
    ) -> Iterator[models.LedgerEntry]:
        """See :meth:`payout_core.services.ledger_export.LedgerReader.entries`.
        Nothing is read until the first row is asked for.

        Raises:
            StoreUnavailable: the database failed, or its schema is behind.
        """
        job_key = None if job_id is None else rows.as_uuid(job_id)
        if job_id is not None and job_key is None:
            return  # not an id any row can have
        query = QUERIES["ledger_in_window"]
        if job_key is not None:
            query = QUERIES["ledger_of_job_in_window"]
        with (
            translate.unavailable("read the ledger"),
            self._pool.connection() as conn,
        ):
            conn.execute(QUERIES["read_one_snapshot"])
            conn.execute(QUERIES["plan_for_every_row"])
            with conn.cursor("payout_ledger_export", row_factory=dict_row) as cursor:
                cursor.itersize = self._batch_size
                cursor.execute(query, {"since": since, "until": until, "job_id": job_key})
                for row in cursor:
                    yield rows.LEDGER.from_row(row)
