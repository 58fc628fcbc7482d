"""The Stripe gateway against the fake Stripe: look-ups, retries with the same key,
the shared rate limit, the reads of reconcile, reversals, and the API key never leaking."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from payout_adapters.stripe import LocalRateLimiter, StripeGateway, classify
from payout_core import errors, outcomes, pacing, ports
from tests import fake_stripe
from tests.contracts.gateway_contract import reversal
from tests.fake_stripe import faults
from tests.kit.clocks import FakeTime

ACCOUNT = "acct_1Winner"
GROUP = "contest:c42"


def request(transfer_id: str = "t-1", *, generation: int = 0) -> outcomes.TransferRequest:
    key = f"payout:{transfer_id}" if generation == 0 else f"payout:{transfer_id}:{generation}"
    return outcomes.TransferRequest(
        amount_cents=1500,
        currency="usd",
        destination=ACCOUNT,
        transfer_group=GROUP,
        idempotency_key=key,
        metadata=(("payout_transfer_id", transfer_id), ("user_id", "u_1")),
    )


def lookup(transfer_id: str = "t-1", destination: str | None = ACCOUNT) -> outcomes.TransferLookup:
    return outcomes.TransferLookup(
        destination=destination, transfer_group=GROUP, payout_transfer_id=transfer_id
    )


def _fits_the_port(gateway: StripeGateway) -> ports.PaymentGateway:
    return gateway  # mypy checks that StripeGateway implements the port


def _fits_the_records_port(gateway: StripeGateway) -> ports.TransferRecords:
    return gateway


def _fits_the_reversal_port(gateway: StripeGateway) -> ports.ReversalGateway:
    return gateway


@pytest.fixture
def server() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running() as running:
        running.fake.add_account(ACCOUNT)
        yield running


@pytest.fixture
def gateway(server: fake_stripe.FakeStripeServer) -> Iterator[StripeGateway]:
    with StripeGateway(
        api_key=server.api_key, api_base=server.url, timeout_seconds=5.0, rate_limit=1000.0
    ) as gw:
        yield gw


def seed(
    fake: fake_stripe.FakeStripe, count: int, *, destination: str = ACCOUNT, prefix: str = "other"
) -> None:
    for n in range(count):
        fake.seed_transfer(
            amount=100,
            destination=destination,
            transfer_group=GROUP,
            metadata={"payout_transfer_id": f"{prefix}-{n}"},
        )


# -- look-up -----------------------------------------------------------------------------------


def test_lookup_pages_through_a_group_of_more_than_a_hundred_transfers(
    server: fake_stripe.FakeStripeServer,
) -> None:
    fake = server.fake
    target = fake.seed_transfer(
        amount=1500, destination="acct_elsewhere", transfer_group=GROUP,
        metadata={"payout_transfer_id": "t-1"},
    )  # fmt: skip
    seed(fake, 120, destination="acct_other_a")
    seed(fake, 120, destination="acct_other_b", prefix="more")
    fake.seed_transfer(amount=5, destination=ACCOUNT, transfer_group="contest:other")
    time = FakeTime()
    limiter = LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep)

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        found = gw.find_transfer(lookup(destination=None))

    assert found == outcomes.Found(stripe_transfer_id=target["id"])
    pages = fake.requests("GET", "/v1/transfers")
    assert [p.params.get("limit") for p in pages] == ["100", "100", "100"]
    assert [p.params.get("transfer_group") for p in pages] == [GROUP] * 3
    assert "starting_after" not in pages[0].params
    assert pages[1].params["starting_after"] != pages[2].params["starting_after"]
    # One slot of the read budget per page, none of Create Transfer's.
    assert (limiter.taken(ports.Budget.READ), limiter.taken(ports.Budget.CREATE)) == (3, 0)


def test_lookup_filters_by_destination_and_pages_through_it(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    fake = server.fake
    target = fake.seed_transfer(
        amount=1500, destination=ACCOUNT, transfer_group=GROUP,
        metadata={"payout_transfer_id": "t-1"},
    )  # fmt: skip
    seed(fake, 150)  # to the same destination, other payouts
    seed(fake, 50, destination="acct_other")

    found = gateway.find_transfer(lookup())

    assert found == outcomes.Found(stripe_transfer_id=target["id"])
    pages = fake.requests("GET", "/v1/transfers")
    assert len(pages) == 2
    assert all(p.params.get("destination") == ACCOUNT for p in pages)


def test_lookup_says_not_found_only_after_reading_every_page(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    seed(server.fake, 230)

    assert gateway.find_transfer(lookup("t-absent")) == outcomes.NotFound()
    assert len(server.fake.requests("GET", "/v1/transfers")) == 3


def test_lookup_that_fails_on_a_later_page_is_not_a_not_found(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    seed(server.fake, 150)
    server.fake.script(faults.server_error(), method="GET", after=1)  # the second page

    outcome = gateway.find_transfer(lookup("t-absent"))

    assert isinstance(outcome, outcomes.Unknown)
    assert len(server.fake.requests("GET", "/v1/transfers")) == 2


def test_lookup_ignores_transfers_of_other_payouts(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    seed(server.fake, 3)

    assert gateway.find_transfer(lookup("t-1")) == outcomes.NotFound()


def test_lookup_finding_two_transfers_for_one_payout_reports_the_oldest_and_logs_an_error(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    first = server.fake.seed_transfer(
        amount=1500, destination=ACCOUNT, transfer_group=GROUP,
        metadata={"payout_transfer_id": "t-1"},
    )  # fmt: skip
    second = server.fake.seed_transfer(
        amount=1500, destination=ACCOUNT, transfer_group=GROUP,
        metadata={"payout_transfer_id": "t-1"},
    )  # fmt: skip

    with caplog.at_level(logging.ERROR, logger="payout.stripe"):
        found = gateway.find_transfer(lookup())

    assert found == outcomes.Found(stripe_transfer_id=first["id"])
    (record,) = [r for r in caplog.records if r.getMessage() == "payout.stripe.duplicate_transfers"]
    assert getattr(record, "stripe_transfer_ids", None) == f"{first['id']},{second['id']}"


def test_lookup_failures_use_the_classification_table(
    server: fake_stripe.FakeStripeServer,
) -> None:
    with StripeGateway(api_key="sk_test_wrongKey00000000", api_base=server.url) as wrong:
        assert isinstance(wrong.find_transfer(lookup()), outcomes.Systemic)
    server.fake.script(faults.rate_limited(), method="GET")
    with StripeGateway(api_key=server.api_key, api_base=server.url) as gw:
        assert isinstance(gw.find_transfer(lookup()), outcomes.Transient)


# -- retries with the same key -----------------------------------------------------------------


def test_lost_response_is_retried_with_the_same_key_and_pays_once(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    server.fake.script(faults.Drop())  # created at Stripe, the answer lost

    lost = gateway.create_transfer(request())
    retried = gateway.create_transfer(request())

    (created,) = server.fake.transfers_for("t-1")
    assert isinstance(lost, outcomes.Unknown)
    assert lost.key_replays_error is False
    assert retried == outcomes.Succeeded(stripe_transfer_id=created["id"], replayed=True)
    assert len(server.fake.transfers()) == 1


def test_answer_slower_than_the_timeout_is_in_flight_then_replayed(
    server: fake_stripe.FakeStripeServer,
) -> None:
    hold = faults.Hold(release=threading.Event())
    server.fake.script(hold)

    with StripeGateway(
        api_key=server.api_key, api_base=server.url, timeout_seconds=0.5, rate_limit=1000.0
    ) as gw:
        timed_out = gw.create_transfer(request())
        while_running = gw.create_transfer(request())
        hold.release.set()
        assert server.fake.wait_idle()
        after = gw.create_transfer(request())

    (created,) = server.fake.transfers()
    assert isinstance(timed_out, outcomes.Unknown)
    assert timed_out.code == "timeout"
    assert isinstance(while_running, outcomes.Unknown)  # never decided on: wait for it
    assert while_running.code == "idempotency_key_in_use"
    assert after == outcomes.Succeeded(stripe_transfer_id=created["id"], replayed=True)


def test_500_without_a_transfer_is_looked_up_then_paid_under_the_next_key(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    server.fake.script(faults.server_error(create=False))

    failed = gateway.create_transfer(request())
    replayed = gateway.create_transfer(request())  # what the same key would do for a day
    found = gateway.find_transfer(lookup())
    paid = gateway.create_transfer(request(generation=1))

    assert isinstance(failed, outcomes.Unknown)
    assert failed.key_replays_error
    assert isinstance(replayed, outcomes.Unknown)
    assert found == outcomes.NotFound()
    (created,) = server.fake.transfers()
    assert paid == outcomes.Succeeded(stripe_transfer_id=created["id"])


def test_500_after_the_transfer_was_created_is_found_by_the_lookup(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    server.fake.script(faults.server_error(create=True))

    failed = gateway.create_transfer(request())
    found = gateway.find_transfer(lookup())

    (created,) = server.fake.transfers()
    assert isinstance(failed, outcomes.Unknown)
    assert failed.key_replays_error
    assert found == outcomes.Found(stripe_transfer_id=created["id"])


@pytest.mark.parametrize("path", [faults.TRANSFERS, faults.REVERSALS])
@pytest.mark.parametrize(
    "fault",
    [faults.server_error(), faults.bad_gateway(), faults.rate_limited(), faults.Drop()],
    ids=["500", "502", "429", "lost answer"],
)
def test_the_sdk_never_retries_on_its_own(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway, fault: faults.Fault, path: str
) -> None:
    tr = server.fake.seed_transfer(amount=1500, destination=ACCOUNT)["id"]
    server.fake.script(fault, path=path)

    if path == faults.TRANSFERS:
        gateway.create_transfer(request())
    else:
        gateway.create_reversal(reversal(tr))

    assert len(server.fake.requests("POST")) == 1


# -- the rate limit ----------------------------------------------------------------------------


def test_every_request_of_every_thread_takes_a_slot_of_its_budget(
    server: fake_stripe.FakeStripeServer,
) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(10, clock=time.clock, sleep=time.sleep)

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda n: gw.create_transfer(request(f"t-{n}")), range(40)))
        found = gw.find_transfer(lookup("t-7"))

    assert all(isinstance(r, outcomes.Succeeded) for r in results)
    assert isinstance(found, outcomes.Found)
    assert (limiter.taken(ports.Budget.CREATE), limiter.taken(ports.Budget.READ)) == (40, 1)
    # The clock stood still: the creates left evenly spaced, each given the slot
    # one interval (at 10/s, less the headroom) after the one before it; the
    # look-up, on its own budget, waited for none.
    interval = 1 / (10 * pacing.HEADROOM)
    assert sorted(time.slept) == pytest.approx([k * interval for k in range(1, 40)])


def test_a_429_pushes_the_budget_back_for_everyone(server: fake_stripe.FakeStripeServer) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(20, clock=time.clock, sleep=time.sleep)
    server.fake.script(faults.rate_limited())

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        limited = gw.create_transfer(request("t-1"))
        assert time.slept == []
        next_one = gw.create_transfer(request("t-2"))
        found = gw.find_transfer(lookup("t-2"))

    assert isinstance(limited, outcomes.Transient)
    assert isinstance(next_one, outcomes.Succeeded)
    assert isinstance(found, outcomes.Found)
    # The next create waits out the pause (one slot at the pace the 429 cut,
    # when Stripe names no time); the read budget is not pushed back.
    assert time.slept == [pytest.approx(1 / (20 * pacing.HEADROOM * pacing.CUT))]


@pytest.mark.parametrize("write", ["transfer", "reversal"])
def test_a_create_is_not_sent_when_the_budget_is_booked_too_far_ahead(
    server: fake_stripe.FakeStripeServer, write: str
) -> None:
    """A send must leave soon after its intent: rather than wait a minute for
    its slot, a create (or a reversal) is given back unsent (the attempt stays
    in doubt and is resent later, spending nothing)."""
    time = FakeTime()
    limiter = LocalRateLimiter.at(20, clock=time.clock, sleep=time.sleep)
    limiter.push_back(ports.Budget.CREATE, 60.0)

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        outcome = (
            gw.create_transfer(request("t-1"))
            if write == "transfer"
            else gw.create_reversal(reversal("tr_any"))
        )

    assert isinstance(outcome, outcomes.Transient)
    assert outcome.code == "rate_limited_locally"
    assert server.fake.requests("POST") == []
    assert time.slept == []


def test_a_429_with_retry_after_pauses_as_long_as_stripe_asks(
    server: fake_stripe.FakeStripeServer,
) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(20, clock=time.clock, sleep=time.sleep)
    server.fake.script(attrs.evolve(faults.rate_limited(), headers=(("Retry-After", "7"),)))

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        gw.create_transfer(request("t-1"))
        gw.create_transfer(request("t-2"))

    assert time.slept == [pytest.approx(7.0)]


def test_a_lock_timeout_slows_nothing_down(server: fake_stripe.FakeStripeServer) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep)
    server.fake.script(faults.lock_timeout())

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        gw.create_transfer(request("t-1"))
        gw.create_transfer(request("t-2"))

    # Its own slot, and no pause, no cut.
    assert time.slept == [pytest.approx(1 / (1000 * pacing.HEADROOM))]


# -- reversals ---------------------------------------------------------------------------------


def paid_transfer(gateway: StripeGateway, transfer_id: str = "t-1") -> str:
    outcome = gateway.create_transfer(request(transfer_id))
    assert isinstance(outcome, outcomes.Succeeded), outcome
    return outcome.stripe_transfer_id


def test_a_reversal_sends_its_amount_metadata_and_key_on_the_create_budget(
    server: fake_stripe.FakeStripeServer,
) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep)

    with StripeGateway(api_key=server.api_key, api_base=server.url, limiter=limiter) as gw:
        tr = paid_transfer(gw)
        reversed_ = gw.create_reversal(reversal(tr))

    (sent,) = server.fake.requests("POST", f"/v1/transfers/{tr}/reversals")
    assert sent.params == {
        "amount": "500",
        "metadata": {"payout_reversal_key": "payout-reversal:t-1:1", "payout_transfer_id": "t-1"},
    }
    assert sent.idempotency_key == "payout-reversal:t-1:1"
    (made,) = server.fake.reversals_of(tr)
    assert reversed_ == outcomes.Reversed(stripe_reversal_id=made["id"], replayed=False)
    assert (limiter.taken(ports.Budget.CREATE), limiter.taken(ports.Budget.READ)) == (2, 0)


def test_a_reversal_slower_than_the_timeout_is_in_flight_then_replayed(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    tr = paid_transfer(gateway)
    hold = faults.Hold(release=threading.Event())
    server.fake.script(hold, path=faults.REVERSALS)

    with StripeGateway(
        api_key=server.api_key, api_base=server.url, timeout_seconds=0.5, rate_limit=1000.0
    ) as impatient:
        timed_out = impatient.create_reversal(reversal(tr))
        while_running = impatient.create_reversal(reversal(tr))
        hold.release.set()
        assert server.fake.wait_idle()
        after = impatient.create_reversal(reversal(tr))

    (made,) = server.fake.reversals_of(tr)
    assert isinstance(timed_out, outcomes.Unknown)
    assert timed_out.code == "timeout"
    assert isinstance(while_running, outcomes.Unknown)
    assert while_running.code == "idempotency_key_in_use"
    assert after == outcomes.Reversed(stripe_reversal_id=made["id"], replayed=True)


def test_a_listing_of_reversals_pages_on_the_read_budget_as_stripe_lists_them(
    server: fake_stripe.FakeStripeServer,
) -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep)
    tr = server.fake.seed_transfer(amount=1500, destination=ACCOUNT)["id"]
    made = [server.fake.reverse_transfer(tr, 100)["id"] for _ in range(5)]

    with StripeGateway(
        api_key=server.api_key, api_base=server.url, limiter=limiter, page_size=2
    ) as gw:
        listing = gw.list_reversals(tr)
        first = next(listing)
        after_one_page = len(server.fake.requests("GET"))
        rest = list(listing)

    pages = server.fake.requests("GET", f"/v1/transfers/{tr}/reversals")
    assert [r.id for r in [first, *rest]] == made[::-1]
    assert after_one_page == 1
    assert [p.params for p in pages] == [
        {"limit": "2"},
        {"limit": "2", "starting_after": made[3]},
        {"limit": "2", "starting_after": made[1]},
    ]
    assert (limiter.taken(ports.Budget.READ), limiter.taken(ports.Budget.CREATE)) == (3, 0)


def test_a_listing_of_the_reversals_of_a_transfer_stripe_does_not_hold_raises(
    gateway: StripeGateway,
) -> None:
    with pytest.raises(errors.GatewayUnavailable) as failed:
        list(gateway.list_reversals("tr_unknown"))

    assert failed.value.code == "resource_missing"


def test_an_empty_transfer_id_is_refused_before_anything_is_sent(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway
) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        gateway.create_reversal(reversal(""))
    with pytest.raises(ValueError, match="must not be empty"):
        list(gateway.list_reversals(""))

    assert server.fake.requests() == []


def test_a_reversal_is_logged_with_its_key_and_ids(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    tr = paid_transfer(gateway)
    with caplog.at_level(logging.DEBUG, logger="payout.stripe"):
        made = gateway.create_reversal(reversal(tr))
        refused = gateway.create_reversal(reversal(tr, amount_cents=5000, n=2))

    assert isinstance(made, outcomes.Reversed)
    assert isinstance(refused, outcomes.Permanent)
    created = [r for r in caplog.records if r.msg == "payout.stripe.reversal_created"]
    failed = [r for r in caplog.records if r.msg == "payout.stripe.request_failed"]
    assert [(r.__dict__["idempotency_key"], r.__dict__["stripe_reversal_id"]) for r in created] == [
        ("payout-reversal:t-1:1", made.stripe_reversal_id)
    ]
    assert [(r.__dict__["operation"], r.__dict__["stripe_transfer_id"]) for r in failed] == [
        ("create_reversal", tr)
    ]


# -- the API key stays secret ------------------------------------------------------------------

SECRET = "sk_test_51TopSecretValueNeverToBeShown4242"


def _everything_said_about(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        linked = [current.__cause__, current.__context__, *current.args]
        stack.extend(e for e in linked if isinstance(e, BaseException))


def test_the_api_key_never_appears_in_logs_reprs_outcomes_or_exceptions(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    exceptions: list[BaseException] = []
    describe = classify.describe

    def spy(exc: BaseException) -> classify.Failure:
        exceptions.append(exc)
        return describe(exc)  # type: ignore[arg-type]

    monkeypatch.setattr(classify, "describe", spy)
    caplog.set_level(logging.DEBUG)  # everything: the SDK, requests/urllib3, ours
    said: list[object] = []
    gateways: list[StripeGateway] = []

    def gateway(api_base: str, timeout: float = 5.0) -> StripeGateway:
        time = FakeTime()  # the 429 below must not make the test wait
        gw = StripeGateway(
            api_key=SECRET,
            api_base=api_base,
            timeout_seconds=timeout,
            limiter=LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep),
        )
        gateways.append(gw)
        return gw

    with fake_stripe.running(fake_stripe.FakeStripe(api_key=SECRET)) as server:
        fake = server.fake
        fake.add_account(ACCOUNT)
        gw = gateway(server.url, timeout=0.5)
        said += [gw.create_transfer(request()), gw.create_transfer(request())]
        hold = faults.Hold(release=threading.Event())
        scripted: list[faults.Fault] = [
            faults.server_error(),
            faults.bad_gateway(),
            faults.rate_limited(),
            faults.forbidden(),
            faults.Drop(),
            faults.Drop(reset=True),
            hold,
        ]
        for n, fault in enumerate(scripted):
            fake.script(fault)
            said.append(gw.create_transfer(request(f"t-fault-{n}")))
        hold.release.set()
        assert fake.wait_idle()
        said.append(gw.create_transfer(attrs.evolve(request("t-x"), destination="acct_unknown")))
        said += [gw.find_transfer(lookup()), gw.retrieve_transfer("tr_missing")]
        paid = gw.create_transfer(request("t-reversed"))
        assert isinstance(paid, outcomes.Succeeded)
        fake.script(faults.Drop(), path=faults.REVERSALS)
        said += [gw.create_reversal(reversal(paid.stripe_transfer_id)) for _ in range(2)]
        said.append(gw.create_reversal(reversal(paid.stripe_transfer_id, amount_cents=9999, n=2)))
        said += list(gw.list_reversals(paid.stripe_transfer_id))
        with pytest.raises(errors.GatewayUnavailable) as no_such_transfer:
            list(gw.list_reversals("tr_missing"))
        exceptions.append(no_such_transfer.value)
        fake.script(faults.server_error(), method="GET")
        said.append(gw.find_transfer(lookup()))

        def broken(*_args: object, **_kwargs: object) -> object:
            raise RuntimeError("a bug inside the SDK")

        monkeypatch.setattr(gw._client.v1.transfers, "create", broken)
        said.append(gw.create_transfer(request("t-bug")))

    with fake_stripe.running() as stranger:  # a Stripe that does not know the key
        refused = gateway(stranger.url)
        said += [refused.create_transfer(request()), refused.find_transfer(lookup())]
    said.append(gateway(f"http://127.0.0.1:{fake_stripe.closed_port()}").create_transfer(request()))
    for gw in gateways:
        gw.close()

    rejected = [o for o in said if isinstance(o, outcomes.Systemic) and o.code.startswith("auth")]
    assert rejected, "the refused key was never exercised"
    assert rejected[0].message.startswith("Stripe refused the API key (401): check STRIPE_API_KEY")
    assert any(r.exc_info for r in caplog.records), "no traceback was ever logged"
    assert len(exceptions) >= 10
    texts = [caplog.text, *(str(o) for o in said), *(repr(o) for o in said)]
    texts += [repr(gw) for gw in gateways] + [str(gw) for gw in gateways]
    texts += [repr(gw.limiter) for gw in gateways]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.__dict__)]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    for exc in exceptions:
        texts += list(_everything_said_about(exc))
    leaks = [text for text in texts if SECRET in text or "TopSecretValue" in text]
    assert leaks == []


# -- the reads of reconcile ----------------------------------------------------------------


def test_a_list_asks_stripe_for_the_group_and_the_time_in_whole_seconds_rounded_down(
    server: fake_stripe.FakeStripeServer,
) -> None:
    seed(server.fake, 5)
    time = FakeTime()
    limiter = LocalRateLimiter.at(1000, clock=time.clock, sleep=time.sleep)
    since = datetime(2026, 11, 29, 12, 0, 0, 750_000, tzinfo=UTC)
    query = outcomes.TransferQuery(transfer_group=GROUP, created_since=since)

    with StripeGateway(
        api_key=server.api_key, api_base=server.url, limiter=limiter, page_size=2
    ) as gw:
        everything = list(gw.list_transfers(outcomes.TransferQuery()))
        list(gw.list_transfers(query))

    pages = server.fake.requests("GET", "/v1/transfers")
    assert len(everything) == 5
    unfiltered, filtered = pages[:3], pages[3:]
    assert unfiltered[0].params == {"limit": "2"}
    assert all(p.params.get("limit") == "2" for p in pages)
    # Stripe dates in whole seconds: the second since falls in is kept whole.
    assert filtered[0].params["created"] == {"gte": str(int(since.timestamp()))}
    assert filtered[0].params["transfer_group"] == GROUP
    # One slot of the read budget per page, none of Create Transfer's.
    assert (limiter.taken(ports.Budget.READ), limiter.taken(ports.Budget.CREATE)) == (
        len(pages),
        0,
    )


def test_a_list_reads_each_page_only_when_the_iteration_reaches_it(
    server: fake_stripe.FakeStripeServer,
) -> None:
    seed(server.fake, 5)

    with StripeGateway(api_key=server.api_key, api_base=server.url, page_size=2) as gw:
        listing = gw.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))
        before = len(server.fake.requests("GET"))
        first = [next(listing), next(listing)]
        after_one_page = len(server.fake.requests("GET"))
        rest = list(listing)

    assert (before, after_one_page, len(server.fake.requests("GET"))) == (0, 1, 3)
    assert len(first) + len(rest) == 5


def test_a_list_that_fails_on_a_later_page_raises_with_the_failures_code(
    server: fake_stripe.FakeStripeServer,
) -> None:
    seed(server.fake, 3)
    server.fake.script(faults.rate_limited(), method="GET", after=1)

    with StripeGateway(api_key=server.api_key, api_base=server.url, page_size=2) as gw:
        listing = gw.list_transfers(outcomes.TransferQuery(transfer_group=GROUP))
        read = [next(listing), next(listing)]
        with pytest.raises(errors.GatewayUnavailable) as failed:
            next(listing)

    assert len(read) == 2
    assert failed.value.code == "rate_limit"


def test_a_stripe_that_repeats_a_page_stops_a_listing_and_a_lookup_as_unknown(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(server.fake, 150)
    listed = gateway._client.v1.transfers.list

    def ignoring_the_cursor(params: dict[str, object]) -> object:
        return listed({k: v for k, v in params.items() if k != "starting_after"})  # type: ignore[arg-type]

    monkeypatch.setattr(gateway._client.v1.transfers, "list", ignoring_the_cursor)

    found = gateway.find_transfer(lookup("t-absent"))
    with pytest.raises(errors.GatewayUnavailable) as failed:
        list(gateway.list_transfers(outcomes.TransferQuery(transfer_group=GROUP)))

    assert isinstance(found, outcomes.Unknown)
    assert (found.code, failed.value.code) == ("pagination_stuck", "pagination_stuck")


def test_a_retrieve_turns_stripes_transfer_into_the_ports_record() -> None:
    time = fake_stripe.ManualTime()
    with fake_stripe.running(fake_stripe.FakeStripe(clock=time)) as other:
        other.fake.add_account(ACCOUNT)
        time.advance(timedelta(seconds=0.9))  # Stripe keeps whole seconds
        seeded = other.fake.seed_transfer(amount=1500, destination=ACCOUNT)
        other.fake.reverse_transfer(seeded["id"], 200)
        with StripeGateway(api_key=other.api_key, api_base=other.url) as gw:
            retrieved = gw.retrieve_transfer(seeded["id"])

    assert retrieved == outcomes.StripeTransfer(
        id=seeded["id"],
        amount_cents=1500,
        currency="usd",
        destination=ACCOUNT,
        transfer_group=None,
        payout_transfer_id=None,
        created_at=datetime.fromtimestamp(int(time.now), tz=UTC),
        amount_reversed=200,
        reversed=False,
    )


def test_a_retrieve_is_not_found_only_on_stripes_404_and_otherwise_classified(
    server: fake_stripe.FakeStripeServer, gateway: StripeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="payout.stripe"):
        missing = gateway.retrieve_transfer("tr_unknown")
        logged = list(caplog.records)
    server.fake.script(faults.server_error(), method="GET", path=None)
    failed = gateway.retrieve_transfer("tr_unknown")
    with StripeGateway(api_key="sk_test_wrongKey00000000", api_base=server.url) as wrong:
        refused = wrong.retrieve_transfer("tr_unknown")

    assert missing == outcomes.NotFound()
    assert logged == []  # a transfer that does not exist is no failure
    assert isinstance(failed, outcomes.Unknown)
    assert isinstance(refused, outcomes.Systemic)
    assert len(server.fake.requests("GET")) == 3  # one request each, never retried


@pytest.mark.parametrize("size", [0, 101])
def test_a_page_size_stripe_would_refuse_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="page_size"):
        StripeGateway(api_key="sk_test_x", page_size=size)


def test_a_naive_created_since_is_refused(gateway: StripeGateway) -> None:
    naive = outcomes.TransferQuery(created_since=datetime(2026, 1, 1))  # noqa: DTZ001

    with pytest.raises(ValueError, match="timezone-aware"):
        list(gateway.list_transfers(naive))
