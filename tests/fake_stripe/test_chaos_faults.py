"""The fake Stripe's faults for chaos runs: windows of time, seeded random mixes,
delays longer than a client waits, revoked keys, idempotency per account."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest

from tests import fake_stripe
from tests.fake_stripe import faults, forms
from tests.fake_stripe.model import Reply, Request
from tests.kit.waiting import wait_for

KEY = fake_stripe.DEFAULT_API_KEY
PARAMS: dict[str, forms.FormValue] = {
    "amount": "1500",
    "currency": "usd",
    "destination": "acct_1",
    "transfer_group": "contest:c1",
    "metadata": {"payout_transfer_id": "t-1"},
}


def post(fake: fake_stripe.FakeStripe, *, key: str = "k-1", api_key: str = KEY) -> Reply:
    return fake.handle(
        Request(
            method="POST",
            path="/v1/transfers",
            params=PARAMS,
            headers={"authorization": f"Bearer {api_key}", "idempotency-key": key},
        )
    )


def listing(fake: fake_stripe.FakeStripe) -> Reply:
    return fake.handle(
        Request(
            method="GET",
            path="/v1/transfers",
            params={},
            headers={"authorization": f"Bearer {KEY}"},
        )
    )


@pytest.fixture
def fake() -> fake_stripe.FakeStripe:
    stripe = fake_stripe.FakeStripe()
    stripe.add_account("acct_1")
    return stripe


def in_thread(target: object) -> tuple[threading.Thread, list[Reply]]:
    answers: list[Reply] = []
    assert callable(target)
    thread = threading.Thread(target=lambda: answers.append(target()))
    thread.start()
    return thread, answers


# -- windows and scripts for ever --------------------------------------------------------------


def test_a_script_for_ever_meets_every_matching_request(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.rate_limited(), times=None)

    assert [post(fake, key=f"k-{n}").status for n in range(5)] == [429] * 5


def test_a_fault_window_ends_by_the_fakes_clock() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock)
    fake.add_account("acct_1")
    fake.script(faults.rate_limited(), times=None, until=clock() + 10)

    during = post(fake, key="a").status
    clock.advance(timedelta(seconds=10))
    after = post(fake, key="b").status

    assert (during, after) == (429, 200)


def test_a_script_applies_at_least_once(fake: fake_stripe.FakeStripe) -> None:
    with pytest.raises(ValueError, match="times"):
        fake.script(faults.rate_limited(), times=0)


def test_clearing_scripts_ends_every_fault(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.rate_limited(), times=None)
    fake.script(faults.server_error(), times=3)

    fake.clear_scripts()

    assert post(fake).status == 200


# -- seeded random mixes -----------------------------------------------------------------------


def drawn(seed: int, n: int) -> list[str]:
    fake = fake_stripe.FakeStripe()
    fake.add_account("acct_1")
    mix = faults.Mix(seed, [(0.3, faults.rate_limited()), (0.3, faults.server_error())])
    fake.script(mix, times=None)
    return [str(post(fake, key=f"k-{i}").status) for i in range(n)]


def test_a_mix_draws_the_same_faults_from_the_same_seed() -> None:
    first, again, other = drawn(7, 60), drawn(7, 60), drawn(8, 60)

    assert first == again
    assert first != other
    assert {"200", "429", "500"} == set(first)


def test_a_mix_draws_nothing_with_the_probability_left() -> None:
    never, always = faults.Mix(1, []), faults.Mix(1, [(1.0, faults.Drop())])

    assert [never.draw() for _ in range(50)] == [None] * 50
    assert [always.draw() for _ in range(50)] == [faults.Drop()] * 50


@pytest.mark.parametrize(
    "choices", [[(0.7, faults.Drop()), (0.4, faults.Drop())], [(-0.1, faults.Drop())]]
)
def test_a_mix_refuses_probabilities_that_make_no_sense(
    choices: list[tuple[float, faults.Fault]],
) -> None:
    with pytest.raises(ValueError, match="probabilities"):
        faults.Mix(1, choices)


def test_a_mix_applies_each_fault_at_its_own_stage(fake: fake_stripe.FakeStripe) -> None:
    """A 429 drawn is a refusal at the edge (nothing saved: the retry executes);
    a 500 drawn is saved under the key (the retry replays it)."""
    fake.script(faults.Mix(1, [(1.0, faults.rate_limited())]), times=1)
    fake.script(faults.Mix(2, [(1.0, faults.server_error())]), times=1)

    statuses = [post(fake).status for _ in range(3)]

    assert statuses == [429, 500, 500]
    assert [r.fault for r in fake.requests()] == ["Respond", "Respond", None]
    assert [r.replayed for r in fake.requests()] == [False, False, True]
    assert fake.transfers() == []


def test_a_mix_meets_only_the_requests_it_matches(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.Mix(1, [(1.0, faults.rate_limited())]), times=None)  # POST transfers

    assert (listing(fake).status, post(fake).status) == (200, 429)


def test_a_mix_counts_the_faults_it_drew_toward_times(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.Mix(3, [(0.5, faults.rate_limited())]), times=2)

    statuses = [post(fake, key=f"k-{n}").status for n in range(40)]

    assert statuses.count(429) == 2


# -- delays ------------------------------------------------------------------------------------


def test_a_delay_keeps_the_key_in_flight_then_executes(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.Delay(seconds=0.5))

    slow, answers = in_thread(lambda: post(fake))
    wait_for("the delayed request", lambda: "k-1" in fake.in_flight_keys())
    meanwhile = post(fake)
    slow.join()

    assert meanwhile.status == 409
    assert json.loads(meanwhile.body)["error"]["code"] == "idempotency_key_in_use"
    assert answers[0].status == 200
    assert len(fake.transfers()) == 1
    assert fake.in_flight_keys() == frozenset()


def test_a_delay_that_executes_first_replays_to_a_retry_while_its_answer_is_late(
    fake: fake_stripe.FakeStripe,
) -> None:
    fake.script(faults.Delay(seconds=0.5, execute_first=True))

    slow, answers = in_thread(lambda: post(fake))
    wait_for("the transfer", lambda: len(fake.transfers()) == 1)
    meanwhile = post(fake)
    slow.join()

    assert (meanwhile.status, answers[0].status) == (200, 200)
    assert ("Idempotent-Replayed", "true") in meanwhile.headers
    assert json.loads(meanwhile.body)["id"] == json.loads(answers[0].body)["id"]
    assert len(fake.transfers()) == 1


def test_a_delay_must_take_some_time() -> None:
    with pytest.raises(ValueError, match="delay"):
        faults.Delay(seconds=0)


@pytest.fixture
def server() -> Iterator[fake_stripe.FakeStripeServer]:
    fake = fake_stripe.FakeStripe()
    fake.add_account("acct_1")
    with fake_stripe.running(fake) as running:
        yield running


def test_a_client_that_gives_up_on_a_delay_misses_a_transfer_stripe_then_makes(
    server: fake_stripe.FakeStripeServer,
) -> None:
    server.fake.script(faults.Delay(seconds=0.6))
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=0.2)
    body = urlencode({k: v for k, v in PARAMS.items() if isinstance(v, str)})

    connection.request(
        "POST",
        "/v1/transfers",
        body=body,
        headers={
            "Authorization": f"Bearer {KEY}",
            "Idempotency-Key": "k-1",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with pytest.raises(socket.timeout):
        connection.getresponse()
    connection.close()

    assert server.fake.transfers() == []  # not yet: Stripe is still working on it
    wait_for("Stripe to finish", lambda: len(server.fake.transfers()) == 1)


def test_stopping_cuts_a_delay_short_and_drops_what_had_not_executed() -> None:
    fake = fake_stripe.FakeStripe()
    fake.add_account("acct_1")
    fake.script(faults.Delay(seconds=30))
    started = time.monotonic()

    slow, answers = in_thread(lambda: post(fake))
    wait_for("the delayed request", lambda: "k-1" in fake.in_flight_keys())
    fake.stop()
    slow.join()

    assert time.monotonic() - started < 5
    assert answers[0].drop
    assert fake.transfers() == []


# -- keys --------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_and_its_successor_is_not(fake: fake_stripe.FakeStripe) -> None:
    fake.add_api_key("sk_test_successor0000", can_write=True)

    fake.revoke_api_key(KEY)

    assert post(fake, key="a").status == 401
    assert post(fake, key="b", api_key="sk_test_successor0000").status == 200


def test_idempotency_keys_belong_to_each_api_key_unless_shared_by_the_account() -> None:
    def transfers_after_a_rotation(*, per_account: bool) -> int:
        fake = fake_stripe.FakeStripe(idempotency_per_account=per_account)
        fake.add_account("acct_1")
        fake.add_api_key("sk_test_successor0000", can_write=True)
        post(fake, key="k-1")
        fake.revoke_api_key(KEY)
        again = post(fake, key="k-1", api_key="sk_test_successor0000")
        assert again.status == 200
        return len(fake.transfers())

    assert transfers_after_a_rotation(per_account=False) == 2  # the default, kept as it was
    assert transfers_after_a_rotation(per_account=True) == 1


def test_in_flight_keys_name_the_requests_being_handled(fake: fake_stripe.FakeStripe) -> None:
    release = threading.Event()
    fake.script(faults.Hold(release=release))

    held, _ = in_thread(lambda: post(fake, key="k-held"))
    wait_for("the held request", lambda: fake.in_flight_keys() == frozenset({"k-held"}))
    release.set()
    held.join()

    assert fake.in_flight_keys() == frozenset()
