"""The gateway contract on the simulated Stripe, driven by a manual clock."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest

from payout_adapters.memory import ManualClock, SimulatedGateway
from payout_adapters.memory import gateway as simulated
from payout_core import outcomes
from tests.contracts import GatewayContract, StripeHarness
from tests.contracts.gateway_contract import LIST_PAGE_SIZE
from tests.kit.times import T0

PROCESSING = timedelta(seconds=90)  # how long Stripe takes once the client has given up


class SimulatedStripe:
    """:class:`StripeHarness` on :class:`SimulatedGateway`: faults for the next
    creates and reversals through its handler, Stripe's clock a :class:`ManualClock`.

    Every account exists at the simulated Stripe until it is deleted, so adding
    one is a no-op; closing one is a decline.
    """

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self._next_creates: collections.deque[simulated.Fault] = collections.deque()
        self._next_reversals: collections.deque[simulated.Fault] = collections.deque()
        self.simulated = SimulatedGateway(
            handler=self._handler, clock=self.clock, seed=8, page_size=LIST_PAGE_SIZE
        )

    @property
    def gateway(self) -> SimulatedGateway:
        return self.simulated

    def _handler(self, _request: simulated.Request, call: simulated.Call) -> simulated.Fault | None:
        if call.operation is simulated.Operation.CREATE and self._next_creates:
            return self._next_creates.popleft()
        if call.operation is simulated.Operation.REVERSE and self._next_reversals:
            return self._next_reversals.popleft()
        return None

    def add_account(self, account_id: str) -> None:
        pass

    def close_account(self, account_id: str) -> None:
        self.simulated.decline(account_id, code="account_invalid")

    def reopen_account(self, account_id: str) -> None:
        self.simulated.end_decline(account_id)

    def delete_account(self, account_id: str) -> None:
        self.simulated.delete_account(account_id)

    def set_balance(self, cents: int | None) -> None:
        self.simulated.set_balance(cents)

    def fail_next_create(self, *, created: bool) -> None:
        self._next_creates.append(simulated.Fault.server_error(created=created))

    def send_and_give_up(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        self._next_creates.append(simulated.Fault.finishes_later(PROCESSING.total_seconds()))
        return self.simulated.create_transfer(request)

    def finish_processing(self) -> None:
        # Stripe's clock moves to the finish, as it would while Stripe works.
        while (finish := self.simulated.next_finish_at) is not None:
            self.clock.set(max(finish, self.clock.now()))
        assert self.simulated.in_flight == 0

    def advance(self, by: timedelta) -> None:
        self.clock.advance(by)

    def now(self) -> datetime:
        return self.clock.now()

    def transfers_for(self, payout_transfer_id: str) -> list[str]:
        return [r.id for r in self.simulated.transfers_for(payout_transfer_id)]

    def plant(
        self,
        *,
        amount_cents: int,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        return self.simulated.plant_transfer(
            amount_cents=amount_cents,
            currency="usd",
            destination=destination,
            transfer_group=transfer_group,
            metadata=metadata,
        ).id

    def reverse(self, stripe_transfer_id: str, amount_cents: int) -> str:
        return self.simulated.reverse(stripe_transfer_id, amount_cents).id

    def lose_next_reversal_response(self) -> None:
        self._next_reversals.append(simulated.Fault.lost_response())

    def reversals_of(self, stripe_transfer_id: str) -> list[str]:
        return [r.id for r in self.simulated.reversals_of(stripe_transfer_id)]

    def outage(self) -> None:
        self.simulated.systemic_outage()


def _fits(harness: SimulatedStripe) -> StripeHarness:
    return harness  # mypy checks that the harness implements the protocol


class TestSimulatedGateway(GatewayContract):
    @pytest.fixture
    def harness(self) -> SimulatedStripe:
        return SimulatedStripe()
