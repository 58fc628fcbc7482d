"""Every row of the Stripe classification table, through the real SDK against the fake Stripe.

Each case makes the failure happen for real (a wrong key, a closed account, a
dropped connection, a held response, a closed port, an untrusted certificate)
or scripts the fake to answer as Stripe does, then checks the outcome the
gateway returns and that it came from the row the case is about. A last test
checks that every row of :data:`classify.RULES` has a case.

Two network failures cannot be produced from a loopback server: DNS failure
and a connect timeout. For those the case replaces urllib3's
``create_connection`` (the layer under the SDK and ``requests``) with one that
fails as the operating system would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import urllib3.util.connection

from payout_adapters.stripe import StripeGateway, classify
from payout_core import outcomes
from tests import fake_stripe
from tests.fake_stripe import faults, tls

ACCOUNT = "acct_1Winner"
REQUEST = outcomes.TransferRequest(
    amount_cents=1500,
    currency="usd",
    destination=ACCOUNT,
    transfer_group="contest:c42",
    idempotency_key="payout:t-1",
    metadata=(("payout_transfer_id", "t-1"), ("user_id", "u_1")),
)


@attrs.frozen
class Env:
    """What a case may use: the fake, a way to build gateways, and pytest's helpers."""

    server: fake_stripe.FakeStripeServer
    gateways: list[StripeGateway]
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path

    @property
    def fake(self) -> fake_stripe.FakeStripe:
        return self.server.fake

    def gateway(
        self, *, api_key: str | None = None, api_base: str | None = None, timeout: float = 5.0
    ) -> StripeGateway:
        gateway = StripeGateway(
            api_key=api_key or self.server.api_key,
            api_base=api_base or self.server.url,
            timeout_seconds=timeout,
            rate_limit=1000.0,
        )
        self.gateways.append(gateway)
        return gateway

    def create(self, request: outcomes.TransferRequest = REQUEST) -> outcomes.GatewayOutcome:
        return self.gateway().create_transfer(request)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Env]:
    with fake_stripe.running() as server:
        server.fake.add_account(ACCOUNT)
        environment = Env(server, [], monkeypatch, tmp_path)
        yield environment
        for gateway in environment.gateways:
            gateway.close()


def row(name: str, **match: object) -> classify.Rule:
    """The one row of the table named ``name`` (and with these attributes)."""
    found = [
        rule
        for rule in classify.RULES
        if rule.name == name and all(getattr(rule, k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"{len(found)} rows named {name!r} with {match}"
    return found[0]


# -- how each failure is made to happen --------------------------------------------------------


def _refused(env: Env) -> outcomes.GatewayOutcome:
    return env.gateway(api_base=f"http://127.0.0.1:{fake_stripe.closed_port()}").create_transfer(
        REQUEST
    )


def _failing_connect(error: OSError) -> Callable[[Env], outcomes.GatewayOutcome]:
    def act(env: Env) -> outcomes.GatewayOutcome:
        def create_connection(*_args: object, **_kwargs: object) -> socket.socket:
            raise error

        env.monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
        return env.create()

    return act


def _untrusted_certificate(env: Env) -> outcomes.GatewayOutcome:
    context = tls.self_signed_context(env.tmp_path)
    with fake_stripe.running(env.fake, tls=context) as https:
        assert https.url.startswith("https://")
        return env.gateway(api_base=https.url).create_transfer(REQUEST)


def _tls_to_a_plain_server(env: Env) -> outcomes.GatewayOutcome:
    return env.gateway(api_base=env.server.url.replace("http://", "https://")).create_transfer(
        REQUEST
    )


def _held_past_the_timeout(env: Env) -> outcomes.GatewayOutcome:
    release = threading.Event()
    env.fake.script(faults.Hold(release=release))
    try:
        return env.gateway(timeout=0.5).create_transfer(REQUEST)
    finally:
        release.set()
        assert env.fake.wait_idle()


def _scripted(fault: faults.Fault) -> Callable[[Env], outcomes.GatewayOutcome]:
    def act(env: Env) -> outcomes.GatewayOutcome:
        env.fake.script(fault)
        return env.create()

    return act


def _key_in_use(env: Env) -> outcomes.GatewayOutcome:
    hold = faults.Hold(release=threading.Event())
    env.fake.script(hold)
    first: list[outcomes.GatewayOutcome] = []
    sender = threading.Thread(target=lambda: first.append(env.create()))
    sender.start()
    try:
        assert hold.held.wait(5), "the first request never reached the fake"
        return env.create()
    finally:
        hold.release.set()
        sender.join()
        assert len(first) == 1
        assert isinstance(first[0], outcomes.Succeeded)


def _wrong_key(env: Env) -> outcomes.GatewayOutcome:
    return env.gateway(api_key="sk_test_notTheRightKey000000000").create_transfer(REQUEST)


def _restricted_key(env: Env) -> outcomes.GatewayOutcome:
    env.fake.add_api_key("rk_test_readOnlyKey000000000000", can_write=False)
    return env.gateway(api_key="rk_test_readOnlyKey000000000000").create_transfer(REQUEST)


def _empty_balance(env: Env) -> outcomes.GatewayOutcome:
    env.fake.set_balance(1000)
    return env.create()  # 1500 > 1000


def _empty_balance_replayed_after_a_top_up(env: Env) -> outcomes.GatewayOutcome:
    env.fake.set_balance(1000)
    assert isinstance(env.create(), outcomes.Systemic)
    env.fake.set_balance(None)
    return env.create()  # the same key: Stripe replays the refusal it saved


def _invalid(code: str, status: int = 400) -> Callable[[Env], outcomes.GatewayOutcome]:
    return _scripted(
        faults.Respond(status=status, error_type="invalid_request_error", code=code, saved=True)
    )


def _same_key_other_amount(env: Env) -> outcomes.GatewayOutcome:
    assert isinstance(env.create(), outcomes.Succeeded)
    return env.create(attrs.evolve(REQUEST, amount_cents=2000))


def _same_key_other_destination(env: Env) -> outcomes.GatewayOutcome:
    """What a take-over sent after the winner reconnected another account would meet."""
    env.fake.add_account("acct_2Reconnected")
    assert isinstance(env.create(), outcomes.Succeeded)
    return env.create(attrs.evolve(REQUEST, destination="acct_2Reconnected"))


def _to(destination: str) -> Callable[[Env], outcomes.GatewayOutcome]:
    return lambda env: env.create(attrs.evolve(REQUEST, destination=destination))


def _closed_account(env: Env) -> outcomes.GatewayOutcome:
    env.fake.add_account("acct_closed", fake_stripe.AccountState.CLOSED)
    return _to("acct_closed")(env)


def _no_transfers_capability(env: Env) -> outcomes.GatewayOutcome:
    env.fake.add_account("acct_nocap", fake_stripe.AccountState.NO_TRANSFERS_CAPABILITY)
    return _to("acct_nocap")(env)


def _amount(cents: int) -> Callable[[Env], outcomes.GatewayOutcome]:
    return lambda env: env.create(attrs.evolve(REQUEST, amount_cents=cents))


def _replayed(fault: faults.Respond) -> Callable[[Env], outcomes.GatewayOutcome]:
    def act(env: Env) -> outcomes.GatewayOutcome:
        env.fake.script(fault)
        first = env.create()
        assert isinstance(first, outcomes.Unknown)
        return env.create()  # the same key: Stripe replays the saved 5xx

    return act


# -- the cases ---------------------------------------------------------------------------------


@attrs.frozen
class Case:
    id: str
    act: Callable[[Env], outcomes.GatewayOutcome]
    rule: classify.Rule
    expect: type[outcomes.Transient | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic]
    code: str
    key_replays_error: bool = False
    conclusive: bool = False  # for a Systemic: saved under the key


T, U, P, S = outcomes.Transient, outcomes.Unknown, outcomes.Permanent, outcomes.Systemic

CASES = [
    # no answer
    Case("connection refused", _refused, row("connection_refused"), T, "connection_refused"),
    Case(
        "DNS failure",
        _failing_connect(socket.gaierror(-2, "Name or service not known")),
        row("connect_failed"),
        T,
        "connect_failed",
    ),
    Case(
        "connect timeout",
        _failing_connect(TimeoutError("timed out")),
        row("connect_timeout"),
        T,
        "connect_timeout",
    ),
    Case(
        "untrusted TLS certificate",
        _untrusted_certificate,
        row("tls_certificate_rejected"),
        S,
        "tls_certificate_rejected",
    ),
    Case("answer slower than the timeout", _held_past_the_timeout, row("timeout"), U, "timeout"),
    Case(
        "connection closed without an answer",
        _scripted(faults.Drop()),
        row("connection_lost"),
        U,
        "connection_lost",
    ),
    Case(
        "connection reset",
        _scripted(faults.Drop(reset=True)),
        row("connection_lost"),
        U,
        "connection_lost",
    ),
    Case(
        "TLS spoken to a plain HTTP server",
        _tls_to_a_plain_server,
        row("connection_error"),
        U,
        "connection_error",
    ),
    # slow down
    Case("429 rate_limit", _scripted(faults.rate_limited()), row("rate_limit"), T, "rate_limit"),
    Case(
        "429 lock_timeout", _scripted(faults.lock_timeout()), row("lock_timeout"), T, "lock_timeout"
    ),
    # Stripe is still working on the key, or the key cannot tell
    Case(
        "409 idempotency_key_in_use",
        _key_in_use,
        row("idempotency_key_in_use"),
        U,
        "idempotency_key_in_use",
    ),
    Case(
        "409 without a code",
        _scripted(faults.Respond(status=409, error_type="invalid_request_error")),
        row("conflict"),
        U,
        "conflict",
    ),
    Case(
        "idempotency_error (same key, other amount)",
        _same_key_other_amount,
        row("idempotency_error"),
        U,
        "idempotency_error",
        key_replays_error=True,
    ),
    Case(
        "idempotency_error (same key, other destination)",
        _same_key_other_destination,
        row("idempotency_error"),
        U,
        "idempotency_error",
        key_replays_error=True,
    ),
    # the platform's fault
    Case("401 wrong API key", _wrong_key, row("authentication_failed"), S, "authentication_failed"),
    Case(
        "403 key without permission",
        _restricted_key,
        row("permission_denied"),
        S,
        "permission_denied",
    ),
    Case(
        "balance_insufficient",
        _empty_balance,
        row("balance_insufficient"),
        S,
        "balance_insufficient",
        conclusive=True,
    ),
    Case(
        "balance_insufficient replayed after a top-up",
        _empty_balance_replayed_after_a_top_up,
        row("balance_insufficient"),
        S,
        "balance_insufficient",
        conclusive=True,
    ),
    *[
        Case(code, _invalid(code), row(code), S, code)
        for code in (
            "api_key_expired",
            "platform_api_key_expired",
            "secret_key_required",
            "livemode_mismatch",
            "platform_account_required",
        )
    ],
    # the winner's or the request's fault
    Case(
        "unknown destination",
        _to("acct_unknown"),
        row("resource_missing", param="destination"),
        P,
        "resource_missing",
    ),
    Case(
        "a missing object other than the destination",
        _invalid("resource_missing", status=404),
        row("resource_missing", param=None),
        P,
        "resource_missing",
    ),
    Case("closed account", _closed_account, row("account_invalid"), P, "account_invalid"),
    Case(
        "transfers capability not active",
        _no_transfers_capability,
        row("insufficient_capabilities_for_transfer"),
        P,
        "insufficient_capabilities_for_transfer",
    ),
    Case(
        "transfers_not_allowed",
        _invalid("transfers_not_allowed"),
        row("transfers_not_allowed"),
        P,
        "transfers_not_allowed",
    ),
    Case("amount_too_small", _amount(0), row("amount_too_small"), P, "amount_too_small"),
    Case("amount_too_large", _amount(10**9), row("amount_too_large"), P, "amount_too_large"),
    Case(
        "400 with a code the table does not know",
        _invalid("parameter_unknown"),
        row("invalid_request"),
        P,
        "parameter_unknown",
    ),
    Case(
        "402 without a code",
        _scripted(faults.Respond(status=402, error_type="card_error", saved=True)),
        row("invalid_request"),
        P,
        "invalid_request",
    ),
    # Stripe failed
    Case(
        "500, no transfer",
        _scripted(faults.server_error()),
        row("api_error"),
        U,
        "api_error",
        key_replays_error=True,
    ),
    Case(
        "500, transfer created",
        _scripted(faults.server_error(create=True)),
        row("api_error"),
        U,
        "api_error",
        key_replays_error=True,
    ),
    Case(
        "500 replayed",
        _replayed(faults.server_error()),
        row("api_error"),
        U,
        "api_error",
        key_replays_error=True,
    ),
    Case(
        "503 saved and replayed",
        _replayed(faults.Respond(status=503, saved=True)),
        row("server_error", replayed=True),
        U,
        "server_error",
        key_replays_error=True,
    ),
    Case(
        "424",
        _scripted(faults.Respond(status=424, saved=True)),
        row("external_dependency_failed"),
        U,
        "external_dependency_failed",
        key_replays_error=True,
    ),
    Case(
        "502 page from a proxy",
        _scripted(faults.bad_gateway()),
        row("server_error", replayed=None),
        U,
        "server_error",
    ),
    Case(
        "503 before execution",
        _scripted(faults.service_unavailable()),
        row("server_error", replayed=None),
        U,
        "server_error",
    ),
    Case(
        "200 that is not JSON",
        _scripted(faults.Respond(status=200, raw_body="<html>maintenance</html>")),
        row("unexpected_answer"),
        U,
        "unexpected_answer",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_stripe_failure_is_classified_by_its_row(env: Env, case: Case) -> None:
    outcome = case.act(env)

    assert type(outcome) is case.expect, outcome
    assert isinstance(outcome, T | U | P | S)
    assert outcome.code == case.code
    assert case.rule.explain in outcome.message
    if isinstance(outcome, outcomes.Unknown):
        assert outcome.key_replays_error is case.key_replays_error
    if isinstance(outcome, outcomes.Systemic):
        assert outcome.conclusive is case.conclusive


def test_every_row_of_the_table_has_a_case() -> None:
    covered = {id(case.rule) for case in CASES}
    missing = [f"{r.name} ({r.exception.__name__})" for r in classify.RULES if id(r) not in covered]
    assert missing == []


def test_the_operator_docs_explain_every_failure_code_of_the_table() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "stripe-errors.md").read_text()

    assert [r.name for r in classify.RULES if f"`{r.name}`" not in docs] == []


def test_a_transfer_created_answers_succeeded_with_its_id(env: Env) -> None:
    outcome = env.create()

    (created,) = env.fake.transfers()
    assert outcome == outcomes.Succeeded(stripe_transfer_id=created["id"], replayed=False)
    assert created["amount"] == 1500
    assert created["destination"] == ACCOUNT
    assert created["transfer_group"] == "contest:c42"
    assert created["metadata"] == {"payout_transfer_id": "t-1", "user_id": "u_1"}


def test_an_idempotent_replay_answers_succeeded_replayed_with_the_same_id(env: Env) -> None:
    first = env.create()
    again = env.create()

    assert isinstance(first, outcomes.Succeeded)
    assert again == outcomes.Succeeded(stripe_transfer_id=first.stripe_transfer_id, replayed=True)
    assert len(env.fake.transfers()) == 1
