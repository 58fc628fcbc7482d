"""``payout-core loop`` as a long-running worker: its admin endpoints report what
its ticks did, and it survives its database going away and coming back.

The outage test runs the loop against a PostgreSQL server of its own (an
embedded one in the test's directory), which it stops and starts again while
the same worker process keeps running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration import cli_helpers as cli
from tests.kit.waiting import wait_for

ADMIN = ("--admin-addr", "127.0.0.1:0")


def jobs_endpoint(base: str) -> dict[str, Any]:
    status, content_type, body = cli.http_get(f"{base}/admin/jobs")
    assert (status, content_type) == (200, "application/json"), body
    (job,) = json.loads(body)["jobs"]
    assert isinstance(job, dict)
    return job


def after_a_tick(base: str, *, succeeded: bool) -> dict[str, Any] | None:
    """The registry once its last tick ended as asked and the next one is scheduled."""
    job = jobs_endpoint(base)
    last = job["last_run"]
    if last is None or job["running"] or job["next_run_at"] is None:
        return None
    if (last["error"] is None) != succeeded:
        return None
    return job


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def connect(url: str, accounts: dict[str, str]) -> None:
    for user, account in accounts.items():
        cli.query(
            url,
            "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
            (user, account),
        )


def test_the_admin_endpoints_answer_with_what_the_tick_did(
    database_url: str, tmp_path: Path
) -> None:
    env = cli.cli_env(database_url)
    connect(database_url, {"u-1": "acct_1", "u-2": "acct_2"})
    scheduled = cli.run_cli(
        "schedule",
        "-",
        env=env,
        stdin=json.dumps(cli.settlement("stl-1", {"u-1": 100, "u-2": 200, "u-3": 300})),
    )
    assert scheduled.returncode == 0, scheduled.describe()

    with cli.start_loop(
        "--gateway", "simulated", "--interval", "300", *ADMIN, env=env, directory=tmp_path
    ) as loop:
        base = loop.admin_url()
        job = wait_for("the first tick", lambda: after_a_tick(base, succeeded=True))
        health = cli.http_get(f"{base}/healthz")
        ready = cli.http_get(f"{base}/readyz")
        metrics = cli.http_get(f"{base}/metrics")
        missing = cli.http_get(f"{base}/nothing-here")
        loop.terminate()
        code = loop.wait()

    assert code == 0, loop.describe()
    assert health[0] == 200
    assert health[2] == "ok\n"
    assert ready[0] == 200
    assert ready[2] == "ready\n"
    assert missing[0] == 404

    assert (job["name"], job["interval_seconds"], job["consecutive_failures"]) == (
        "payout-scheduler",
        300,
        0,
    )
    last = job["last_run"]
    (run_id,) = cli.query(database_url, "SELECT id::text FROM payout_scheduler_runs")[0]
    assert last["id"] == run_id
    assert (last["claimed"], last["completed"], last["failed_terminal"], last["retried"]) == (
        3,
        2,
        1,
        0,
    )
    assert last["error"] is None
    assert last["halted_reason"] is None
    assert last["finished_at"] is not None

    status, content_type, text = metrics
    assert status == 200
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "payout_tick_duration_seconds",
        "payout_transfer_attempts",
        "payout_gateway_request_seconds",
        "payout_transfers_due",
        "payout_transfers_stuck",
    } <= names
    found = samples(text)
    assert found[("payout_tick_duration_seconds_count", ())] == 1
    assert found[("payout_transfer_attempts_total", (("outcome", "completed"),))] == 2
    assert found[("payout_transfer_attempts_total", (("outcome", "failed_terminal"),))] == 1
    assert found[("payout_transfers_due", ())] == 0
    assert found[("payout_transfers_stuck", ())] == 0
    assert found[("payout_transfers", (("status", "completed"),))] == 2
    created = (("operation", "create_transfer"), ("outcome", "succeeded"))
    assert found[("payout_gateway_request_seconds_count", created)] == 2
    assert found[("payout_ticks_total", (("result", "ok"),))] == 1


def test_loop_keeps_running_while_the_database_goes_away_and_finishes_the_work_when_it_returns(
    tmp_path: Path,
) -> None:
    with cli.dedicated_postgres(tmp_path / "pg") as server:
        # A short wait for a connection: each failed tick ends within seconds.
        env = cli.cli_env(server.url, PAYOUT_DATABASE_TIMEOUT_SECONDS="1")
        migrated = cli.run_cli("migrate", env=env)
        assert migrated.returncode == 0, migrated.describe()

        with cli.start_loop(
            "--gateway", "simulated", "--interval", "0.5", *ADMIN, env=env, directory=tmp_path
        ) as loop:
            base = loop.admin_url()
            wait_for("a first tick", lambda: after_a_tick(base, succeeded=True))

            server.stop()
            not_ready = cli.http_get(f"{base}/readyz")
            failing = wait_for(
                "two failed ticks in a row",
                lambda: (job := jobs_endpoint(base))["consecutive_failures"] >= 2 and job,
            )
            assert loop.running(), loop.describe()
            alive = cli.http_get(f"{base}/healthz")

            server.start()
            connect(server.url, {"u-1": "acct_1", "u-2": "acct_2"})
            scheduled = cli.run_cli(
                "schedule",
                "-",
                env=env,
                stdin=json.dumps(cli.settlement("stl-1", {"u-1": 100, "u-2": 200, "u-3": 300})),
            )
            assert scheduled.returncode == 0, scheduled.describe()

            def all_terminal() -> list[tuple[Any, ...]] | None:
                assert loop.running(), loop.describe()
                rows = cli.query(
                    server.url, "SELECT user_id, status FROM payout_transfers ORDER BY user_id"
                )
                done = rows and all(s in ("completed", "failed_terminal") for _, s in rows)
                return rows if done else None

            finished = wait_for("the work scheduled after the outage", all_terminal)
            recovered = wait_for(
                "a successful tick after the outage",
                lambda: (
                    (job := after_a_tick(base, succeeded=True))
                    and job["consecutive_failures"] == 0
                    and job
                ),
            )
            assert loop.running(), loop.describe()
            loop.terminate()
            code = loop.wait()

        jobs = cli.query(
            server.url, "SELECT status, completed_count, failed_count FROM payout_jobs"
        )

    assert code == 0, loop.describe()
    assert not_ready[0] == 503
    assert alive[0] == 200
    assert "StoreUnavailable" in failing["last_run"]["error"]
    assert finished == [("u-1", "completed"), ("u-2", "completed"), ("u-3", "failed_terminal")]
    assert jobs == [("complete", 2, 1)]
    assert recovered["last_run"]["error"] is None
    assert "payout.tick.failed" in loop.stderr
