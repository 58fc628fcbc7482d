"""The fleet-wide pause, as an operator uses it: ``payout-core pause`` stops two
running ``loop`` workers within a tick, ``status`` and ``/metrics`` say so, and
``payout-core resume`` starts them again; each action leaves one audit row
that the database refuses to change.

The workers pay through the real ``stripe`` SDK against the fake Stripe, which
answers after 200 ms, so that the pause comes while transfers are in flight.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from tests import fake_stripe
from tests.integration import cli_helpers as cli
from tests.kit.waiting import wait_for

WINNERS = {f"u-{n:03d}": 100 + n for n in range(200)}
IN_FLIGHT_AT_MOST = 2 * 2  # two workers, two slots each


@pytest.fixture
def stripe() -> Iterator[fake_stripe.FakeStripeServer]:
    fake = fake_stripe.FakeStripe(latency=0.2, accept_any_account=True)
    with fake_stripe.running(fake) as server:
        yield server


def count(database_url: str, status: str) -> int:
    [(n,)] = cli.query(
        database_url, "SELECT count(*) FROM payout_transfers WHERE status = %s", (status,)
    )
    return int(n)


def says_paused(loop: cli.LoopProcess) -> bool | None:
    """The worker's /metrics shows the pause (refreshed after each of its ticks)."""
    return "payout_paused 1.0" in cli.http_get(loop.admin_url() + "/metrics")[2] or None


def test_a_pause_stops_a_fleet_of_two_workers_within_a_tick_and_a_resume_restarts_it(
    database_url: str, stripe: fake_stripe.FakeStripeServer, tmp_path: Path
) -> None:
    env = cli.stripe_env(
        database_url,
        stripe,
        PAYOUT_INTERVAL_SECONDS="0.5",
        PAYOUT_CONCURRENCY="2",
    )
    for user in WINNERS:
        cli.query(
            database_url,
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            (user, f"acct_{user.replace('-', '')}"),
        )
    scheduled = cli.run_cli(
        "schedule", "-", env=env, stdin=json.dumps(cli.settlement("stl-1", WINNERS))
    )
    assert scheduled.returncode == 0, scheduled.describe()

    with ExitStack() as workers:
        loops = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            loops.append(
                workers.enter_context(
                    cli.start_loop(
                        "--admin-addr", "127.0.0.1:0", env=env, directory=tmp_path / name
                    )
                )
            )
        wait_for("ten paid", lambda: count(database_url, "completed") >= 10)

        paused = cli.run_cli("pause", "--actor", "ops-1", "--reason", "Stripe looks odd", env=env)
        assert paused.returncode == 0, paused.describe()
        sent_at_pause = len(stripe.fake.requests("POST", "/v1/transfers"))

        # Within a tick: the transfers in flight finish and are recorded; nothing
        # else is claimed.
        wait_for("in flight finished", lambda: count(database_url, "processing") == 0)
        paid_at_pause = count(database_url, "completed")
        time.sleep(1.5)  # three ticks of the workers' interval
        assert count(database_url, "completed") == paid_at_pause
        assert count(database_url, "processing") == 0
        assert count(database_url, "pending") == len(WINNERS) - paid_at_pause
        sent = len(stripe.fake.requests("POST", "/v1/transfers"))
        assert sent - sent_at_pause <= IN_FLIGHT_AT_MOST
        assert all(loop.running() for loop in loops)

        status = cli.run_cli("status", "--json", env=env)
        assert status.returncode == 0, status.describe()
        assert status.json()["pause"]["paused"] is True
        assert (status.json()["pause"]["actor"], status.json()["pause"]["reason"]) == (
            "ops-1",
            "Stripe looks odd",
        )
        shown = cli.run_cli("status", env=env)
        assert "PAUSED by ops-1" in shown.output
        for loop in loops:
            wait_for("the paused gauge", functools.partial(says_paused, loop))
            _, _, jobs = cli.http_get(loop.admin_url() + "/admin/jobs")
            assert json.loads(jobs)["pause"]["actor"] == "ops-1"

        resumed = cli.run_cli("resume", "--actor", "ops-2", "--reason", "checked", env=env)
        assert resumed.returncode == 0, resumed.describe()
        wait_for("every winner paid", lambda: count(database_url, "completed") == len(WINNERS))

    # Exactly once at Stripe, through the pause.
    at_stripe = [t["metadata"]["payout_transfer_id"] for t in stripe.fake.transfers()]
    assert len(at_stripe) == len(set(at_stripe)) == len(WINNERS)
    actions = cli.query(
        database_url,
        "SELECT action, actor, reason, before->>'paused', after->>'paused' "
        "FROM payout_operator_actions ORDER BY id",
    )
    assert actions == [
        ("pause", "ops-1", "Stripe looks odd", "false", "true"),
        ("resume", "ops-2", "checked", "true", "false"),
    ]


def test_an_audit_row_cannot_be_changed_or_removed(database_url: str) -> None:
    env = cli.cli_env(database_url)
    done = cli.run_cli("pause", "--actor", "ops-1", "--reason", "drill", env=env)
    assert done.returncode == 0, done.describe()

    for change in (
        "UPDATE payout_operator_actions SET reason = 'nothing happened'",
        "DELETE FROM payout_operator_actions",
        "TRUNCATE payout_operator_actions",
    ):
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            cli.query(database_url, change)
    assert cli.query(database_url, "SELECT actor, reason FROM payout_operator_actions") == [
        ("ops-1", "drill")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--actor", "", "--reason", "why"), "actor: must not be empty"),
        (("--actor", "ops", "--reason", "   "), "reason: must not be empty"),
        (("--actor", "ops"), "--reason"),
        (("--reason", "why"), "--actor"),
    ],
)
def test_a_pause_without_who_or_why_is_refused_with_exit_2_and_writes_nothing(
    database_url: str, args: tuple[str, ...], message: str
) -> None:
    done = cli.run_cli("pause", *args, env=cli.cli_env(database_url))

    assert done.returncode == 2, done.describe()
    assert message in done.output
    assert cli.query(database_url, "SELECT count(*) FROM payout_operator_actions") == [(0,)]
    assert cli.query(database_url, "SELECT paused FROM payout_control") == [(False,)]
