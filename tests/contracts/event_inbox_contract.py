"""The contract every :class:`payout_core.ports.EventInbox` keeps.

Run by ``tests/unit/test_memory_events.py`` (in memory) and
``tests/integration/test_postgres_events.py`` (PostgreSQL). A subclass
provides the fixture ``inbox``: a fresh, empty inbox.

Payloads are compared as JSON: the PostgreSQL inbox stores them as ``jsonb``,
which keeps the JSON, not Stripe's bytes (the signature was checked before).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from payout_core import ports
from tests.kit.times import T0

__all__ = ["EventInboxContract", "stripe_event"]


def stripe_event(
    event_id: str, *, minutes: int = 0, event_type: str = "transfer.reversed"
) -> ports.StripeEvent:
    """A verified event as the webhook endpoint hands it over, ``minutes`` after T0."""
    payload = {
        "id": event_id,
        "type": event_type,
        "data": {"object": {"id": "tr_1", "reversals": {"data": [{"id": "trr_1"}]}}},
    }
    return ports.StripeEvent(
        id=event_id,
        type=event_type,
        payload=json.dumps(payload),
        received_at=T0 + timedelta(minutes=minutes),
    )


def _as_json(events: list[ports.StripeEvent]) -> list[tuple[str, str, object, object]]:
    return [(e.id, e.type, json.loads(e.payload), e.received_at) for e in events]


class EventInboxContract:
    """Stripe's events: stored once per id, applied in arrival order."""

    def test_an_event_is_accepted_once_per_id(self, inbox: ports.EventInbox) -> None:
        first = stripe_event("evt_1")

        assert inbox.accept(first)
        # Stripe delivers it again (our 2xx was lost), maybe with a newer timestamp.
        assert not inbox.accept(stripe_event("evt_1", minutes=5, event_type="transfer.updated"))

        assert _as_json(inbox.unprocessed(limit=10)) == _as_json([first])

    def test_unprocessed_events_come_in_arrival_order_up_to_limit(
        self, inbox: ports.EventInbox
    ) -> None:
        # Arrival order, not the endpoint's clock (two hosts may disagree).
        arrived = [stripe_event("evt_b", minutes=3), stripe_event("evt_a"), stripe_event("evt_c")]
        for event in arrived:
            assert inbox.accept(event)

        assert _as_json(inbox.unprocessed(limit=10)) == _as_json(arrived)
        assert _as_json(inbox.unprocessed(limit=2)) == _as_json(arrived[:2])
        assert inbox.unprocessed(limit=0) == []

    def test_a_processed_event_is_not_given_again_nor_accepted_again(
        self, inbox: ports.EventInbox
    ) -> None:
        first, second = stripe_event("evt_1"), stripe_event("evt_2")
        assert inbox.accept(first)
        assert inbox.accept(second)

        inbox.mark_processed("evt_1", outcome="booked 1 of 1 reversal(s)", now=T0)
        inbox.mark_processed("evt_1", outcome="again", now=T0)  # harmless
        inbox.mark_processed("evt_unknown", outcome="nothing", now=T0)  # harmless

        assert _as_json(inbox.unprocessed(limit=10)) == _as_json([second])
        assert not inbox.accept(first)  # a late redelivery is not applied twice
        assert _as_json(inbox.unprocessed(limit=10)) == _as_json([second])

    def test_a_payload_that_is_not_json_is_refused_and_nothing_stored(
        self, inbox: ports.EventInbox
    ) -> None:
        broken = ports.StripeEvent(id="evt_1", type="x", payload="{not json", received_at=T0)

        with pytest.raises(ValueError, match="not JSON"):
            inbox.accept(broken)

        assert inbox.unprocessed(limit=10) == []
        assert inbox.accept(stripe_event("evt_1"))
