"""psycopg's exceptions, translated at the boundary into payout-core's.

* the server cannot be reached, the connection broke, the pool timed out, a
  deadlock or serialization failure: :class:`~payout_core.errors.StoreUnavailable`
  (try again later; nothing was written);
* the schema is missing: ``StoreUnavailable`` too, saying to run ``migrate``;
* a constraint refused the data (:class:`psycopg.IntegrityError`):
  :class:`~payout_core.errors.StoreRefused` naming the constraint
  (:func:`refused`). Never the caller's "invalid input": what a caller gives
  is validated before it is written, so what the database still refuses is a
  rule the core does not know. The writes whose refusal means something more
  precise turn it into that (a transfer's guarded moves: ``IllegalTransition``);
* a value the database cannot hold (:class:`psycopg.DataError`: a number out
  of its column's range, a NUL byte in text) passes, for the caller that
  expects it (a webhook payload that is no JSON); where it can only be a value
  the core let through, the caller makes it a ``StoreRefused`` (:func:`refused`).

Anything else (a syntax error, a programming error) is a bug and passes unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import psycopg.errors

from payout_core import errors

__all__ = ["constraint_problem", "refused", "unavailable"]

# Enough of the database's detail ("Failing row contains (...)") to find the
# row, not a whole row of long values.
_DETAIL_SHOWN = 300


@contextlib.contextmanager
def unavailable(action: str) -> Iterator[None]:
    """Raise ``StoreUnavailable`` for database failures while doing ``action``,
    and ``StoreRefused`` for what a constraint refused."""
    try:
        yield
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise errors.StoreUnavailable(
            f"cannot {action}: the payout schema is missing or out of date "
            f"({exc.diag.message_primary}); run `payout-core migrate`"
        ) from exc
    except psycopg.IntegrityError as exc:
        raise refused(exc, action=action) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise errors.StoreRefused(
            "permission",
            f"cannot {action}: {exc.diag.message_primary}; this database login lacks the "
            "grant: workers connect as a member of payout_worker, the operators' commands "
            "as a member of payout_operator (docs/security.md)",
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise errors.StoreUnavailable(f"cannot {action}: the database failed: {exc}") from exc


def _constraint(exc: psycopg.Error) -> str:
    """The constraint that refused, or else what did: the column, the condition."""
    diag = exc.diag
    if diag.constraint_name:
        return diag.constraint_name
    condition = type(exc).__name__ if exc.sqlstate else "value the database cannot hold"
    return f"{condition} on {diag.column_name}" if diag.column_name else condition


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc)
    detail = diag.message_detail or ""
    if len(detail) > _DETAIL_SHOWN:
        detail = f"{detail[:_DETAIL_SHOWN]}..."
    return f"{message} ({detail})" if detail else message


def refused(
    exc: psycopg.IntegrityError | psycopg.DataError, *, action: str | None = None
) -> errors.StoreRefused:
    """What the database refused, naming the constraint (raise it ``from exc``)."""
    message = _message(exc)
    if action is not None:
        message = f"cannot {action}: {message}"
    return errors.StoreRefused(_constraint(exc), message)


def constraint_problem(exc: psycopg.IntegrityError) -> errors.Problem:
    """What the database refused, as a problem naming the constraint (for the
    errors that carry one, such as a transfer's ``IllegalTransition``)."""
    return errors.Problem(_constraint(exc), f"refused by the database: {_message(exc)}")
