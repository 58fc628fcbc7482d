"""Money that comes back: the reversal service over the in-memory adapters.

The simulated Stripe models reversals as Stripe does (idempotency keys, what
is left to reverse); faults are scripted on the reversal requests only.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from payout_adapters.memory.faults import Fault
from payout_core import errors, models, outcomes
from payout_core import reversal as rules
from payout_core.services import reconciliation, reversals
from tests.kit.times import T0
from tests.unit.operating_world import World

R = models.ReversalStatus
E = models.LedgerEntryType
WHO = {"actor": "ops-1", "reason": "disqualified: INC-9"}
_ids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count(1))


@pytest.fixture
def world() -> World:
    w = World()
    w.directory.set_account("u-1", "acct_u1")
    w.pay("u-1", "u-2")  # u-1 paid 1,000; u-2 failed (no account)
    return w


def reverse(world: World, amount: int | None = None) -> reversals.ReversalResult:
    return reversals.reverse(
        world.store,
        world.gateway,
        world.transfer_of("u-1").id,
        amount_cents=amount,
        now=world.clock.now(),
        new_id=lambda: next(_ids),
        **WHO,
    )


def booked(world: World) -> list[tuple[int, str | None]]:
    rows = world.store.ledger(transfer_id=world.transfer_of("u-1").id)
    return [
        (r.amount_cents, r.stripe_reversal_id) for r in rows if r.entry_type is E.PAYOUT_REVERSED
    ]


def test_a_partial_then_a_full_reversal_each_book_one_credit_and_one_audit_row(
    world: World,
) -> None:
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None

    first = reverse(world, 300)
    rest = reverse(world)  # all that is left

    assert (first.reversal.status, first.reversal.amount_cents) == (R.COMPLETED, 300)
    assert (rest.reversal.status, rest.reversal.amount_cents) == (R.COMPLETED, 700)
    assert [r.idempotency_key for r in world.store.reversals_of(paid.id)] == [
        f"payout-reversal:{paid.id}:1",
        f"payout-reversal:{paid.id}:2",
    ]
    at_stripe = world.gateway.reversals_of(paid.stripe_transfer_id)
    assert [(r.id, r.amount_cents) for r in at_stripe] == [
        (first.reversal.stripe_reversal_id, 300),
        (rest.reversal.stripe_reversal_id, 700),
    ]
    assert booked(world) == [
        (300, first.reversal.stripe_reversal_id),
        (700, rest.reversal.stripe_reversal_id),
    ]
    assert rest.amounts == rules.Amounts(paid=1000, reversed=1000, in_doubt=0)
    actions = world.store.operator_actions(transfer_id=paid.id)
    assert [(a.action, a.before, a.after and a.after["reversed"]) for a in reversed(actions)] == [
        (models.OperatorActionKind.REVERSE, {"paid": 1000, "reversed": 0}, 300),
        (models.OperatorActionKind.REVERSE, {"paid": 1000, "reversed": 300}, 1000),
    ]
    assert reconciliation.reconcile_all(world.store, world.gateway).ok


def test_more_than_was_paid_is_refused_naming_the_amounts_and_nothing_is_written(
    world: World,
) -> None:
    reverse(world, 600)
    before = (world.store.reversals_of(world.transfer_of("u-1").id), booked(world))

    with pytest.raises(
        errors.ActionRefused, match="cannot reverse 500 usd: paid 1000, reversed 600, 400 left"
    ):
        reverse(world, 500)

    assert (world.store.reversals_of(world.transfer_of("u-1").id), booked(world)) == before
    assert len(world.gateway.reversal_requests) == 1


def test_only_a_completed_transfer_is_reversed(world: World) -> None:
    failed = world.transfer_of("u-2")

    with pytest.raises(errors.ActionRefused, match="is failed_terminal; only a completed"):
        reversals.reverse(
            world.store, world.gateway, failed.id, amount_cents=None,
            now=world.clock.now(), new_id=lambda: next(_ids), **WHO,
        )  # fmt: skip
    assert world.gateway.reversal_requests == ()


@pytest.mark.parametrize("amount", [0, -5, 10**12])
def test_an_amount_that_is_not_a_positive_number_of_cents_is_bad_input(
    world: World, amount: int
) -> None:
    with pytest.raises(errors.InvalidOperatorAction, match="amount"):
        reverse(world, amount)


def test_a_lost_answer_leaves_the_reversal_in_doubt_and_the_next_run_resolves_it_once(
    world: World,
) -> None:
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None
    world.reversal_faults.append(Fault.lost_response())  # Stripe reversed; the answer is lost

    lost = reverse(world, 250)

    assert lost.reversal.status is R.SENDING
    assert booked(world) == []
    assert lost.amounts.in_doubt == 250
    # The operator runs the command again, even asking for another amount.
    again = reverse(world, 100)

    assert again.resolved_earlier
    assert (again.reversal.id, again.reversal.status) == (lost.reversal.id, R.COMPLETED)
    assert len(world.gateway.reversals_of(paid.stripe_transfer_id)) == 1  # reversed once
    assert booked(world) == [(250, again.reversal.stripe_reversal_id)]
    assert len(world.store.operator_actions(transfer_id=paid.id)) == 1


def test_a_reversal_in_doubt_past_the_key_window_is_found_by_listing(world: World) -> None:
    paid = world.transfer_of("u-1")
    world.reversal_faults.append(Fault.lost_response())
    lost = reverse(world, 250)
    world.clock.advance(timedelta(hours=25))  # Stripe forgot the key

    again = reverse(world)

    assert (again.reversal.id, again.reversal.status) == (lost.reversal.id, R.COMPLETED)
    assert len(world.gateway.reversal_requests) == 1  # no resend of a forgotten key
    assert booked(world) == [(250, again.reversal.stripe_reversal_id)]
    assert paid.stripe_transfer_id is not None


def test_a_reversal_refused_before_stripe_executed_it_fails_and_a_new_one_may_follow(
    world: World,
) -> None:
    world.reversal_faults.append(Fault.rate_limited())

    refused = reverse(world, 250)
    then = reverse(world, 250)

    assert (refused.reversal.status, refused.reversal.failure_code) == (R.FAILED, "rate_limit")
    assert then.reversal.status is R.COMPLETED
    assert booked(world) == [(250, then.reversal.stripe_reversal_id)]


def test_a_webhook_that_arrives_first_settles_the_reversal_in_doubt(world: World) -> None:
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None
    world.reversal_faults.append(Fault.lost_response())
    lost = reverse(world, 250)
    at_stripe = list(world.gateway.list_reversals(paid.stripe_transfer_id))

    first = reversals.book_from_stripe(world.store, paid, at_stripe, now=world.clock.now())
    again = reversals.book_from_stripe(world.store, paid, at_stripe, now=world.clock.now())

    assert (first, again) == (1, 0)
    [settled] = world.store.reversals_of(paid.id)
    assert (settled.id, settled.status) == (lost.reversal.id, R.COMPLETED)
    assert len(world.store.operator_actions(transfer_id=paid.id)) == 1
    assert booked(world) == [(250, settled.stripe_reversal_id)]


def test_a_dashboard_reversal_is_booked_once_and_reconcile_sees_one_left_out(
    world: World,
) -> None:
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None
    dashboard = world.gateway.reverse(paid.stripe_transfer_id, 400)

    missed = reconciliation.reconcile_all(world.store, world.gateway)
    listed = list(world.gateway.list_reversals(paid.stripe_transfer_id))
    counts = [
        reversals.book_from_stripe(world.store, paid, listed, now=world.clock.now())
        for _ in range(3)  # Stripe delivers events more than once
    ]

    assert [f.kind for f in missed.findings] == [reconciliation.FindingKind.REVERSED]
    assert "the ledger books 0" in missed.findings[0].message
    assert counts == [1, 0, 0]
    assert booked(world) == [(400, dashboard.id)]
    assert world.store.operator_actions(transfer_id=paid.id) == []  # nobody here did it
    assert reconciliation.reconcile_all(world.store, world.gateway).ok


def test_a_transfer_event_for_a_transfer_payout_core_did_not_make_is_ignored(
    world: World,
) -> None:
    outcome = reversals.book_transfer_event(
        world.store,
        world.gateway,
        payout_transfer_id=None,
        stripe_transfer_id="tr_other",
        reversals=[
            outcomes.StripeReversal(
                id="trr_x",
                stripe_transfer_id="tr_other",
                amount_cents=5,
                currency="usd",
                created_at=T0,
            )
        ],
        complete=True,
        now=world.clock.now(),
    )

    assert outcome.startswith("ignored")
    assert world.store.ledger(transfer_id=world.transfer_of("u-1").id)[-1].entry_type is (
        E.PAYOUT_COMPLETED
    )


def test_a_resend_that_stripe_refuses_before_executing_leaves_the_reversal_in_doubt(
    world: World,
) -> None:
    """A 429 to the resend says nothing of the first request, which may have
    reversed: the reversal stays in doubt, and the run after resolves it once."""
    paid = world.transfer_of("u-1")
    assert paid.stripe_transfer_id is not None
    world.reversal_faults += [Fault.lost_response(), Fault.rate_limited()]
    reverse(world, 250)

    refused = reverse(world, 250)
    resolved = reverse(world, 250)

    assert (refused.resolved_earlier, refused.reversal.status) == (True, R.SENDING)
    assert (resolved.resolved_earlier, resolved.reversal.status) == (True, R.COMPLETED)
    assert len(world.gateway.reversals_of(paid.stripe_transfer_id)) == 1
    assert booked(world) == [(250, resolved.reversal.stripe_reversal_id)]
