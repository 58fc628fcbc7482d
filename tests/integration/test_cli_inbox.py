"""The settlement inbox as another service uses it: rows inserted with plain SQL, in
that service's own transaction, and turned into jobs by ``payout-core loop``.

Each row becomes a job exactly once or is rejected with its reason; a
malformed row never blocks the rows behind it; the same settlement sent twice
is one job.
"""

from __future__ import annotations

import json

from tests.integration import cli_helpers as cli


def send(url: str, settlement_id: str, payload: object) -> int:
    """What another service does: one INSERT, in its own transaction."""
    ((row_id,),) = cli.query(
        url,
        "INSERT INTO payout_settlement_inbox (settlement_id, payload) "
        "VALUES (%s, %s::jsonb) RETURNING id",
        (settlement_id, json.dumps(payload)),
    )
    assert isinstance(row_id, int)
    return row_id


def test_the_loop_turns_each_inbox_row_into_one_job_or_rejects_it_with_its_reason(
    database_url: str,
) -> None:
    env = cli.cli_env(database_url)
    good = cli.settlement("stl-good", {"u-1": 1500, "u-2": 700})
    twice = cli.settlement("stl-twice", {"u-3": 900})
    float_amount = cli.settlement("stl-float", {"u-4": 1})
    # 1500.0 would be the amount 1500 (as from the command line); 1500.5 is none.
    float_amount["winners"] = [{"user_id": "u-4", "amount_cents": 1500.5}]
    changed = cli.settlement("stl-good", {"u-1": 1500, "u-2": 7000})

    rows = {
        # First in line, so that everything else is behind it.
        "malformed": send(database_url, "stl-bad", {"settlement_id": "stl-bad", "winners": "x"}),
        "not an object": send(database_url, "stl-list", ["stl-list"]),
        "good": send(database_url, "stl-good", good),
        "float": send(database_url, "stl-float", float_amount),
        "twice, first": send(database_url, "stl-twice", twice),
        "twice, again": send(database_url, "stl-twice", twice),
        "changed": send(database_url, "stl-good", changed),
        "mislabelled": send(database_url, "stl-other", cli.settlement("stl-named", {"u-9": 5})),
    }

    done = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)

    assert done.returncode == 0, done.describe()
    taken = {
        row_id: (status, job_id, reason, taken_at is not None)
        for row_id, status, job_id, reason, taken_at in cli.query(
            database_url,
            "SELECT id, status, job_id::text, rejected_reason, taken_at "
            "FROM payout_settlement_inbox",
        )
    }
    jobs = dict(cli.query(database_url, "SELECT settlement_id, id::text FROM payout_jobs"))
    assert sorted(jobs) == ["stl-good", "stl-twice"]

    def accepted(name: str, settlement_id: str) -> None:
        assert taken[rows[name]] == ("accepted", jobs[settlement_id], None, True), name

    def rejected(name: str, *reasons: str) -> None:
        status, job_id, reason, was_taken = taken[rows[name]]
        assert (status, job_id, was_taken) == ("rejected", None, True), name
        for expected in reasons:
            assert expected in reason, (name, reason)

    accepted("good", "stl-good")
    accepted("twice, first", "stl-twice")
    accepted("twice, again", "stl-twice")
    rejected(
        "malformed",
        "contest_id: is required",
        "currency: is required",
        "winners: must be a list",
    )
    rejected("not an object", "settlement: must be a JSON object")
    rejected(
        "float",
        "winners[0].amount_cents: must be an integer number of minor units, got float 1500.5",
    )
    rejected("changed", f"already scheduled as job {jobs['stl-good']}", "different contents")
    rejected("mislabelled", "payload says 'stl-named' but the row says 'stl-other'")

    # The accepted settlements' transfers are the first ones, not the changed one's.
    transfers = cli.query(
        database_url, "SELECT user_id, amount_cents FROM payout_transfers ORDER BY user_id"
    )
    assert transfers == [("u-1", 1500), ("u-2", 700), ("u-3", 900)]
    (run,) = cli.query(
        database_url, "SELECT settlements_accepted, settlements_rejected FROM payout_scheduler_runs"
    )
    assert run == (3, 5)

    # Another tick takes nothing again: each row was taken exactly once.
    again = cli.run_cli("loop", "--once", "--gateway", "simulated", env=env)

    assert again.returncode == 0, again.describe()
    assert cli.query(database_url, "SELECT count(*) FROM payout_jobs") == [(2,)]
    still = {
        row_id: (status, job_id, reason, taken_at is not None)
        for row_id, status, job_id, reason, taken_at in cli.query(
            database_url,
            "SELECT id, status, job_id::text, rejected_reason, taken_at "
            "FROM payout_settlement_inbox",
        )
    }
    assert still == taken
    runs = cli.query(
        database_url,
        "SELECT settlements_accepted, settlements_rejected FROM payout_scheduler_runs "
        "ORDER BY started_at",
    )
    assert runs == [(3, 5), (0, 0)]
