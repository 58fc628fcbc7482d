"""``payout-core`` against the fake Stripe, through the real SDK, as an operator runs it:
the whole cycle from ``accounts set`` to ``reconcile``, and ``loop`` stopped by
SIGTERM while a transfer is in flight.

The fake Stripe serves on a loopback port in this process; the command reaches
it with ``PAYOUT_STRIPE_API_BASE`` and the key the fake accepts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fake_stripe
from tests.fake_stripe import faults
from tests.integration import cli_helpers as cli
from tests.kit.waiting import wait_for

WINNERS = {"u-1": 1500, "u-2": 700, "u-3": 250, "u-4": 125}
NOT_CONNECTED = "u-4"


def account(user: str) -> str:
    return f"acct_1{user.replace('-', '')}"


@pytest.fixture
def stripe() -> Iterator[fake_stripe.FakeStripeServer]:
    with fake_stripe.running() as server:
        yield server


def stripe_env(database_url: str, server: fake_stripe.FakeStripeServer) -> dict[str, str]:
    return cli.stripe_env(
        database_url,
        server,
        PAYOUT_STRIPE_TIMEOUT_SECONDS="20",
    )


def test_the_full_cycle_pays_each_connected_winner_once_at_stripe_and_reconciles(
    database_url: str, stripe: fake_stripe.FakeStripeServer
) -> None:
    env = stripe_env(database_url, stripe)
    runs: list[cli.CommandResult] = []

    def run(*args: str, stdin: str | None = None) -> cli.CommandResult:
        done = cli.run_cli(*args, env=env, stdin=stdin)
        runs.append(done)
        return done

    for user in WINNERS:
        if user != NOT_CONNECTED:
            stripe.fake.add_account(account(user))
            connected = run("accounts", "set", user, account(user))
            assert connected.returncode == 0, connected.describe()
    scheduled = run(
        "schedule", "-", stdin=json.dumps(cli.settlement("stl-9", WINNERS, contest_id="c-9"))
    )
    assert scheduled.returncode == 0, scheduled.describe()
    job_id = scheduled.json()["job"]["id"]

    paid = run("loop", "--once")

    assert paid.returncode == 0, paid.describe()
    assert "NO MONEY MOVES" not in paid.output
    rows = cli.query(
        database_url,
        "SELECT id::text, user_id, status, amount_cents, destination_account, "
        "stripe_transfer_id, failure_code FROM payout_transfers",
    )
    at_stripe = {t["id"]: t for t in stripe.fake.transfers()}
    assert len(at_stripe) == 3
    for transfer_id, user, status, amount, destination, stripe_id, code in rows:
        if user == NOT_CONNECTED:
            assert (status, stripe_id, code) == (
                "failed_terminal",
                None,
                "stripe_account_not_connected",
            )
            assert stripe.fake.transfers_for(transfer_id) == []
            continue
        assert (status, code) == ("completed", None)
        record = at_stripe[stripe_id]  # the fake's own record of it
        assert (record["amount"], record["currency"]) == (amount, "usd") == (WINNERS[user], "usd")
        assert record["destination"] == destination == account(user)
        assert record["transfer_group"] == "contest:c-9"
        assert record["metadata"]["payout_transfer_id"] == transfer_id
        assert record["metadata"]["payout_job_id"] == job_id
    assert cli.query(
        database_url, "SELECT status, completed_count, failed_count FROM payout_jobs"
    ) == [("complete", 3, 1)]
    creates = len(stripe.fake.requests("POST", "/v1/transfers"))
    assert creates == 3

    again = run("loop", "--once")

    assert again.returncode == 0, again.describe()
    assert len(stripe.fake.transfers()) == 3
    assert len(stripe.fake.requests("POST", "/v1/transfers")) == creates

    reconciled = run("reconcile")

    assert reconciled.returncode == 0, reconciled.describe()
    assert "3 Stripe transfer(s) listed (by contest)" in reconciled.stderr
    assert "0 finding(s)" in reconciled.stderr
    # One page of the contest's group: reconcile reads Stripe's list, not each transfer.
    assert [r.path for r in stripe.fake.requests("GET")][-1:] == ["/v1/transfers"]

    secret_part = stripe.api_key.removeprefix("sk_test_")
    for done in runs:
        assert stripe.api_key not in done.output, done.describe()
        assert secret_part not in done.output, done.describe()


def test_reconcile_with_a_stripe_key_names_a_transfer_stripe_does_not_hold_as_recorded(
    database_url: str, stripe: fake_stripe.FakeStripeServer
) -> None:
    env = stripe_env(database_url, stripe)
    stripe.fake.add_account(account("u-1"))
    cli.query(
        database_url,
        "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
        ("u-1", account("u-1")),
    )
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", {"u-1": 1500}))
    )
    assert scheduled.returncode == 0, scheduled.describe()
    paid = cli.run_cli("loop", "--once", env=env)
    assert paid.returncode == 0, paid.describe()
    (transfer_id,) = cli.query(database_url, "SELECT id::text FROM payout_transfers")[0]
    # Another transfer exists at Stripe; the database now names it instead of its own.
    other = stripe.fake.seed_transfer(amount=99, destination="acct_1Someone")
    cli.query(
        database_url,
        "UPDATE payout_transfers SET stripe_transfer_id = %s WHERE id = %s",
        (other["id"], transfer_id),
    )

    done = cli.run_cli("reconcile", env=env)

    assert done.returncode == 1, done.describe()
    mismatches = [line for line in done.stdout.splitlines() if line.startswith("FINDING")]
    assert f"FINDING mismatch: transfer {transfer_id}: Stripe's {other['id']} has amount 99" in (
        "\n".join(mismatches)
    )
    assert any("destination 'acct_1Someone'" in line for line in mismatches)
    assert stripe.api_key not in done.output


def test_sigterm_during_a_tick_finishes_the_transfers_in_flight_claims_no_more_and_exits_0(
    database_url: str, stripe: fake_stripe.FakeStripeServer, tmp_path: Path
) -> None:
    winners = {f"u-{n}": 100 * n for n in range(1, 7)}
    for user in winners:
        stripe.fake.add_account(account(user))
        cli.query(
            database_url,
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            (user, account(user)),
        )
    env = stripe_env(database_url, stripe)
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", winners))
    )
    assert scheduled.returncode == 0, scheduled.describe()
    # The first two transfers sent are held at Stripe until the test lets them go:
    # with two slots, the worker claims two; the other four wait, unclaimed.
    holds = [faults.Hold(release=threading.Event()) for _ in range(2)]
    for hold in holds:
        stripe.fake.script(hold)

    with cli.start_loop(
        "--concurrency", "2", "--interval", "300", env=env, directory=tmp_path
    ) as loop:
        wait_for("two transfers held at Stripe", lambda: all(h.held.is_set() for h in holds))
        loop.terminate()
        loop.wait_for_output("received SIGTERM")
        for hold in holds:
            hold.release.set()
        code = loop.wait(timeout=30)

    assert code == 0, loop.describe()
    rows = cli.query(
        database_url,
        "SELECT user_id, status, attempt_count, lease_expires_at, claim_token, "
        "stripe_transfer_id FROM payout_transfers ORDER BY user_id",
    )
    assert [r for r in rows if r[1] == "processing"] == []
    completed = [r for r in rows if r[1] == "completed"]
    released = [r for r in rows if r[1] != "completed"]
    # The two in flight were recorded with Stripe's answer...
    assert len(completed) == 2
    assert {r[5] for r in completed} == {t["id"] for t in stripe.fake.transfers()}
    # ...and the four others were never claimed: untouched, for the next worker.
    assert [(r[1], r[2], r[3], r[4]) for r in released] == [("pending", 0, None, None)] * 4
    assert len(stripe.fake.requests("POST", "/v1/transfers")) == 2
    (run,) = cli.query(
        database_url, "SELECT claimed, completed, released, error FROM payout_scheduler_runs"
    )
    assert run == (2, 2, 0, None)
    assert stripe.api_key not in loop.stdout + loop.stderr
