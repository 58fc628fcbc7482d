"""The fake Stripe's own tests: it must behave as Stripe documents, or the gateway
tests built on it prove nothing."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests import fake_stripe
from tests.fake_stripe import faults, forms
from tests.fake_stripe.model import Reply, Request

KEY = fake_stripe.DEFAULT_API_KEY
PARAMS: dict[str, forms.FormValue] = {
    "amount": "1500",
    "currency": "usd",
    "destination": "acct_1",
    "transfer_group": "contest:c1",
    "metadata": {"payout_transfer_id": "t-1"},
}


def post(
    fake: fake_stripe.FakeStripe,
    params: dict[str, forms.FormValue] | None = None,
    *,
    key: str | None = "k-1",
    api_key: str = KEY,
) -> Reply:
    headers = {"authorization": f"Bearer {api_key}"}
    if key is not None:
        headers["idempotency-key"] = key
    return fake.handle(
        Request(method="POST", path="/v1/transfers", params=params or PARAMS, headers=headers)
    )


def get(fake: fake_stripe.FakeStripe, path: str, params: dict[str, Any] | None = None) -> Reply:
    return fake.handle(
        Request(
            method="GET", path=path, params=params or {}, headers={"authorization": f"Bearer {KEY}"}
        )
    )


def body(reply: Reply) -> Any:
    return json.loads(reply.body)


@pytest.fixture
def fake() -> fake_stripe.FakeStripe:
    stripe = fake_stripe.FakeStripe()
    stripe.add_account("acct_1")
    return stripe


# -- form decoding -----------------------------------------------------------------------------


def test_forms_nest_bracketed_keys_as_stripe_does() -> None:
    decoded = forms.parse("amount=5&metadata[a]=1&metadata[b]=&expand[]=x&expand[]=y&items[0][p]=q")

    assert decoded == {
        "amount": "5",
        "metadata": {"a": "1", "b": ""},
        "expand": ["x", "y"],
        "items": [{"p": "q"}],
    }


# -- transfers and idempotency -----------------------------------------------------------------


def test_a_transfer_is_created_as_a_stripe_transfer_object(fake: fake_stripe.FakeStripe) -> None:
    reply = post(fake)

    transfer = body(reply)
    assert reply.status == 200
    assert transfer["id"].startswith("tr_")
    assert transfer["object"] == "transfer"
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (
        1500,
        "usd",
        "acct_1",
    )
    assert transfer["metadata"] == {"payout_transfer_id": "t-1"}
    assert fake.transfers() == [transfer]


def test_the_same_key_and_parameters_replay_the_saved_answer(fake: fake_stripe.FakeStripe) -> None:
    first = post(fake)
    again = post(fake)

    assert again.body == first.body
    assert ("Idempotent-Replayed", "true") in again.headers
    original = dict(first.headers)["Request-Id"]
    assert ("Original-Request", original) in again.headers
    assert len(fake.transfers()) == 1


def test_the_same_key_with_other_parameters_is_an_idempotency_error(
    fake: fake_stripe.FakeStripe,
) -> None:
    post(fake)

    reply = post(fake, {**PARAMS, "amount": "2000"})

    assert reply.status == 400
    assert body(reply)["error"]["type"] == "idempotency_error"
    assert len(fake.transfers()) == 1


def test_a_key_in_flight_is_a_409(fake: fake_stripe.FakeStripe) -> None:
    hold = faults.Hold(release=threading.Event())
    fake.script(hold)
    first: list[Reply] = []
    sender = threading.Thread(target=lambda: first.append(post(fake)))
    sender.start()
    assert hold.held.wait(5)

    concurrent = post(fake)
    hold.release.set()
    sender.join()

    assert concurrent.status == 409
    assert body(concurrent)["error"]["code"] == "idempotency_key_in_use"
    assert first[0].status == 200
    assert post(fake).body == first[0].body  # then it replays


def test_a_500_is_saved_under_the_key_and_replayed(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.server_error())

    first = post(fake)
    again = post(fake)

    assert (first.status, again.status) == (500, 500)
    assert ("Idempotent-Replayed", "true") in again.headers
    assert fake.transfers() == []


def test_a_500_can_leave_a_transfer_behind(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.server_error(create=True))

    assert post(fake).status == 500
    assert len(fake.transfers_for("t-1")) == 1


def test_refusals_before_execution_are_not_saved(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.rate_limited())

    limited = post(fake)
    missing = post(fake, {**PARAMS, "amount": ""}, key="k-2")
    retried = post(fake)
    corrected = post(fake, key="k-2")

    assert (limited.status, missing.status) == (429, 400)
    assert body(missing)["error"]["code"] == "parameter_missing"
    assert (retried.status, corrected.status) == (200, 200)
    assert ("Idempotent-Replayed", "true") not in retried.headers


def test_a_pruned_key_executes_again(fake: fake_stripe.FakeStripe) -> None:
    post(fake)

    fake.prune_idempotency_keys()
    post(fake)

    assert len(fake.transfers_for("t-1")) == 2


def test_a_key_is_forgotten_24_hours_after_its_first_use_by_the_fakes_clock() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock)
    fake.add_account("acct_1")
    first = post(fake)

    clock.advance(timedelta(hours=23))
    replayed = post(fake)  # a replay does not make the key younger
    clock.advance(timedelta(hours=1))
    executed = post(fake)

    assert ("Idempotent-Replayed", "true") in replayed.headers
    assert replayed.body == first.body
    assert ("Idempotent-Replayed", "true") not in executed.headers
    assert body(executed)["id"] != body(first)["id"]
    assert len(fake.transfers_for("t-1")) == 2


def test_the_key_window_can_be_shortened() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock, key_window=timedelta(minutes=5))
    fake.add_account("acct_1")
    post(fake)

    clock.advance(timedelta(minutes=5))
    post(fake)

    assert len(fake.transfers_for("t-1")) == 2


@pytest.mark.parametrize(
    ("refuse", "fix", "code"),
    [
        (
            lambda f: f.add_account("acct_1", fake_stripe.AccountState.CLOSED),
            lambda f: f.add_account("acct_1"),
            "account_invalid",
        ),
        (lambda f: f.set_balance(1000), lambda f: f.set_balance(None), "balance_insufficient"),
    ],
    ids=["account fixed", "balance topped up"],
)  # fmt: skip
def test_a_refusal_of_the_endpoint_is_saved_and_replayed_after_its_cause_is_fixed(
    fake: fake_stripe.FakeStripe, refuse: Any, fix: Any, code: str
) -> None:
    refuse(fake)
    first = post(fake)
    fix(fake)

    again = post(fake)
    new_key = post(fake, key="k-2")

    assert (first.status, body(first)["error"]["code"]) == (400, code)
    assert (again.status, again.body) == (400, first.body)
    assert ("Idempotent-Replayed", "true") in again.headers
    assert new_key.status == 200


def test_a_deleted_account_is_no_such_destination(fake: fake_stripe.FakeStripe) -> None:
    fake.delete_account("acct_1")

    reply = post(fake)

    assert (body(reply)["error"]["code"], body(reply)["error"]["param"]) == (
        "resource_missing",
        "destination",
    )


@pytest.mark.parametrize(
    ("set_up", "code", "param"),
    [
        (lambda f: None, "resource_missing", "destination"),
        (
            lambda f: f.add_account("acct_x", fake_stripe.AccountState.CLOSED),
            "account_invalid",
            "destination",
        ),
        (
            lambda f: f.add_account("acct_x", fake_stripe.AccountState.NO_TRANSFERS_CAPABILITY),
            "insufficient_capabilities_for_transfer",
            "destination",
        ),
    ],
    ids=["unknown", "closed", "no transfers capability"],
)  # fmt: skip
def test_a_destination_that_cannot_be_paid_is_refused(
    fake: fake_stripe.FakeStripe, set_up: Any, code: str, param: str
) -> None:
    set_up(fake)

    reply = post(fake, {**PARAMS, "destination": "acct_x"})

    assert reply.status == 400
    assert (body(reply)["error"]["code"], body(reply)["error"]["param"]) == (code, param)


@pytest.mark.parametrize(
    ("amount", "code"), [("0", "amount_too_small"), ("100000000", "amount_too_large")]
)
def test_amounts_outside_the_limits_are_refused(
    fake: fake_stripe.FakeStripe, amount: str, code: str
) -> None:
    reply = post(fake, {**PARAMS, "amount": amount})

    assert body(reply)["error"]["code"] == code


def test_the_balance_runs_out(fake: fake_stripe.FakeStripe) -> None:
    fake.set_balance(2000)

    first, second = post(fake, key="a"), post(fake, key="b")

    assert first.status == 200
    assert body(second)["error"]["code"] == "balance_insufficient"


def test_keys_are_checked(fake: fake_stripe.FakeStripe) -> None:
    fake.add_api_key("rk_test_readonly0000", can_write=False)

    wrong = post(fake, api_key="sk_test_wrongKeyValue9999")
    restricted = post(fake, api_key="rk_test_readonly0000")
    anonymous = fake.handle(Request(method="GET", path="/v1/transfers", params={}, headers={}))

    assert (wrong.status, restricted.status, anonymous.status) == (401, 403, 401)
    assert "wrongKeyValue" not in body(wrong)["error"]["message"]  # masked, as Stripe does
    assert body(wrong)["error"]["message"].endswith("9999")


# -- listing -----------------------------------------------------------------------------------


def test_lists_filter_newest_first_and_page_with_starting_after(
    fake: fake_stripe.FakeStripe,
) -> None:
    ids = [
        fake.seed_transfer(amount=n + 1, destination="acct_1", transfer_group="g")["id"]
        for n in range(5)
    ]
    fake.seed_transfer(amount=9, destination="acct_2", transfer_group="g")
    fake.seed_transfer(amount=9, destination="acct_1", transfer_group="other")
    query = {"destination": "acct_1", "transfer_group": "g", "limit": "2"}

    first = body(get(fake, "/v1/transfers", query))
    second = body(get(fake, "/v1/transfers", {**query, "starting_after": first["data"][-1]["id"]}))
    last = body(get(fake, "/v1/transfers", {**query, "starting_after": second["data"][-1]["id"]}))

    pages = [first, second, last]
    assert [[t["id"] for t in p["data"]] for p in pages] == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert first["object"] == "list"


def test_a_list_filtered_by_an_unknown_destination_is_refused_not_empty(
    fake: fake_stripe.FakeStripe,
) -> None:
    reply = get(fake, "/v1/transfers", {"destination": "acct_unknown", "transfer_group": "g"})

    assert reply.status == 400
    assert (body(reply)["error"]["code"], body(reply)["error"]["param"]) == (
        "resource_missing",
        "destination",
    )


def test_lists_refuse_a_limit_outside_1_to_100(fake: fake_stripe.FakeStripe) -> None:
    assert get(fake, "/v1/transfers", {"limit": "101"}).status == 400
    assert get(fake, "/v1/transfers", {"limit": "0"}).status == 400


def test_a_transfer_is_retrieved_by_id_and_an_unknown_one_is_a_404(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=5, destination="acct_1")

    assert body(get(fake, f"/v1/transfers/{created['id']}")) == created
    missing = get(fake, "/v1/transfers/tr_nope")
    assert (missing.status, body(missing)["error"]["code"]) == (404, "resource_missing")
    assert get(fake, "/v1/charges").status == 404


def test_scripts_skip_then_apply_the_given_number_of_times(fake: fake_stripe.FakeStripe) -> None:
    fake.script(faults.rate_limited(), after=1, times=2)

    statuses = [post(fake, key=f"k-{n}").status for n in range(4)]

    assert statuses == [200, 429, 429, 200]
    assert [r.fault for r in fake.requests()] == [None, "Respond", "Respond", None]


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running() as running:
        running.fake.add_account("acct_1")
        yield running


def connect(server: fake_stripe.FakeStripeServer) -> http.client.HTTPConnection:
    address = urlsplit(server.url)
    return http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)


def http_post(conn: http.client.HTTPConnection, key: str = "k-1") -> http.client.HTTPResponse:
    form = urlencode(
        {
            **{k: v for k, v in PARAMS.items() if k != "metadata"},
            "metadata[payout_transfer_id]": "t-1",
        }
    )
    conn.request(
        "POST",
        "/v1/transfers",
        body=form,
        headers={
            "Authorization": f"Bearer {KEY}",
            "Idempotency-Key": key,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return conn.getresponse()


def test_http_answers_carry_request_ids_and_replay_headers(
    server: fake_stripe.FakeStripeServer,
) -> None:
    conn = connect(server)
    try:
        first = http_post(conn)
        first_body = json.loads(first.read())
        again = http_post(conn)  # the same kept-alive connection
        again_body = json.loads(again.read())
    finally:
        conn.close()

    assert first.status == 200
    assert (first.getheader("Request-Id") or "").startswith("req_")
    assert again.getheader("Idempotent-Replayed") == "true"
    assert again.getheader("Original-Request") == first.getheader("Request-Id")
    assert again_body == first_body
    assert first_body["metadata"] == {"payout_transfer_id": "t-1"}


def test_a_dropped_answer_closes_the_connection_after_creating_the_transfer(
    server: fake_stripe.FakeStripeServer,
) -> None:
    server.fake.script(faults.Drop())
    conn = connect(server)
    try:
        with pytest.raises(http.client.RemoteDisconnected):
            http_post(conn)
    finally:
        conn.close()

    assert len(server.fake.transfers()) == 1
    assert server.fake.requests()[0].status is None


def test_stopping_releases_held_requests_and_closes_kept_alive_connections() -> None:
    hold = faults.Hold(release=threading.Event())  # never released by the test
    with fake_stripe.running() as running:
        running.fake.add_account("acct_1")
        idle = connect(running)
        idle.request("GET", "/v1/transfers", headers={"Authorization": f"Bearer {KEY}"})
        idle.getresponse().read()  # the connection stays open, its handler waiting
        running.fake.script(hold)
        held = connect(running)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                http_post(held)
            except (http.client.HTTPException, OSError) as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        assert hold.held.wait(5)
    # Leaving the block stopped the server: it did not wait for the release.
    sender.join(5)
    assert not sender.is_alive()
    assert errors
    assert running.fake.transfers() == []
    idle.close()
    held.close()
