"""``payout-core transfers show``: one transfer whole, with what the fake Stripe
holds for it, as an operator reads it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests import fake_stripe
from tests.integration import cli_helpers as cli


@pytest.fixture
def stripe() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running(fake_stripe.FakeStripe(accept_any_account=True)) as server:
        yield server


def test_a_paid_transfer_is_shown_with_its_ledger_row_and_its_transfer_at_stripe(
    database_url: str, stripe: fake_stripe.FakeStripeServer
) -> None:
    env = cli.stripe_env(database_url, stripe)
    assert cli.run_cli("accounts", "set", "u-1", "acct_1u1", env=env).returncode == 0
    stdin = json.dumps(cli.settlement("stl-1", {"u-1": 1500}))
    assert cli.run_cli("schedule", "-", env=env, stdin=stdin).returncode == 0
    assert cli.run_cli("loop", "--once", env=env).returncode == 0
    [(transfer_id,)] = cli.query(database_url, "SELECT id::text FROM payout_transfers")
    [at_stripe] = stripe.fake.transfers_for(transfer_id)

    shown = cli.run_cli("transfers", "show", transfer_id, "--json", env=env)

    assert shown.returncode == 0, shown.describe()
    data = shown.json()
    assert data["transfer"]["status"] == "completed"
    assert data["at_stripe"] == {
        "asked": True,
        "found": True,
        "stripe_transfer_id": at_stripe["id"],
    }
    assert [(e["entry_type"], e["amount_cents"]) for e in data["ledger"]] == [
        ("payout_completed", 1500)
    ]
    assert data["keys"] == [{"generation": 0, "key": f"payout:{transfer_id}", "current": True}]
    assert stripe.api_key not in shown.output
    human = cli.run_cli("transfers", "show", transfer_id, env=env)
    assert f"At Stripe: {at_stripe['id']}" in human.output


def test_an_unknown_transfer_is_refused_with_exit_2(database_url: str) -> None:
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        shown = cli.run_cli("transfers", "show", unknown, env=cli.cli_env(database_url))

        assert shown.returncode == 2, shown.describe()
        assert f"no payout transfer {unknown!r}" in shown.output
