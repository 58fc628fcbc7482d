"""What every part of :class:`~payout_adapters.postgres.PostgresStore` shares.

The store is assembled from one class per concern (``store_claims``,
``store_outcomes``, ``store_reversals``, ``store_operating``, ``store_reads``),
each a :class:`StorePart`: the pool's :class:`~.database.Database`, the test
clock that may stand for the database's, and the guarded write that every
change of a transfer goes through.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, LiteralString

from payout_adapters.postgres import rows
from payout_adapters.postgres.database import Database
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, models, ports

__all__ = [
    "StorePart",
    "id_bound",
    "ledger_params",
    "operator_action_params",
    "outcome_params",
]


class StorePart:
    """A concern of the store; :class:`~payout_adapters.postgres.PostgresStore` sets these."""

    _db: Database
    _clock: ports.Clock | None

    def _now(self) -> datetime | None:
        """The test clock's time, or ``None``: the SQL then reads ``now()``."""
        return None if self._clock is None else self._clock.now()

    def _write(
        self,
        action: str,
        query: LiteralString,
        params: dict[str, Any],
        transfer: models.PayoutTransfer | str,
        event: str,
    ) -> bool:
        """Run one of the guarded statements that change a transfer (the model
        as the caller knows it, or its id) and what hangs on it; whether it
        wrote (its guard held). A constraint's or trigger's refusal is a bug in
        what was asked, named as an illegal transition from the stored status."""
        try:
            with self._db.statements(action) as cursor:
                row = cursor.execute(query, params).fetchone()
        except errors.StoreRefused as exc:  # translate.unavailable's, naming the constraint
            problem = errors.Problem(exc.constraint, f"refused by the database: {exc.message}")
            # Read once the connection is back: a pool of one must not wait on itself.
            stored = self._stored(transfer) if isinstance(transfer, str) else transfer
            raise errors.IllegalTransition(
                stored.id if stored else str(transfer),
                stored.status.value if stored else "missing",
                f"{event}: {problem}",
            ) from exc
        return row is not None and row["recorded"] == 1

    def _stored(self, transfer_id: str) -> models.PayoutTransfer | None:
        key = rows.as_uuid(transfer_id)
        if key is None:
            return None
        row = self._db.fetch_one("read a transfer", QUERIES["get_transfer"], {"id": key})
        return None if row is None else rows.TRANSFERS.from_row(row)


def id_bound(after: str, what: str) -> uuid.UUID:
    """A page's lower bound: the last id of the page before, a UUID as every id here."""
    key = rows.as_uuid(after)
    if key is None:
        raise ValueError(f"a page of {what}s starts after a {what} id (a UUID), got {after!r}")
    return key


def ledger_params(entry: models.LedgerEntry) -> dict[str, Any]:
    """What ``_insert_ledger_entry`` takes: the row's columns, prefixed ``ledger_``."""
    return rows.LEDGER.params(entry, prefix="ledger_")


def operator_action_params(action: models.OperatorAction) -> dict[str, Any]:
    """What ``insert_operator_action`` takes: the action's columns, prefixed
    ``operator_`` (its time is the database's)."""
    return rows.OPERATOR_ACTIONS.params(action, prefix="operator_")


def outcome_params(
    claimed: models.PayoutTransfer, updated: models.PayoutTransfer
) -> dict[str, Any]:
    """What ``record_outcome`` writes (``updated``, of the same id) and the
    claim it must still match."""
    return rows.TRANSFERS.params(updated) | {
        "claimed_token": claimed.claim_token,
        "claimed_attempt_count": claimed.attempt_count,
    }
