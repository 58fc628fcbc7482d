"""The worker's path through the store: claims, send intents, outcomes.

Each is decided by the store's own clock, the database's (DESIGN 3, rule 1):
which transfers are due, whose lease expired, whether a send still has its
margin. An outcome is written only over the claim it came from.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from payout_adapters.memory.store.tables import Tables
from payout_core import completion, models
from payout_core import state_machine as sm

__all__ = ["Claims"]

S = models.TransferStatus


def _due_order(transfer: models.PayoutTransfer) -> tuple[datetime, str]:
    """Oldest due first, then by id: the claim index's order."""
    return (sm.due_at(transfer) or transfer.created_at, transfer.id)


class Claims(Tables):
    """Claims with leases, write-ahead send intents, and the outcomes they lead to."""

    def claim_due(self, *, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        with self._operation("claim_due"):
            if limit < 1:
                return []
            now = self._clock.now()
            due = sorted(
                (t for t in map(self._transfers.__getitem__, self._open) if sm.is_due(t, now)),
                key=_due_order,
            )
            if self._pause.paused:
                limit = 0  # escalations still happen; claims do not
            claimed: list[models.PayoutTransfer] = []
            for t in due:
                if sm.abandoned_too_often(t):
                    escalated = sm.escalate(t, reason=sm.abandoned_reason(t), now=now)
                    self._transfers[t.id] = escalated
                    continue
                if len(claimed) < limit:  # and on: every one to escalate is, as in SQL
                    claimed.append(sm.claim(t, now=now, lease=lease, token=token))
            for t in claimed:
                self._transfers[t.id] = t
            for job_id in sorted({t.job_id for t in claimed}):
                self._jobs[job_id] = completion.start(self._jobs[job_id], now=now)
            return claimed

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        with self._operation("write_intent"):
            stored = self._transfers.get(claimed.id)
            if stored is None or stored.attempt_count != claimed.attempt_count:
                return sm.IntentRefusal.STALE_CLAIM
            now = self._clock.now()
            refusal = sm.refuse_send(
                stored, token=claimed.claim_token, destination=destination, now=now, margin=margin
            )
            if refusal is not None:
                return refusal
            written = sm.send(stored, destination=destination, now=now, margin=margin)
            self._transfers[written.id] = written
            return written

    def record(
        self,
        *,
        claimed: models.PayoutTransfer,
        updated: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry | None,
        now: datetime,
    ) -> bool:
        if updated.id != claimed.id:
            raise ValueError(f"cannot record transfer {updated.id} over the claim of {claimed.id}")
        with self._operation("record"):
            stored = self._transfers.get(claimed.id)
            if (
                claimed.claim_token is None
                or stored is None
                or stored.status is not S.PROCESSING
                or stored.claim_token != claimed.claim_token
                or stored.attempt_count != claimed.attempt_count
            ):
                return False  # the lease was taken over; the newer claim owns it
            self._write_outcome(stored, updated, ledger_entry, now=now, event="record")
            return True
