"""Inbox -> jobs: each settlement becomes a job once; bad rows are rejected, never blocking."""

from __future__ import annotations

from payout_adapters.memory import InMemoryInbox, InMemoryStore
from payout_adapters.memory.inbox import InboxStatus
from payout_core.services import intake
from tests.kit import builders as b
from tests.kit.times import T0


def payload(settlement_id: str, amount: object = 1500, user: str = "u1") -> dict[str, object]:
    return b.settlement_json(settlement_id, {user: amount}, contest_id=f"contest-{settlement_id}")


def test_good_rows_become_jobs_and_bad_rows_are_rejected_with_reasons() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    bad = inbox.put("s-bad", payload("s-bad", amount=15.5), received_at=T0)
    good = inbox.put("s-1", payload("s-1"), received_at=T0)
    result = intake.take_settlements(inbox=inbox, store=store, now=T0)
    assert (result.accepted, result.rejected) == (1, 1)
    rows = {r.id: r for r in inbox.rows()}
    assert rows[bad].status is InboxStatus.REJECTED
    assert "winners[0].amount_cents" in (rows[bad].rejected_reason or "")
    job = store.find_job("s-1")
    assert job is not None
    assert (rows[good].status, rows[good].job_id) == (InboxStatus.ACCEPTED, job.id)


def test_the_same_settlement_twice_makes_one_job() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    first = inbox.put("s-1", payload("s-1"), received_at=T0)
    second = inbox.put("s-1", payload("s-1"), received_at=T0)
    intake.take_settlements(inbox=inbox, store=store, now=T0)
    rows = {r.id: r for r in inbox.rows()}
    assert rows[first].job_id == rows[second].job_id is not None
    assert len(store.jobs()) == 1


def test_a_changed_settlement_under_a_known_id_is_rejected() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    inbox.put("s-1", payload("s-1"), received_at=T0)
    changed = inbox.put("s-1", payload("s-1", amount=9999), received_at=T0)
    intake.take_settlements(inbox=inbox, store=store, now=T0)
    row = {r.id: r for r in inbox.rows()}[changed]
    assert row.status is InboxStatus.REJECTED
    assert "different contents" in (row.rejected_reason or "")


def test_a_row_whose_payload_names_another_settlement_is_rejected() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    row_id = inbox.put("s-1", payload("s-2"), received_at=T0)
    intake.take_settlements(inbox=inbox, store=store, now=T0)
    row = {r.id: r for r in inbox.rows()}[row_id]
    assert row.status is InboxStatus.REJECTED
    assert store.jobs() == []


def test_a_winner_already_paid_in_the_contest_is_rejected() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    inbox.put("s-1", payload("s-1"), received_at=T0)
    other = {**payload("s-2"), "contest_id": "contest-s-1"}
    row_id = inbox.put("s-2", other, received_at=T0)
    result = intake.take_settlements(inbox=inbox, store=store, now=T0)
    assert (result.accepted, result.rejected) == (1, 1)
    row = {r.id: r for r in inbox.rows()}[row_id]
    assert "already has a payout for user(s) u1" in (row.rejected_reason or "")


def test_taken_rows_are_not_taken_again() -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    inbox.put("s-1", payload("s-1"), received_at=T0)
    intake.take_settlements(inbox=inbox, store=store, now=T0)
    again = intake.take_settlements(inbox=inbox, store=store, now=T0)
    assert (again.accepted, again.rejected) == (0, 0)
