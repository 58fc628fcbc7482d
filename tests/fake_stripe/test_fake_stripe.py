"""The fake Stripe's own tests: it must behave as Stripe documents, or the gateway
tests built on it prove nothing."""

from __future__ import annotations

import functools
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import stripe

from tests import fake_stripe
from tests.fake_stripe import faults, forms, webhooks
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
REVERSAL_PARAMS: dict[str, forms.FormValue] = {
    "amount": "500",
    "metadata": {"payout_reversal_key": "payout-reversal:t-1:1", "payout_transfer_id": "t-1"},
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


def reverse(
    fake: fake_stripe.FakeStripe,
    transfer_id: str,
    params: dict[str, forms.FormValue] | None = None,
    *,
    key: str | None = "r-1",
) -> Reply:
    """Create Reversal, with payout-core's metadata unless ``params`` say otherwise."""
    headers = {"authorization": f"Bearer {KEY}"}
    if key is not None:
        headers["idempotency-key"] = key
    return fake.handle(
        Request(
            method="POST",
            path=f"/v1/transfers/{transfer_id}/reversals",
            params=REVERSAL_PARAMS if params is None else params,
            headers=headers,
        )
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


def test_lists_filter_by_creation_time_as_stripe_does() -> None:
    time = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=time)
    t0 = int(time.now)
    ids: list[str] = []
    for _ in range(3):  # created at t0, t0 + 10 and t0 + 20
        ids.append(fake.seed_transfer(amount=5, destination="acct_1", transfer_group="g")["id"])
        time.advance(timedelta(seconds=10))

    def listed(**created: int) -> list[str]:
        query: dict[str, forms.FormValue] = {
            "created": {name: str(at) for name, at in created.items()}
        }
        return [t["id"] for t in body(get(fake, "/v1/transfers", query))["data"]]

    assert listed(gte=t0 + 10) == [ids[2], ids[1]]
    assert listed(gt=t0 + 10) == [ids[2]]
    assert listed(lt=t0 + 10) == [ids[0]]
    assert listed(lte=t0 + 10) == [ids[1], ids[0]]
    assert listed(gte=t0 + 5, lt=t0 + 20) == [ids[1]]
    exact = body(get(fake, "/v1/transfers", {"created": str(t0 + 20), "transfer_group": "g"}))
    assert [t["id"] for t in exact["data"]] == [ids[2]]


@pytest.mark.parametrize(
    ("created", "param"),
    [
        ({"gte": "soon"}, "created[gte]"),
        ({"since": "1"}, "created[since]"),
        ("yesterday", "created"),
        (["1"], "created"),
    ],
)
def test_a_list_with_a_malformed_creation_time_is_refused(
    fake: fake_stripe.FakeStripe, created: forms.FormValue, param: str
) -> None:
    reply = get(fake, "/v1/transfers", {"created": created})

    assert reply.status == 400
    assert body(reply)["error"]["param"] == param


def test_a_dashboard_reversal_shows_on_the_transfer_until_all_of_it_is_reversed(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")

    first = fake.reverse_transfer(created["id"], 500)
    partly = body(get(fake, f"/v1/transfers/{created['id']}"))
    second = fake.reverse_transfer(created["id"], 1000)
    wholly = body(get(fake, f"/v1/transfers/{created['id']}"))

    assert (partly["amount_reversed"], partly["reversed"]) == (500, False)
    assert (wholly["amount_reversed"], wholly["reversed"]) == (1500, True)
    assert first["object"] == "transfer_reversal"
    assert first["id"].startswith("trr_")
    assert (first["amount"], first["currency"], first["transfer"]) == (500, "usd", created["id"])
    assert first["metadata"] == {}  # made in the dashboard: no payout metadata
    reversals = wholly["reversals"]
    assert reversals["data"] == [second, first]  # newest first
    assert reversals["total_count"] == 2
    assert fake.reversals_of(created["id"]) == [first, second]


def test_a_reversal_of_more_than_is_left_or_of_no_transfer_is_refused(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    fake.reverse_transfer(created["id"], 1000)

    with pytest.raises(ValueError, match="500 left"):
        fake.reverse_transfer(created["id"], 501)
    with pytest.raises(ValueError, match="500 left"):
        fake.reverse_transfer(created["id"], 0)
    with pytest.raises(ValueError, match="no such transfer"):
        fake.reverse_transfer("tr_nope", 1)
    assert fake.transfers()[0]["amount_reversed"] == 1000


def test_a_reversal_is_created_as_a_transfer_reversal_object_and_shows_on_the_transfer(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")

    reply = reverse(fake, created["id"])

    reversal = body(reply)
    assert reply.status == 200
    assert (reversal["object"], reversal["amount"], reversal["currency"]) == (
        "transfer_reversal",
        500,
        "usd",
    )
    assert reversal["id"].startswith("trr_")
    assert reversal["transfer"] == created["id"]
    assert reversal["metadata"] == REVERSAL_PARAMS["metadata"]
    transfer = body(get(fake, f"/v1/transfers/{created['id']}"))
    assert (transfer["amount_reversed"], transfer["reversed"]) == (500, False)
    assert transfer["reversals"]["data"] == [reversal]


def test_a_reversal_without_an_amount_reverses_all_that_is_left(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    fake.reverse_transfer(created["id"], 400)

    reply = reverse(fake, created["id"], {"description": "all of it"})

    assert body(reply)["amount"] == 1100
    transfer = body(get(fake, f"/v1/transfers/{created['id']}"))
    assert (transfer["amount_reversed"], transfer["reversed"]) == (1500, True)


def test_a_reversal_key_replays_its_reversal_and_refuses_other_parameters(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    other = fake.seed_transfer(amount=1500, destination="acct_1")

    first = reverse(fake, created["id"])
    again = reverse(fake, created["id"])
    more = reverse(fake, created["id"], {**REVERSAL_PARAMS, "amount": "600"})
    elsewhere = reverse(fake, other["id"])
    transfer_key = post(fake, key="r-1")  # a key belongs to the account, not an endpoint

    assert again.body == first.body
    assert ("Idempotent-Replayed", "true") in again.headers
    for refused in (more, elsewhere, transfer_key):
        assert refused.status == 400
        assert body(refused)["error"]["type"] == "idempotency_error"
    assert [r["amount"] for r in fake.reversals_of(created["id"])] == [500]
    assert fake.reversals_of(other["id"]) == []
    assert fake.transfers()[0]["amount_reversed"] == 500


def test_reversing_more_than_is_left_is_refused_and_the_refusal_is_saved(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    fake.reverse_transfer(created["id"], 1200)

    too_much = reverse(fake, created["id"], {"amount": "301"}, key="r-1")
    again = reverse(fake, created["id"], {"amount": "301"}, key="r-1")
    rest = reverse(fake, created["id"], {"amount": "300"}, key="r-2")
    nothing_left = reverse(fake, created["id"], {}, key="r-3")

    error = body(too_much)["error"]
    assert too_much.status == 400
    assert (error["type"], error["param"]) == ("invalid_request_error", "amount")
    assert "301" in error["message"]
    assert "300" in error["message"]
    assert again.body == too_much.body
    assert ("Idempotent-Replayed", "true") in again.headers
    assert rest.status == 200
    assert nothing_left.status == 400
    assert body(nothing_left)["error"]["message"] == (
        f"The transfer {created['id']} is already fully reversed."
    )
    assert fake.transfers()[0]["amount_reversed"] == 1500


def test_a_reversal_of_a_transfer_stripe_does_not_hold_is_a_404(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = reverse(fake, "tr_nope")
    listed = get(fake, "/v1/transfers/tr_nope/reversals")

    for reply in (created, listed):
        assert reply.status == 404
        assert body(reply)["error"]["code"] == "resource_missing"


def test_an_amount_that_is_not_a_positive_integer_is_refused_before_the_key_is_saved(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")

    zero = reverse(fake, created["id"], {"amount": "0"})
    corrected = reverse(fake, created["id"], {"amount": "5"})

    assert (zero.status, body(zero)["error"]["code"]) == (400, "parameter_invalid_integer")
    assert corrected.status == 200
    assert ("Idempotent-Replayed", "true") not in corrected.headers


def test_reversals_are_listed_newest_first_and_paged_with_starting_after(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    made = [fake.reverse_transfer(created["id"], 100)["id"] for _ in range(3)]
    path = f"/v1/transfers/{created['id']}/reversals"

    first = body(get(fake, path, {"limit": "2"}))
    second = body(get(fake, path, {"limit": "2", "starting_after": first["data"][-1]["id"]}))
    unknown = get(fake, path, {"starting_after": "trr_nope"})

    assert [r["id"] for r in first["data"]] == made[:0:-1]
    assert (first["has_more"], first["url"]) == (True, path)
    assert ([r["id"] for r in second["data"]], second["has_more"]) == ([made[0]], False)
    assert (unknown.status, body(unknown)["error"]["param"]) == (400, "starting_after")


def test_a_transfer_embeds_its_ten_latest_reversals(fake: fake_stripe.FakeStripe) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    made = [fake.reverse_transfer(created["id"], 1)["id"] for _ in range(12)]

    embedded = body(get(fake, f"/v1/transfers/{created['id']}"))["reversals"]

    assert [r["id"] for r in embedded["data"]] == made[:1:-1]
    assert (embedded["has_more"], embedded["total_count"]) == (True, 12)


def test_a_script_path_with_an_id_segment_meets_the_reversals_of_every_transfer(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    fake.script(faults.Drop(), path=faults.REVERSALS)  # Stripe reversed, the answer is lost

    paid = post(fake)  # Create Transfer is not a reversal
    lost = reverse(fake, created["id"])
    resent = reverse(fake, created["id"])

    assert paid.status == 200
    assert lost.drop
    assert resent.status == 200
    assert ("Idempotent-Replayed", "true") in resent.headers
    assert [r["id"] for r in fake.reversals_of(created["id"])] == [body(resent)["id"]]


def test_a_reversal_key_in_flight_is_a_409_and_a_saved_500_is_replayed(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    hold = faults.Hold(release=threading.Event())
    fake.script(hold, path=faults.REVERSALS)
    fake.script(faults.server_error(create=True), path=faults.REVERSALS)
    first: list[Reply] = []
    sender = threading.Thread(target=lambda: first.append(reverse(fake, created["id"])))
    sender.start()
    assert hold.held.wait(5)

    concurrent = reverse(fake, created["id"])
    hold.release.set()
    sender.join()
    failed = reverse(fake, created["id"], key="r-2")
    replayed = reverse(fake, created["id"], key="r-2")

    assert (concurrent.status, body(concurrent)["error"]["code"]) == (409, "idempotency_key_in_use")
    assert first[0].status == 200
    assert (failed.status, replayed.status) == (500, 500)
    assert ("Idempotent-Replayed", "true") in replayed.headers
    assert [r["amount"] for r in fake.reversals_of(created["id"])] == [500, 500]


def test_a_reversal_key_is_forgotten_24_hours_after_its_first_use() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock)
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    reverse(fake, created["id"])

    clock.advance(timedelta(hours=23, minutes=59))
    replayed = reverse(fake, created["id"])
    clock.advance(timedelta(minutes=1))
    executed = reverse(fake, created["id"])

    assert ("Idempotent-Replayed", "true") in replayed.headers
    assert ("Idempotent-Replayed", "true") not in executed.headers
    assert len(fake.reversals_of(created["id"])) == 2


def test_reversals_have_their_own_rate_limit_window() -> None:
    fake = fake_stripe.FakeStripe(rate_limit=1, clock=fake_stripe.ManualTime())
    fake.add_account("acct_1")
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    other = fake.seed_transfer(amount=1500, destination="acct_1")

    statuses = [
        post(fake).status,
        reverse(fake, created["id"]).status,
        reverse(fake, other["id"], key="r-2").status,  # any transfer's: the same endpoint
        get(fake, f"/v1/transfers/{created['id']}/reversals").status,
    ]

    assert statuses == [200, 200, 429, 200]


def test_a_transfers_amount_can_be_made_to_disagree_for_reconcile_to_find(
    fake: fake_stripe.FakeStripe,
) -> None:
    created = fake.seed_transfer(amount=1500, destination="acct_1")

    changed = fake.set_transfer_amount(created["id"], 2200)

    assert changed["amount"] == 2200
    assert body(get(fake, f"/v1/transfers/{created['id']}")) == changed
    with pytest.raises(ValueError, match="no such transfer"):
        fake.set_transfer_amount("tr_nope", 5)


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


# -- under load: latency, Stripe's rate limit, any account -------------------------------------


def test_every_answer_waits_the_latency_and_concurrent_requests_wait_together() -> None:
    latency = 0.5
    fake = fake_stripe.FakeStripe(latency=latency)
    fake.add_account("acct_1")
    seeded = fake.seed_transfer(amount=5, destination="acct_1")
    calls: list[Callable[[], Reply]] = [
        *(functools.partial(post, fake, key=f"k-{n}") for n in range(5)),
        lambda: get(fake, "/v1/transfers", {"destination": "acct_1"}),
        lambda: get(fake, f"/v1/transfers/{seeded['id']}"),
        lambda: fake.handle(Request(method="GET", path="/v1/transfers", params={}, headers={})),
    ]
    together = threading.Barrier(len(calls))
    took: list[float] = []
    statuses: list[int] = []

    def send(call: Callable[[], Reply]) -> None:
        together.wait()
        began = time.monotonic()
        statuses.append(call().status)
        took.append(time.monotonic() - began)

    senders = [threading.Thread(target=send, args=(call,)) for call in calls]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert sorted(statuses) == [200] * 7 + [401]
    assert min(took) >= latency  # every request: creates, lists, retrieves, refusals
    recorded = fake.requests()
    # Every request arrived before any was answered: the waits overlapped, no lock held.
    assert max(r.received_at for r in recorded) < min(r.answered_at for r in recorded)


def test_a_request_executes_on_arrival_and_its_answer_is_held_back() -> None:
    fake = fake_stripe.FakeStripe(latency=60.0)
    fake.add_account("acct_1")
    replies: list[Reply] = []
    sender = threading.Thread(target=lambda: replies.append(post(fake)))
    sender.start()
    wait_for("the transfer executed", fake.transfers)
    executed_while_held = len(fake.transfers()) == 1 and sender.is_alive()

    fake.stop()  # a stopping server does not wait the latency out
    sender.join(10)

    assert executed_while_held
    assert not sender.is_alive()
    assert replies[0].status == 200


def test_stripes_rate_limit_refuses_a_request_over_the_rolling_second() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock, rate_limit=3)
    fake.add_account("acct_1")
    admitted = [post(fake, key=f"k-{n}") for n in range(3)]
    clock.advance(timedelta(seconds=0.5))

    refused = post(fake, key="k-3")
    clock.advance(timedelta(seconds=0.5))  # the first three are a second old: out of the window
    retried = post(fake, key="k-3")

    assert [r.status for r in admitted] == [200, 200, 200]
    assert refused.status == 429
    error = body(refused)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    assert error["message"] == faults.rate_limited().message
    assert "Retry-After" not in dict(refused.headers)
    assert (retried.status, ("Idempotent-Replayed", "true") in retried.headers) == (200, False)
    assert len(fake.transfers()) == 4  # none for the refused request, nothing saved for its key
    limited = [r for r in fake.requests() if r.rate_limited]
    assert [(r.idempotency_key, r.executed, r.fault) for r in limited] == [("k-3", False, None)]
    assert fake.report().rate_limited == 1


def test_refused_requests_do_not_count_toward_the_window() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock, rate_limit=2)
    fake.add_account("acct_1")
    post(fake, key="a"), post(fake, key="b")
    clock.advance(timedelta(seconds=0.9))
    refusals = [post(fake, key=f"again-{n}").status for n in range(5)]
    clock.advance(timedelta(seconds=0.1))

    after = [post(fake, key="c").status, post(fake, key="d").status, post(fake, key="e").status]

    assert refusals == [429] * 5
    assert after == [200, 200, 429]


def test_each_endpoint_has_its_own_window() -> None:
    fake = fake_stripe.FakeStripe(clock=fake_stripe.ManualTime(), rate_limit=1)
    fake.add_account("acct_1")
    created = body(post(fake, key="a"))

    statuses = [
        post(fake, key="b").status,
        get(fake, "/v1/transfers").status,
        get(fake, "/v1/transfers").status,
        get(fake, f"/v1/transfers/{created['id']}").status,
        get(fake, "/v1/transfers/tr_other").status,  # the same endpoint, another id
    ]

    assert statuses == [429, 200, 429, 200, 429]


@pytest.mark.parametrize(("seconds", "header"), [(2.0, "2"), (0.5, "0.5")])
def test_a_429_carries_retry_after_when_configured(seconds: float, header: str) -> None:
    fake = fake_stripe.FakeStripe(clock=fake_stripe.ManualTime(), rate_limit=1, retry_after=seconds)
    fake.add_account("acct_1")
    post(fake, key="a")

    refused = post(fake, key="b")

    assert refused.status == 429
    assert dict(refused.headers)["Retry-After"] == header


@pytest.mark.parametrize(
    "settings",
    [{"latency": -0.1}, {"rate_limit": 0.5}, {"retry_after": -1.0}],
    ids=["latency", "rate_limit", "retry_after"],
)
def test_settings_that_make_no_sense_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        fake_stripe.FakeStripe(**settings)


def test_max_in_window_counts_the_executed_requests_of_one_endpoint() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock)
    fake.add_account("acct_1")

    def at(offset: float, *sends: Callable[[], Reply]) -> None:
        clock.now = 1_800_000_000.0 + offset
        for send in sends:
            send()

    at(0.0, lambda: post(fake, key="a"))
    fake.script(faults.rate_limited(), after=3)
    at(
        0.5,
        lambda: post(fake, key="c"),
        lambda: post(fake, key="d"),
        lambda: post(fake, key="c"),  # a replay did not execute
        lambda: post(fake, key="x"),  # refused by the scripted 429 at the edge
        lambda: post(fake, {**PARAMS, "amount": ""}, key="y"),  # refused: invalid parameters
        lambda: get(fake, "/v1/transfers"),  # another endpoint
    )
    at(1.2, lambda: post(fake, key="e"))
    at(1.5, lambda: post(fake, key="f"), lambda: post(fake, key="g"), lambda: post(fake, key="h"))

    # From 1.2: e, f, g, h. From 0.5, c, d and e only: f, g and h are a second later.
    assert fake.max_in_window("POST", "/v1/transfers") == 4
    assert fake.max_in_window("POST", "/v1/transfers", seconds=1.0001) == 6
    assert fake.max_in_window("POST", "/v1/transfers", seconds=2.0) == 7
    assert fake.max_in_window("GET", "/v1/transfers") == 1
    assert fake.statuses("POST") == {200: 8, 429: 1, 400: 1}
    assert fake.report().max_creates_in_one_second == 4


def test_the_report_tallies_duplicated_payouts() -> None:
    fake = fake_stripe.FakeStripe()
    for payout in ("t-1", "t-1", "t-1", "t-2", "t-3", "t-3"):
        fake.seed_transfer(
            amount=100, destination="acct_1", metadata={"payout_transfer_id": payout}
        )
    fake.seed_transfer(amount=100, destination="acct_1")  # not ours: no payout_transfer_id

    report = fake.report()

    assert (report.transfers, report.duplicated_payouts) == (7, 2)


def test_any_account_can_be_accepted_unless_set_up_otherwise() -> None:
    fake = fake_stripe.FakeStripe(accept_any_account=True)
    fake.add_account("acct_closed", fake_stripe.AccountState.CLOSED)

    paid = post(fake, {**PARAMS, "destination": "acct_never_added"})
    listed = get(fake, "/v1/transfers", {"destination": "acct_other"})
    closed = post(fake, {**PARAMS, "destination": "acct_closed"}, key="k-2")

    assert paid.status == 200
    assert (listed.status, body(listed)["data"]) == (200, [])
    assert body(closed)["error"]["code"] == "account_invalid"


def test_accepted_accounts_can_be_limited_to_a_prefix() -> None:
    fake = fake_stripe.FakeStripe(accept_any_account=True, accounts_prefix="acct_")

    paid = post(fake, {**PARAMS, "destination": "acct_42"})
    unknown = post(fake, {**PARAMS, "destination": "u_42"}, key="k-2")

    assert paid.status == 200
    assert body(unknown)["error"]["code"] == "resource_missing"


# -- events and signed webhook deliveries -------------------------------------------------------


def test_an_event_carries_the_transfer_as_the_fake_now_holds_it() -> None:
    clock = fake_stripe.ManualTime()
    fake = fake_stripe.FakeStripe(clock=clock)
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    clock.advance(timedelta(minutes=5))
    reversal = fake.reverse_transfer(created["id"], 400)

    event = fake.event_for(created["id"], "transfer.reversed")
    other = fake.event_for(created["id"], "transfer.updated", request_id="req_1")

    assert event["id"].startswith("evt_")
    assert event["id"] != other["id"]
    assert (event["object"], event["type"]) == ("event", "transfer.reversed")
    assert (event["livemode"], event["pending_webhooks"]) == (False, 1)
    assert event["created"] == int(clock())
    assert event["api_version"] == fake_stripe.API_VERSION
    assert event["request"] == {"id": None, "idempotency_key": None}  # the dashboard's
    assert other["request"]["id"] == "req_1"
    transfer = event["data"]["object"]
    assert (transfer["id"], transfer["amount_reversed"]) == (created["id"], 400)
    assert transfer["reversals"]["data"] == [reversal]
    with pytest.raises(ValueError, match="no such transfer"):
        fake.event_for("tr_nope")


def test_a_delivery_is_signed_as_the_stripe_sdk_verifies_it() -> None:
    event = _an_event()
    body = webhooks.body_of(event)
    now = int(time.time())
    header = webhooks.signature_header(body, secret=webhooks.DEFAULT_SECRET, timestamp=now)

    assert stripe.WebhookSignature.verify_header(body, header, webhooks.DEFAULT_SECRET, 300)
    constructed = stripe.Webhook.construct_event(body, header, webhooks.DEFAULT_SECRET)
    assert (constructed.id, constructed.type) == (event["id"], "transfer.reversed")
    assert constructed.data.object.id == event["data"]["object"]["id"]
    # What the SDK computes for the same bytes, secret and time is the same header.
    sdk_header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), webhooks.DEFAULT_SECRET, now
    )
    assert header == sdk_header
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_someone_else")
    old = webhooks.signature_header(body, secret=webhooks.DEFAULT_SECRET, timestamp=now - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, old, webhooks.DEFAULT_SECRET)


def _an_event() -> dict[str, Any]:
    fake = fake_stripe.FakeStripe()
    created = fake.seed_transfer(amount=1500, destination="acct_1")
    fake.reverse_transfer(created["id"], 500)
    return fake.event_for(created["id"], "transfer.reversed")


class _Endpoint(BaseHTTPRequestHandler):
    """A webhook endpoint as payout-core's would check deliveries: with the SDK."""

    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = stripe.Webhook.construct_event(
                body, self.headers.get("Stripe-Signature") or "", webhooks.DEFAULT_SECRET
            )
        except stripe.SignatureVerificationError:
            status = 400
        else:
            status = 200
            self.server.received.append((self.path, event.id))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Endpoint)
        self.received: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/stripe?source=test"


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    endpoint = _Receiver()
    thread = threading.Thread(target=endpoint.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.shutdown()
        endpoint.server_close()
        thread.join()


def test_a_signed_event_is_delivered_as_many_times_as_asked(receiver: _Receiver) -> None:
    event = _an_event()

    statuses = webhooks.deliver(receiver.url, event, times=3)

    assert statuses == [200, 200, 200]
    assert receiver.received == [("/webhooks/stripe?source=test", event["id"])] * 3


@pytest.mark.parametrize(
    ("signature", "age"),
    [
        (webhooks.Signature.FORGED, timedelta(0)),
        (webhooks.Signature.MISSING, timedelta(0)),
        (webhooks.Signature.VALID, timedelta(minutes=10)),  # outside the SDK's 300 s
    ],
)
def test_a_forged_missing_or_old_signature_is_refused_by_the_sdk(
    receiver: _Receiver, signature: webhooks.Signature, age: timedelta
) -> None:
    statuses = webhooks.deliver(receiver.url, _an_event(), signature=signature, age=age)

    assert statuses == [400]
    assert receiver.received == []


def test_a_delivery_to_nowhere_raises() -> None:
    with pytest.raises(ConnectionRefusedError):
        webhooks.deliver(f"http://127.0.0.1:{fake_stripe.closed_port()}/", _an_event())
    with pytest.raises(ValueError, match="at least once"):
        webhooks.deliver("http://127.0.0.1:1/", _an_event(), times=0)


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


def test_the_server_can_listen_on_a_given_port() -> None:
    port = fake_stripe.closed_port()

    with fake_stripe.running(port=port) as running:
        url = running.url

    assert url == f"http://127.0.0.1:{port}"


# -- as a process of its own (python -m tests.fake_stripe) -------------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], dict[str, str]]]]:
    """Start ``python -m tests.fake_stripe`` with the given options; its URL line."""
    started: list[subprocess.Popen[str]] = []

    def start(*options: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_stripe", *options],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        return process, json.loads(process.stdout.readline())

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def send(
    address: dict[str, str],
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    **headers: str,
) -> tuple[http.client.HTTPResponse, float]:
    """One request on a new connection: the response, read, and how long it took."""
    url = urlsplit(address["url"])
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    began = time.monotonic()
    try:
        conn.request(
            method,
            path,
            body=urlencode(form) if form is not None else None,
            headers={
                "Authorization": f"Bearer {address['api_key']}",
                "Content-Type": "application/x-www-form-urlencoded",
                **{name.replace("_", "-"): value for name, value in headers.items()},
            },
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response, time.monotonic() - began


def test_the_process_serves_until_sigterm_and_then_reports(
    start_process: Callable[..., tuple[subprocess.Popen[str], dict[str, str]]],
) -> None:
    process, address = start_process(
        "--latency-ms", "50", "--rate-limit", "2", "--retry-after", "3", "--accept-any-account"
    )
    form = {
        "amount": "1500",
        "currency": "usd",
        "destination": "acct_never_added",
        "metadata[payout_transfer_id]": "t-1",
    }

    # Three creates at once (well within a second): the third is over the limit.
    first, took = send(address, "POST", "/v1/transfers", form, Idempotency_Key="k-1")
    second, _ = send(address, "POST", "/v1/transfers", form, Idempotency_Key="k-2")
    third, _ = send(address, "POST", "/v1/transfers", form, Idempotency_Key="k-3")
    listed, _ = send(address, "GET", "/v1/transfers?destination=acct_never_added")
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=10)  # its input still open: the signal stopped it
    assert process.stdout is not None
    out = process.stdout.read()

    assert address["api_key"] == KEY
    assert (first.status, second.status, third.status, listed.status) == (200, 200, 429, 200)
    assert third.getheader("Retry-After") == "3"
    assert took >= 0.05
    assert returncode == 0
    report = json.loads(out)
    created_at = report.pop("created_at")
    assert report == {
        "requests": 4,
        "transfers": 2,
        "duplicated_payouts": 1,  # two keys for one payout: the duplicate a benchmark looks for
        "rate_limited": 1,
        "max_creates_in_one_second": 2,
        "statuses": {"200": 3, "429": 1},
    }
    # One arrival time per transfer created, in order (not the 429, not the list).
    assert len(created_at) == 2
    assert created_at == sorted(created_at)


def test_the_process_stops_when_its_input_closes_and_writes_the_report(
    start_process: Callable[..., tuple[subprocess.Popen[str], dict[str, str]]], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    process, address = start_process("--report", str(report))
    response, _ = send(address, "GET", "/v1/transfers")

    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    returncode = process.wait(timeout=10)

    assert response.status == 200
    assert (returncode, process.stdout.read()) == (0, "")
    assert json.loads(report.read_text())["statuses"] == {"200": 1}
