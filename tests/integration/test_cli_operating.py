"""Operating the money from the command line (DESIGN 7), against the fake Stripe
through the real SDK: ``reconcile`` both ways, ``transfers resolve`` and
``transfers reissue``, each action with exactly one audit row the database
refuses to change.

The findings are planted at the fake Stripe the way they happen for real: a
second transfer made by hand for a paid winner, a failed winner paid in the
dashboard, an amount that differs from the record, a reversal.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from tests import fake_stripe
from tests.fake_stripe import faults
from tests.integration import cli_helpers as cli
from tests.integration.stories import (
    ACCOUNT,
    AMOUNT,
    CONTEST,
    TICKS_FOR_AN_OPERATOR,
    Story,
)

WHO = ("--actor", "ops-1", "--reason", "ticket 42")


def audit_rows(database_url: str) -> list[tuple[object, ...]]:
    return cli.query(
        database_url,
        "SELECT action, actor, reason, transfer_id::text FROM payout_operator_actions ORDER BY id",
    )


def assert_audit_is_append_only(database_url: str) -> None:
    for statement in (
        "UPDATE payout_operator_actions SET reason = 'nothing happened'",
        "DELETE FROM payout_operator_actions",
    ):
        with pytest.raises(psycopg.errors.RestrictViolation):
            cli.query(database_url, statement)


# -- reconcile ---------------------------------------------------------------------------


def user_transfer(database_url: str, user_id: str) -> tuple[str, str | None]:
    [(transfer_id, stripe_id)] = cli.query(
        database_url,
        "SELECT id::text, stripe_transfer_id FROM payout_transfers WHERE user_id = %s",
        (user_id,),
    )
    return transfer_id, stripe_id


def test_reconcile_finds_what_was_planted_at_stripe_and_passes_a_clean_history(
    database_url: str,
) -> None:
    fake = fake_stripe.FakeStripe()
    with fake_stripe.running(fake) as server:
        env = cli.stripe_env(database_url, server)
        winners = {"u-1": 1000, "u-2": 2000, "u-3": 3000, "u-4": 4000}
        for user in ("u-1", "u-2", "u-3"):  # u-4 connected no account: failed_terminal
            account = f"acct_1{user.replace('-', '')}"
            fake.add_account(account)
            assert cli.run_cli("accounts", "set", user, account, env=env).returncode == 0
        stdin = json.dumps(cli.settlement("stl-r", winners, contest_id="c-r"))
        assert cli.run_cli("schedule", "-", env=env, stdin=stdin).returncode == 0
        assert cli.run_cli("loop", "--once", env=env).returncode == 0

        clean = cli.run_cli("reconcile", env=env)

        assert clean.returncode == 0, clean.describe()
        assert "1 job(s) and 4 transfer(s) checked; 3 Stripe transfer(s) listed" in clean.output
        assert "0 finding(s)" in clean.output

        paid_1, tr_1 = user_transfer(database_url, "u-1")
        paid_2, tr_2 = user_transfer(database_url, "u-2")
        paid_3, tr_3 = user_transfer(database_url, "u-3")
        failed_4, _ = user_transfer(database_url, "u-4")
        assert tr_1
        assert tr_2
        assert tr_3
        group = "contest:c-r"
        duplicate = fake.seed_transfer(
            amount=1000,
            destination="acct_1u1",
            transfer_group=group,
            metadata={"payout_transfer_id": paid_1},
        )
        fake.add_account("acct_1u4")
        dashboard = fake.seed_transfer(
            amount=4000,
            destination="acct_1u4",
            transfer_group=group,
            metadata={"payout_transfer_id": failed_4},
        )
        fake.set_transfer_amount(tr_2, 2200)
        fake.reverse_transfer(tr_3, 500)

        found = cli.run_cli("reconcile", env=env)
        as_json = cli.run_cli("reconcile", "--json", env=env)

    assert found.returncode == 1, found.describe()
    lines = [line for line in found.output.splitlines() if line.startswith("FINDING ")]
    assert len(lines) == 4, found.describe()
    assert any(
        f"paid_twice: transfer {paid_1}" in line and duplicate["id"] in line for line in lines
    )
    assert any(
        f"failed_but_paid: transfer {failed_4}" in line and dashboard["id"] in line
        for line in lines
    )
    assert any(f"mismatch: transfer {paid_2}" in line and "amount 2200" in line for line in lines)
    assert any(f"reversed: transfer {paid_3}" in line and "500 of 3000" in line for line in lines)
    assert server.api_key not in found.output
    assert as_json.returncode == 1
    report = as_json.json()
    assert report["ok"] is False
    assert sorted((f["kind"], f["transfer_id"]) for f in report["findings"]) == sorted(
        [
            ("paid_twice", paid_1),
            ("failed_but_paid", failed_4),
            ("mismatch", paid_2),
            ("reversed", paid_3),
        ]
    )


def test_reconcile_sees_a_winner_paid_twice_and_a_failed_winner_stripe_paid(
    database_url: str,
) -> None:
    """The issue's story: reconcile fetched only the completed transfers by their
    stored ids, so neither was visible, and it exited 0."""
    fake = fake_stripe.FakeStripe()
    with fake_stripe.running(fake) as server:
        env = cli.stripe_env(database_url, server)
        fake.add_account("acct_1u1")
        assert cli.run_cli("accounts", "set", "u-1", "acct_1u1", env=env).returncode == 0
        stdin = json.dumps(cli.settlement("stl-s", {"u-1": 1000, "u-2": 2000}, contest_id="c-s"))
        assert cli.run_cli("schedule", "-", env=env, stdin=stdin).returncode == 0
        assert cli.run_cli("loop", "--once", env=env).returncode == 0
        paid, _ = user_transfer(database_url, "u-1")
        failed, _ = user_transfer(database_url, "u-2")
        for payout_transfer_id in (paid, failed):
            fake.seed_transfer(
                amount=1000,
                destination="acct_1u1",
                transfer_group="contest:c-s",
                metadata={"payout_transfer_id": payout_transfer_id},
            )

        found = cli.run_cli("reconcile", env=env)

    assert found.returncode == 1, found.describe()
    assert f"FINDING paid_twice: transfer {paid}" in found.stdout
    assert f"FINDING failed_but_paid: transfer {failed}" in found.stdout


def test_reconcile_since_a_time_and_a_bad_time_is_bad_input(database_url: str) -> None:
    fake = fake_stripe.FakeStripe(accept_any_account=True)
    with fake_stripe.running(fake) as server:
        env = cli.stripe_env(database_url, server)
        stray = fake.seed_transfer(
            amount=50, destination="acct_1x", transfer_group="contest:no-such-contest"
        )

        by_contest = cli.run_cli("reconcile", env=env)
        since = cli.run_cli("reconcile", "--since", "2000-01-01T00:00:00+00:00", env=env)
        for bad in ("yesterday", "2026-11-01T00:00:00"):
            refused = cli.run_cli("reconcile", "--since", bad, env=env)
            assert refused.returncode == 2, refused.describe()
            assert "--since" in refused.output

    assert by_contest.returncode == 0, by_contest.describe()  # no contest of ours has it
    assert since.returncode == 1, since.describe()
    assert f"unknown_at_stripe: stripe {stray['id']}" in since.output


# -- transfers resolve ----------------------------------------------------------------------


def needing_an_operator_with_a_transfer_at_stripe(story: Story) -> str:
    """Stripe created the transfer but answered a saved 500; then the winner's
    account was deleted, so every look-up by it fails: an operator must decide.
    Returns the id of the transfer Stripe holds."""
    story.fake.script(faults.server_error(create=True))
    story.tick()
    story.fake.delete_account(ACCOUNT)
    for _ in range(TICKS_FOR_AN_OPERATOR):
        story.time_for_the_next_try()
        story.tick()
        if story.row().get("needs_operator"):
            break
    assert story.row()["needs_operator"], story.describe()
    [held] = story.at_stripe()
    return str(held["id"])


def test_resolve_refuses_to_contradict_stripe_and_closes_with_what_stripe_holds(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    held = needing_an_operator_with_a_transfer_at_stripe(story)
    story.fake.add_account("acct_1Other")
    other = story.fake.seed_transfer(
        amount=AMOUNT,
        destination="acct_1Other",
        transfer_group="contest:another",
        metadata={"payout_transfer_id": "someone-else"},
    )
    before = story.row()

    refusals = [
        (("--absent",), f"Stripe holds {held}"),
        (("--found", "tr_1NoSuchTransfer"), "Stripe holds no transfer tr_1NoSuchTransfer"),
        (("--found", other["id"]), "metadata.payout_transfer_id is 'someone-else'"),
        (("--found", held, "--absent"), "exactly one of --found"),
        (("--found", "po_123"), "not a Stripe transfer id"),
    ]
    for flags, named in refusals:
        refused = story.run("transfers", "resolve", story.transfer_id, *flags, *WHO)
        assert refused.returncode == 2, refused.describe()
        assert named in refused.output, refused.describe()
    no_actor = story.run("transfers", "resolve", story.transfer_id, "--found", held)
    assert no_actor.returncode == 2
    assert story.row() == before
    assert audit_rows(story.database_url) == []

    resolved = story.run("transfers", "resolve", story.transfer_id, "--found", held, *WHO)

    assert resolved.returncode == 0, resolved.describe()
    row = story.row()
    assert (row["status"], row["stripe_transfer_id"], row["needs_operator"]) == (
        "completed",
        held,
        None,
    )
    assert audit_rows(story.database_url) == [
        ("resolve_found", "ops-1", "ticket 42", story.transfer_id)
    ]
    assert_audit_is_append_only(story.database_url)
    assert cli.query(story.database_url, "SELECT status FROM payout_jobs") == [("complete",)]
    again = story.run("transfers", "resolve", story.transfer_id, "--found", held, *WHO)
    assert again.returncode == 2
    assert "needs no operator" in again.output
    reconciled = story.run("reconcile")
    assert reconciled.returncode == 0, reconciled.describe()
    shown = story.ok("status", "--json").json()
    assert shown["operator_actions"][0]["action"] == "resolve_found"


def test_resolve_absent_fails_a_transfer_stripe_never_made_and_a_reissue_then_pays_it(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    story.fake.script(faults.server_error())  # saved, and nothing created
    story.tick()
    story.fake.delete_account(ACCOUNT)
    for _ in range(TICKS_FOR_AN_OPERATOR):
        story.time_for_the_next_try()
        story.tick()
        if story.row().get("needs_operator"):
            break
    assert story.at_stripe() == []

    resolved = story.run("transfers", "resolve", story.transfer_id, "--absent", *WHO)

    assert resolved.returncode == 0, resolved.describe()
    assert (story.row()["status"], story.row()["failure_code"]) == (
        "failed_terminal",
        "resolved_absent",
    )
    # The winner connects a new account; the operator pays them again.
    story.fake.add_account("acct_1Fresh")
    story.ok("accounts", "set", "u-1", "acct_1Fresh")
    reissued = story.ok("transfers", "reissue", story.transfer_id, *WHO)
    new_id = reissued.stdout.strip()
    story.ok("loop", "--once")

    assert story.at_stripe() == []
    [paid] = story.fake.transfers_for(new_id)
    assert (paid["destination"], paid["amount"]) == ("acct_1Fresh", AMOUNT)
    assert [a[0] for a in audit_rows(story.database_url)] == ["resolve_absent", "reissue"]
    assert story.run("reconcile").returncode == 0


# -- transfers reissue -------------------------------------------------------------------------


def test_a_reissue_pays_a_winner_who_first_failed_for_want_of_a_connected_account(
    database_url: str,
) -> None:
    fake = fake_stripe.FakeStripe()
    with fake_stripe.running(fake) as server:
        env = cli.stripe_env(database_url, server)
        stdin = json.dumps(cli.settlement("stl-1", {"u-1": 1500}, contest_id=CONTEST))
        assert cli.run_cli("schedule", "-", env=env, stdin=stdin).returncode == 0
        assert cli.run_cli("loop", "--once", env=env).returncode == 0
        [(failed_id, status, code)] = cli.query(
            database_url, "SELECT id::text, status, failure_code FROM payout_transfers"
        )
        assert (status, code) == ("failed_terminal", "stripe_account_not_connected")
        fake.add_account("acct_1Late")
        assert cli.run_cli("accounts", "set", "u-1", "acct_1Late", env=env).returncode == 0

        reissued = cli.run_cli("transfers", "reissue", failed_id, *WHO, env=env)
        assert reissued.returncode == 0, reissued.describe()
        new_id = reissued.stdout.strip()
        assert cli.query(database_url, "SELECT status FROM payout_jobs") == [("processing",)]
        twice = cli.run_cli("transfers", "reissue", failed_id, *WHO, env=env)
        paid = cli.run_cli("loop", "--once", env=env)
        shown = cli.run_cli("transfers", "show", new_id, "--json", env=env)
        reconciled = cli.run_cli("reconcile", env=env)

    assert twice.returncode == 2, twice.describe()
    assert "reissued already" in twice.output
    assert paid.returncode == 0, paid.describe()
    assert fake.transfers_for(failed_id) == []
    [at_stripe] = fake.transfers_for(new_id)
    assert (at_stripe["amount"], at_stripe["destination"]) == (1500, "acct_1Late")
    assert shown.json()["transfer"]["reissue_of"] == failed_id
    assert cli.query(
        database_url,
        "SELECT status, completed_count, failed_count, total_transfers FROM payout_jobs",
    ) == [("complete", 1, 1, 2)]
    story = cli.query(
        database_url,
        "SELECT transfer_id::text, entry_type FROM payout_ledger ORDER BY created_at, id",
    )
    assert story == [(failed_id, "payout_failed"), (new_id, "payout_completed")]
    assert audit_rows(database_url) == [("reissue", "ops-1", "ticket 42", failed_id)]
    assert_audit_is_append_only(database_url)
    assert reconciled.returncode == 0, reconciled.describe()
