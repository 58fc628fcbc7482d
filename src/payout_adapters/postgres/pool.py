"""The adapters' connection pools: how every pooled connection is made.

The store, the front door (sync and async) and the commands all borrow from
pools made here, so each connection is transactional, named, checked, and
bounded by ``statement_timeout`` alike.
"""

from __future__ import annotations

import math
import select
from typing import Any, Final

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from payout_adapters.postgres import translate

__all__ = [
    "DEFAULT_STATEMENT_TIMEOUT_SECONDS",
    "connect_pool",
    "connection_kwargs",
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
        kwargs=connection_kwargs(conninfo, statement_timeout=statement_timeout),
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


def connection_kwargs(conninfo: str, *, statement_timeout: float | None) -> dict[str, Any]:
    """How each pooled connection is made, sync or async: transactional
    (``autocommit=False``: each unit of work commits its own transaction),
    named ``payout-core`` in ``pg_stat_activity``, with ``statement_timeout``."""
    return {
        "autocommit": False,
        "application_name": "payout-core",
        **session_options(conninfo, statement_timeout=statement_timeout),
    }


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
