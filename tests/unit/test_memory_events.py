"""The in-memory event inbox: the event inbox contract, and what only the fake offers."""

from __future__ import annotations

import pytest

from payout_adapters.memory import InMemoryEventInbox
from tests.contracts.event_inbox_contract import EventInboxContract, stripe_event
from tests.kit.times import T0


class TestInMemoryEventInbox(EventInboxContract):
    @pytest.fixture
    def inbox(self) -> InMemoryEventInbox:
        return InMemoryEventInbox()


def test_an_event_keeps_the_first_outcome_it_was_marked_with() -> None:
    inbox = InMemoryEventInbox()
    event = stripe_event("evt_1")
    inbox.accept(event)

    inbox.mark_processed("evt_1", outcome="booked 1", now=T0)
    inbox.mark_processed("evt_1", outcome="booked 0", now=T0)

    [stored] = inbox.events()
    assert (stored.event, stored.processed_at, stored.outcome) == (event, T0, "booked 1")


def test_reset_forgets_every_event() -> None:
    inbox = InMemoryEventInbox()
    inbox.accept(stripe_event("evt_1"))

    inbox.reset()

    assert inbox.events() == []
    assert inbox.accept(stripe_event("evt_1"))
