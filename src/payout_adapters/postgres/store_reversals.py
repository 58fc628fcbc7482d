"""The store's reversals (DESIGN 7): money of a paid transfer coming back.

An intent is written before Stripe is asked, under the transfer's row lock;
an answer settles it, with its credit and the operator's action, in one
statement; a reversal made in Stripe's dashboard is only booked.
"""

from __future__ import annotations

from typing import Any

import psycopg

from payout_adapters.postgres import rows, translate
from payout_adapters.postgres.queries import QUERIES
from payout_adapters.postgres.store_base import StorePart, ledger_params, operator_action_params
from payout_core import errors, models, ports
from payout_core import reversal as rules

__all__ = ["Reversals"]


class Reversals(StorePart):
    def reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        key = rows.as_uuid(transfer_id)
        if key is None:
            return []
        found = self._db.fetch_all(
            "read a transfer's reversals", QUERIES["reversals_of"], {"transfer_id": key}
        )
        return [rows.REVERSALS.from_row(row) for row in found]

    def reversals_in_doubt(self, *, limit: int) -> list[models.Reversal]:
        found = self._db.fetch_all(
            "read the reversals in doubt", QUERIES["reversals_in_doubt"], {"limit": limit}
        )
        return [rows.REVERSALS.from_row(row) for row in found]

    def reversal_intent(self, reversal: models.Reversal) -> models.Reversal | ports.ReversalRefused:
        sending = models.ReversalStatus.SENDING
        if reversal.status is not sending or reversal.stripe_reversal_id or reversal.failure_code:
            raise ValueError(f"reversal {reversal.id} is {reversal.status}: an intent is sending")
        if rows.as_uuid(reversal.transfer_id) is None:
            return ports.ReversalRefused(why="no such transfer")
        params = {**rows.REVERSALS.params(reversal), "now": self._now()}
        with self._db.transaction("write a reversal intent") as cursor:
            # Two statements: the second reads what the lock's holder before it committed.
            cursor.execute(QUERIES["lock_transfer_for_reversal"], params)
            try:
                row = cursor.execute(QUERIES["write_reversal_intent"], params).fetchone()
            except psycopg.IntegrityError as exc:
                problem = translate.constraint_problem(exc)
                raise errors.IllegalTransition(
                    reversal.transfer_id, "completed", f"reverse: {problem}"
                ) from exc
        if row is None:  # pragma: no cover - the statement always returns its state
            raise errors.StoreUnavailable("a reversal intent returned nothing; try again")
        if row["refusal"] is None:
            return rows.REVERSALS.from_row(row)
        amounts = None
        if row["transfer_status"] == models.TransferStatus.COMPLETED:
            amounts = rules.Amounts(
                paid=row["paid"], reversed=row["reversed"], in_doubt=row["in_doubt"]
            )
        return ports.ReversalRefused(why=row["refusal"], amounts=amounts)

    def settle_reversal(
        self,
        *,
        before: models.Reversal,
        after: models.Reversal,
        ledger_entry: models.LedgerEntry | None,
        action: models.OperatorAction | None,
    ) -> bool:
        rules.check_settlement(before, after, ledger_entry, action)
        # _settle_reversal writes the answer's columns; what was asked never changes.
        params: dict[str, Any] = {**rows.REVERSALS.params(after), "now": self._now()}
        query = QUERIES["settle_reversal_as_failed"]
        if ledger_entry is not None and action is not None:
            params |= ledger_params(ledger_entry) | operator_action_params(action)
            query = QUERIES["settle_reversal_as_completed"]
        # One statement: the answer, its credit and the action, all or nothing.
        return self._write(
            "settle a reversal",
            query,
            params,
            before.transfer_id,
            f"settle reversal {before.idempotency_key} as {after.status.value}",
        )

    def book_reversal(self, entry: models.LedgerEntry) -> bool:
        if entry.entry_type is not models.LedgerEntryType.PAYOUT_REVERSED:
            raise ValueError(f"{entry.idempotency_key} is a {entry.entry_type}, not a reversal")
        return self._write(
            "book a reversal",
            QUERIES["book_reversal"],
            ledger_params(entry),
            entry.transfer_id,
            f"book reversal {entry.stripe_reversal_id}",
        )
