"""The PostgreSQL store: payout-core's ``PayoutStore`` on psycopg 3 and a connection pool.

Every method is one short unit of work on a connection borrowed from the pool
and given back before the method returns (:mod:`.database`): no connection,
transaction or lock is ever held while the gateway is called. The SQL is in
``sql/queries.sql`` (:mod:`.queries`); rows become models through the column
maps of :mod:`.rows`.

The store is assembled from one part per concern, each in its own module:

* scheduling: :mod:`.jobs` (also usable on a caller's own connection);
* claims and send intents: :mod:`.store_claims`;
* outcomes, resolves and reissues: :mod:`.store_outcomes`;
* reversals: :mod:`.store_reversals`;
* the pause, operator actions, runs and counts: :mod:`.store_operating`;
* reads of jobs, transfers and the ledger: :mod:`.store_reads`.

The adapters take a :class:`psycopg_pool.ConnectionPool` that the caller opened
(:func:`payout_adapters.postgres.connect_pool`) and never close it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg_pool

from payout_adapters.postgres import jobs
from payout_adapters.postgres.database import Database
from payout_adapters.postgres.store_claims import Claims
from payout_adapters.postgres.store_operating import Operating
from payout_adapters.postgres.store_outcomes import Outcomes
from payout_adapters.postgres.store_reads import Reads
from payout_adapters.postgres.store_reversals import Reversals
from payout_core import models, ports

__all__ = ["PostgresStore"]


class PostgresStore(Claims, Outcomes, Reversals, Operating, Reads):
    """:class:`payout_core.ports.PayoutStore` on PostgreSQL.

    Safe to share between threads and processes: concurrency is the
    database's (row locks, ``SKIP LOCKED``, unique indexes), not this object's.

    Every lease, due and key-age decision uses the database's clock
    (``now()``). ``clock`` replaces it, for tests only: a
    :class:`~payout_adapters.memory.ManualClock` standing for the database's
    time, so that the store contract suite can move time on both stores.
    """

    def __init__(
        self, pool: psycopg_pool.ConnectionPool, *, clock: ports.Clock | None = None
    ) -> None:
        self._db = Database(pool)
        self._clock = clock

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ports.ScheduleResult:
        with self._db.autocommit("schedule a payout") as conn:
            return jobs.schedule_on(conn, job, transfers)
