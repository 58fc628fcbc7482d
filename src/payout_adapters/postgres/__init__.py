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
from payout_adapters.postgres.pool import (
    DEFAULT_STATEMENT_TIMEOUT_SECONDS,
    connect_pool,
    session_options,
)
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
