"""An in-memory settlement inbox, for tests of services that hand settlements to payout-core."""

from __future__ import annotations

import enum
import threading
from datetime import datetime

import attrs

from payout_core import ports

__all__ = ["InMemoryInbox", "InboxRow", "InboxStatus"]


class InboxStatus(enum.StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@attrs.frozen(kw_only=True)
class InboxRow:
    """A row as ``payout_settlement_inbox`` holds it."""

    id: int
    settlement_id: str
    payload: object
    received_at: datetime
    status: InboxStatus = InboxStatus.NEW
    job_id: str | None = None
    rejected_reason: str | None = None
    taken_at: datetime | None = None


class InMemoryInbox:
    """:class:`payout_core.ports.SettlementInbox` in memory; ``put`` plays the sending service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, InboxRow] = {}

    def put(self, settlement_id: str, payload: object, *, received_at: datetime) -> int:
        """Insert a row as another service would; returns its id."""
        with self._lock:
            row_id = len(self._rows) + 1
            self._rows[row_id] = InboxRow(
                id=row_id, settlement_id=settlement_id, payload=payload, received_at=received_at
            )
            return row_id

    def rows(self) -> list[InboxRow]:
        with self._lock:
            return list(self._rows.values())

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()

    def unprocessed(self, *, limit: int) -> list[ports.InboxItem]:
        with self._lock:
            new = [r for r in self._rows.values() if r.status is InboxStatus.NEW][:limit]
            return [
                ports.InboxItem(
                    id=r.id,
                    settlement_id=r.settlement_id,
                    payload=r.payload,
                    received_at=r.received_at,
                )
                for r in new
            ]

    def mark_accepted(self, item_id: int, *, job_id: str, now: datetime) -> None:
        self._mark(item_id, status=InboxStatus.ACCEPTED, job_id=job_id, taken_at=now)

    def mark_rejected(self, item_id: int, *, reason: str, now: datetime) -> None:
        self._mark(item_id, status=InboxStatus.REJECTED, rejected_reason=reason, taken_at=now)

    def _mark(self, item_id: int, **changes: object) -> None:
        with self._lock:
            row = self._rows[item_id]
            if row.status is InboxStatus.NEW:  # taking is idempotent: the first mark stands
                self._rows[item_id] = attrs.evolve(row, **changes)  # type: ignore[arg-type]
