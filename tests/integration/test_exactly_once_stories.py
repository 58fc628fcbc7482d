"""The failure stories of issue 8, each told on the real stack: ``payout-core``
commands on PostgreSQL, the real Stripe SDK, the fake Stripe server.

Each test tells one story as an operator would meet it and asserts where the
money went: how many transfers Stripe holds for the payout transfer, and what
``payout_transfers`` says about it. Before the exactly-once rules (DESIGN 3)
each of them ended with a winner paid twice, a paid winner recorded as
``failed_terminal``, a fleet halted for good, or a transfer waiting forever
with nothing naming it.

How the faults are made is told in ``stories.py``, beside :class:`Story`.

Story 5 of the issue (``reconcile``) belongs to a later issue.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fake_stripe import faults
from tests.integration import cli_helpers as cli
from tests.integration.stories import (
    ACCOUNT,
    AMOUNT,
    CREATE,
    NEW_ACCOUNT,
    TICKS_FOR_AN_OPERATOR,
    WINNER,
    Story,
    wait_until_held,
)
from tests.kit.waiting import wait_for


def assert_paid_once(story: Story, *results: cli.CommandResult) -> None:
    """Exactly one Stripe transfer, and the payout transfer completed with its id."""
    at_stripe = story.at_stripe()
    assert len(at_stripe) == 1, f"{len(at_stripe)} transfers at Stripe\n{story.describe(*results)}"
    row = story.row()
    assert (row["status"], row["stripe_transfer_id"], row["failure_code"]) == (
        "completed",
        at_stripe[0]["id"],
        None,
    ), story.describe(*results)
    assert (at_stripe[0]["amount"], at_stripe[0]["destination"]) == (AMOUNT, ACCOUNT)
    assert row["destination_account"] == ACCOUNT


# -- 1. a winner paid twice -------------------------------------------------------------------


def test_story_1_worker_killed_mid_request_then_a_day_down_pays_the_winner_once(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    story.worker_killed_mid_request()
    (created,) = story.at_stripe()
    # The fleet stays down for a day; Stripe forgets the key meanwhile.
    story.a_day_passes()

    took_over = story.tick()

    # Before: the key's first use was never stored, so the take-over sent the
    # forgotten key again and Stripe created a second transfer.
    assert_paid_once(story, took_over)
    assert story.row()["stripe_transfer_id"] == created["id"]
    assert took_over.returncode == 0, took_over.describe()


# -- 2. paid winners recorded as failed_terminal ----------------------------------------------


def test_story_2a_winner_reconnects_between_crash_and_take_over_is_paid_on_the_pinned_account(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    story.worker_killed_mid_request()
    (created,) = story.at_stripe()
    # The winner connects another account before anyone takes the transfer over.
    story.fake.add_account(NEW_ACCOUNT)
    story.ok("accounts", "set", WINNER, NEW_ACCOUNT)
    story.end_the_lease()

    took_over = story.tick()

    # Before: the same key went out to the new account, Stripe answered
    # idempotency_error, the look-up by the new account found nothing, and the
    # paid winner was recorded failed_terminal.
    row = story.row()
    assert row["status"] != "failed_terminal", story.describe(took_over)
    assert_paid_once(story, took_over)
    assert story.row()["stripe_transfer_id"] == created["id"]
    assert not [t for t in story.fake.transfers() if t["destination"] == NEW_ACCOUNT]


def test_story_2b_slow_last_send_then_a_take_over_never_fails_what_stripe_is_creating(
    begin: Callable[..., Story],
) -> None:
    story = begin(max_attempts=1)
    hold = story.hold_next_create()
    with cli.start_loop("--once", env=story.env, directory=story.loop_directory()) as slow:
        wait_until_held(hold, slow)
        # The slow worker's only (so last) attempt is at Stripe when its lease ends.
        story.end_the_lease()

        took_over = story.tick()

        # Before: the take-over looked the transfer up, found nothing yet, and
        # failed it (max_attempts_exceeded) while Stripe was creating it.
        assert story.row()["status"] != "failed_terminal", story.describe(took_over)
        assert story.at_stripe() == []
        hold.release.set()  # Stripe finishes the slow request: the transfer exists
        slow.wait()
    assert story.fake.wait_idle()
    assert len(story.at_stripe()) == 1
    assert story.row()["status"] != "failed_terminal", story.describe(took_over)
    story.time_for_the_next_try()

    resolved = story.tick()

    assert_paid_once(story, took_over, resolved)


def test_story_2c_409_on_the_last_attempt_waits_for_the_first_request_and_never_fails(
    begin: Callable[..., Story],
) -> None:
    story = begin(max_attempts=3)
    # Attempt 1: Stripe saves a 500 under the first key (nothing created).
    story.fake.script(faults.server_error())
    first = story.tick()
    assert story.row()["status"] == "retryable", story.describe(first)
    story.time_for_the_next_try()
    # Attempt 2: the look-up finds nothing, the next key goes out, and Stripe is
    # slow with it; the worker's lease ends meanwhile.
    hold = story.hold_next_create()
    with cli.start_loop("--once", env=story.env, directory=story.loop_directory()) as slow:
        wait_until_held(hold, slow)
        story.end_the_lease()

        took_over = story.tick()

        # The take-over sent the key in flight and met a 409 idempotency_key_in_use.
        conflicts = [r for r in story.fake.requests(*CREATE) if r.status == 409]
        assert len(conflicts) >= 1, story.describe(took_over)
        # Before: on the last attempt that 409 counted as transient, and the
        # transfer failed (max_attempts_exceeded) while Stripe was creating it.
        assert story.row()["status"] != "failed_terminal", story.describe(took_over)
        assert story.at_stripe() == []
        hold.release.set()
        slow.wait()
    assert story.fake.wait_idle()
    assert len(story.at_stripe()) == 1
    assert story.row()["status"] != "failed_terminal", story.describe(took_over)
    story.time_for_the_next_try()

    resolved = story.tick()

    assert_paid_once(story, first, took_over, resolved)
    assert conflicts[0].idempotency_key == story.row()["idempotency_key"]


# -- 3. the fleet halted for good after balance_insufficient -----------------------------------


def test_story_3_after_balance_insufficient_and_a_top_up_the_next_tick_pays(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    story.fake.set_balance(AMOUNT - 500)
    for _ in range(2):  # the balance stays short for two ticks: the fleet halts each time
        halted = story.tick()
        assert halted.returncode != 0, halted.describe()
        assert "balance_insufficient" in halted.output, halted.describe()
        assert story.row()["status"] in ("pending", "retryable"), story.describe(halted)
    story.fake.set_balance(100_000)  # the platform tops up

    paid = story.tick()

    # Before: every tick resent the same key, Stripe replayed the refusal it had
    # saved under it, and the fleet halted again: nobody was paid.
    assert_paid_once(story, paid)
    assert paid.returncode == 0, paid.describe()
    last_create = story.fake.requests(*CREATE)[-1]
    assert (last_create.status, last_create.replayed) == (200, False)
    assert story.row()["attempt_count"] == 1  # the platform's refusals spent none of the winner's


# -- 4. a transfer whose look-ups fail for good waits forever, unnamed ----------------------------


def test_story_4_a_transfer_whose_look_ups_keep_failing_is_named_as_needing_an_operator(
    begin: Callable[..., Story],
) -> None:
    story = begin()
    # A saved 500: the key can only replay it, so only a look-up can decide...
    story.fake.script(faults.server_error())
    first = story.tick()
    assert story.row()["status"] == "retryable", story.describe(first)
    # ...and the destination was deleted at Stripe: every list filtered by it is a 400.
    story.fake.delete_account(ACCOUNT)
    ticks = []
    for _ in range(TICKS_FOR_AN_OPERATOR):
        story.time_for_the_next_try()
        ticks.append(story.tick())
        if story.row().get("needs_operator"):
            break
    looked_up = story.fake.requests("GET", "/v1/transfers")
    assert looked_up, story.describe(*ticks)
    assert {r.status for r in looked_up} == {400}

    status = story.ok("status", "--json").json()

    # Before: it was retried for ever, and nothing named it.
    assert status.get("needs_operator") == 1, story.describe(*ticks)
    (waiting,) = status["needs_operator_transfers"]
    assert waiting["id"] == story.transfer_id
    assert "look-up" in waiting["needs_operator"]
    row = story.row()
    assert row["status"] in ("pending", "retryable")
    assert row["needs_operator"] == waiting["needs_operator"]
    assert len(ticks) < TICKS_FOR_AN_OPERATOR
    # Its job stays open, nobody was paid, and no worker touches it any more.
    assert cli.query(story.database_url, "SELECT status FROM payout_jobs") == [("processing",)]
    assert story.at_stripe() == []
    story.time_for_the_next_try()
    story.ok("loop", "--once")
    assert len(story.fake.requests("GET", "/v1/transfers")) == len(looked_up)
    assert len(story.fake.requests(*CREATE)) == 1
    # /metrics of the running loop names it too.
    metrics_env = {**story.env, "PAYOUT_ADMIN_ADDR": "127.0.0.1:0"}
    with cli.start_loop(
        "--interval", "300", env=metrics_env, directory=story.loop_directory()
    ) as loop:
        url = loop.admin_url()

        def observed() -> str | None:
            body = cli.http_get(f"{url}/metrics")[2]
            return body if 'payout_transfers{status="' in body else None

        exposition = wait_for("the loop's queue gauges", observed)
        loop.terminate()
        assert loop.wait() == 0, loop.describe()
    assert "payout_transfers_needs_operator 1.0" in exposition.splitlines()
