"""The world of an exactly-once story: one winner, one payout transfer, the
``payout-core`` commands on PostgreSQL, and the fake Stripe behind the real SDK.

:class:`Story` is what ``test_exactly_once_stories.py`` and
``test_cli_operating.py`` tell their stories with; the ``begin`` fixture (in
``conftest.py``) starts one.

How the faults are made:

* a worker killed mid-request: ``payout-core loop --once`` runs while the fake
  Stripe holds its create (:class:`faults.Hold`); the test kills it with
  SIGKILL, then lets Stripe finish the request, which creates the transfer;
* a slow request: the same hold, with the worker left alive, and its lease
  made to end by moving ``lease_expires_at`` back;
* a day's outage: every stored time of the transfer moves back 25 hours and
  the fake Stripe's own clock moves 25 hours on, so it forgets the keys;
* a wait between retries: ``next_attempt_at`` (and ``last_send_at``, where
  the schema has it) moves back instead of sleeping.

The times are moved with plain SQL on the columns the schema has, and every
step goes through the command line, so the same stories run against the code
before the change (whose schema has no ``last_send_at``).
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tests import fake_stripe
from tests.fake_stripe import faults
from tests.integration import cli_helpers as cli
from tests.kit.waiting import wait_for

WINNER = "u-1"
ACCOUNT = "acct_1Winner"
NEW_ACCOUNT = "acct_1WinnerNew"
AMOUNT = 1500
CONTEST = "c-8"
CREATE = ("POST", "/v1/transfers")

# Safe settings (rule 8): the send margin is 20 + 30 s, the lease twice that.
# The timeout outlasts every take-over a test runs while a request is held.
STRIPE_TIMEOUT_SECONDS = 20
LEASE_SECONDS = 100
# Far more ticks than the bound on failed look-ups (state_machine.LOOKUP_FAILURES_LIMIT).
TICKS_FOR_AN_OPERATOR = 8

# The transfer's times that decide what a worker does, as far as the schema has them.
DECIDING_TIMES = ("lease_expires_at", "next_attempt_at", "key_first_sent_at", "last_send_at")


@attrs.define
class Story:
    """One winner, one payout transfer, and the commands and faults of a story."""

    database_url: str
    stripe: fake_stripe.FakeStripeServer
    stripe_time: fake_stripe.ManualTime
    directory: Path
    env: dict[str, str]
    transfer_id: str = ""
    _loops: int = 0

    @classmethod
    def begin(
        cls,
        database_url: str,
        stripe: fake_stripe.FakeStripeServer,
        stripe_time: fake_stripe.ManualTime,
        directory: Path,
        *,
        max_attempts: int = 5,
    ) -> Story:
        """The winner connected at Stripe and in payout-core, and their payout scheduled."""
        env = cli.stripe_env(
            database_url,
            stripe,
            PAYOUT_STRIPE_TIMEOUT_SECONDS=str(STRIPE_TIMEOUT_SECONDS),
            PAYOUT_LEASE_SECONDS=str(LEASE_SECONDS),
            PAYOUT_MAX_ATTEMPTS=str(max_attempts),
        )
        story = cls(database_url, stripe, stripe_time, directory, env)
        stripe.fake.add_account(ACCOUNT)
        story.ok("accounts", "set", WINNER, ACCOUNT)
        settlement = cli.settlement("stl-8", {WINNER: AMOUNT}, contest_id=CONTEST)
        story.ok("schedule", "-", stdin=json.dumps(settlement))
        ((story.transfer_id,),) = cli.query(database_url, "SELECT id::text FROM payout_transfers")
        return story

    @property
    def fake(self) -> fake_stripe.FakeStripe:
        return self.stripe.fake

    def run(self, *args: str, stdin: str | None = None) -> cli.CommandResult:
        return cli.run_cli(*args, env=self.env, stdin=stdin)

    def ok(self, *args: str, stdin: str | None = None) -> cli.CommandResult:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.describe()
        return done

    def tick(self) -> cli.CommandResult:
        """One worker, one tick: ``payout-core loop --once``."""
        return self.run("loop", "--once")

    def loop_directory(self) -> Path:
        self._loops += 1
        directory = self.directory / f"loop-{self._loops}"
        directory.mkdir()
        return directory

    # -- what the database and Stripe say ------------------------------------------------------

    def row(self) -> dict[str, Any]:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as conn:
            found = conn.execute(
                "SELECT * FROM payout_transfers WHERE id = %s", (self.transfer_id,)
            ).fetchone()
        assert found is not None
        return found

    def at_stripe(self) -> list[dict[str, Any]]:
        """Stripe's transfers for this payout transfer: the money that moved."""
        return self.fake.transfers_for(self.transfer_id)

    def describe(self, *results: cli.CommandResult) -> str:
        row = {k: v for k, v in self.row().items() if v is not None}
        return "\n".join([f"transfer: {row}", *(r.describe() for r in results)])

    # -- faults --------------------------------------------------------------------------------

    def move_back(self, by: timedelta, *columns: str) -> None:
        """Move the transfer's stored times back by ``by``: as if that long had passed."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            present = {
                name
                for (name,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'payout_transfers'"
                )
            }
            moved = [c for c in columns if c in present]
            conn.execute(
                sql.SQL("UPDATE payout_transfers SET {} WHERE id = %s").format(
                    sql.SQL(", ").join(
                        sql.SQL("{0} = {0} - %s").format(sql.Identifier(c)) for c in moved
                    )
                ),
                (*[by] * len(moved), self.transfer_id),
            )

    def end_the_lease(self) -> None:
        """The claim's lease ends (its worker died, or is too slow)."""
        self.move_back(timedelta(minutes=10), "lease_expires_at")

    def time_for_the_next_try(self) -> None:
        """The retry's back-off, and the send margin after the last send, have passed."""
        self.move_back(timedelta(hours=1), "next_attempt_at", "last_send_at")

    def a_day_passes(self) -> None:
        """The fleet is down for a day: the stored times move back 25 hours, and
        Stripe's clock 25 hours on, so it forgets the idempotency keys."""
        self.move_back(timedelta(hours=25), *DECIDING_TIMES)
        self.stripe_time.advance(timedelta(hours=25))

    def hold_next_create(self) -> faults.Hold:
        """Stripe holds the next create, its key in flight, until released."""
        hold = faults.Hold(release=threading.Event())
        self.fake.script(hold)
        return hold

    def worker_killed_mid_request(self) -> None:
        """A worker sends the create and is killed while Stripe still works on it;
        then Stripe finishes the request and creates the transfer."""
        hold = self.hold_next_create()
        with cli.start_loop("--once", env=self.env, directory=self.loop_directory()) as worker:
            wait_until_held(hold, worker)
            worker.process.kill()
            worker.wait()
        hold.release.set()
        assert self.fake.wait_idle(), "Stripe never finished the held request"


def wait_until_held(hold: faults.Hold, worker: cli.LoopProcess) -> None:
    def probe() -> bool:
        if not hold.held.is_set() and not worker.running():
            raise AssertionError(f"the worker exited before its create:\n{worker.describe()}")
        return hold.held.is_set()

    wait_for("the create held at Stripe", probe)
