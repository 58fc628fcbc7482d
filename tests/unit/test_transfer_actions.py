"""An operator's hand on one transfer (resolve, reissue), over the in-memory adapters.

Each action is checked against the simulated Stripe before anything is
written; a refusal writes nothing (no transfer change, no ledger row, no audit
row). Each accepted action leaves exactly one audit row.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from payout_core import errors, models
from payout_core import state_machine as sm
from payout_core.services import reconciliation, transfer_actions
from tests.kit import builders as b
from tests.kit.times import LEASE, MARGIN
from tests.unit.operating_world import World

S = models.TransferStatus
E = models.LedgerEntryType
A = models.OperatorActionKind
WHO = {"actor": "ops-1", "reason": "ticket 42"}


def snapshot(world: World, transfer_id: str) -> tuple[object, ...]:
    return (
        world.store.get_transfer(transfer_id),
        world.store.ledger(transfer_id=transfer_id),
        world.store.operator_actions(limit=100),
        [world.store.get_job(j.id) for j in world.store.list_jobs()],
    )


# -- resolve --found -----------------------------------------------------------------


def test_found_closes_the_transfer_as_paid_by_the_stripe_transfer_it_names() -> None:
    world = World()
    waiting = world.needing_operator()
    stripe_id = world.plant(waiting)

    done = transfer_actions.resolve_found(
        world.store, world.gateway, waiting.id, stripe_id, now=world.clock.now(), **WHO
    )

    assert (done.status, done.stripe_transfer_id, done.needs_operator) == (
        S.COMPLETED,
        stripe_id,
        None,
    )
    [row] = world.store.ledger(transfer_id=waiting.id)
    assert (row.entry_type, row.stripe_transfer_id, row.attempt_number) == (
        E.PAYOUT_COMPLETED,
        stripe_id,
        1,
    )
    job = world.store.get_job(waiting.job_id)
    assert job is not None
    assert (job.status, job.completed_count) == (
        models.JobStatus.COMPLETE,
        1,
    )
    [action] = world.store.operator_actions(transfer_id=waiting.id)
    assert (action.action, action.actor, action.reason) == (A.RESOLVE_FOUND, "ops-1", "ticket 42")
    assert action.before is not None
    assert action.after is not None
    assert (action.before["status"], action.after["status"]) == ("retryable", "completed")
    assert action.after["stripe_transfer_id"] == stripe_id
    assert reconciliation.reconcile_all(world.store, world.gateway).ok


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        ({"amount_cents": 999}, "amount is 999 at Stripe, 1000 here"),
        ({"destination": "acct_elsewhere"}, "destination is 'acct_elsewhere' at Stripe"),
        ({"payout_transfer_id": "someone-else"}, "metadata.payout_transfer_id"),
        ({"transfer_group": "contest:c-other"}, "transfer_group is 'contest:c-other'"),
    ],
)
def test_found_refuses_a_stripe_transfer_that_is_not_this_ones_payment(
    plant: dict[str, object], named: str
) -> None:
    world = World()
    waiting = world.needing_operator()
    stripe_id = world.plant(waiting, **plant)  # type: ignore[arg-type]
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.ActionRefused, match=named):
        transfer_actions.resolve_found(
            world.store, world.gateway, waiting.id, stripe_id, now=world.clock.now(), **WHO
        )

    assert snapshot(world, waiting.id) == before


def test_found_refuses_a_stripe_transfer_that_does_not_exist() -> None:
    world = World()
    waiting = world.needing_operator()
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.ActionRefused, match="Stripe holds no transfer tr_nothing"):
        transfer_actions.resolve_found(
            world.store, world.gateway, waiting.id, "tr_nothing", now=world.clock.now(), **WHO
        )

    assert snapshot(world, waiting.id) == before


def test_a_transfer_that_needs_no_operator_is_not_resolved_by_hand() -> None:
    world = World()
    world.directory.set_account("u-1", "acct_u1")
    world.pay("u-1")
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None

    with pytest.raises(errors.ActionRefused, match="needs no operator"):
        transfer_actions.resolve_found(
            world.store,
            world.gateway,
            paid.id,
            paid.stripe_transfer_id,
            now=world.clock.now(),
            **WHO,
        )
    assert world.store.operator_actions() == []


@pytest.mark.parametrize(
    ("actor", "reason", "stripe_id", "problem"),
    [
        ("", "why", "tr_1", "actor"),
        ("ops", " ", "tr_1", "reason"),
        ("ops", "why", "po_1", "not a Stripe transfer id"),
        ("ops", "why", "tr_1'; drop table x", "not a Stripe transfer id"),
    ],
)
def test_found_without_who_why_or_a_transfer_id_is_bad_input(
    actor: str, reason: str, stripe_id: str, problem: str
) -> None:
    world = World()
    waiting = world.needing_operator()

    with pytest.raises(errors.InvalidOperatorAction, match=problem):
        transfer_actions.resolve_found(
            world.store,
            world.gateway,
            waiting.id,
            stripe_id,
            actor=actor,
            reason=reason,
            now=world.clock.now(),
        )


# -- resolve --absent ----------------------------------------------------------------


def test_absent_fails_the_transfer_for_good_once_no_send_can_still_be_running() -> None:
    world = World()
    waiting = world.needing_operator()
    world.clock.advance(MARGIN)

    failed = transfer_actions.resolve_absent(
        world.store, world.gateway, waiting.id, now=world.clock.now(), margin=MARGIN, **WHO
    )

    assert (failed.status, failed.failure_code, failed.needs_operator) == (
        S.FAILED_TERMINAL,
        sm.RESOLVED_ABSENT,
        None,
    )
    assert "ops-1" in (failed.failure_message or "")
    [row] = world.store.ledger(transfer_id=waiting.id)
    assert (row.entry_type, row.attempt_number) == (E.PAYOUT_FAILED, 1)
    [action] = world.store.operator_actions(transfer_id=waiting.id)
    assert action.action is A.RESOLVE_ABSENT
    assert reconciliation.reconcile_all(world.store, world.gateway).ok


def test_absent_is_refused_while_a_send_may_still_be_running() -> None:
    world = World()
    waiting = world.needing_operator()
    world.clock.advance(MARGIN - timedelta(seconds=1))
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.ActionRefused, match="may still be running"):
        transfer_actions.resolve_absent(
            world.store, world.gateway, waiting.id, now=world.clock.now(), margin=MARGIN, **WHO
        )

    assert snapshot(world, waiting.id) == before


def test_absent_is_refused_when_stripe_holds_a_transfer_for_it() -> None:
    world = World()
    waiting = world.needing_operator()
    stripe_id = world.plant(waiting, destination="acct_moved")  # to any destination
    world.clock.advance(MARGIN)
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.ActionRefused, match=f"--found {stripe_id}"):
        transfer_actions.resolve_absent(
            world.store, world.gateway, waiting.id, now=world.clock.now(), margin=MARGIN, **WHO
        )

    assert snapshot(world, waiting.id) == before


def test_absent_concludes_nothing_when_stripe_cannot_be_read() -> None:
    world = World()
    waiting = world.needing_operator()
    world.clock.advance(MARGIN)
    world.gateway.systemic_outage()
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.GatewayUnavailable):
        transfer_actions.resolve_absent(
            world.store, world.gateway, waiting.id, now=world.clock.now(), margin=MARGIN, **WHO
        )

    assert snapshot(world, waiting.id) == before


# -- reissue -------------------------------------------------------------------------


def reissue(world: World, transfer_id: str) -> models.PayoutTransfer:
    return transfer_actions.reissue(
        world.store,
        world.gateway,
        transfer_id,
        now=world.clock.now(),
        new_id=lambda: str(uuid.uuid4()),
        **WHO,
    )


def test_a_winner_who_failed_for_want_of_an_account_is_paid_by_a_reissue() -> None:
    world = World()
    world.directory.set_account("u-1", "acct_u1")
    job = world.pay("u-1", "u-2")
    failed = world.transfer_of("u-2")
    assert (failed.status, failed.failure_code) == (S.FAILED_TERMINAL, sm.ACCOUNT_NOT_CONNECTED)
    world.directory.set_account("u-2", "acct_u2")  # the cause is fixed

    new = reissue(world, failed.id)

    assert (new.status, new.reissue_of, new.user_id, new.amount_cents) == (
        S.PENDING,
        failed.id,
        "u-2",
        failed.amount_cents,
    )
    reopened = world.store.get_job(job.id)
    assert reopened is not None
    assert (reopened.status, reopened.total_transfers, reopened.completed_at) == (
        models.JobStatus.PROCESSING,
        3,
        None,
    )
    [action] = world.store.operator_actions(transfer_id=failed.id)
    assert action.action is A.REISSUE
    assert action.after is not None
    assert action.after["reissued_as"] == new.id

    world.tick()

    paid = world.store.get_transfer(new.id)
    assert paid is not None
    assert paid.status is S.COMPLETED
    assert [r.user_id for r in world.gateway.created_transfers()] == ["u-1", "u-2"]
    done = world.store.get_job(job.id)
    assert done is not None
    assert (done.status, done.completed_count, done.failed_count) == (
        models.JobStatus.COMPLETE,
        2,
        1,
    )
    story = [(r.transfer_id, r.entry_type) for r in world.store.ledger(job_id=job.id)]
    assert (failed.id, E.PAYOUT_FAILED) in story
    assert (new.id, E.PAYOUT_COMPLETED) in story
    assert reconciliation.reconcile_all(world.store, world.gateway).ok


def test_a_reissue_is_refused_when_stripe_holds_a_transfer_for_the_failed_one() -> None:
    world = World()
    world.pay("u-2")
    failed = world.transfer_of("u-2")
    world.plant(failed, destination="acct_u2")
    before = snapshot(world, failed.id)

    with pytest.raises(errors.ActionRefused, match="the winner was paid"):
        reissue(world, failed.id)

    assert snapshot(world, failed.id) == before
    assert len(world.store.list_transfers(limit=10)) == 1


def test_a_failed_transfer_is_reissued_once() -> None:
    world = World()
    world.pay("u-2")
    failed = world.transfer_of("u-2")
    reissue(world, failed.id)

    with pytest.raises(errors.ActionRefused, match="reissued already"):
        reissue(world, failed.id)

    assert len(world.store.operator_actions()) == 1
    assert len(world.store.list_transfers(limit=10)) == 2


def test_only_a_failed_transfer_is_reissued() -> None:
    world = World()
    world.directory.set_account("u-1", "acct_u1")
    world.pay("u-1")

    with pytest.raises(errors.ActionRefused, match="only a failed_terminal transfer"):
        reissue(world, world.transfer_of("u-1").id)
    with pytest.raises(errors.ActionRefused, match="no such payout transfer"):
        reissue(world, b.new_id())
    assert world.store.operator_actions() == []


def test_found_concludes_nothing_when_stripe_cannot_be_read() -> None:
    world = World()
    waiting = world.needing_operator()
    stripe_id = world.plant(waiting)
    world.gateway.systemic_outage()
    before = snapshot(world, waiting.id)

    with pytest.raises(errors.GatewayUnavailable):
        transfer_actions.resolve_found(
            world.store, world.gateway, waiting.id, stripe_id, now=world.clock.now(), **WHO
        )

    assert snapshot(world, waiting.id) == before


def test_found_is_refused_for_a_transfer_never_sent() -> None:
    """Claims that kept dying before any send intent: no destination was ever
    pinned, so no Stripe transfer can be its payment, whatever its metadata says."""
    world = World()
    b.schedule(world.store, b.settlement("u-1"), now=world.clock.now())
    for n in range(sm.ABANDONED_CLAIMS_LIMIT):
        world.store.claim_due(limit=1, lease=LEASE, token=f"w-{n}")
        world.clock.advance(LEASE)
    world.store.claim_due(limit=1, lease=LEASE, token="w-last")
    [waiting] = world.store.needing_operator()
    stripe_id = world.plant(waiting, destination="acct_u1")

    with pytest.raises(errors.ActionRefused, match="destination is 'acct_u1' at Stripe, None here"):
        transfer_actions.resolve_found(
            world.store, world.gateway, waiting.id, stripe_id, now=world.clock.now(), **WHO
        )
    assert world.store.operator_actions() == []
