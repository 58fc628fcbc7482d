"""psycopg's exceptions, translated at the boundary into payout-core's.

* the server cannot be reached, the connection broke, the pool timed out, a
  deadlock or serialization failure: :class:`~payout_core.errors.StoreUnavailable`
  (try again later; nothing was written);
* the schema is missing: ``StoreUnavailable`` too, saying to run ``migrate``;
* a constraint refused the data: the caller turns :class:`psycopg.IntegrityError`
  into the domain error that fits what it was doing (see :func:`constraint_problem`).

Anything else (a syntax error, a programming error) is a bug and passes unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import psycopg.errors

from payout_core import errors

__all__ = ["constraint_problem", "unavailable"]


@contextlib.contextmanager
def unavailable(action: str) -> Iterator[None]:
    """Raise ``StoreUnavailable`` for database failures while doing ``action``."""
    try:
        yield
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise errors.StoreUnavailable(
            f"cannot {action}: the payout schema is missing or out of date "
            f"({exc.diag.message_primary}); run `payout-core migrate`"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise errors.StoreUnavailable(f"cannot {action}: the database failed: {exc}") from exc


def constraint_problem(exc: psycopg.IntegrityError) -> errors.Problem:
    """What the database refused, as a problem naming the constraint."""
    diag = exc.diag
    where = diag.constraint_name or diag.column_name or diag.table_name or "database"
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return errors.Problem(where, f"refused by the database: {diag.message_primary}{detail}")
