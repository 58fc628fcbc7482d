"""The webhook receiver without HTTP: what each delivery is answered, what is
stored, and what draining the stored events books (over the in-memory adapters)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pytest

from payout_adapters.memory import InMemoryEventInbox, ManualClock
from payout_cli import settings, webhooks
from payout_core import errors, ports
from tests.fake_stripe import webhooks as deliveries
from tests.kit.times import T0
from tests.unit.operating_world import World

SECRET = deliveries.DEFAULT_SECRET


@pytest.fixture
def world() -> World:
    w = World()
    w.directory.set_account("u-1", "acct_u1")
    w.pay("u-1")
    return w


def receiver(world: World, inbox: ports.EventInbox) -> webhooks.WebhookReceiver:
    return webhooks.WebhookReceiver(
        address=settings.AdminAddress("127.0.0.1", 0),
        secret=SECRET,
        inbox=inbox,
        clock=world.clock,
        apply=lambda: webhooks.drain(inbox, world.store, world.gateway, world.clock),
    )


def reversed_event(world: World, event_id: str = "evt_1") -> dict[str, Any]:
    """``transfer.reversed`` for u-1's transfer, as Stripe now holds it."""
    t = world.transfer_of("u-1")
    assert t.stripe_transfer_id is not None
    listed = [r.as_stripe_reversal() for r in world.gateway.reversals_of(t.stripe_transfer_id)]
    return {
        "id": event_id,
        "object": "event",
        "type": "transfer.reversed",
        "data": {
            "object": {
                "id": t.stripe_transfer_id,
                "object": "transfer",
                "amount": t.amount_cents,
                "amount_reversed": sum(r.amount_cents for r in listed),
                "metadata": {"payout_transfer_id": t.id},
                "reversals": {
                    "object": "list",
                    "has_more": False,
                    "data": [
                        {
                            "id": r.id,
                            "object": "transfer_reversal",
                            "amount": r.amount_cents,
                            "currency": r.currency,
                            "created": int(r.created_at.timestamp()),
                            "metadata": {},
                        }
                        for r in listed
                    ],
                },
            }
        },
    }


def signed(
    world: World, event: dict[str, Any], *, secret: str = SECRET, age: int = 0
) -> tuple[bytes, str]:
    body = deliveries.body_of(event)
    now = int(world.clock.now().timestamp()) - age
    return body, deliveries.signature_header(body, secret=secret, timestamp=now)


@pytest.fixture
def wall_clock(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK checks a signature's age against the machine's time: make it the world's."""
    monkeypatch.setattr("time.time", lambda: world.clock.now().timestamp())


@pytest.mark.usefixtures("wall_clock")
def test_a_verified_event_is_stored_once_and_its_reversal_booked_once(world: World) -> None:
    t = world.transfer_of("u-1")
    assert t.stripe_transfer_id is not None
    dashboard = world.gateway.reverse(t.stripe_transfer_id, 300)
    inbox = InMemoryEventInbox()
    endpoint = receiver(world, inbox)
    event = reversed_event(world)

    answers = [endpoint.receive(*signed(world, event)) for _ in range(3)]
    applied = webhooks.drain(inbox, world.store, world.gateway, world.clock)

    assert [status for status, _ in answers] == [HTTPStatus.OK] * 3
    assert [body for _, body in answers] == [b"stored\n", b"already stored\n", b"already stored\n"]
    assert applied == 1
    back = [r for r in world.store.ledger(transfer_id=t.id) if r.stripe_reversal_id]
    assert [(r.amount_cents, r.stripe_reversal_id) for r in back] == [(300, dashboard.id)]
    assert inbox.unprocessed(limit=10) == []


@pytest.mark.usefixtures("wall_clock")
@pytest.mark.parametrize(
    "tamper",
    ["forged", "missing", "stale", "other secret", "not an event", "body changed"],
)
def test_a_delivery_that_does_not_verify_is_refused_and_nothing_stored(
    world: World, tamper: str
) -> None:
    inbox = InMemoryEventInbox()
    endpoint = receiver(world, inbox)
    event = reversed_event(world)
    body, header = signed(world, event)
    match tamper:
        case "forged":
            header = header[:-4] + "0000"
        case "missing":
            header = ""
        case "stale":
            body, header = signed(world, event, age=301)
        case "other secret":
            body, header = signed(world, event, secret="whsec_someoneElse0123456789")
        case "not an event":
            body, header = signed(world, {"id": "x", "object": "charge"})
        case "body changed":
            body = body.replace(b'"evt_1"', b'"evt_2"')

    status, _ = endpoint.receive(body, header or None)

    assert status is HTTPStatus.BAD_REQUEST
    assert inbox.unprocessed(limit=10) == []


class _Down:
    def accept(self, event: ports.StripeEvent) -> bool:
        raise errors.StoreUnavailable("database unreachable")

    def unprocessed(self, *, limit: int) -> list[ports.StripeEvent]:
        return []

    def mark_processed(self, event_id: str, *, outcome: str, now: object) -> None:
        return None


@pytest.mark.usefixtures("wall_clock")
def test_an_event_the_database_cannot_store_is_answered_503_so_stripe_sends_it_again(
    world: World,
) -> None:
    endpoint = receiver(world, _Down())

    status, _ = endpoint.receive(*signed(world, reversed_event(world)))

    assert status is HTTPStatus.SERVICE_UNAVAILABLE


def test_an_event_that_cannot_apply_is_marked_with_why_and_does_not_block_the_rest(
    world: World,
) -> None:
    t = world.transfer_of("u-1")
    assert t.stripe_transfer_id is not None
    inbox = InMemoryEventInbox()
    world.gateway.reverse(t.stripe_transfer_id, 100)
    good = reversed_event(world, "evt_2")
    broken = {**good, "id": "evt_1", "data": {"object": {"no": "id"}}}
    ignored = {**good, "id": "evt_3", "type": "payout.paid"}
    for n, event in enumerate((broken, good, ignored)):
        inbox.accept(
            ports.StripeEvent(
                id=event["id"],
                type=event["type"],
                payload=json.dumps(event),
                received_at=T0.replace(second=n),
            )
        )

    applied = webhooks.drain(inbox, world.store, world.gateway, ManualClock(T0))

    assert applied == 3
    assert inbox.unprocessed(limit=10) == []
    assert [
        r.amount_cents for r in world.store.ledger(transfer_id=t.id) if r.stripe_reversal_id
    ] == [100]
