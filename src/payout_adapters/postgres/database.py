"""Borrowing a pooled connection for one unit of work.

Every method of the adapters is one short unit of work on a connection
borrowed from the pool and given back before the method returns: no
connection, transaction or lock is ever held while the gateway is called.
Database failures become payout-core's errors here (:mod:`.translate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, LiteralString

import psycopg
import psycopg_pool
from psycopg.rows import DictRow, dict_row

from payout_adapters.postgres import translate

__all__ = ["Database"]


class Database:
    """Borrow a pooled connection for one transaction, or for statements that
    each commit on their own."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._pool = pool

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor in a transaction that commits when the block ends and rolls
        back when it raises; database failures become ``StoreUnavailable``."""
        with (
            translate.unavailable(action),
            self._pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            yield cursor

    @contextlib.contextmanager
    def autocommit(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose every statement commits on its own: for units of
        work of one statement, which a statement makes atomic anyway, and for
        functions that open their own transaction (``conn.transaction()``). It
        saves the BEGIN and COMMIT round trips of a transaction."""
        with translate.unavailable(action), self._pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                _lend_again(conn)

    @contextlib.contextmanager
    def statements(self, action: str) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor on an :meth:`autocommit` connection."""
        with self.autocommit(action) as conn, conn.cursor(row_factory=dict_row) as cursor:
            yield cursor

    def fetch_all(self, action: str, query: LiteralString, params: dict[str, Any]) -> list[DictRow]:
        with self.statements(action) as cursor:
            return cursor.execute(query, params).fetchall()

    def fetch_one(
        self, action: str, query: LiteralString, params: dict[str, Any]
    ) -> DictRow | None:
        with self.statements(action) as cursor:
            return cursor.execute(query, params).fetchone()


def _lend_again(conn: psycopg.Connection[Any]) -> None:
    """Put ``conn`` back out of autocommit, as the pool lends it; or close it
    when the server cut its session off mid-statement (psycopg then leaves it
    ACTIVE and refuses the change), so that the pool replaces it and the
    error that cut it off, not this one, is what the caller sees."""
    if conn.closed:
        return
    try:
        conn.autocommit = False
    except psycopg.ProgrammingError:
        conn.close()
