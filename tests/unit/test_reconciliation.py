"""``reconcile`` both ways, as a core service over the in-memory adapters.

Each finding is planted at the simulated Stripe (or in the store) the way it
happens for real: a second transfer made by hand in the dashboard, a winner
paid although recorded as failed, a reversal, a transfer nobody recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import attrs
import pytest

from payout_adapters.memory import SimulatedGateway
from payout_core import errors, models, outcomes, ports
from payout_core import state_machine as sm
from payout_core.services import reconciliation as rec
from tests.kit import builders as b
from tests.kit.times import LEASE, MARGIN
from tests.unit.operating_world import World

K = rec.FindingKind


@pytest.fixture
def world() -> World:
    w = World()
    w.directory.set_account("u-1", "acct_u1")
    w.directory.set_account("u-2", "acct_u2")
    w.pay("u-1", "u-2", "u-3")  # u-3 has no connected account: failed_terminal
    return w


def kinds(result: rec.Reconciliation) -> list[tuple[K, str | None]]:
    return [(f.kind, f.transfer_id) for f in result.findings]


def test_a_clean_history_agrees_both_ways(world: World) -> None:
    result = rec.reconcile_all(world.store, world.gateway)

    assert result.ok, [str(f) for f in result.findings]
    assert (result.scope, result.jobs, result.transfers, result.stripe_transfers) == (
        "by contest",
        1,
        3,
        2,
    )


def test_without_stripe_only_the_database_is_checked(world: World) -> None:
    result = rec.reconcile_all(world.store, None)

    assert result.ok
    assert (result.scope, result.stripe_transfers) == ("database only", 0)


def test_a_second_stripe_transfer_for_one_winner_is_paid_twice(world: World) -> None:
    paid = world.transfer_of("u-1")
    second = world.plant(paid)

    result = rec.reconcile_all(world.store, world.gateway)

    [finding] = result.findings
    assert (finding.kind, finding.transfer_id) == (K.PAID_TWICE, paid.id)
    assert set(finding.stripe_transfer_ids) == {paid.stripe_transfer_id, second}
    assert second in str(finding)


def test_a_failed_winner_whom_stripe_paid_is_found(world: World) -> None:
    failed = world.transfer_of("u-3")
    assert failed.status is models.TransferStatus.FAILED_TERMINAL
    stripe_id = world.plant(failed, destination="acct_u3")

    result = rec.reconcile_all(world.store, world.gateway)

    assert kinds(result) == [(K.FAILED_BUT_PAID, failed.id)]
    assert stripe_id in str(result.findings[0])


def test_an_amount_that_differs_from_the_record_is_a_mismatch(world: World) -> None:
    _, [t] = b.schedule(
        world.store, b.settlement(("u-5", 700), settlement_id="s-5"), now=world.clock.now()
    )
    [claimed] = world.store.claim_due(limit=1, lease=LEASE, token="w-1")
    stripe_id = world.plant(claimed, amount_cents=770, destination=b.destination_of(claimed))
    done = sm.complete(
        b.sent(claimed, now=world.clock.now()), stripe_transfer_id=stripe_id, now=world.clock.now()
    )
    assert b.record_outcome(world.store, claimed, done, now=world.clock.now())

    result = rec.reconcile_all(world.store, world.gateway)

    [finding] = result.findings
    assert (finding.kind, finding.transfer_id) == (K.MISMATCH, t.id)
    assert "amount 770" in finding.message
    assert "700" in finding.message


def test_a_reversal_at_stripe_is_reported(world: World) -> None:
    paid = world.transfer_of("u-2")
    assert paid.stripe_transfer_id is not None
    world.gateway.reverse(paid.stripe_transfer_id, 400)

    result = rec.reconcile_all(world.store, world.gateway)

    [finding] = result.findings
    assert (finding.kind, finding.transfer_id) == (K.REVERSED, paid.id)
    assert "400 of 1000" in finding.message


def test_a_stripe_transfer_in_a_contest_group_that_names_no_payout_transfer(
    world: World,
) -> None:
    stranger = world.plant(None, payout_transfer_id=b.new_id())
    unlabelled = world.plant(None)

    result = rec.reconcile_all(world.store, world.gateway)

    assert sorted(f.stripe_transfer_ids[0] for f in result.findings) == sorted(
        [stranger, unlabelled]
    )
    assert {f.kind for f in result.findings} == {K.UNKNOWN_AT_STRIPE}


def test_a_completed_transfer_whose_stripe_transfer_does_not_exist_is_missing(
    world: World,
) -> None:
    _, [t] = b.schedule(
        world.store, b.settlement("u-6", settlement_id="s-6"), now=world.clock.now()
    )
    [claimed] = world.store.claim_due(limit=1, lease=LEASE, token="w-1")
    assert b.record_outcome(
        world.store, claimed, b.completed(claimed, now=world.clock.now()), now=world.clock.now()
    )

    result = rec.reconcile_all(world.store, world.gateway)

    assert kinds(result) == [(K.MISSING_AT_STRIPE, t.id)]


def test_a_transfer_waiting_for_an_operator_that_stripe_paid_says_how_to_resolve_it(
    world: World,
) -> None:
    waiting = world.needing_operator()
    stripe_id = world.plant(waiting)

    result = rec.reconcile_all(world.store, world.gateway)

    [finding] = result.findings
    assert (finding.kind, finding.transfer_id) == (K.UNRECORDED, waiting.id)
    assert f"transfers resolve {waiting.id} --found {stripe_id}" in finding.message


def test_a_transfer_in_flight_at_stripe_is_counted_not_reported(world: World) -> None:
    b.schedule(world.store, b.settlement("u-7", settlement_id="s-7"), now=world.clock.now())
    [claimed] = world.store.claim_due(limit=1, lease=LEASE, token="w-1")
    sent = world.store.write_intent(
        claimed=claimed, destination=b.destination_of(claimed), margin=MARGIN
    )
    assert isinstance(sent, models.PayoutTransfer)
    world.plant(sent)  # Stripe created it; the worker has not recorded it yet

    result = rec.reconcile_all(world.store, world.gateway)

    assert result.ok, [str(f) for f in result.findings]
    assert result.in_flight == 1


def test_an_unpaid_transfer_with_no_doubt_that_stripe_paid_is_unrecorded(world: World) -> None:
    _, [t] = b.schedule(
        world.store, b.settlement("u-8", settlement_id="s-8"), now=world.clock.now()
    )
    world.plant(t, destination="acct_u8")

    result = rec.reconcile_all(world.store, world.gateway)

    assert kinds(result) == [(K.UNRECORDED, t.id)]


def test_since_lists_every_transfer_created_from_then_and_expects_only_those_sent_since(
    world: World,
) -> None:
    world.clock.advance(timedelta(days=2))
    since = world.clock.now()
    world.clock.advance(rec.CLOCK_SKEW * 2)
    world.directory.set_account("u-4", "acct_u4")
    world.pay("u-4", settlement_id="s-4", contest_id="c-2")
    world.plant(None, payout_transfer_id=b.new_id(), contest_id="c-9")  # a group no job has

    result = rec.reconcile_all(world.store, world.gateway, since=since)

    assert result.scope == f"since {since.isoformat()}"
    assert result.stripe_transfers == 2
    assert [f.kind for f in result.findings] == [K.UNKNOWN_AT_STRIPE]


def test_since_ignores_transfers_that_are_not_payout_cores(world: World) -> None:
    world.gateway.plant_transfer(
        amount_cents=5,
        currency="usd",
        destination="acct_other",
        transfer_group="refunds-2026",
        metadata={},
    )

    result = rec.reconcile_all(
        world.store, world.gateway, since=world.clock.now() - timedelta(days=1)
    )

    assert result.ok
    assert result.others == 1


@attrs.define
class _Drifted:
    """The store, with one job's completed count off by one."""

    inner: ports.PayoutStore

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        return [
            attrs.evolve(j, completed_count=j.completed_count + 1)
            for j in self.inner.jobs_after(after, limit=limit)
        ]


def test_the_databases_own_invariants_come_first(world: World) -> None:
    result = rec.reconcile_all(_Drifted(world.store), world.gateway)  # type: ignore[arg-type]

    [finding] = result.findings
    assert finding.kind is K.INVARIANT
    assert "counts say 3 completed" in finding.message


def test_a_job_is_checked_page_by_page(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "_TRANSFERS_PAGE", 2)
    monkeypatch.setattr(rec, "_JOBS_PAGE", 1)
    world.directory.set_account("u-4", "acct_u4")
    world.pay("u-4", settlement_id="s-4")
    seen: list[rec.Progress] = []

    result = rec.reconcile_all(world.store, world.gateway, progress=seen.append)

    assert result.ok
    assert (result.jobs, result.transfers) == (2, 4)
    database = [p.done for p in seen if p.stage == "database"]
    assert database == sorted(database)
    assert database[-1] == 4
    assert [p for p in seen if p.stage == "stripe"][-1].groups == 1


def test_stripe_that_cannot_be_read_concludes_nothing(world: World) -> None:
    world.gateway.systemic_outage()

    with pytest.raises(errors.GatewayUnavailable):
        rec.reconcile_all(world.store, world.gateway)


def test_a_completed_transfer_paid_outside_its_contests_group_is_found_and_named(
    world: World,
) -> None:
    _, [t] = b.schedule(
        world.store, b.settlement("u-6", settlement_id="s-6"), now=world.clock.now()
    )
    [claimed] = world.store.claim_due(limit=1, lease=LEASE, token="w-1")
    elsewhere = world.plant(
        claimed, destination=b.destination_of(claimed), transfer_group="contest:another"
    )
    done = sm.complete(
        b.sent(claimed, now=world.clock.now()), stripe_transfer_id=elsewhere, now=world.clock.now()
    )
    assert b.record_outcome(world.store, claimed, done, now=world.clock.now())

    result = rec.reconcile_all(world.store, world.gateway)

    [finding] = result.findings
    assert (finding.kind, finding.transfer_id) == (K.MISMATCH, t.id)
    assert "transfer_group 'contest:another'" in finding.message


@attrs.define
class _RetrieveFails:
    """Stripe lists, but a retrieve answers 500."""

    inner: SimulatedGateway

    def list_transfers(self, query: outcomes.TransferQuery) -> Iterator[outcomes.StripeTransfer]:
        return self.inner.list_transfers(query)

    def retrieve_transfer(self, stripe_transfer_id: str) -> outcomes.RetrieveOutcome:
        return outcomes.Unknown(code="api_error", message="An unknown error occurred")


def test_a_recorded_transfer_stripe_cannot_retrieve_concludes_nothing(world: World) -> None:
    b.schedule(world.store, b.settlement("u-6", settlement_id="s-6"), now=world.clock.now())
    [claimed] = world.store.claim_due(limit=1, lease=LEASE, token="w-1")
    assert b.record_outcome(
        world.store, claimed, b.completed(claimed, now=world.clock.now()), now=world.clock.now()
    )

    with pytest.raises(errors.GatewayUnavailable, match="api_error"):
        rec.reconcile_all(world.store, _RetrieveFails(world.gateway))


@attrs.define
class _ReadBefore:
    """The store as it was before one more job was scheduled and paid: that
    job's transfers reach Stripe while reconcile lists it."""

    inner: ports.PayoutStore
    hidden: str

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        return [j for j in self.inner.jobs_after(after, limit=limit) if j.id != self.hidden]


def test_a_transfer_paid_while_reconcile_ran_is_matched_not_unknown(world: World) -> None:
    world.directory.set_account("u-4", "acct_u4")
    late = world.pay("u-4", settlement_id="s-4")

    result = rec.reconcile_all(_ReadBefore(world.store, late.id), world.gateway)  # type: ignore[arg-type]

    assert result.ok, [str(f) for f in result.findings]
    assert result.stripe_transfers == 3
