"""The simulated gateway behaves like Stripe's Create Transfer, List Transfers,
Create Reversal and List Reversals."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import attrs
import pytest

from payout_adapters.memory import ManualClock, stripe_model
from payout_adapters.memory import gateway as simulated
from payout_core import errors, outcomes, ports
from tests.contracts.gateway_contract import reversal
from tests.kit.times import T0

Fault = simulated.Fault
Lookup = outcomes.TransferLookup


def transfer_request(
    payout_transfer_id: str = "t1",
    *,
    key: str | None = None,
    amount_cents: int = 1500,
    destination: str = "acct_1",
    user_id: str = "u1",
    contest_id: str = "c1",
) -> outcomes.TransferRequest:
    return outcomes.TransferRequest(
        amount_cents=amount_cents,
        currency="usd",
        destination=destination,
        transfer_group=f"contest:{contest_id}",
        idempotency_key=key or f"payout:{payout_transfer_id}",
        metadata=(("payout_transfer_id", payout_transfer_id), ("user_id", user_id)),
    )


def lookup(
    payout_transfer_id: str = "t1", *, destination: str | None = "acct_1", contest_id: str = "c1"
) -> outcomes.TransferLookup:
    return outcomes.TransferLookup(
        destination=destination,
        transfer_group=f"contest:{contest_id}",
        payout_transfer_id=payout_transfer_id,
    )


def on_first_create(fault: simulated.Fault) -> simulated.Handler:
    def handler(request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is simulated.Operation.CREATE and call.attempt == 1:
            return fault
        return None

    return handler


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"the gateway slept {seconds} s without being asked to")


def gateway(
    handler: simulated.Handler | None = None, clock: ManualClock | None = None
) -> simulated.SimulatedGateway:
    return simulated.SimulatedGateway(
        handler=handler, clock=clock or ManualClock(T0), sleep=never_sleep, seed=1
    )


def test_it_fits_the_payment_gateway_port() -> None:
    port: ports.PaymentGateway = gateway()
    assert isinstance(port.create_transfer(transfer_request()), outcomes.Succeeded)


def test_it_fits_the_transfer_records_port() -> None:
    port: ports.TransferRecords = gateway()
    assert port.retrieve_transfer("tr_none") == outcomes.NotFound()


def test_a_created_transfer_is_recorded_with_what_was_sent(clock: ManualClock) -> None:
    gw = gateway(clock=clock)
    sent = transfer_request(amount_cents=2500, destination="acct_9")
    result = gw.create_transfer(sent)
    assert isinstance(result, outcomes.Succeeded)
    assert not result.replayed
    assert result.stripe_transfer_id.startswith("tr_")
    [record] = gw.created_transfers()
    assert record.id == result.stripe_transfer_id
    assert (record.amount_cents, record.currency, record.destination) == (2500, "usd", "acct_9")
    assert record.transfer_group == "contest:c1"
    assert record.metadata == sent.metadata
    assert record.payout_transfer_id == "t1"
    assert (record.created_at, record.sequence) == (T0, 1)


def test_the_same_key_and_parameters_replay_the_first_transfer() -> None:
    gw = gateway()
    first = gw.create_transfer(transfer_request())
    again = gw.create_transfer(transfer_request())
    assert isinstance(first, outcomes.Succeeded)
    assert again == outcomes.Succeeded(stripe_transfer_id=first.stripe_transfer_id, replayed=True)
    assert len(gw.created_transfers()) == 1
    assert len(gw.requests) == 2


def test_the_same_key_with_other_parameters_is_an_idempotency_error_that_proves_nothing() -> None:
    gw = gateway()
    gw.create_transfer(transfer_request(amount_cents=1500))
    changed = gw.create_transfer(transfer_request(amount_cents=1600))
    moved = gw.create_transfer(transfer_request(destination="acct_2"))
    assert isinstance(changed, outcomes.Unknown)
    assert changed.code == "idempotency_error"
    assert changed.key_replays_error  # the key may have created a transfer: look it up
    assert moved == changed
    assert len(gw.created_transfers()) == 1


def test_other_keys_create_other_transfers() -> None:
    gw = gateway()
    a = gw.create_transfer(transfer_request("t1"))
    b = gw.create_transfer(transfer_request("t1", key="payout:t1:1"))
    assert isinstance(a, outcomes.Succeeded)
    assert isinstance(b, outcomes.Succeeded)
    assert a.stripe_transfer_id != b.stripe_transfer_id
    assert [r.idempotency_key for r in gw.transfers_for("t1")] == ["payout:t1", "payout:t1:1"]


def test_a_lost_response_creates_exactly_one_transfer_and_a_retry_replays_it() -> None:
    gw = gateway(on_first_create(Fault.lost_response()))
    lost = gw.create_transfer(transfer_request())
    assert isinstance(lost, outcomes.Unknown)
    assert lost.code == "timeout"
    assert not lost.key_replays_error
    [record] = gw.created_transfers()
    retried = gw.create_transfer(transfer_request())
    assert retried == outcomes.Succeeded(stripe_transfer_id=record.id, replayed=True)
    assert len(gw.created_transfers()) == 1


def test_a_validation_refusal_never_answers_a_key_stripe_already_holds() -> None:
    """Stripe validates parameters behind its idempotency layer: a resend of a
    key that created a transfer is replayed, not refused. (Found by the
    property test: a scripted refusal of such a resend failed a paid winner.)"""

    def handler(request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        first = call.number == 1
        return Fault.lost_response() if first else Fault.permanent("account_invalid")

    gw = gateway(handler)
    assert isinstance(gw.create_transfer(transfer_request()), outcomes.Unknown)
    [record] = gw.created_transfers()

    resent = gw.create_transfer(transfer_request())

    assert resent == outcomes.Succeeded(stripe_transfer_id=record.id, replayed=True)
    # A key Stripe does not know is refused as scripted.
    other = gw.create_transfer(transfer_request("t-2"))
    assert isinstance(other, outcomes.Permanent)


def test_a_server_error_is_saved_under_its_key_and_replayed() -> None:
    gw = gateway(on_first_create(Fault.server_error(created=False)))
    first = gw.create_transfer(transfer_request())
    again = gw.create_transfer(transfer_request())
    assert isinstance(first, outcomes.Unknown)
    assert first.key_replays_error
    assert again == first
    assert gw.created_transfers() == []
    assert gw.find_transfer(lookup()) == outcomes.NotFound()


def test_a_server_error_after_creating_is_found_by_a_lookup() -> None:
    gw = gateway(on_first_create(Fault.server_error(created=True)))
    first = gw.create_transfer(transfer_request())
    assert isinstance(first, outcomes.Unknown)
    assert first.key_replays_error
    assert gw.create_transfer(transfer_request()) == first
    [record] = gw.created_transfers()
    assert gw.find_transfer(lookup()) == outcomes.Found(stripe_transfer_id=record.id)


def test_keys_are_forgotten_a_window_after_their_first_use_not_their_last_replay(
    clock: ManualClock,
) -> None:
    gw = gateway(clock=clock)
    first = gw.create_transfer(transfer_request())
    assert isinstance(first, outcomes.Succeeded)
    clock.set(T0 + timedelta(hours=23))
    assert gw.create_transfer(transfer_request()) == attrs.evolve(first, replayed=True)
    clock.set(T0 + timedelta(hours=24) - timedelta(seconds=1))
    assert gw.create_transfer(transfer_request()) == attrs.evolve(first, replayed=True)
    clock.set(T0 + timedelta(hours=24))
    pruned = gw.create_transfer(transfer_request())
    assert isinstance(pruned, outcomes.Succeeded)
    assert not pruned.replayed
    assert pruned.stripe_transfer_id != first.stripe_transfer_id
    assert len(gw.transfers_for("t1")) == 2  # why payout-core looks up before reusing old keys


def test_a_saved_server_error_is_forgotten_after_the_window_too(clock: ManualClock) -> None:
    gw = simulated.SimulatedGateway(
        handler=on_first_create(Fault.server_error()), clock=clock, key_window=timedelta(hours=1)
    )
    assert isinstance(gw.create_transfer(transfer_request()), outcomes.Unknown)
    clock.set(T0 + timedelta(hours=1))
    assert isinstance(gw.create_transfer(transfer_request()), outcomes.Succeeded)


def test_lookup_matches_on_metadata_among_other_transfers_of_the_group() -> None:
    gw = gateway()
    for pid, dest in [("t0", "acct_1"), ("t1", "acct_1"), ("t2", "acct_2")]:
        gw.create_transfer(transfer_request(pid, destination=dest))
    gw.create_transfer(transfer_request("t3", destination="acct_1", contest_id="c2"))
    t1 = gw.transfers_for("t1")[0]
    assert gw.find_transfer(lookup("t1")) == outcomes.Found(stripe_transfer_id=t1.id)
    assert gw.find_transfer(lookup("t1", destination=None)) == outcomes.Found(
        stripe_transfer_id=t1.id
    )
    assert gw.find_transfer(lookup("t1", destination="acct_2")) == outcomes.NotFound()
    assert gw.find_transfer(lookup("t3")) == outcomes.NotFound()  # another group
    assert gw.find_transfer(lookup("t9")) == outcomes.NotFound()
    assert len(gw.lookups) == 5


def test_rate_limited_creates_nothing_and_saves_nothing() -> None:
    gw = gateway(on_first_create(Fault.rate_limited()))
    limited = gw.create_transfer(transfer_request())
    assert isinstance(limited, outcomes.Transient)
    assert limited.code == "rate_limit"
    assert gw.created_transfers() == []
    later = gw.create_transfer(transfer_request())
    assert isinstance(later, outcomes.Succeeded)
    assert not later.replayed


def test_scripted_answers_pass_through_unchanged() -> None:
    declined = outcomes.Permanent(code="amount_too_small", message="too small")

    def handler(request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        if isinstance(request, outcomes.TransferLookup):
            return Fault.respond(outcomes.Transient(code="lock_timeout", message="busy"))
        return Fault.respond(declined)

    gw = gateway(handler)
    assert gw.create_transfer(transfer_request()) == declined
    assert gw.find_transfer(lookup()) == outcomes.Transient(code="lock_timeout", message="busy")
    assert gw.created_transfers() == []


def test_fault_constructors_answer_the_outcomes_stripe_would() -> None:
    def answer(fault: simulated.Fault) -> outcomes.GatewayOutcome:
        return gateway(lambda _r, _c: fault).create_transfer(transfer_request())

    key_in_use = answer(Fault.key_in_use())
    assert isinstance(key_in_use, outcomes.Unknown)  # the earlier request may still create it
    assert key_in_use.code == "idempotency_key_in_use"
    assert not key_in_use.key_replays_error
    permanent = answer(Fault.permanent("account_invalid"))
    assert isinstance(permanent, outcomes.Permanent)
    assert permanent.code == "account_invalid"
    systemic = answer(Fault.systemic("balance_insufficient", "top up"))
    assert systemic == outcomes.Systemic(code="balance_insufficient", message="top up")


def test_a_lookup_answer_to_a_create_is_a_scripting_error() -> None:
    gw = gateway(lambda _r, _c: Fault.respond(outcomes.NotFound()))
    with pytest.raises(TypeError, match="Create Transfer"):
        gw.create_transfer(transfer_request())
    gw = gateway(lambda _r, _c: Fault.respond(outcomes.Succeeded(stripe_transfer_id="tr_x")))
    with pytest.raises(TypeError, match="look-up"):
        gw.find_transfer(lookup())


def test_lookups_can_fail_too() -> None:
    faults = iter([Fault.server_error(), Fault.lost_response(), Fault.rate_limited()])

    def handler(request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        return next(faults) if call.operation is simulated.Operation.FIND else None

    gw = gateway(handler)
    gw.create_transfer(transfer_request())
    server_error = gw.find_transfer(lookup())
    assert isinstance(server_error, outcomes.Unknown)
    assert not server_error.key_replays_error  # a list call has no idempotency key
    lost = gw.find_transfer(lookup())
    assert isinstance(lost, outcomes.Unknown)
    assert lost.code == "timeout"
    assert isinstance(gw.find_transfer(lookup()), outcomes.Transient)


def test_the_handler_sees_which_attempt_of_each_key_it_is() -> None:
    seen: list[tuple[str, int, int]] = []

    def handler(request: simulated.Request, call: simulated.Call) -> None:
        seen.append((call.operation.value, call.attempt, call.number))

    gw = gateway(handler)
    gw.create_transfer(transfer_request("t1"))
    gw.create_transfer(transfer_request("t2"))
    gw.create_transfer(transfer_request("t1"))
    gw.find_transfer(lookup("t1"))
    gw.find_transfer(lookup("t1"))
    assert seen == [
        ("create", 1, 1),
        ("create", 1, 2),
        ("create", 2, 3),
        ("find", 1, 4),
        ("find", 2, 5),
    ]


def test_a_declined_destination_or_user_is_refused_for_good() -> None:
    gw = gateway()
    gw.decline("acct_closed")
    gw.decline("u-banned", code="insufficient_capabilities_for_transfer")
    by_account = gw.create_transfer(transfer_request("t1", destination="acct_closed"))
    by_user = gw.create_transfer(transfer_request("t2", user_id="u-banned"))
    assert isinstance(by_account, outcomes.Permanent)
    assert by_account.code == "account_invalid"
    assert isinstance(by_user, outcomes.Permanent)
    assert by_user.code == "insufficient_capabilities_for_transfer"
    assert gw.create_transfer(transfer_request("t1", destination="acct_closed")) == by_account
    assert isinstance(gw.create_transfer(transfer_request("t3")), outcomes.Succeeded)
    assert [r.payout_transfer_id for r in gw.created_transfers()] == ["t3"]


def test_a_decline_is_saved_under_the_key_and_replayed_after_it_ends() -> None:
    gw = gateway()
    gw.decline("acct_1")
    refused = gw.create_transfer(transfer_request())
    gw.end_decline("acct_1")

    assert isinstance(refused, outcomes.Permanent)
    assert gw.create_transfer(transfer_request()) == refused  # Stripe replays the 400
    retried = gw.create_transfer(transfer_request(key="payout:t1:1"))
    assert isinstance(retried, outcomes.Succeeded)
    assert [r.idempotency_key for r in gw.created_transfers()] == ["payout:t1:1"]


def test_a_scripted_permanent_answer_is_not_saved_under_the_key() -> None:
    gw = gateway(on_first_create(Fault.permanent("account_invalid")))
    refused = gw.create_transfer(transfer_request())
    again = gw.create_transfer(transfer_request())
    assert isinstance(refused, outcomes.Permanent)
    assert isinstance(again, outcomes.Succeeded)
    assert not again.replayed


def test_edge_faults_come_before_a_decline_and_a_lost_response_hides_it() -> None:
    faults = iter([Fault.rate_limited(), Fault.lost_response()])
    gw = gateway(lambda _r, _c: next(faults, None))
    gw.decline("acct_1")
    limited = gw.create_transfer(transfer_request())
    lost = gw.create_transfer(transfer_request())
    replayed = gw.create_transfer(transfer_request())
    assert isinstance(limited, outcomes.Transient)
    assert isinstance(lost, outcomes.Unknown)
    assert lost.code == "timeout"
    assert isinstance(replayed, outcomes.Permanent)
    assert replayed.code == "account_invalid"


def test_transfers_draw_on_the_balance_until_it_runs_out() -> None:
    gw = gateway()
    gw.set_balance(2000)
    paid = gw.create_transfer(transfer_request("t1", amount_cents=1500))
    refused = gw.create_transfer(transfer_request("t2", amount_cents=1500))
    assert isinstance(paid, outcomes.Succeeded)
    assert refused == outcomes.Systemic(
        code="balance_insufficient",
        message="simulated 400: insufficient available funds (1500 asked, 500 available)",
        conclusive=True,
    )
    assert gw.balance == 500
    assert [r.payout_transfer_id for r in gw.created_transfers()] == ["t1"]


def test_balance_insufficient_is_replayed_after_a_top_up_and_a_new_key_is_paid() -> None:
    gw = gateway()
    gw.set_balance(1000)
    refused = gw.create_transfer(transfer_request())
    gw.set_balance(None)
    replayed = gw.create_transfer(transfer_request())
    paid = gw.create_transfer(transfer_request(key="payout:t1:1"))
    assert isinstance(refused, outcomes.Systemic)
    assert refused.conclusive
    assert replayed == refused
    assert isinstance(paid, outcomes.Succeeded)
    assert gw.balance is None


def test_a_negative_balance_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        gateway().set_balance(-1)


def test_a_500_after_creating_draws_on_the_balance_and_one_without_does_not() -> None:
    faults = iter([Fault.server_error(created=True), Fault.server_error(created=False)])
    gw = gateway(lambda _r, _c: next(faults, None))
    gw.set_balance(5000)
    gw.create_transfer(transfer_request("t1", amount_cents=1000))
    gw.create_transfer(transfer_request("t2", amount_cents=1000))
    assert gw.balance == 4000
    assert [r.payout_transfer_id for r in gw.created_transfers()] == ["t1"]


def test_a_deleted_account_refuses_creates_and_lookups_filtered_by_it() -> None:
    gw = gateway()
    gw.create_transfer(transfer_request("t1", destination="acct_gone"))
    gw.delete_account("acct_gone")
    refused = gw.create_transfer(transfer_request("t2", destination="acct_gone"))
    by_destination = gw.find_transfer(lookup("t1", destination="acct_gone"))
    by_group = gw.find_transfer(lookup("t1", destination=None))
    assert isinstance(refused, outcomes.Permanent)
    assert refused.code == "resource_missing"
    assert by_destination == outcomes.Permanent(
        code="resource_missing", message="simulated 400: no such destination: 'acct_gone'"
    )
    assert by_group == outcomes.Found(stripe_transfer_id=gw.transfers_for("t1")[0].id)


# -- requests Stripe finishes after the caller gave up -----------------------------------------


def test_a_request_that_finishes_later_times_out_and_keeps_its_key_in_flight(
    clock: ManualClock,
) -> None:

    def first_call_finishes_later(
        _request: simulated.Request, call: simulated.Call
    ) -> simulated.Fault | None:
        return Fault.finishes_later(60) if call.number == 1 else None

    gw = gateway(first_call_finishes_later, clock=clock)
    gave_up = gw.create_transfer(transfer_request())
    assert isinstance(gave_up, outcomes.Unknown)
    assert gave_up.code == "timeout"
    assert (gw.in_flight, gw.next_finish_at) == (1, T0 + timedelta(seconds=60))

    clock.advance(59)
    while_running = gw.create_transfer(transfer_request())
    looked_up = gw.find_transfer(lookup())

    assert isinstance(while_running, outcomes.Unknown)
    assert while_running.code == "idempotency_key_in_use"
    assert looked_up == outcomes.NotFound()
    assert gw.created_transfers() == []


def test_a_request_that_finishes_later_runs_once_the_clock_reaches_its_finish(
    clock: ManualClock,
) -> None:

    def first_call_finishes_later(
        _request: simulated.Request, call: simulated.Call
    ) -> simulated.Fault | None:
        return Fault.finishes_later(60) if call.number == 1 else None

    gw = gateway(first_call_finishes_later, clock=clock)
    gw.create_transfer(transfer_request())

    clock.advance(60)

    [record] = gw.created_transfers()  # an inspection is enough to let it finish
    assert record.created_at == T0 + timedelta(seconds=60)
    assert (gw.in_flight, gw.next_finish_at) == (0, None)
    assert gw.find_transfer(lookup()) == outcomes.Found(stripe_transfer_id=record.id)
    assert gw.create_transfer(transfer_request()) == outcomes.Succeeded(
        stripe_transfer_id=record.id, replayed=True
    )


def test_a_request_that_finishes_later_meets_stripes_state_at_its_finish(
    clock: ManualClock,
) -> None:

    def first_call_finishes_later(
        _request: simulated.Request, call: simulated.Call
    ) -> simulated.Fault | None:
        return Fault.finishes_later(60) if call.number == 1 else None

    gw = gateway(first_call_finishes_later, clock=clock)
    gw.create_transfer(transfer_request())
    gw.set_balance(1000)

    clock.advance(61)
    gw.set_balance(None)
    refused = gw.create_transfer(transfer_request())

    assert isinstance(refused, outcomes.Systemic)
    assert refused.code == "balance_insufficient"
    assert gw.created_transfers() == []


def test_finish_in_flight_runs_every_pending_request_in_finish_order_whatever_the_clock() -> None:
    durations = iter([300.0, 100.0, 200.0])
    gw = gateway(lambda _r, _c: Fault.finishes_later(next(durations, 0.0)))
    for n in range(3):
        gw.create_transfer(transfer_request(f"t{n}"))
    assert gw.in_flight == 3

    gw.finish_in_flight()

    assert gw.in_flight == 0
    created = gw.created_transfers()
    assert [r.payout_transfer_id for r in created] == ["t1", "t2", "t0"]
    assert [r.created_at - T0 for r in created] == [timedelta(seconds=s) for s in (100, 200, 300)]


def test_a_key_that_stripe_already_answered_replays_even_when_the_call_is_slow() -> None:
    faults = iter([None, Fault.finishes_later(60)])
    gw = gateway(lambda _r, _c: next(faults, None))
    first = gw.create_transfer(transfer_request())
    again = gw.create_transfer(transfer_request())
    assert isinstance(first, outcomes.Succeeded)
    assert again == attrs.evolve(first, replayed=True)
    assert gw.in_flight == 0


def test_a_lookup_that_is_slow_is_only_a_timeout() -> None:
    gw = gateway(lambda r, _c: Fault.finishes_later(5) if isinstance(r, Lookup) else None)
    gw.create_transfer(transfer_request())
    slow = gw.find_transfer(lookup())
    assert isinstance(slow, outcomes.Unknown)
    assert slow.code == "timeout"


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="seconds"):
        Fault.finishes_later(-1)


def test_a_call_that_dies_before_stripe_runs_it_leaves_its_key_free() -> None:
    deaths = iter([RuntimeError("the worker died")])

    def sleep(_seconds: float) -> None:
        error = next(deaths, None)
        if error is not None:
            raise error

    gw = simulated.SimulatedGateway(latency=(0.01, 0.01), sleep=sleep, seed=1)
    with pytest.raises(RuntimeError):
        gw.create_transfer(transfer_request())
    assert gw.in_flight == 0
    retried = gw.create_transfer(transfer_request())
    assert isinstance(retried, outcomes.Succeeded)
    assert not retried.replayed


def test_reset_forgets_requests_in_flight() -> None:
    gw = gateway(on_first_create(Fault.finishes_later(60)))
    gw.create_transfer(transfer_request())
    gw.reset()
    gw.finish_in_flight()
    assert (gw.in_flight, gw.created_transfers()) == (0, [])


def test_a_systemic_outage_answers_every_call_until_it_ends() -> None:
    gw = gateway()
    gw.systemic_outage()
    create = gw.create_transfer(transfer_request())
    found = gw.find_transfer(lookup())
    assert isinstance(create, outcomes.Systemic)
    assert create.code == "authentication_error"
    assert found == create
    assert gw.created_transfers() == []
    gw.end_outage()
    assert isinstance(gw.create_transfer(transfer_request()), outcomes.Succeeded)


def test_reset_forgets_transfers_keys_requests_and_scripts() -> None:
    gw = gateway()
    gw.create_transfer(transfer_request("t1"))
    gw.decline("acct_2")
    gw.delete_account("acct_3")
    gw.set_balance(0)
    gw.systemic_outage()
    gw.reset()
    assert (gw.created_transfers(), gw.requests, gw.lookups, gw.balance) == ([], (), (), None)
    assert isinstance(
        gw.create_transfer(transfer_request("t3", destination="acct_3")), outcomes.Succeeded
    )
    result = gw.create_transfer(transfer_request("t1"))
    assert isinstance(result, outcomes.Succeeded)
    assert not result.replayed
    assert isinstance(
        gw.create_transfer(transfer_request("t2", destination="acct_2")), outcomes.Succeeded
    )


def test_latency_is_drawn_within_bounds_and_slept_through_the_injected_sleep() -> None:
    slept: list[float] = []
    gw = simulated.SimulatedGateway(latency=(0.01, 0.05), sleep=slept.append, seed=3)
    gw.create_transfer(transfer_request())
    gw.find_transfer(lookup())
    assert len(slept) == 2
    assert all(0.01 <= s <= 0.05 for s in slept)


def test_a_concurrent_request_with_the_same_key_is_refused_as_in_use() -> None:
    entered, release = threading.Event(), threading.Event()

    def sleep(_seconds: float) -> None:
        if not entered.is_set():  # the first request stalls while it holds its key
            entered.set()
            assert release.wait(timeout=10)

    gw = simulated.SimulatedGateway(latency=(0.01, 0.01), sleep=sleep, seed=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(gw.create_transfer, transfer_request())
        assert entered.wait(timeout=10)
        second = gw.create_transfer(transfer_request())
        release.set()
        assert isinstance(first.result(timeout=10), outcomes.Succeeded)
    assert isinstance(second, outcomes.Unknown)
    assert second.code == "idempotency_key_in_use"
    assert len(gw.created_transfers()) == 1
    assert gw.in_flight == 0


def test_many_threads_with_one_key_create_one_transfer() -> None:
    threads = 16
    barrier = threading.Barrier(threads)

    def handler(request: simulated.Request, call: simulated.Call) -> None:
        barrier.wait(timeout=10)  # every thread sends at the same moment

    gw = gateway(handler)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: gw.create_transfer(transfer_request()), range(threads)))
    [record] = gw.created_transfers()
    succeeded = [r for r in results if isinstance(r, outcomes.Succeeded)]
    assert succeeded
    assert {r.stripe_transfer_id for r in succeeded} == {record.id}
    assert sum(not r.replayed for r in succeeded) == 1
    others = [r for r in results if not isinstance(r, outcomes.Succeeded)]
    assert all(
        isinstance(r, outcomes.Unknown) and r.code == "idempotency_key_in_use" for r in others
    )


def drive(gw: simulated.SimulatedGateway) -> list[object]:
    """The same calls a worker would make: 40 payouts, each retried until done."""
    answers: list[object] = []
    for n in range(40):
        for _ in range(5):
            result = gw.create_transfer(transfer_request(f"t{n}"))
            answers.append(result)
            if isinstance(result, outcomes.Unknown):
                answers.append(gw.find_transfer(lookup(f"t{n}")))
            if isinstance(result, outcomes.Succeeded):
                break
    return answers


RATES = simulated.FaultRates(lost_response=0.1, server_error=0.1, rate_limited=0.1, key_in_use=0.1)


def test_random_faults_are_reproducible_with_the_same_seed() -> None:
    def run(seed: int) -> tuple[list[object], list[simulated.TransferRecord]]:
        slept: list[float] = []
        gw = simulated.SimulatedGateway.with_random_faults(
            seed=seed, rates=RATES, latency=(0.0, 0.1), clock=ManualClock(T0), sleep=slept.append
        )
        return [*drive(gw), *slept], gw.created_transfers()

    answers, created = run(42)
    assert run(42) == (answers, created)
    assert run(43)[0] != answers
    kinds = Counter(type(a).__name__ for a in answers)
    assert kinds["Unknown"] > 0
    assert kinds["Transient"] > 0
    assert kinds["Succeeded"] > 0


def test_random_faults_never_create_two_transfers_under_one_key() -> None:
    gw = simulated.SimulatedGateway.with_random_faults(seed=5, rates=RATES, clock=ManualClock(T0))
    drive(gw)
    keys = Counter(r.idempotency_key for r in gw.created_transfers())
    assert keys
    assert max(keys.values()) == 1


def test_a_seeded_single_threaded_run_with_a_manual_clock_is_reproducible() -> None:
    def run(seed: int) -> tuple[list[object], list[simulated.TransferRecord]]:
        draw = random.Random(seed)
        menu = [None, None, Fault.lost_response(), Fault.server_error(created=True)]
        menu += [Fault.finishes_later(30), Fault.finishes_later(90), Fault.key_in_use()]

        def handler(_r: object, _c: simulated.Call) -> simulated.Fault | None:
            return draw.choice(menu)

        clock = ManualClock(T0)
        gw = simulated.SimulatedGateway(handler=handler, clock=clock, sleep=never_sleep, seed=seed)
        answers: list[object] = []
        for step in range(300):
            answers.append(gw.create_transfer(transfer_request(f"t{step % 40}")))
            answers.append(gw.find_transfer(lookup(f"t{step % 40}")))
            clock.advance(draw.choice([0, 10, 45]))
            if step == 200:
                gw.set_balance(draw.randrange(0, 20_000))
        gw.finish_in_flight()
        return answers, gw.created_transfers()

    answers, created = run(11)
    assert run(11) == (answers, created)
    assert run(12) != (answers, created)
    keys = Counter(r.idempotency_key for r in created)
    assert max(keys.values()) == 1  # within the window, one key never pays twice


@pytest.mark.parametrize(
    "rates",
    [
        {"lost_response": -0.1},
        {"server_error": 1.5},
        {"lost_response": 0.6, "rate_limited": 0.6},
    ],
)
def test_impossible_fault_rates_are_refused(rates: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"rate|must be in"):
        simulated.FaultRates(**rates)


@pytest.mark.parametrize("latency", [(-1.0, 0.0), (0.5, 0.1)])
def test_impossible_latencies_are_refused(latency: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="latency"):
        simulated.SimulatedGateway(latency=latency)


def test_without_a_clock_records_carry_the_aware_system_time() -> None:
    gw = simulated.SimulatedGateway()
    gw.create_transfer(transfer_request())
    [record] = gw.created_transfers()
    assert record.created_at.tzinfo is not None


# -- reads, and what reconcile must find --------------------------------------------------------

GROUP = "contest:c1"


def listed(
    gw: simulated.SimulatedGateway,
    *,
    transfer_group: str | None = None,
    created_since: datetime | None = None,
) -> list[str]:
    query = outcomes.TransferQuery(transfer_group=transfer_group, created_since=created_since)
    return [t.id for t in gw.list_transfers(query)]


def test_a_planted_transfer_is_dated_by_the_clock_keyless_and_found_by_a_lookup(
    clock: ManualClock,
) -> None:
    gw = gateway(clock=clock)
    gw.set_balance(100)
    clock.advance(timedelta(minutes=3))

    planted = gw.plant_transfer(
        amount_cents=1500,
        currency="usd",
        destination="acct_1",
        transfer_group=GROUP,
        metadata={"payout_transfer_id": "t1", "note": "paid by hand"},
    )

    assert (planted.created_at, planted.idempotency_key, planted.sequence) == (
        T0 + timedelta(minutes=3),
        None,
        1,
    )
    assert gw.find_transfer(lookup("t1")) == outcomes.Found(stripe_transfer_id=planted.id)
    assert gw.created_transfers() == [planted]
    assert gw.balance == 100  # set-up, not a request: nothing drawn
    assert gw.requests == ()


def test_a_planted_transfer_may_have_no_group_and_no_metadata() -> None:
    gw = gateway()

    planted = gw.plant_transfer(amount_cents=5, destination="acct_9")

    retrieved = gw.retrieve_transfer(planted.id)
    assert isinstance(retrieved, outcomes.StripeTransfer)
    assert (retrieved.transfer_group, retrieved.payout_transfer_id) == (None, None)
    assert listed(gw) == [planted.id]
    assert listed(gw, transfer_group=GROUP) == []


def test_a_dashboard_reversal_grows_until_the_whole_amount_and_refuses_more() -> None:
    gw = gateway()
    paid = gw.create_transfer(transfer_request(amount_cents=1500))
    assert isinstance(paid, outcomes.Succeeded)
    tr = paid.stripe_transfer_id

    first = gw.reverse(tr, 1000)
    (partly,) = gw.transfers_for("t1")
    with pytest.raises(ValueError, match="500 cents left"):
        gw.reverse(tr, 501)
    second = gw.reverse(tr, 500)
    (wholly,) = gw.transfers_for("t1")

    assert (partly.amount_reversed, partly.reversed) == (1000, False)
    assert (wholly.amount_reversed, wholly.reversed) == (1500, True)
    assert gw.reversals_of(tr) == [first, second]
    assert (first.amount_cents, first.stripe_transfer_id, first.currency) == (1000, tr, "usd")
    # Made in the dashboard: no key, no metadata, so payout-core did not make it.
    assert (first.idempotency_key, first.metadata, first.payout_reversal_key) == (None, (), None)
    with pytest.raises(ValueError, match="0 cents left"):
        gw.reverse(tr, 1)
    with pytest.raises(ValueError, match="no such transfer"):
        gw.reverse("tr_none", 1)


def test_a_list_is_by_creation_time_even_when_the_clock_went_back(clock: ManualClock) -> None:
    gw = gateway(clock=clock)
    clock.advance(timedelta(hours=1))
    newer = gw.plant_transfer(amount_cents=5, destination="acct_1", transfer_group=GROUP)
    clock.set(T0)
    older = gw.plant_transfer(amount_cents=5, destination="acct_1", transfer_group=GROUP)

    assert listed(gw, transfer_group=GROUP) == [newer.id, older.id]
    assert listed(gw, created_since=T0 + timedelta(minutes=1)) == [newer.id]
    assert listed(gw, created_since=T0) == [newer.id, older.id]


def test_a_request_that_finishes_later_is_listed_at_its_finish_time(clock: ManualClock) -> None:

    def first_call_finishes_later(
        _request: simulated.Request, call: simulated.Call
    ) -> simulated.Fault | None:
        return Fault.finishes_later(60) if call.number == 1 else None

    gw = gateway(first_call_finishes_later, clock=clock)
    gw.create_transfer(transfer_request("t1"))
    clock.advance(timedelta(seconds=10))
    quick = gw.create_transfer(transfer_request("t2"))
    assert isinstance(quick, outcomes.Succeeded)

    assert listed(gw, transfer_group=GROUP) == [quick.stripe_transfer_id]
    clock.advance(timedelta(seconds=60))
    (late,) = gw.transfers_for("t1")

    assert late.created_at == T0 + timedelta(seconds=60)
    assert listed(gw, transfer_group=GROUP) == [late.id, quick.stripe_transfer_id]


def test_a_list_pages_lazily_and_fails_on_a_page_it_cannot_read() -> None:
    gw = simulated.SimulatedGateway(clock=ManualClock(T0), seed=1, page_size=2)
    for n in range(5):
        gw.create_transfer(transfer_request(f"t{n}"))

    listing = gw.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))
    first_page = [next(listing), next(listing)]
    gw.systemic_outage("api_connection_error")

    with pytest.raises(errors.GatewayUnavailable) as failed:
        next(listing)
    assert failed.value.code == "api_connection_error"
    assert [t.payout_transfer_id for t in first_page] == ["t4", "t3"]


def test_a_list_across_a_reset_fails_rather_than_start_over() -> None:
    gw = simulated.SimulatedGateway(clock=ManualClock(T0), seed=1, page_size=1)
    for n in range(2):
        gw.create_transfer(transfer_request(f"t{n}"))
    listing = gw.list_transfers(outcomes.TransferQuery())
    next(listing)
    gw.reset()

    with pytest.raises(errors.GatewayUnavailable, match="no such transfer"):
        next(listing)


def test_a_retrieve_during_an_outage_answers_the_outage() -> None:
    gw = gateway()
    paid = gw.create_transfer(transfer_request())
    assert isinstance(paid, outcomes.Succeeded)
    gw.systemic_outage()

    retrieved = gw.retrieve_transfer(paid.stripe_transfer_id)

    assert isinstance(retrieved, outcomes.Systemic)
    assert retrieved.code == "authentication_error"


def test_reads_sleep_the_latency_once_a_request() -> None:
    slept: list[float] = []
    gw = simulated.SimulatedGateway(
        clock=ManualClock(T0), seed=1, page_size=1, latency=(0.1, 0.1), sleep=slept.append
    )
    for _ in range(3):
        gw.plant_transfer(amount_cents=5, destination="acct_1", transfer_group=GROUP)
    del slept[:]

    gw.retrieve_transfer("tr_none")
    list(gw.list_transfers(outcomes.TransferQuery()))

    assert slept == [0.1] * 4  # one retrieve, three pages


@pytest.mark.parametrize("size", [0, 101])
def test_a_page_size_stripe_would_refuse_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="page_size"):
        simulated.SimulatedGateway(page_size=size)


# -- reversals ---------------------------------------------------------------------------------


def paid(gw: simulated.SimulatedGateway, payout_transfer_id: str = "t1") -> str:
    outcome = gw.create_transfer(transfer_request(payout_transfer_id, amount_cents=1500))
    assert isinstance(outcome, outcomes.Succeeded), outcome
    return outcome.stripe_transfer_id


def on_first_reversal(fault: simulated.Fault) -> simulated.Handler:
    def handler(request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is simulated.Operation.REVERSE and call.attempt == 1:
            return fault
        return None

    return handler


def test_it_fits_the_reversal_gateway_port() -> None:
    port: ports.ReversalGateway = gateway()
    assert isinstance(port.create_reversal(reversal("tr_none")), outcomes.Permanent)


def test_a_reversal_is_recorded_with_what_was_sent_and_shows_on_the_transfer(
    clock: ManualClock,
) -> None:
    gw = gateway(clock=clock)
    tr = paid(gw)
    clock.advance(60)
    sent = reversal(tr)

    result = gw.create_reversal(sent)

    [record] = gw.reversals_of(tr)
    assert result == outcomes.Reversed(stripe_reversal_id=record.id, replayed=False)
    assert record.id.startswith("trr_")
    assert (record.stripe_transfer_id, record.amount_cents, record.currency) == (tr, 500, "usd")
    assert (record.metadata, record.idempotency_key) == (sent.metadata, sent.idempotency_key)
    assert record.payout_reversal_key == "payout-reversal:t-1:1"
    assert (record.created_at, record.sequence) == (T0 + timedelta(seconds=60), 1)
    [transfer] = gw.transfers_for("t1")
    assert (transfer.amount_reversed, transfer.reversed) == (500, False)
    assert gw.reversal_requests == (sent,)
    assert len(gw.requests) == 1  # Create Transfer's calls only


def test_a_reversal_key_and_a_transfer_key_are_one_idempotency_layer() -> None:
    gw = gateway()
    tr = paid(gw)

    reused = gw.create_reversal(attrs.evolve(reversal(tr), idempotency_key="payout:t1"))

    assert isinstance(reused, outcomes.Unknown)
    assert (reused.code, reused.key_replays_error) == ("idempotency_error", True)
    assert gw.reversals_of(tr) == []


def test_the_handler_sees_reversals_as_an_operation_of_their_own() -> None:
    seen: list[tuple[str, int, int]] = []

    def handler(request: simulated.Request, call: simulated.Call) -> None:
        seen.append((call.operation.value, call.attempt, call.number))

    gw = gateway(handler)
    tr = paid(gw)
    gw.create_reversal(reversal(tr))
    gw.create_reversal(reversal(tr))
    gw.create_reversal(reversal(tr, 2))
    gw.find_transfer(lookup())

    assert seen == [
        ("create", 1, 1),
        ("reverse", 1, 2),
        ("reverse", 2, 3),
        ("reverse", 1, 4),
        ("find", 1, 5),
    ]


def test_a_lost_reversal_response_reversed_once_and_the_key_replays_it() -> None:
    gw = gateway(on_first_reversal(Fault.lost_response()))
    tr = paid(gw)

    lost = gw.create_reversal(reversal(tr))
    resent = gw.create_reversal(reversal(tr))

    [record] = gw.reversals_of(tr)
    assert isinstance(lost, outcomes.Unknown)
    assert lost.code == "timeout"
    assert resent == outcomes.Reversed(stripe_reversal_id=record.id, replayed=True)


def test_a_server_error_on_a_reversal_is_saved_and_may_hide_the_reversal() -> None:
    gw = gateway(on_first_reversal(Fault.server_error(created=True)))
    tr = paid(gw)

    failed = gw.create_reversal(reversal(tr))
    again = gw.create_reversal(reversal(tr))

    assert failed == again == stripe_model.SERVER_ERROR
    assert len(gw.reversals_of(tr)) == 1
    [transfer] = gw.transfers_for("t1")
    assert transfer.amount_reversed == 500


def test_a_rate_limited_reversal_reverses_nothing_and_saves_nothing() -> None:
    gw = gateway(on_first_reversal(Fault.rate_limited()))
    tr = paid(gw)

    limited = gw.create_reversal(reversal(tr))
    retried = gw.create_reversal(reversal(tr))

    assert isinstance(limited, outcomes.Transient)
    assert isinstance(retried, outcomes.Reversed)
    assert not retried.replayed


def test_a_reversal_that_finishes_later_meets_what_is_left_at_its_finish(
    clock: ManualClock,
) -> None:
    gw = gateway(on_first_reversal(Fault.finishes_later(60)), clock=clock)
    tr = paid(gw)

    gave_up = gw.create_reversal(reversal(tr, amount_cents=1000))
    while_running = gw.create_reversal(reversal(tr, amount_cents=1000))
    gw.reverse(tr, 600)  # in the dashboard, meanwhile: 900 left
    clock.advance(60)
    finished = gw.create_reversal(reversal(tr, amount_cents=1000))

    assert isinstance(gave_up, outcomes.Unknown)
    assert gave_up.code == "timeout"
    assert isinstance(while_running, outcomes.Unknown)
    assert while_running.code == "idempotency_key_in_use"
    assert isinstance(finished, outcomes.Permanent)  # saved under the key, replayed
    assert finished.code == "invalid_request"
    assert "1000" in finished.message
    assert "900" in finished.message
    assert [r.amount_cents for r in gw.reversals_of(tr)] == [600]


def test_a_scripted_answer_must_be_one_the_endpoint_could_give() -> None:
    reversed_answer = Fault.respond(outcomes.Reversed(stripe_reversal_id="trr_x"))
    succeeded_answer = Fault.respond(outcomes.Succeeded(stripe_transfer_id="tr_x"))

    with pytest.raises(TypeError, match="Create Transfer"):
        gateway(lambda _r, _c: reversed_answer).create_transfer(transfer_request())
    with pytest.raises(TypeError, match="Create Reversal"):
        gateway(lambda _r, _c: succeeded_answer).create_reversal(reversal("tr_x"))
    with pytest.raises(TypeError, match="look-up"):
        gateway(lambda _r, _c: reversed_answer).find_transfer(lookup())
    assert gateway(lambda _r, _c: reversed_answer).create_reversal(
        reversal("tr_x")
    ) == outcomes.Reversed(stripe_reversal_id="trr_x")


def test_an_outage_answers_reversals_and_fails_their_listing() -> None:
    gw = gateway()
    tr = paid(gw)
    gw.systemic_outage()

    refused = gw.create_reversal(reversal(tr))

    assert isinstance(refused, outcomes.Systemic)
    with pytest.raises(errors.GatewayUnavailable):
        list(gw.list_reversals(tr))
    assert gw.reversals_of(tr) == []


def test_reversals_are_listed_newest_first_page_by_page(clock: ManualClock) -> None:
    gw = simulated.SimulatedGateway(clock=clock, seed=1, page_size=2, sleep=never_sleep)
    tr = paid(gw)
    made: list[str] = []
    for n in range(1, 6):
        if n % 2:
            made.append(gw.reverse(tr, 10).id)
        else:
            outcome = gw.create_reversal(reversal(tr, n, amount_cents=10))
            assert isinstance(outcome, outcomes.Reversed)
            made.append(outcome.stripe_reversal_id)
        clock.advance(1)

    listing = gw.list_reversals(tr)
    first = next(listing)
    gw.reverse(tr, 10)  # after the first page was read: not in this listing's pages
    rest = list(listing)

    assert [r.id for r in [first, *rest]] == made[::-1]
    assert [r.payout_reversal_key for r in [first, *rest]] == [
        None,
        "payout-reversal:t-1:4",
        None,
        "payout-reversal:t-1:2",
        None,
    ]


def test_reset_forgets_reversals_and_their_keys() -> None:
    gw = gateway()
    tr = paid(gw)
    gw.create_reversal(reversal(tr))
    gw.reset()
    tr = paid(gw)

    again = gw.create_reversal(reversal(tr))

    assert isinstance(again, outcomes.Reversed)
    assert not again.replayed
    assert gw.reversal_requests == (reversal(tr),)


def test_random_faults_never_reverse_twice_under_one_key() -> None:
    gw = simulated.SimulatedGateway.with_random_faults(seed=9, rates=RATES, clock=ManualClock(T0))
    tr = gw.plant_transfer(amount_cents=10_000, destination="acct_1").id
    answers = []
    for n in range(1, 41):
        for _ in range(5):
            answer = gw.create_reversal(reversal(tr, n, amount_cents=100))
            answers.append(answer)
            if isinstance(answer, outcomes.Reversed):
                break

    keys = Counter(r.idempotency_key for r in gw.reversals_of(tr))
    assert max(keys.values()) == 1
    assert Counter(type(a).__name__ for a in answers)["Unknown"] > 0
    [transfer] = [t for t in gw.created_transfers() if t.id == tr]
    assert transfer.amount_reversed == 100 * len(keys)
