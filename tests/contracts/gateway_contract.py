"""The Stripe behaviours payout-core's exactly-once rules rely on, pinned for every Stripe
the engine is tested against.

The rules of DESIGN.md section 3 ("Exactly once, under every interleaving") are
proved by a simulation on :class:`~payout_adapters.memory.SimulatedGateway`, and
the stories run on the fake Stripe server through the real SDK. Both fakes must
be the same Stripe, and that Stripe must be the real one as documented, or the
proofs are about something else. This suite runs unchanged against both
(``tests/unit/test_gateway_contract_simulated.py`` and
``tests/integration/test_gateway_contract_stripe.py``); it talks to Stripe only
through the :class:`~payout_core.ports.PaymentGateway`,
:class:`~payout_core.ports.TransferRecords` and
:class:`~payout_core.ports.ReversalGateway` ports, and sets Stripe's state up
through a :class:`StripeHarness`.

A subclass provides the fixture ``harness``: a fresh Stripe that knows the
connected account :data:`ACCOUNT`, has no transfers and an unlimited balance,
and a gateway that lists :data:`LIST_PAGE_SIZE` transfers (or reversals) a
page, so that a handful of them make several pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import pytest

from payout_core import errors, outcomes, ports

__all__ = [
    "ACCOUNT",
    "GROUP",
    "LIST_PAGE_SIZE",
    "OTHER_ACCOUNT",
    "GatewayContract",
    "GatewayUnderTest",
    "StripeHarness",
]

ACCOUNT = "acct_1Winner"
OTHER_ACCOUNT = "acct_1Reconnected"
GROUP = "contest:c42"
LIST_PAGE_SIZE = 2


class GatewayUnderTest(
    ports.PaymentGateway, ports.TransferRecords, ports.ReversalGateway, Protocol
):
    """The three ports, as every Stripe gateway implements them."""


class StripeHarness(Protocol):
    """Stripe's side of the contract: its state, set up the way each fake allows,
    and what it holds. Every method acts on Stripe, never on the gateway."""

    @property
    def gateway(self) -> GatewayUnderTest:
        """The gateway under test, talking to this Stripe, listing
        :data:`LIST_PAGE_SIZE` transfers a page."""
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

    def now(self) -> datetime:
        """Stripe's own clock, in whole seconds (what it dates transfers with)."""
        ...

    def transfers_for(self, payout_transfer_id: str) -> list[str]:
        """The ids of the transfers Stripe holds for one payout transfer, oldest first."""
        ...

    def plant(
        self,
        *,
        amount_cents: int,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        """A transfer in ``usd`` made now by someone else than the gateway (the
        dashboard, a second program); its id."""
        ...

    def reverse(self, stripe_transfer_id: str, amount_cents: int) -> str:
        """Reverse part or all of a transfer, as in Stripe's dashboard (no
        metadata); the reversal's id."""
        ...

    def lose_next_reversal_response(self) -> None:
        """Stripe executes the next reversal request, saves its answer under the
        key, and the answer is lost on its way back."""
        ...

    def reversals_of(self, stripe_transfer_id: str) -> list[str]:
        """The ids of the reversals Stripe holds of one transfer, oldest first."""
        ...

    def outage(self) -> None:
        """From now on every request fails in front of the API (Stripe is down,
        or refuses the key)."""
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


def reversal(
    stripe_transfer_id: str,
    n: int = 1,
    *,
    amount_cents: int = 500,
    payout_transfer_id: str = "t-1",
) -> outcomes.ReversalRequest:
    """The ``n``-th reversal payout-core asks of a payout transfer."""
    key = f"payout-reversal:{payout_transfer_id}:{n}"
    return outcomes.ReversalRequest(
        stripe_transfer_id=stripe_transfer_id,
        amount_cents=amount_cents,
        idempotency_key=key,
        metadata=(("payout_reversal_key", key), ("payout_transfer_id", payout_transfer_id)),
    )


def paid(outcome: outcomes.GatewayOutcome) -> str:
    """The transfer id of a success; anything else fails the test."""
    assert isinstance(outcome, outcomes.Succeeded), outcome
    return outcome.stripe_transfer_id


def reversed_(outcome: outcomes.ReversalOutcome, *, replayed: bool = False) -> str:
    """The reversal id of a reversal; anything else fails the test."""
    assert isinstance(outcome, outcomes.Reversed), outcome
    assert outcome.replayed is replayed, outcome
    return outcome.stripe_reversal_id


def assert_unknown(
    outcome: outcomes.GatewayOutcome | outcomes.LookupOutcome | outcomes.ReversalOutcome,
    code: str,
    *,
    key_replays_error: bool,
) -> None:
    assert isinstance(outcome, outcomes.Unknown), outcome
    assert (outcome.code, outcome.key_replays_error) == (code, key_replays_error), outcome


def assert_refused(
    outcome: outcomes.GatewayOutcome | outcomes.LookupOutcome | outcomes.ReversalOutcome,
    kind: type[outcomes.Permanent | outcomes.Systemic],
    code: str,
) -> None:
    assert isinstance(outcome, kind), outcome
    assert outcome.code == code, outcome


FAILURES = (outcomes.Transient, outcomes.Unknown, outcomes.Permanent, outcomes.Systemic)


class GatewayContract:
    """What Stripe does with Create Transfer, List Transfers, Create Reversal and
    List Reversals, as the engine needs it."""

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

    # -- reads: retrieve and list ------------------------------------------------------------

    def test_a_created_transfer_is_retrieved_as_stripe_holds_it(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))

        retrieved = harness.gateway.retrieve_transfer(created)

        assert retrieved == outcomes.StripeTransfer(
            id=created,
            amount_cents=1500,
            currency="usd",
            destination=ACCOUNT,
            transfer_group=GROUP,
            payout_transfer_id="t-1",
            created_at=harness.now(),
            amount_reversed=0,
            reversed=False,
        )

    def test_a_transfer_stripe_does_not_hold_is_not_found(self, harness: StripeHarness) -> None:
        assert harness.gateway.retrieve_transfer("tr_1NeverMade") == outcomes.NotFound()

    def test_a_list_by_group_is_every_transfer_of_the_group_newest_first_across_pages(
        self, harness: StripeHarness
    ) -> None:
        ours: list[str] = []
        for n in range(5):
            ours.append(paid(harness.gateway.create_transfer(request(f"t-{n}"))))
            harness.advance(timedelta(seconds=1))
        ours.append(
            harness.plant(amount_cents=700, destination=ACCOUNT, transfer_group=GROUP, metadata={})
        )
        paid(harness.gateway.create_transfer(request("t-other", transfer_group="contest:other")))

        listed = list(harness.gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP)))

        assert len(ours) > 2 * LIST_PAGE_SIZE  # several pages
        assert [t.id for t in listed] == ours[::-1]
        assert [t.payout_transfer_id for t in listed] == [None, "t-4", "t-3", "t-2", "t-1", "t-0"]
        assert {t.transfer_group for t in listed} == {GROUP}

    def test_a_list_since_a_time_holds_the_transfers_created_from_then_on(
        self, harness: StripeHarness
    ) -> None:
        paid(harness.gateway.create_transfer(request("t-1")))
        harness.advance(timedelta(hours=1))
        since = harness.now()
        later = paid(harness.gateway.create_transfer(request("t-2")))
        harness.advance(timedelta(minutes=1))
        elsewhere = harness.plant(
            amount_cents=900, destination=ACCOUNT, transfer_group=None, metadata={}
        )

        every = harness.gateway.list_transfers(outcomes.TransferQuery(created_since=since))
        of_group = harness.gateway.list_transfers(
            outcomes.TransferQuery(transfer_group=GROUP, created_since=since)
        )

        # The transfer created at ``since`` itself is listed.
        assert [t.id for t in every] == [elsewhere, later]
        assert [t.id for t in of_group] == [later]

    def test_a_transfer_made_outside_payout_core_is_listed_retrieved_and_found(
        self, harness: StripeHarness
    ) -> None:
        first = paid(harness.gateway.create_transfer(request("t-1")))
        harness.advance(timedelta(seconds=1))
        again = harness.plant(
            amount_cents=1500,
            destination=ACCOUNT,
            transfer_group=GROUP,
            metadata={"payout_transfer_id": "t-1"},
        )
        stranger = harness.plant(
            amount_cents=300,
            destination=ACCOUNT,
            transfer_group=GROUP,
            metadata={"payout_transfer_id": "t-9"},
        )

        retrieved = harness.gateway.retrieve_transfer(stranger)
        listed = harness.gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))

        assert isinstance(retrieved, outcomes.StripeTransfer)
        assert (retrieved.amount_cents, retrieved.payout_transfer_id) == (300, "t-9")
        assert [t.id for t in listed] == [stranger, again, first]
        assert harness.gateway.find_transfer(lookup("t-9")) == outcomes.Found(
            stripe_transfer_id=stranger
        )
        # Paid twice: the look-up names the oldest, as the engine expects.
        assert harness.gateway.find_transfer(lookup("t-1")) == outcomes.Found(
            stripe_transfer_id=first
        )
        assert harness.transfers_for("t-1") == [first, again]

    def test_a_dashboard_reversal_shows_in_amount_reversed_and_reversed(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1", amount_cents=1500)))
        query = outcomes.TransferQuery(transfer_group=GROUP)

        harness.reverse(created, 500)
        partly = harness.gateway.retrieve_transfer(created)
        harness.reverse(created, 1000)
        wholly = harness.gateway.retrieve_transfer(created)
        (listed,) = harness.gateway.list_transfers(query)

        assert isinstance(partly, outcomes.StripeTransfer)
        assert (partly.amount_cents, partly.amount_reversed, partly.reversed) == (1500, 500, False)
        assert isinstance(wholly, outcomes.StripeTransfer)
        assert (wholly.amount_reversed, wholly.reversed) == (1500, True)
        assert listed == wholly

    def test_reads_during_an_outage_fail_and_never_say_not_found(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))
        reversed_(harness.gateway.create_reversal(reversal(created)))
        harness.outage()

        retrieved = harness.gateway.retrieve_transfer(created)
        refused = harness.gateway.create_reversal(reversal(created, 2))

        assert isinstance(retrieved, FAILURES), retrieved
        assert isinstance(refused, FAILURES), refused
        with pytest.raises(errors.GatewayUnavailable):
            list(harness.gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP)))
        with pytest.raises(errors.GatewayUnavailable):
            list(harness.gateway.list_reversals(created))
        assert len(harness.reversals_of(created)) == 1

    def test_a_list_whose_later_page_cannot_be_read_fails_rather_than_end_short(
        self, harness: StripeHarness
    ) -> None:
        for n in range(LIST_PAGE_SIZE + 1):
            paid(harness.gateway.create_transfer(request(f"t-{n}")))
            harness.advance(timedelta(seconds=1))
        listing = harness.gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))
        first_page = [next(listing) for _ in range(LIST_PAGE_SIZE)]

        harness.outage()  # each page is read when the iteration reaches it

        with pytest.raises(errors.GatewayUnavailable):
            next(listing)
        assert [t.payout_transfer_id for t in first_page] == ["t-2", "t-1"]

    # -- reversals ---------------------------------------------------------------------------

    def test_a_partial_then_a_full_reversal_show_in_amount_reversed_and_reversed(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1", amount_cents=1500)))

        first = reversed_(harness.gateway.create_reversal(reversal(created, 1, amount_cents=500)))
        partly = harness.gateway.retrieve_transfer(created)
        second = reversed_(harness.gateway.create_reversal(reversal(created, 2, amount_cents=1000)))
        wholly = harness.gateway.retrieve_transfer(created)
        (listed,) = harness.gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))

        assert isinstance(partly, outcomes.StripeTransfer)
        assert (partly.amount_cents, partly.amount_reversed, partly.reversed) == (1500, 500, False)
        assert isinstance(wholly, outcomes.StripeTransfer)
        assert (wholly.amount_reversed, wholly.reversed) == (1500, True)
        assert listed == wholly
        assert harness.reversals_of(created) == [first, second]

    def test_the_same_reversal_key_replays_its_reversal_and_reverses_once(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))

        first = harness.gateway.create_reversal(reversal(created))
        again = harness.gateway.create_reversal(reversal(created))

        (made,) = harness.reversals_of(created)
        assert first == outcomes.Reversed(stripe_reversal_id=made, replayed=False)
        assert again == outcomes.Reversed(stripe_reversal_id=made, replayed=True)
        retrieved = harness.gateway.retrieve_transfer(created)
        assert isinstance(retrieved, outcomes.StripeTransfer)
        assert retrieved.amount_reversed == 500

    def test_reversing_more_than_is_left_is_refused_reverses_nothing_and_is_saved(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1", amount_cents=1500)))
        reversed_(harness.gateway.create_reversal(reversal(created, 1, amount_cents=1000)))

        too_much = harness.gateway.create_reversal(reversal(created, 2, amount_cents=501))
        again = harness.gateway.create_reversal(reversal(created, 2, amount_cents=501))
        rest = harness.gateway.create_reversal(reversal(created, 3, amount_cents=500))
        nothing_left = harness.gateway.create_reversal(reversal(created, 4, amount_cents=1))

        # Stripe's 400 names no code: the gateway's table calls it invalid_request.
        for refused in (too_much, again, nothing_left):
            assert_refused(refused, outcomes.Permanent, "invalid_request")
        assert len(harness.reversals_of(created)) == 2
        assert harness.reversals_of(created)[-1] == reversed_(rest)
        retrieved = harness.gateway.retrieve_transfer(created)
        assert isinstance(retrieved, outcomes.StripeTransfer)
        assert (retrieved.amount_reversed, retrieved.reversed) == (1500, True)

    def test_the_same_reversal_key_with_another_amount_is_an_idempotency_error(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))
        first = reversed_(harness.gateway.create_reversal(reversal(created, amount_cents=500)))

        changed = harness.gateway.create_reversal(reversal(created, amount_cents=600))

        assert_unknown(changed, "idempotency_error", key_replays_error=True)
        assert harness.reversals_of(created) == [first]

    def test_a_lost_reversal_response_then_a_resend_of_the_key_is_one_reversal(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))
        harness.lose_next_reversal_response()

        lost = harness.gateway.create_reversal(reversal(created))
        executed_meanwhile = harness.reversals_of(created)
        resent = harness.gateway.create_reversal(reversal(created))

        assert isinstance(lost, outcomes.Unknown), lost
        assert not lost.key_replays_error  # sending the key again is how to learn the answer
        assert executed_meanwhile == [reversed_(resent, replayed=True)]
        retrieved = harness.gateway.retrieve_transfer(created)
        assert isinstance(retrieved, outcomes.StripeTransfer)
        assert retrieved.amount_reversed == 500

    def test_a_reversal_key_is_forgotten_24_hours_after_its_first_use_and_reverses_again(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))
        first = reversed_(harness.gateway.create_reversal(reversal(created)))

        harness.advance(timedelta(hours=23))
        replayed = harness.gateway.create_reversal(reversal(created))
        harness.advance(timedelta(hours=1, seconds=1))
        again = harness.gateway.create_reversal(reversal(created))

        assert reversed_(replayed, replayed=True) == first
        assert harness.reversals_of(created) == [first, reversed_(again)]

    def test_a_reversal_of_a_transfer_stripe_does_not_hold_is_resource_missing(
        self, harness: StripeHarness
    ) -> None:
        refused = harness.gateway.create_reversal(reversal("tr_1NeverMade"))

        assert_refused(refused, outcomes.Permanent, "resource_missing")
        with pytest.raises(errors.GatewayUnavailable) as failed:
            list(harness.gateway.list_reversals("tr_1NeverMade"))
        assert failed.value.code == "resource_missing"

    def test_an_amount_below_a_cent_is_refused_before_the_key_is_saved(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))

        refused = harness.gateway.create_reversal(reversal(created, amount_cents=0))
        corrected = harness.gateway.create_reversal(reversal(created, amount_cents=5))

        assert_refused(refused, outcomes.Permanent, "parameter_invalid_integer")
        assert harness.reversals_of(created) == [reversed_(corrected)]

    def test_reversals_are_listed_newest_first_across_pages_and_ours_carry_their_key(
        self, harness: StripeHarness
    ) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1", amount_cents=1500)))
        expected: list[outcomes.StripeReversal] = []

        def made(reversal_id: str, cents: int, key: str | None) -> None:
            expected.append(
                outcomes.StripeReversal(
                    id=reversal_id,
                    stripe_transfer_id=created,
                    amount_cents=cents,
                    currency="usd",
                    created_at=harness.now(),
                    payout_reversal_key=key,
                )
            )
            harness.advance(timedelta(seconds=1))

        def ours(n: int, cents: int) -> None:
            outcome = harness.gateway.create_reversal(reversal(created, n, amount_cents=cents))
            made(reversed_(outcome), cents, f"payout-reversal:t-1:{n}")

        def in_the_dashboard(cents: int) -> None:
            made(harness.reverse(created, cents), cents, None)

        ours(1, 100)
        in_the_dashboard(200)
        ours(2, 300)
        in_the_dashboard(50)
        in_the_dashboard(25)

        listed = list(harness.gateway.list_reversals(created))

        assert len(expected) > 2 * LIST_PAGE_SIZE  # several pages
        assert listed == expected[::-1]

    def test_a_transfer_with_no_reversals_lists_none(self, harness: StripeHarness) -> None:
        created = paid(harness.gateway.create_transfer(request("t-1")))

        assert list(harness.gateway.list_reversals(created)) == []
