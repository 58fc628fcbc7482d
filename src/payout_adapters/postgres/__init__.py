"""payout-core on PostgreSQL (psycopg 3 and psycopg_pool).

For a service, the front door (docs/library.md)::

    from payout_adapters import postgres

    with postgres.connect(url) as payouts:          # payout_core.Payouts, over a pool of its own
        with conn.transaction():                     # the service's own transaction
            payout = payouts.enqueue(conn, settlement)
        payouts.wait(payout.id, timeout=60)

    async with postgres.connect_async(url) as payouts:   # AsyncPayouts: the same, awaited
        ...

``postgres.payouts(pool)`` and ``postgres.async_payouts(pool)`` build them over
a pool the service owns. The engine's adapters, for the command line and the
engine's own tests::

    postgres.migrate(url)                       # once per deploy, as the tables' owner
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

import math
import select
from typing import Final

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from payout_adapters.postgres import translate
from payout_adapters.postgres.aio import (
    AsyncConnection,
    AsyncPayouts,
    async_payouts,
    connect_async,
)
from payout_adapters.postgres.directory import PostgresAccountDirectory
from payout_adapters.postgres.events import PostgresEventInbox
from payout_adapters.postgres.front_door import (
    Connection,
    PostgresEnqueuer,
    connect,
    payouts,
)
from payout_adapters.postgres.inbox import PostgresInbox
from payout_adapters.postgres.migrator import MigrationError, migrate, pending_migrations
from payout_adapters.postgres.rate_limiter import PostgresRateLimiter
from payout_adapters.postgres.store import PostgresStore

__all__ = [
    "DEFAULT_STATEMENT_TIMEOUT_SECONDS",
    "AsyncConnection",
    "AsyncPayouts",
    "Connection",
    "MigrationError",
    "PostgresAccountDirectory",
    "PostgresEnqueuer",
    "PostgresEventInbox",
    "PostgresInbox",
    "PostgresRateLimiter",
    "PostgresStore",
    "async_payouts",
    "connect",
    "connect_async",
    "connect_pool",
    "migrate",
    "payouts",
    "pending_migrations",
    "session_options",
]

# The longest any statement of the adapters may run before the server cancels
# it. Each is short (milliseconds; a claim of a batch, a page of 1,000
# transfers): one that runs this long waits on a lock a stuck session holds,
# or on a server in trouble, and is better failed (StoreUnavailable: the tick
# fails, the next one retries) than left to hold its connection and its locks.
DEFAULT_STATEMENT_TIMEOUT_SECONDS: Final = 30.0


def connect_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 30.0,
    open_timeout: float = 10.0,
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
) -> psycopg_pool.ConnectionPool:
    """An opened pool for the adapters; close it when done (``pool.close()``).

    Connections are transactional (``autocommit=False``: each adapter method
    commits its own transaction) and checked before they are handed out, so a
    restarted database costs a failed tick at most, never a restart of the
    worker: one the server wrote to while it sat idle (a termination, its
    socket closed) is tried with a round trip and replaced if dead.
    ``max_size`` should exceed the number of threads that use the store at
    once (the executor's concurrency, plus the runner's own calls).

    Every connection has ``statement_timeout`` (seconds; ``None`` keeps the
    server's): the server cancels a statement that runs longer, and the
    adapters raise ``StoreUnavailable`` for it. It is set when the connection
    is made (:func:`session_options`), so it costs no round trip.

    Raises:
        StoreUnavailable: no connection could be made within ``open_timeout`` seconds.
    """
    pool: psycopg_pool.ConnectionPool = psycopg_pool.ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={
            "autocommit": False,
            "application_name": "payout-core",
            **session_options(conninfo, statement_timeout=statement_timeout),
        },
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


def session_options(conninfo: str, *, statement_timeout: float | None) -> dict[str, str]:
    """The connection parameters that give each session ``statement_timeout``
    seconds: libpq's ``options``, those ``conninfo`` names first (kept), then
    ``-c statement_timeout=...``, which wins over any given there. Empty when
    ``statement_timeout`` is ``None``.

    (A startup option, not a ``SET`` after connecting: no round trip, and no
    pooled connection ever runs a statement without it. PgBouncer refuses
    startup options it does not know; behind it, set the timeout on the login
    role instead, ``ALTER ROLE ... SET statement_timeout``: docs/security.md.)
    """
    if statement_timeout is None:
        return {}
    if not math.isfinite(statement_timeout) or statement_timeout <= 0:
        raise ValueError(f"statement_timeout must be seconds > 0, got {statement_timeout}")
    milliseconds = max(1, math.ceil(statement_timeout * 1000))
    try:
        given = conninfo_to_dict(conninfo).get("options")
    except psycopg.ProgrammingError:
        given = None  # not a connection string: connecting says why, as it would without us
    ours = f"-c statement_timeout={milliseconds}"
    return {"options": f"{given} {ours}" if given else ours}
