"""The front door (payout_core.Payouts) over the in-memory world: what a
service's own tests see, through the pytest plugin's fixtures."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

import payout_core
from payout_adapters.memory import Fault, PayoutWorld, faults
from payout_core import models
from payout_core.outcomes import TransferRequest

SETTLEMENT: dict[str, object] = {
    "settlement_id": "stl_1",
    "contest_id": "contest_42",
    "currency": "usd",
    "winners": [{"user_id": "u_1", "amount_cents": 1500}, {"user_id": "u_2", "amount_cents": 500}],
}


def test_a_settlement_is_paid_in_three_lines(payout_world: PayoutWorld) -> None:
    payout_world.directory.set_account("u_1", "acct_1")
    payout = payout_world.payouts.schedule(SETTLEMENT)
    done = payout_world.payouts.wait(payout.id, timeout=5)

    assert done.finished
    assert [t.user_id for t in done.paid] == ["u_1"]
    assert [t.user_id for t in done.failed] == ["u_2"]  # no connected account
    sent = [(r.destination, r.amount_cents) for r in payout_world.stripe.created_transfers()]
    assert sent == [("acct_1", 1500)]


def test_scheduling_twice_makes_one_job_and_other_contents_conflict(
    payouts: payout_core.Payouts[object],
) -> None:
    first = payouts.schedule(SETTLEMENT)
    again = payouts.schedule(SETTLEMENT)
    assert again.id == first.id
    assert [t.user_id for t in again.transfers] == ["u_1", "u_2"]

    changed = {**SETTLEMENT, "winners": [{"user_id": "u_1", "amount_cents": 1600}]}
    with pytest.raises(payout_core.SettlementConflict, match="stl_1"):
        payouts.schedule(changed)


def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(
    payouts: payout_core.Payouts[object],
) -> None:
    bad = {**SETTLEMENT, "winners": [{"user_id": "u_1", "amount_cents": -5}]}
    with pytest.raises(payout_core.InvalidSettlement, match=r"winners\[0\]\.amount_cents"):
        payouts.schedule(bad)
    assert payouts.get_by_settlement("stl_1") is None


def test_a_model_settlement_is_checked_by_the_same_rules(
    payouts: payout_core.Payouts[object],
) -> None:
    settlement = payout_core.Settlement(
        settlement_id="stl_1",
        contest_id="c",
        currency="usd",
        winners=(models.Winner(user_id="u_1", amount_cents=0),),
    )
    with pytest.raises(payout_core.InvalidSettlement, match="amount_cents"):
        payouts.schedule(settlement)


def test_look_ups_by_job_and_by_settlement(payouts: payout_core.Payouts[object]) -> None:
    payout = payouts.schedule(SETTLEMENT)
    assert payouts.get(payout.id) == payouts.get_by_settlement("stl_1") == payout
    assert payouts.status(payout.id) is models.JobStatus.PENDING
    assert payouts.get("no-such-job") is None
    assert payouts.get_by_settlement("no-such-settlement") is None
    with pytest.raises(payout_core.UnknownPayout, match="no-such-job"):
        payouts.status("no-such-job")
    with pytest.raises(payout_core.UnknownPayout):
        payouts.wait("no-such-job", timeout=1)


def test_a_wait_that_runs_out_says_how_the_payout_stood(
    payouts: payout_core.Payouts[object],
) -> None:
    payout = payouts.schedule(SETTLEMENT)
    with pytest.raises(payout_core.PayoutTimeout, match="did not finish within 0s") as timed_out:
        payouts.wait(payout.id, timeout=timedelta(0))
    assert timed_out.value.payout.status is models.JobStatus.PENDING
    with pytest.raises(ValueError, match="negative"):
        payouts.wait(payout.id, timeout=-1)


def _two_rate_limits_for_acct_1(request: faults.Request, call: faults.Call) -> Fault | None:
    if isinstance(request, TransferRequest) and request.destination == "acct_1":
        return Fault.rate_limited() if call.attempt <= 2 else None
    return None


def test_a_wait_crosses_retries_without_real_time() -> None:
    payout_world = PayoutWorld.create(
        accounts={"u_1": "acct_1", "u_2": "acct_2"}, handler=_two_rate_limits_for_acct_1
    )
    start = payout_world.clock.now()
    payout = payout_world.payouts.schedule(SETTLEMENT)

    done = payout_world.payouts.wait(payout.id, timeout=5)

    assert [t.user_id for t in done.paid] == ["u_1", "u_2"]
    tries = [r for r in payout_world.stripe.requests if r.destination == "acct_1"]
    assert len(tries) == 3  # two 429s, then paid
    assert payout_world.clock.now() > start  # the backoffs were crossed on the world's clock


def test_enqueued_in_a_transaction_that_rolls_back_is_never_paid(
    payout_world: PayoutWorld,
) -> None:
    def the_service_fails_before_its_commit() -> None:
        with payout_world.transaction() as tx:
            payout_world.payouts.enqueue(tx, SETTLEMENT)
            raise RuntimeError("the service failed before its commit")

    with pytest.raises(RuntimeError):
        the_service_fails_before_its_commit()
    assert payout_world.payouts.get_by_settlement("stl_1") is None

    with payout_world.transaction() as tx:
        enqueued = payout_world.payouts.enqueue(tx, SETTLEMENT)
        assert payout_world.payouts.get(enqueued.id) is None  # not before the commit
    payout_world.directory.set_account("u_1", "acct_1")
    assert payout_world.payouts.wait(enqueued.id, timeout=5).finished


def test_without_a_driver_a_wait_sleeps_between_looks(payout_world: PayoutWorld) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the workers pay elsewhere meanwhile
        slept.append(seconds)
        payout_world.step()

    payouts = attrs.evolve(payout_world.payouts, drive=None, sleep=sleep, poll_seconds=0.25)
    payout_world.directory.set_account("u_1", "acct_1")
    payout = payouts.schedule(SETTLEMENT)

    assert payouts.wait(payout.id, timeout=5).finished
    assert slept != []
    assert all(0 < s <= 0.25 for s in slept)
