"""The Stripe behaviours payout-core's exactly-once rules rely on, pinned for every Stripe
the engine is tested against.

The rules of DESIGN.md section 3 ("Exactly once, under every interleaving") are
proved by a simulation on :class:`~payout_adapters.memory.SimulatedGateway`, and
the stories run on the fake Stripe server through the real SDK. Both fakes must
be the same Stripe, and that Stripe must be the real one as documented, or the
proofs are about something else. This suite runs unchanged against both
(``tests/unit/test_gateway_contract_simulated.py`` and
``tests/integration/test_gateway_contract_stripe.py``); it talks to Stripe only
through the :class:`~payout_core.ports.PaymentGateway` port, and sets Stripe's
state up through a :class:`StripeHarness`.

A subclass provides the fixture ``harness``: a fresh Stripe that knows the
connected account :data:`ACCOUNT`, has no transfers and an unlimited balance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from payout_core import outcomes, ports

__all__ = ["ACCOUNT", "GROUP", "OTHER_ACCOUNT", "GatewayContract", "StripeHarness"]

ACCOUNT = "acct_1Winner"
OTHER_ACCOUNT = "acct_1Reconnected"
GROUP = "contest:c42"


class StripeHarness(Protocol):
    """Stripe's side of the contract: its state, set up the way each fake allows,
    and what it holds. Every method acts on Stripe, never on the gateway."""

    @property
    def gateway(self) -> ports.PaymentGateway:
        """The gateway under test, talking to this Stripe."""
        ...

    def add_account(self, account_id: str) -> None:
        """A connected account that can receive transfers."""
        ...

    def close_account(self, account_id: str) -> None:
        """Stripe refuses transfers to it with ``account_invalid`` (closed or rejected)."""
        ...

    def reopen_account(self, account_id: str) -> None:
        """It can receive transfers again."""
        ...

    def delete_account(self, account_id: str) -> None:
        """Stripe no longer knows it."""
        ...

    def set_balance(self, cents: int | None) -> None:
        """The platform's available balance; ``None`` never runs out."""
        ...

    def fail_next_create(self, *, created: bool) -> None:
        """The next create meets a 500 that Stripe saves under its key, after
        creating the transfer when ``created``."""
        ...

    def send_and_give_up(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        """Send ``request`` through the gateway and return what the client saw:
        the client gives up while Stripe is still executing it, and Stripe keeps
        executing it until :meth:`finish_processing`."""
        ...

    def finish_processing(self) -> None:
        """Stripe finishes every request it is still executing."""
        ...

    def advance(self, by: timedelta) -> None:
        """Move Stripe's own clock forward."""
        ...

    def transfers_for(self, payout_transfer_id: str) -> list[str]:
        """The ids of the transfers Stripe holds for one payout transfer, oldest first."""
        ...


def request(
    payout_transfer_id: str = "t-1",
    *,
    key: str | None = None,
    amount_cents: int = 1500,
    destination: str = ACCOUNT,
    transfer_group: str = GROUP,
) -> outcomes.TransferRequest:
    return outcomes.TransferRequest(
        amount_cents=amount_cents,
        currency="usd",
        destination=destination,
        transfer_group=transfer_group,
        idempotency_key=key or f"payout:{payout_transfer_id}",
        metadata=(("payout_transfer_id", payout_transfer_id), ("user_id", "u-1")),
    )


def lookup(
    payout_transfer_id: str = "t-1",
    *,
    destination: str | None = ACCOUNT,
    transfer_group: str = GROUP,
) -> outcomes.TransferLookup:
    return outcomes.TransferLookup(
        destination=destination,
        transfer_group=transfer_group,
        payout_transfer_id=payout_transfer_id,
    )


def paid(outcome: outcomes.GatewayOutcome) -> str:
    """The transfer id of a success; anything else fails the test."""
    assert isinstance(outcome, outcomes.Succeeded), outcome
    return outcome.stripe_transfer_id


def assert_unknown(
    outcome: outcomes.GatewayOutcome | outcomes.LookupOutcome,
    code: str,
    *,
    key_replays_error: bool,
) -> None:
    assert isinstance(outcome, outcomes.Unknown), outcome
    assert (outcome.code, outcome.key_replays_error) == (code, key_replays_error), outcome


def assert_refused(
    outcome: outcomes.GatewayOutcome | outcomes.LookupOutcome,
    kind: type[outcomes.Permanent | outcomes.Systemic],
    code: str,
) -> None:
    assert isinstance(outcome, kind), outcome
    assert outcome.code == code, outcome


class GatewayContract:
    """What Stripe does with Create Transfer and List Transfers, as the engine needs it."""

    # -- replays -----------------------------------------------------------------------------

    def test_a_success_is_replayed_to_the_same_key(self, harness: StripeHarness) -> None:
        first = harness.gateway.create_transfer(request())
        again = harness.gateway.create_transfer(request())

        (created,) = harness.transfers_for("t-1")
        assert first == outcomes.Succeeded(stripe_transfer_id=created, replayed=False)
        assert again == outcomes.Succeeded(stripe_transfer_id=created, replayed=True)

    def test_a_saved_refusal_is_replayed_to_its_key_even_after_the_account_is_fixed(
        self, harness: StripeHarness
    ) -> None:
        harness.close_account(ACCOUNT)
        refused = harness.gateway.create_transfer(request())
        harness.reopen_account(ACCOUNT)

        again = harness.gateway.create_transfer(request())
        next_key = harness.gateway.create_transfer(request(key="payout:t-1:1"))

        assert_refused(refused, outcomes.Permanent, "account_invalid")
        assert_refused(again, outcomes.Permanent, "account_invalid")
        assert harness.transfers_for("t-1") == [paid(next_key)]

    def test_balance_insufficient_is_saved_and_replayed_after_a_top_up_and_a_new_key_is_paid(
        self, harness: StripeHarness
    ) -> None:
        harness.set_balance(1000)
        refused = harness.gateway.create_transfer(request(amount_cents=1500))
        harness.set_balance(None)

        again = harness.gateway.create_transfer(request(amount_cents=1500))
        next_key = harness.gateway.create_transfer(request(key="payout:t-1:1", amount_cents=1500))

        for outcome in (refused, again):
            assert_refused(outcome, outcomes.Systemic, "balance_insufficient")
            assert isinstance(outcome, outcomes.Systemic)
            assert outcome.conclusive  # the key created nothing: moving on to a new one is safe
        assert harness.transfers_for("t-1") == [paid(next_key)]

    def test_each_transfer_draws_on_the_balance(self, harness: StripeHarness) -> None:
        harness.set_balance(2000)

        first = harness.gateway.create_transfer(request("t-1", amount_cents=1500))
        second = harness.gateway.create_transfer(request("t-2", amount_cents=1500))

        assert harness.transfers_for("t-1") == [paid(first)]
        assert_refused(second, outcomes.Systemic, "balance_insufficient")
        assert harness.transfers_for("t-2") == []

    def test_a_saved_500_is_replayed_to_the_same_key(self, harness: StripeHarness) -> None:
        harness.fail_next_create(created=False)

        first = harness.gateway.create_transfer(request())
        again = harness.gateway.create_transfer(request())

        assert_unknown(first, "api_error", key_replays_error=True)
        assert_unknown(again, "api_error", key_replays_error=True)
        assert harness.transfers_for("t-1") == []
        assert harness.gateway.find_transfer(lookup()) == outcomes.NotFound()

    def test_a_saved_500_may_hide_a_transfer_that_a_lookup_finds(
        self, harness: StripeHarness
    ) -> None:
        harness.fail_next_create(created=True)

        first = harness.gateway.create_transfer(request())
        again = harness.gateway.create_transfer(request())

        assert_unknown(first, "api_error", key_replays_error=True)
        assert_unknown(again, "api_error", key_replays_error=True)
        (created,) = harness.transfers_for("t-1")
        assert harness.gateway.find_transfer(lookup()) == outcomes.Found(stripe_transfer_id=created)

    # -- a key in use, a key misused -----------------------------------------------------------

    def test_a_key_still_running_answers_409_creates_nothing_then_replays_the_success(
        self, harness: StripeHarness
    ) -> None:
        harness.send_and_give_up(request())

        busy = harness.gateway.create_transfer(request())
        created_meanwhile = harness.transfers_for("t-1")
        harness.finish_processing()
        after = harness.gateway.create_transfer(request())

        assert_unknown(busy, "idempotency_key_in_use", key_replays_error=False)
        assert created_meanwhile == []
        (created,) = harness.transfers_for("t-1")
        assert after == outcomes.Succeeded(stripe_transfer_id=created, replayed=True)

    def test_the_same_key_with_other_parameters_is_an_idempotency_error_that_creates_nothing(
        self, harness: StripeHarness
    ) -> None:
        harness.add_account(OTHER_ACCOUNT)
        first = harness.gateway.create_transfer(request())

        moved = harness.gateway.create_transfer(request(destination=OTHER_ACCOUNT))
        changed = harness.gateway.create_transfer(request(amount_cents=1600))

        # The key may have paid (here it did): only a look-up can tell.
        assert_unknown(moved, "idempotency_error", key_replays_error=True)
        assert_unknown(changed, "idempotency_error", key_replays_error=True)
        assert harness.transfers_for("t-1") == [paid(first)]

    # -- keys are forgotten ------------------------------------------------------------------

    def test_a_key_is_forgotten_24_hours_after_its_first_use_and_pays_a_second_time(
        self, harness: StripeHarness
    ) -> None:
        first = paid(harness.gateway.create_transfer(request()))

        harness.advance(timedelta(hours=23))
        replayed = harness.gateway.create_transfer(request())
        harness.advance(timedelta(hours=1, seconds=1))  # 24 hours after the first use
        again = harness.gateway.create_transfer(request())

        # The replay at 23 hours did not make the key younger.
        assert replayed == outcomes.Succeeded(stripe_transfer_id=first, replayed=True)
        assert isinstance(again, outcomes.Succeeded)
        assert not again.replayed
        # The danger the engine must avoid: the same key, paid twice.
        assert harness.transfers_for("t-1") == [first, again.stripe_transfer_id]

    # -- a request the client gave up on --------------------------------------------------------

    def test_a_request_stripe_finishes_after_the_client_gave_up_is_found_only_afterwards(
        self, harness: StripeHarness
    ) -> None:
        gave_up = harness.send_and_give_up(request())
        during = harness.gateway.find_transfer(lookup())
        harness.finish_processing()
        after = harness.gateway.find_transfer(lookup())

        assert_unknown(gave_up, "timeout", key_replays_error=False)
        assert during == outcomes.NotFound()  # why a look-up waits for the send margin
        (created,) = harness.transfers_for("t-1")
        assert after == outcomes.Found(stripe_transfer_id=created)

    # -- look-ups ----------------------------------------------------------------------------

    def test_a_lookup_matches_destination_transfer_group_and_payout_transfer_id(
        self, harness: StripeHarness
    ) -> None:
        harness.add_account(OTHER_ACCOUNT)
        target = paid(harness.gateway.create_transfer(request("t-1")))
        paid(harness.gateway.create_transfer(request("t-2")))
        paid(harness.gateway.create_transfer(request("t-3", destination=OTHER_ACCOUNT)))
        paid(harness.gateway.create_transfer(request("t-4", transfer_group="contest:other")))
        find = harness.gateway.find_transfer

        assert find(lookup("t-1")) == outcomes.Found(stripe_transfer_id=target)
        assert find(lookup("t-1", destination=None)) == outcomes.Found(stripe_transfer_id=target)
        assert find(lookup("t-1", destination=OTHER_ACCOUNT)) == outcomes.NotFound()
        assert find(lookup("t-1", transfer_group="contest:other")) == outcomes.NotFound()
        assert find(lookup("t-3")) == outcomes.NotFound()  # to another destination
        assert find(lookup("t-4")) == outcomes.NotFound()  # in another group

    def test_a_lookup_with_no_transfer_is_not_found(self, harness: StripeHarness) -> None:
        assert harness.gateway.find_transfer(lookup()) == outcomes.NotFound()

    def test_a_lookup_by_a_destination_stripe_does_not_know_is_refused_not_not_found(
        self, harness: StripeHarness
    ) -> None:
        harness.add_account("acct_1Gone")
        harness.delete_account("acct_1Gone")

        found = harness.gateway.find_transfer(lookup(destination="acct_1Gone"))
        created = harness.gateway.create_transfer(request(destination="acct_1Gone"))

        assert_refused(found, outcomes.Permanent, "resource_missing")
        assert_refused(created, outcomes.Permanent, "resource_missing")
