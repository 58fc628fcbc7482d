"""One transfer, whole (payout_core.services.inspection), on the in-memory adapters."""

from __future__ import annotations

from payout_adapters.memory import InMemoryAccountDirectory, InMemoryStore, ManualClock
from payout_adapters.memory import gateway as simulated
from payout_core import outcomes
from payout_core.services import inspection, tick
from tests.kit import builders as b
from tests.kit.times import T0


def test_a_transfer_is_shown_with_its_keys_ledger_and_what_stripe_holds(clock: ManualClock) -> None:
    store = InMemoryStore(clock=clock)
    directory = InMemoryAccountDirectory()
    directory.set_account("u-1", "acct_u1")

    def lose_the_first_answer(
        request: simulated.Request, call: simulated.Call
    ) -> simulated.Fault | None:
        return simulated.Fault.lost_response() if call.number == 1 else None

    gateway = simulated.SimulatedGateway(handler=lose_the_first_answer, clock=clock, seed=1)
    _, [t] = b.schedule(store, b.settlement("u-1"), now=T0)
    settings = tick.WorkerSettings(concurrency=1)
    tick.run_tick(store=store, directory=directory, gateway=gateway, clock=clock, settings=settings)
    clock.advance(3600)  # the retry is due: the same key, replayed
    tick.run_tick(store=store, directory=directory, gateway=gateway, clock=clock, settings=settings)

    shown = inspection.view_transfer(store, t.id, gateway=gateway)

    assert shown is not None
    [record] = gateway.created_transfers()
    assert shown.transfer.stripe_transfer_id == record.id
    assert shown.at_stripe == outcomes.Found(stripe_transfer_id=record.id)
    assert [(k.generation, k.key, k.current) for k in shown.keys] == [(0, f"payout:{t.id}", True)]
    # The lost answer ended nothing (no row); the replay completed the attempt.
    assert [(e.entry_type.value, e.attempt_number) for e in shown.ledger] == [
        ("payout_completed", 1)
    ]
    assert shown.actions == []


def test_stripe_is_not_asked_without_a_gateway_and_an_unknown_transfer_is_none() -> None:
    store = InMemoryStore(clock=ManualClock(T0))
    _, [t] = b.schedule(store, b.settlement("u-1"), now=T0)

    shown = inspection.view_transfer(store, t.id, gateway=None)

    assert shown is not None
    assert shown.at_stripe is None
    assert shown.ledger == []
    assert inspection.view_transfer(store, b.new_id(), gateway=None) is None
