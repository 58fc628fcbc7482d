"""The ledger export's reader on PostgreSQL: one snapshot, streamed from a server-side cursor.

:class:`PostgresLedgerReader` implements
:class:`payout_core.services.ledger_export.LedgerReader`. An export runs in
one read-only REPEATABLE READ transaction (``READ_ONE_SNAPSHOT``), so every
row comes from one moment and rows booked meanwhile are not half in it; the
rows come through a named (server-side) cursor, ``batch_size`` at a time, so
the process holds one batch whatever the window holds. Rows become models
through :func:`payout_adapters.postgres.rows.ledger_entry_from_row`, with the
columns of ``queries.LEDGER_COLUMNS``, like every other ledger read.

The connection stays borrowed from the pool for as long as the caller
iterates (the export writes each row before it asks for the next): the one
place an adapter holds a connection across the caller's work, and a long
transaction holds back vacuum while it lasts (seconds per million rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Final

import psycopg_pool
from psycopg.rows import dict_row

from payout_adapters.postgres import queries as q
from payout_adapters.postgres import rows, translate
from payout_core import models

__all__ = ["PostgresLedgerReader"]

# An export reads every row it asks for: plan for the whole result, not the
# first tenth a cursor is planned for by default. With it, a window of a small
# share of the ledger is a range scan of payout_ledger_created_at_idx (0011)
# and a sort by id on the server; one of most of the ledger, a scan of the
# primary key, already in id order. EXPLAIN on 300,000 rows: docs/performance.md.
PLAN_FOR_EVERY_ROW: Final = "SET LOCAL cursor_tuple_fraction = 1.0"

# A window of the ledger, in write order. Index payout_ledger_created_at_idx,
# or the primary key (see PLAN_FOR_EVERY_ROW).
LEDGER_IN_WINDOW: Final = (
    "SELECT "
    + q.LEDGER_COLUMNS
    + """ FROM payout_ledger WHERE created_at >= %(since)s AND created_at < %(until)s
ORDER BY id"""
)

# A window of one job's rows, in write order. Index payout_ledger_job_idx
# (job_id, id): the job's rows in id order, the window a filter on them.
LEDGER_OF_JOB_IN_WINDOW: Final = (
    "SELECT "
    + q.LEDGER_COLUMNS
    + """ FROM payout_ledger WHERE job_id = %(job_id)s
AND created_at >= %(since)s AND created_at < %(until)s ORDER BY id"""
)


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
        query = LEDGER_IN_WINDOW if job_key is None else LEDGER_OF_JOB_IN_WINDOW
        with (
            translate.unavailable("read the ledger"),
            self._pool.connection() as conn,
        ):
            conn.execute(q.READ_ONE_SNAPSHOT)
            conn.execute(PLAN_FOR_EVERY_ROW)
            with conn.cursor("payout_ledger_export", row_factory=dict_row) as cursor:
                cursor.itersize = self._batch_size
                cursor.execute(query, {"since": since, "until": until, "job_id": job_key})
                for row in cursor:
                    yield rows.ledger_entry_from_row(row)
