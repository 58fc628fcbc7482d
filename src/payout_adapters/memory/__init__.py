"""In-memory adapters: payout-core in your own tests, with no database and no Stripe.

Public API for downstream teams. Start with :class:`PayoutWorld`: the same
front door as production (:class:`payout_core.Payouts`) over these adapters,
wired, with a worker the test drives; the pytest plugin (installed with
payout-core) hands a fresh one to every test that asks for ``payout_world``::

    def test_the_winner_is_paid(payout_world):
        payout_world.directory.set_account("u_1", "acct_1")
        payout = payout_world.payouts.schedule(SETTLEMENT)
        assert payout_world.payouts.wait(payout.id, timeout=5).paid

The adapters it wires, for tests of the engine itself. Each adapter implements one of
:mod:`payout_core.ports` and is safe to share between threads:

* :class:`InMemoryStore`: jobs, transfers, the ledger and runs, with the
  PostgreSQL store's semantics (it passes the same contract suite), a clock
  of its own for the database's time, plus ``reset()``, read-only views, and
  switches to simulate the database going away;
* :class:`InMemoryAccountDirectory`: which ``acct_...`` pays which user;
* :class:`InMemoryInbox`: the settlement inbox other services write to;
* :class:`InMemoryEventInbox`: Stripe's events, as the webhook endpoint stores them;
* :class:`ManualClock`: time that moves only when the test moves it;
* :class:`SimulatedGateway`: Stripe's Create Transfer and Create Reversal with
  their idempotency rules, and scriptable or seeded faults (the handler, ``Fault``
  and ``FaultRates`` of :mod:`payout_adapters.memory.faults`); its transfers and
  their reversals listed and retrieved as ``reconcile`` reads them, with
  transfers made elsewhere (``plant_transfer``) and dashboard reversals
  (``reverse``) to plant.

A test that wires the engine's adapters by hand (what :class:`PayoutWorld`
does for a service), pays a winner and checks the ledger::

    from datetime import UTC, datetime

    from payout_adapters.memory import (
        InMemoryAccountDirectory, InMemoryStore, ManualClock, SimulatedGateway,
    )
    from payout_core import parse_settlement
    from payout_core.services.scheduling import schedule_payout_for_settlement
    from payout_core.services.worker import Worker

    def test_winners_are_paid_once():
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        store = InMemoryStore(clock=clock)  # the store's clock stands for the database's
        directory = InMemoryAccountDirectory({"alice": "acct_alice"})
        gateway = SimulatedGateway(clock=clock)
        settlement = parse_settlement({
            "settlement_id": "s-1", "contest_id": "c-1", "currency": "usd",
            "winners": [{"user_id": "alice", "amount_cents": 1500}],
        })
        job = schedule_payout_for_settlement(
            store=store, settlement=settlement, now=clock.now()
        ).job

        Worker(store=store, directory=directory, gateway=gateway, clock=clock).tick()

        [entry] = store.ledger(job_id=job.id)
        assert (entry.entry_type, entry.amount_cents) == ("payout_completed", 1500)

The database going away, for tests of retries and recovery::

    store.available = False        # every operation raises StoreUnavailable
    store.available = True         # and it is back
    store.fail_next(2, operations={"record"})   # the next two outcomes are lost

Between tests, build new adapters or call their ``reset()``.
"""

from payout_adapters.memory.clock import ManualClock
from payout_adapters.memory.directory import InMemoryAccountDirectory
from payout_adapters.memory.events import InMemoryEventInbox
from payout_adapters.memory.faults import Fault, FaultRates
from payout_adapters.memory.gateway import SimulatedGateway
from payout_adapters.memory.inbox import InMemoryInbox
from payout_adapters.memory.store import InMemoryStore
from payout_adapters.memory.world import InMemoryTransaction, PayoutWorld

__all__ = [
    "Fault",
    "FaultRates",
    "InMemoryAccountDirectory",
    "InMemoryEventInbox",
    "InMemoryInbox",
    "InMemoryStore",
    "InMemoryTransaction",
    "ManualClock",
    "PayoutWorld",
    "SimulatedGateway",
]
