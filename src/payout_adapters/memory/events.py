"""Stripe's events in memory, for tests of the webhook endpoint and of what applies them."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import attrs

from payout_core import ports

__all__ = ["InMemoryEventInbox", "StoredEvent"]


@attrs.frozen(kw_only=True)
class StoredEvent:
    """An event as ``payout_webhook_events`` holds it."""

    event: ports.StripeEvent
    processed_at: datetime | None = None
    outcome: str | None = None


class InMemoryEventInbox:
    """:class:`payout_core.ports.EventInbox` in memory, with the PostgreSQL
    inbox's semantics: an id is stored once, events come back in arrival
    order, a payload that is not JSON is refused (``ValueError``), and an
    event keeps the first outcome it was marked with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, StoredEvent] = {}  # in arrival order

    def events(self) -> list[StoredEvent]:
        """Every event stored, applied or not, in arrival order."""
        with self._lock:
            return list(self._events.values())

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def accept(self, event: ports.StripeEvent) -> bool:
        try:
            json.loads(event.payload)
        except ValueError as exc:
            raise ValueError(f"event {event.id}: the payload is not JSON ({exc})") from exc
        with self._lock:
            if event.id in self._events:
                return False
            self._events[event.id] = StoredEvent(event=event)
            return True

    def unprocessed(self, *, limit: int) -> list[ports.StripeEvent]:
        with self._lock:
            waiting = [s.event for s in self._events.values() if s.processed_at is None]
            return waiting[: max(limit, 0)]

    def mark_processed(self, event_id: str, *, outcome: str, now: datetime) -> None:
        with self._lock:
            stored = self._events.get(event_id)
            if stored is not None and stored.processed_at is None:  # the first outcome stands
                self._events[event_id] = attrs.evolve(stored, processed_at=now, outcome=outcome)
