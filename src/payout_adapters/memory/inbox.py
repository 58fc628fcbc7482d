"""An in-memory settlement inbox, for tests of services that hand settlements to payout-core."""

from __future__ import annotations

import enum
import json
import threading
from datetime import datetime

import attrs

from payout_core import ports, validation

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


def _holds_nul(value: object) -> bool:
    """Whether a NUL character is anywhere in ``value`` (which jsonb refuses)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


class InMemoryInbox:
    """:class:`payout_core.ports.SettlementInbox` in memory; ``put`` plays the sending service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, InboxRow] = {}

    def put(self, settlement_id: str, payload: object, *, received_at: datetime) -> int:
        """Insert a row as another service would; returns its id.

        ``payload`` is written as JSON (:meth:`put_json`): ``15.0`` arrives as
        the number it is, not as a Python float, as from PostgreSQL.

        Raises:
            ValueError: ``jsonb`` could not hold the payload (not JSON, ``NaN``).
        """
        try:
            text = json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"the payload is not JSON jsonb can hold: {exc!r}") from None
        return self.put_json(settlement_id, text, received_at=received_at)

    def put_json(self, settlement_id: str, payload: str, *, received_at: datetime) -> int:
        """Insert a row whose payload is JSON text, as ``INSERT ... VALUES
        (%s, %s::jsonb)`` does; returns its id.

        The payload is kept as ``payout_settlement_inbox.payload`` keeps it and
        read as the PostgreSQL inbox reads it (:func:`payout_core.validation.loads`:
        numbers exact), so that both inboxes hand the core the same settlement.

        Raises:
            ValueError: ``jsonb`` would refuse the text (no JSON, ``NaN``, a
                ``\\u0000``): the sender's INSERT fails the same way. JSON nested
                deeper than Python reads, which ``jsonb`` holds, is kept, and
                handed over as :class:`~payout_core.validation.Unreadable` for
                the row to be rejected, as from PostgreSQL.
        """
        kept: object
        try:
            kept = validation.loads(payload)
        except validation.TooDeep as exc:
            kept = validation.Unreadable(f"is not JSON payout-core can read: {exc}")
        except ValueError as exc:
            raise ValueError(f"the payload is not JSON jsonb can hold: {exc}") from None
        if _holds_nul(kept):
            raise ValueError("the payload is not JSON jsonb can hold: \\u0000 cannot be text")
        with self._lock:
            row_id = len(self._rows) + 1
            self._rows[row_id] = InboxRow(
                id=row_id, settlement_id=settlement_id, payload=kept, received_at=received_at
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
            row = self._rows.get(item_id)
            # No such row: nothing to mark (as PostgreSQL's guarded UPDATE).
            if (
                row is not None and row.status is InboxStatus.NEW
            ):  # taking is idempotent: the first mark stands
                self._rows[item_id] = attrs.evolve(row, **changes)  # type: ignore[arg-type]
