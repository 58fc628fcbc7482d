"""Reversals (DESIGN 7): written ahead as intents, one in doubt per transfer,
each settled once; their credits booked in the ledger once, whoever saw them first.
"""

from __future__ import annotations

import attrs

from payout_adapters.memory.store import schema
from payout_adapters.memory.store.tables import Tables
from payout_core import models, ports
from payout_core import reversal as rules

__all__ = ["Reversals"]

S = models.TransferStatus
R = models.ReversalStatus
E = models.LedgerEntryType


class Reversals(Tables):
    """Reversal intents, their settlement, and dashboard reversals booked."""

    def reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        with self._operation("reversals_of"):
            return self._reversals_of(transfer_id)

    def reversals_in_doubt(self, *, limit: int) -> list[models.Reversal]:
        with self._operation("reversals_in_doubt"):
            sending = [r for r in self._reversals.values() if r.status is R.SENDING]
            return sorted(sending, key=lambda r: (r.created_at, r.id))[:limit]

    def _reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        found = [r for r in self._reversals.values() if r.transfer_id == transfer_id]
        return sorted(found, key=lambda r: r.sequence)

    def reversal_intent(self, reversal: models.Reversal) -> models.Reversal | ports.ReversalRefused:
        if reversal.status is not R.SENDING or reversal.stripe_reversal_id or reversal.failure_code:
            raise ValueError(f"reversal {reversal.id} is {reversal.status}: an intent is sending")
        with self._operation("reversal_intent"):
            refused = self._refuse_intent(reversal)
            if refused is not None:
                return refused
            written = attrs.evolve(
                reversal, created_at=self._clock.now(), updated_at=self._clock.now()
            )
            problems = schema.reversal_problems(written)
            if written.id in self._reversals:
                problems.append(f"reversal {written.id} exists")
            self._refused(written.transfer_id, "reverse", problems)
            self._reversals[written.id] = written
            return written

    def _refuse_intent(self, asked: models.Reversal) -> ports.ReversalRefused | None:
        """WRITE_REVERSAL_INTENT's guard: why ``asked`` must not be written, if it must not."""
        transfer = self._transfers.get(asked.transfer_id)
        if transfer is None:
            return ports.ReversalRefused(why="no such transfer")
        if transfer.status is not S.COMPLETED:
            unpaid = f"the transfer is {transfer.status}, not completed: nothing was paid"
            return ports.ReversalRefused(why=unpaid)
        earlier = self._reversals_of(transfer.id)
        amounts = rules.amounts(
            transfer, [e for e in self._ledger if e.transfer_id == transfer.id], earlier
        )
        in_doubt = [r.idempotency_key for r in earlier if r.status is R.SENDING]
        next_sequence = max((r.sequence for r in earlier), default=0) + 1
        why: str | None = None
        if (transfer.stripe_transfer_id, transfer.currency) != (
            asked.stripe_transfer_id,
            asked.currency,
        ):
            why = (
                f"the transfer was paid by {transfer.stripe_transfer_id} in {transfer.currency}, "
                f"not by {asked.stripe_transfer_id} in {asked.currency}"
            )
        elif in_doubt:
            why = f"reversal {in_doubt[0]} is still in doubt: resolve it first"
        elif asked.sequence != next_sequence:
            why = f"sequence {asked.sequence} is not the next one ({next_sequence})"
        elif asked.amount_cents > amounts.left:
            why = f"cannot reverse {asked.amount_cents}: more than is left"
        return None if why is None else ports.ReversalRefused(why=why, amounts=amounts)

    def settle_reversal(
        self,
        *,
        before: models.Reversal,
        after: models.Reversal,
        ledger_entry: models.LedgerEntry | None,
        action: models.OperatorAction | None,
    ) -> bool:
        rules.check_settlement(before, after, ledger_entry, action)
        with self._operation("settle_reversal"):
            stored = self._reversals.get(before.id)
            if stored is None or stored.status is not R.SENDING:
                return False  # settled meanwhile (a webhook, another run): nothing written
            written = attrs.evolve(
                stored,
                status=after.status,
                stripe_reversal_id=after.stripe_reversal_id,
                failure_code=after.failure_code,
                failure_message=after.failure_message,
                updated_at=after.updated_at,
            )
            problems = schema.reversal_problems(written)
            if written.stripe_reversal_id is not None and any(
                r.stripe_reversal_id == written.stripe_reversal_id for r in self._reversals.values()
            ):
                problems.append(f"reversal {written.stripe_reversal_id} settles another already")
            credit = ledger_entry
            if credit is not None and credit.idempotency_key in self._ledger_keys:
                credit = None  # booked already (a webhook saw it first): ON CONFLICT DO NOTHING
            if credit is not None:
                problems.extend(self._ledger_problems(credit))
            if action is not None:
                problems.extend(self._action_problems(action))
            event = f"settle reversal {before.idempotency_key} as {after.status.value}"
            self._refused(before.transfer_id, event, problems)
            self._reversals[written.id] = written
            if credit is not None:
                self._append(credit)
            if action is not None:
                self._act(action)
            return True

    def book_reversal(self, entry: models.LedgerEntry) -> bool:
        if entry.entry_type is not E.PAYOUT_REVERSED:
            raise ValueError(f"{entry.idempotency_key} is a {entry.entry_type}, not a reversal")
        with self._operation("book_reversal"):
            if entry.idempotency_key in self._ledger_keys:
                return False  # booked already, whoever saw it first
            event = f"book reversal {entry.stripe_reversal_id}"
            self._refused(entry.transfer_id, event, self._ledger_problems(entry))
            self._append(entry)
            return True
