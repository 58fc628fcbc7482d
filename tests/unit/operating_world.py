"""A small paid history on the in-memory adapters, for the operating services' tests.

``World`` pays a contest through :func:`payout_core.services.tick.run_tick`
against the simulated Stripe, then lets a test plant what an operator must
find: a transfer made at Stripe behind payout-core's back, a reversal, a
transfer waiting for an operator.
"""

from __future__ import annotations

import attrs

from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_adapters.memory.faults import Call, Fault, Operation, Request
from payout_core import idempotency, models
from payout_core import state_machine as sm
from payout_core.services import scheduling, tick
from tests.kit import builders as b
from tests.kit.times import LEASE, MARGIN, T0

__all__ = ["World"]


@attrs.define
class World:
    clock: ManualClock = attrs.Factory(lambda: ManualClock(T0))
    store: InMemoryStore = attrs.field(init=False)
    gateway: SimulatedGateway = attrs.field(init=False)
    directory: InMemoryAccountDirectory = attrs.Factory(InMemoryAccountDirectory)
    # What Stripe does to the next reversal requests, in order (None: answers).
    reversal_faults: list[Fault | None] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.store = InMemoryStore(clock=self.clock)
        self.gateway = SimulatedGateway(clock=self.clock, handler=self._fault)

    def _fault(self, _request: Request, call: Call) -> Fault | None:
        if call.operation is Operation.REVERSE and self.reversal_faults:
            return self.reversal_faults.pop(0)
        return None

    def pay(
        self, *winners: str, settlement_id: str = "s-1", contest_id: str = "c-1"
    ) -> models.PayoutJob:
        """Schedule a settlement paying each winner 1,000 cents and run one tick;
        a winner with no connected account fails for good."""
        job = scheduling.schedule_payout_for_settlement(
            store=self.store,
            settlement=b.settlement(*winners, settlement_id=settlement_id, contest_id=contest_id),
            now=self.clock.now(),
        ).job
        self.tick()
        return job

    def tick(self) -> models.RunReport:
        return tick.run_tick(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.clock,
            settings=tick.WorkerSettings(),
        )

    def transfer_of(self, user_id: str) -> models.PayoutTransfer:
        [transfer] = [
            t
            for t in self.store.list_transfers(limit=1000)
            if t.user_id == user_id and t.reissue_of is None
        ]
        return transfer

    def needing_operator(
        self, user_id: str = "u-9", *, contest_id: str = "c-1"
    ) -> models.PayoutTransfer:
        """A transfer that was sent and whose look-ups then kept failing: it
        waits, uncertain, for an operator (rule 7)."""
        b.schedule(
            self.store,
            b.settlement(user_id, settlement_id=f"s-{user_id}", contest_id=contest_id),
            now=self.clock.now(),
        )
        [claimed] = self.store.claim_due(limit=1, lease=LEASE, token="w-1")
        sent = self.store.write_intent(
            claimed=claimed, destination=b.destination_of(claimed), margin=MARGIN
        )
        assert isinstance(sent, models.PayoutTransfer)
        waiting = sm.escalate(sent, reason="5 look-ups failed in a row", now=self.clock.now())
        assert self.store.record(
            claimed=sent, updated=waiting, ledger_entry=None, now=self.clock.now()
        )
        stored = self.store.get_transfer(waiting.id)
        assert stored is not None
        assert stored.needs_operator is not None
        return stored

    def plant(
        self,
        transfer: models.PayoutTransfer | None,
        *,
        amount_cents: int | None = None,
        destination: str | None = None,
        payout_transfer_id: str | None = None,
        contest_id: str = "c-1",
        transfer_group: str | None = None,
    ) -> str:
        """A transfer made at Stripe outside payout-core (by default exactly the
        one ``transfer`` should have made); its Stripe id."""
        metadata: dict[str, str] = {}
        if transfer is not None or payout_transfer_id is not None:
            metadata["payout_transfer_id"] = payout_transfer_id or (
                transfer.id if transfer is not None else ""
            )
        record = self.gateway.plant_transfer(
            amount_cents=amount_cents
            if amount_cents is not None
            else (transfer.amount_cents if transfer else 1000),
            currency="usd",
            destination=destination
            or (transfer and transfer.destination_account)
            or "acct_planted",
            transfer_group=transfer_group
            or idempotency.transfer_group(transfer.contest_id if transfer else contest_id),
            metadata=metadata,
        )
        return record.id
