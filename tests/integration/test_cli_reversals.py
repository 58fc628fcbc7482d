"""Money that comes back, from the command line, against the fake Stripe through
the real SDK: ``transfers reverse`` (partial, full, refused, an answer lost and
resolved without reversing twice) and ``webhooks serve`` (a dashboard reversal
recorded once though delivered three times; forged and stale signatures
refused with nothing written)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests import fake_stripe
from tests.fake_stripe import faults
from tests.fake_stripe import webhooks as deliveries
from tests.integration import cli_helpers as cli
from tests.kit.waiting import wait_for

WHO = ("--actor", "ops-1", "--reason", "disqualified: INC-9")
ACCOUNT = "acct_1Winner"


@pytest.fixture
def stripe() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running(fake_stripe.FakeStripe()) as server:
        yield server


@pytest.fixture
def paid(database_url: str, stripe: fake_stripe.FakeStripeServer) -> tuple[dict[str, str], str]:
    """One winner paid 1,000 cents through the loop; the command environment
    and the payout transfer's id."""
    env = cli.stripe_env(
        database_url,
        stripe,
        STRIPE_WEBHOOK_SECRET=deliveries.DEFAULT_SECRET,
    )
    stripe.fake.add_account(ACCOUNT)
    assert cli.run_cli("accounts", "set", "u-1", ACCOUNT, env=env).returncode == 0
    stdin = json.dumps(cli.settlement("stl-r", {"u-1": 1000}, contest_id="c-r"))
    assert cli.run_cli("schedule", "-", env=env, stdin=stdin).returncode == 0
    assert cli.run_cli("loop", "--once", env=env).returncode == 0
    [(transfer_id, status)] = cli.query(
        database_url, "SELECT id::text, status FROM payout_transfers"
    )
    assert status == "completed"
    return env, transfer_id


def booked(database_url: str) -> list[tuple[int, str]]:
    return [
        (int(amount), str(reversal))
        for amount, reversal in cli.query(
            database_url,
            "SELECT amount_cents, stripe_reversal_id FROM payout_ledger "
            "WHERE entry_type = 'payout_reversed' ORDER BY id",
        )
    ]


def stripe_transfer(database_url: str) -> str:
    [(stripe_id,)] = cli.query(database_url, "SELECT stripe_transfer_id FROM payout_transfers")
    return str(stripe_id)


def test_a_partial_then_a_full_reversal(
    database_url: str, stripe: fake_stripe.FakeStripeServer, paid: tuple[dict[str, str], str]
) -> None:
    env, transfer_id = paid

    partial = cli.run_cli("transfers", "reverse", transfer_id, "--amount", "300", *WHO, env=env)
    full = cli.run_cli("transfers", "reverse", transfer_id, *WHO, env=env)
    nothing_left = cli.run_cli("transfers", "reverse", transfer_id, *WHO, env=env)

    assert partial.returncode == 0, partial.describe()
    assert full.returncode == 0, full.describe()
    at_stripe = stripe.fake.reversals_of(stripe_transfer(database_url))
    assert [r["amount"] for r in at_stripe] == [300, 700]
    assert booked(database_url) == [(300, at_stripe[0]["id"]), (700, at_stripe[1]["id"])]
    assert partial.stdout.strip() == at_stripe[0]["id"]
    assert "paid 1000, reversed 1000, 0 left" in full.output
    assert nothing_left.returncode == 2, nothing_left.describe()
    assert "paid 1000, reversed 1000, 0 left" in nothing_left.output
    actions = cli.query(
        database_url, "SELECT action, actor FROM payout_operator_actions ORDER BY id"
    )
    assert actions == [("reverse", "ops-1"), ("reverse", "ops-1")]
    assert stripe.api_key not in partial.output + full.output
    reconciled = cli.run_cli("reconcile", env=env)
    assert reconciled.returncode == 0, reconciled.describe()
    shown = cli.run_cli("transfers", "show", transfer_id, "--json", env=env).json()
    assert [(r["amount_cents"], r["status"]) for r in shown["reversals"]] == [
        (300, "completed"),
        (700, "completed"),
    ]
    assert [e["entry_type"] for e in shown["ledger"]] == [
        "payout_completed",
        "payout_reversed",
        "payout_reversed",
    ]


def test_a_reversal_of_more_than_was_paid_is_refused_and_writes_nothing(
    database_url: str, stripe: fake_stripe.FakeStripeServer, paid: tuple[dict[str, str], str]
) -> None:
    env, transfer_id = paid

    refused = cli.run_cli("transfers", "reverse", transfer_id, "--amount", "1001", *WHO, env=env)
    not_a_number = cli.run_cli(
        "transfers", "reverse", transfer_id, "--amount", "1.5", *WHO, env=env
    )

    assert refused.returncode == 2, refused.describe()
    assert "cannot reverse 1001 usd: paid 1000, reversed 0, 1000 left" in refused.output
    assert not_a_number.returncode == 2, not_a_number.describe()
    assert stripe.fake.reversals_of(stripe_transfer(database_url)) == []
    assert (
        stripe.fake.requests("POST", f"/v1/transfers/{stripe_transfer(database_url)}/reversals")
        == []
    )
    assert cli.query(database_url, "SELECT count(*) FROM payout_reversals") == [(0,)]
    assert booked(database_url) == []


def test_a_reversal_whose_answer_is_lost_is_resolved_without_reversing_twice(
    database_url: str, stripe: fake_stripe.FakeStripeServer, paid: tuple[dict[str, str], str]
) -> None:
    env, transfer_id = paid
    # Stripe reverses, then the connection drops before the answer arrives.
    stripe.fake.script(faults.Drop(create=True), path=faults.REVERSALS)

    lost = cli.run_cli("transfers", "reverse", transfer_id, "--amount", "400", *WHO, env=env)

    assert lost.returncode == 1, lost.describe()
    assert "Run the same command again" in lost.output
    [held] = stripe.fake.reversals_of(stripe_transfer(database_url))
    assert booked(database_url) == []
    assert cli.query(database_url, "SELECT status FROM payout_reversals") == [("sending",)]
    # The operator sees it in status, not only in `transfers show`.
    [in_doubt] = cli.run_cli("status", "--json", env=env).json()["reversals_in_doubt"]
    assert (in_doubt["transfer_id"], in_doubt["amount_cents"]) == (transfer_id, 400)
    assert "Reversals in doubt" in cli.run_cli("status", env=env).output

    again = cli.run_cli("transfers", "reverse", transfer_id, "--amount", "400", *WHO, env=env)

    assert again.returncode == 0, again.describe()
    assert "resolved the reversal in doubt" in again.output
    assert len(stripe.fake.reversals_of(stripe_transfer(database_url))) == 1
    assert booked(database_url) == [(400, held["id"])]
    replays = [
        r
        for r in stripe.fake.requests(
            "POST", f"/v1/transfers/{stripe_transfer(database_url)}/reversals"
        )
        if r.replayed
    ]
    assert len(replays) == 1  # the resend was answered by Stripe's replay of the first
    assert cli.query(database_url, "SELECT status FROM payout_reversals") == [("completed",)]
    assert cli.run_cli("status", "--json", env=env).json()["reversals_in_doubt"] == []


def test_a_dashboard_reversal_delivered_three_times_is_recorded_once(
    database_url: str,
    stripe: fake_stripe.FakeStripeServer,
    paid: tuple[dict[str, str], str],
    tmp_path: Path,
) -> None:
    env, _transfer_id = paid
    serve_env = {**env, "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0"}
    dashboard = stripe.fake.reverse_transfer(stripe_transfer(database_url), 250)
    event = stripe.fake.event_for(stripe_transfer(database_url), "transfer.reversed")

    with cli.start_loop(
        env=serve_env, directory=tmp_path, command=("webhooks", "serve")
    ) as receiver:
        url = receiver.webhooks_url()
        statuses = deliveries.deliver(url, event, times=3)
        ignored = deliveries.deliver(
            url, {**event, "id": "evt_other", "type": "payout.paid"}, times=1
        )
        wait_for("the reversal booked", lambda: booked(database_url))
        wait_for(
            "every event applied",
            lambda: (
                cli.query(
                    database_url,
                    "SELECT count(*) FROM payout_webhook_events WHERE processed_at IS NULL",
                )
                == [(0,)]
            ),
        )
        receiver.terminate()
        assert receiver.wait() == 0, receiver.describe()

    assert statuses == [200, 200, 200]
    assert ignored == [200]
    assert booked(database_url) == [(250, dashboard["id"])]
    outcomes = dict(
        cli.query(database_url, "SELECT id, outcome FROM payout_webhook_events ORDER BY arrival")
    )
    assert outcomes["evt_other"] == "ignored: payout.paid"
    assert outcomes[event["id"]].startswith("booked 1 of 1 reversal(s)")
    assert cli.run_cli("reconcile", env=env).returncode == 0


def test_a_forged_or_stale_signature_is_refused_with_nothing_written(
    database_url: str,
    stripe: fake_stripe.FakeStripeServer,
    paid: tuple[dict[str, str], str],
    tmp_path: Path,
) -> None:
    env, _transfer_id = paid
    serve_env = {**env, "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0"}
    stripe.fake.reverse_transfer(stripe_transfer(database_url), 250)
    event = stripe.fake.event_for(stripe_transfer(database_url), "transfer.reversed")

    with cli.start_loop(
        env=serve_env, directory=tmp_path, command=("webhooks", "serve")
    ) as receiver:
        url = receiver.webhooks_url()
        forged = deliveries.deliver(url, event, signature=deliveries.Signature.FORGED)
        missing = deliveries.deliver(url, event, signature=deliveries.Signature.MISSING)
        stale = deliveries.deliver(url, event, age=timedelta(minutes=6))
        other_secret = deliveries.deliver(url, event, secret="whsec_someoneElse0123456789")
        receiver.terminate()
        assert receiver.wait() == 0, receiver.describe()

    assert (forged, missing, stale, other_secret) == ([400], [400], [400], [400])
    assert cli.query(database_url, "SELECT count(*) FROM payout_webhook_events") == [(0,)]
    assert booked(database_url) == []
    assert deliveries.DEFAULT_SECRET not in receiver.stdout + receiver.stderr


def test_the_receiver_refuses_to_start_without_a_secret(database_url: str) -> None:
    env = cli.cli_env(database_url)

    refused = cli.run_cli("webhooks", "serve", env=env)
    loop_refused = cli.run_cli(
        "loop",
        "--once",
        "--gateway",
        "simulated",
        env={**env, "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0"},
    )
    bad = cli.run_cli("webhooks", "serve", env={**env, "STRIPE_WEBHOOK_SECRET": "sk_test_oops"})

    for result in (refused, loop_refused):
        assert result.returncode == 2, result.describe()
        assert "STRIPE_WEBHOOK_SECRET is not set" in result.output
    assert bad.returncode == 2, bad.describe()
    assert "sk_test_oops" not in bad.output


def test_the_loop_serves_webhooks_when_an_address_is_set(
    database_url: str,
    stripe: fake_stripe.FakeStripeServer,
    paid: tuple[dict[str, str], str],
    tmp_path: Path,
) -> None:
    env, _transfer_id = paid
    loop_env = {**env, "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0"}
    dashboard = stripe.fake.reverse_transfer(stripe_transfer(database_url), 100)
    event = stripe.fake.event_for(stripe_transfer(database_url), "transfer.reversed")

    with cli.start_loop("--interval", "300", env=loop_env, directory=tmp_path) as loop:
        url = loop.webhooks_url()
        assert deliveries.deliver(url, event) == [200]
        wait_for("the reversal booked", lambda: booked(database_url))
        loop.terminate()
        assert loop.wait() == 0, loop.describe()

    assert booked(database_url) == [(100, dashboard["id"])]


def test_the_ledger_refuses_a_credit_beyond_what_was_paid_even_from_sql(
    database_url: str, paid: tuple[dict[str, str], str]
) -> None:
    _env, transfer_id = paid

    with pytest.raises(psycopg.errors.CheckViolation):
        cli.query(
            database_url,
            "INSERT INTO payout_ledger (idempotency_key, entry_type, direction, amount_cents, "
            "currency, transfer_id, job_id, contest_id, user_id, attempt_number, "
            "stripe_transfer_id, stripe_reversal_id) "
            "SELECT 'ledger:reversal:trr_sql', 'payout_reversed', 'credit', 1001, currency, id, "
            "job_id, contest_id, user_id, 1, stripe_transfer_id, 'trr_sql' "
            "FROM payout_transfers WHERE id = %s",
            (transfer_id,),
        )
