"""The gateway contract on :class:`StripeGateway`, through the real SDK, against the
fake Stripe server on 127.0.0.1 (no database).

A request Stripe finishes after the client gave up is the fake's ``Hold``, sent
by a second gateway whose timeout is short: it times out while the fake keeps
the key in flight, and runs when the harness releases it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from payout_adapters.stripe import StripeGateway
from payout_core import outcomes
from tests import fake_stripe
from tests.contracts import GatewayContract, StripeHarness
from tests.contracts.gateway_contract import ACCOUNT, LIST_PAGE_SIZE
from tests.fake_stripe import faults

IMPATIENT_SECONDS = 0.3  # the client's timeout for a request Stripe holds


class FakeStripeHarness:
    """:class:`StripeHarness` on the fake Stripe server, with its clock in the test's hands."""

    def __init__(self, server: fake_stripe.FakeStripeServer, time: fake_stripe.ManualTime) -> None:
        self.server = server
        self.time = time
        self.stripe = StripeGateway(
            api_key=server.api_key,
            api_base=server.url,
            timeout_seconds=5.0,
            rate_limit=1000.0,
            page_size=LIST_PAGE_SIZE,
        )
        self._impatient = StripeGateway(
            api_key=server.api_key,
            api_base=server.url,
            timeout_seconds=IMPATIENT_SECONDS,
            rate_limit=1000.0,
        )
        self._holds: list[faults.Hold] = []

    @property
    def fake(self) -> fake_stripe.FakeStripe:
        return self.server.fake

    @property
    def gateway(self) -> StripeGateway:
        return self.stripe

    def add_account(self, account_id: str) -> None:
        self.fake.add_account(account_id)

    def close_account(self, account_id: str) -> None:
        self.fake.add_account(account_id, fake_stripe.AccountState.CLOSED)

    def reopen_account(self, account_id: str) -> None:
        self.fake.add_account(account_id, fake_stripe.AccountState.ACTIVE)

    def delete_account(self, account_id: str) -> None:
        self.fake.delete_account(account_id)

    def set_balance(self, cents: int | None) -> None:
        self.fake.set_balance(cents)

    def fail_next_create(self, *, created: bool) -> None:
        self.fake.script(faults.server_error(create=created))

    def send_and_give_up(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        hold = faults.Hold(release=threading.Event())
        self._holds.append(hold)
        self.fake.script(hold)
        outcome = self._impatient.create_transfer(request)
        assert hold.held.is_set(), "the request never reached the fake's endpoint"
        return outcome

    def finish_processing(self) -> None:
        for hold in self._holds:
            hold.release.set()
        self._holds.clear()
        assert self.fake.wait_idle()

    def advance(self, by: timedelta) -> None:
        self.time.advance(by)

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.time()), tz=UTC)

    def transfers_for(self, payout_transfer_id: str) -> list[str]:
        return [t["id"] for t in self.fake.transfers_for(payout_transfer_id)]

    def plant(
        self,
        *,
        amount_cents: int,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        planted = self.fake.seed_transfer(
            amount=amount_cents,
            destination=destination,
            transfer_group=transfer_group,
            metadata=metadata,
        )
        return str(planted["id"])

    def reverse(self, stripe_transfer_id: str, amount_cents: int) -> str:
        return str(self.fake.reverse_transfer(stripe_transfer_id, amount_cents)["id"])

    def lose_next_reversal_response(self) -> None:
        self.fake.script(faults.Drop(), path=faults.REVERSALS)

    def reversals_of(self, stripe_transfer_id: str) -> list[str]:
        return [r["id"] for r in self.fake.reversals_of(stripe_transfer_id)]

    def outage(self) -> None:
        # Every request, whatever its method and path, until the fake is stopped.
        self.fake.script(faults.service_unavailable(), method=None, path=None, times=1_000_000)

    def close(self) -> None:
        self.finish_processing()
        self.stripe.close()
        self._impatient.close()


def _fits(harness: FakeStripeHarness) -> StripeHarness:
    return harness  # mypy checks that the harness implements the protocol


class TestStripeGateway(GatewayContract):
    @pytest.fixture
    def harness(self) -> Iterator[FakeStripeHarness]:
        time = fake_stripe.ManualTime()
        with fake_stripe.running(fake_stripe.FakeStripe(clock=time)) as server:
            server.fake.add_account(ACCOUNT)
            harness = FakeStripeHarness(server, time)
            try:
                yield harness
            finally:
                harness.close()
