"""payout-core on PostgreSQL (psycopg 3 and psycopg_pool).

::

    from payout_adapters import postgres

    postgres.migrate(url)                       # once per deploy; safe to run concurrently
    assert postgres.pending_migrations(url) == []   # what a worker checks before it starts
    pool = postgres.connect_pool(url)           # the caller owns the pool...
    try:
        store = postgres.PostgresStore(pool)    # ...the adapters only borrow from it
        directory = postgres.PostgresAccountDirectory(pool)
        events = postgres.PostgresEventInbox(pool)  # Stripe's, stored by the webhook
        ...
    finally:
        pool.close()
"""

from __future__ import annotations

import select

import psycopg
import psycopg_pool

from payout_adapters.postgres import translate
from payout_adapters.postgres.events import PostgresEventInbox
from payout_adapters.postgres.migrator import MigrationError, migrate, pending_migrations
from payout_adapters.postgres.store import (
    PostgresAccountDirectory,
    PostgresInbox,
    PostgresRateLimiter,
    PostgresStore,
)

__all__ = [
    "MigrationError",
    "PostgresAccountDirectory",
    "PostgresEventInbox",
    "PostgresInbox",
    "PostgresRateLimiter",
    "PostgresStore",
    "connect_pool",
    "migrate",
    "pending_migrations",
]


def connect_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 30.0,
    open_timeout: float = 10.0,
) -> psycopg_pool.ConnectionPool:
    """An opened pool for the adapters; close it when done (``pool.close()``).

    Connections are transactional (``autocommit=False``: each adapter method
    commits its own transaction) and checked before they are handed out, so a
    restarted database costs a failed tick at most, never a restart of the
    worker: one the server wrote to while it sat idle (a termination, its
    socket closed) is tried with a round trip and replaced if dead.
    ``max_size`` should exceed the number of threads that use the store at
    once (the executor's concurrency, plus the runner's own calls).

    Raises:
        StoreUnavailable: no connection could be made within ``open_timeout`` seconds.
    """
    pool: psycopg_pool.ConnectionPool = psycopg_pool.ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": False, "application_name": "payout-core"},
        check=_check_if_the_server_spoke,
        open=False,
    )
    try:
        with translate.unavailable("connect to the database"):
            pool.open(wait=True, timeout=open_timeout)
    except BaseException:
        pool.close()
        raise
    return pool


def _check_if_the_server_spoke(conn: psycopg.Connection[object]) -> None:
    """The pool's check. An idle connection the server has not written to is
    as good as when it was last used; one the server wrote to, which it does
    when it terminates the session or shuts down, is tried with a round trip
    (and replaced by the pool when that fails). Checking every connection
    that way would cost a round trip on every unit of work."""
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        psycopg_pool.ConnectionPool.check_connection(conn)
