"""payout-core inside a service, on a real PostgreSQL: the front door, sync and
async; the payout enqueued in the service's own transaction (a rollback
leaves none, a commit one that ``payout-core loop`` pays, a crash before the
commit nothing at all); and the README's service examples, run as written."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import payout_core
from payout_adapters import postgres
from tests.integration import cli_helpers as cli

pytestmark = pytest.mark.integration

README = pathlib.Path(__file__).parents[2] / "README.md"

SETTLEMENT: dict[str, Any] = {
    "settlement_id": "contest-42-final",
    "contest_id": "contest-42",
    "currency": "usd",
    "winners": [{"user_id": "u_1", "amount_cents": 1500}, {"user_id": "u_2", "amount_cents": 500}],
}

# The service's own table: a contest is settled in the same transaction as its payout.
CONTESTS = "CREATE TABLE contests (id text PRIMARY KEY, settled boolean NOT NULL DEFAULT false)"


@pytest.fixture
def service_db(database_url: str) -> str:
    """payout-core's schema, the service's table, and the winners' accounts."""
    cli.query(database_url, CONTESTS)
    cli.query(database_url, "INSERT INTO contests (id) VALUES ('contest-42')")
    cli.query(
        database_url,
        "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) "
        "VALUES ('u_1', 'acct_1'), ('u_2', 'acct_2')",
    )
    return database_url


@contextlib.contextmanager
def paying_loop(url: str, directory: pathlib.Path) -> Iterator[cli.LoopProcess]:
    """The workers, as production runs them: ``payout-core loop`` on the simulated gateway."""
    env = cli.cli_env(url)
    with cli.start_loop(
        "--gateway", "simulated", "--interval", "0.2", env=env, directory=directory
    ) as loop:
        yield loop


def settled(url: str) -> bool:
    [(value,)] = cli.query(url, "SELECT settled FROM contests WHERE id = 'contest-42'")
    return bool(value)


def jobs_of(url: str) -> list[tuple[Any, ...]]:
    return cli.query(
        url, "SELECT id FROM payout_jobs WHERE settlement_id = %s", (SETTLEMENT["settlement_id"],)
    )


def test_a_rollback_leaves_no_payout_and_a_commit_one_the_loop_pays(
    service_db: str, tmp_path: pathlib.Path
) -> None:
    with postgres.connect(service_db, poll_seconds=0.1) as payouts:
        with psycopg.connect(service_db) as conn:

            def the_service_fails_before_its_commit() -> None:
                with conn.transaction():
                    conn.execute("UPDATE contests SET settled = true WHERE id = 'contest-42'")
                    payouts.enqueue(conn, SETTLEMENT)
                    raise RuntimeError("the service fails before its commit")

            with pytest.raises(RuntimeError):
                the_service_fails_before_its_commit()
            assert payouts.get_by_settlement("contest-42-final") is None
            assert not settled(service_db)

            with conn.transaction():
                conn.execute("UPDATE contests SET settled = true WHERE id = 'contest-42'")
                payout = payouts.enqueue(conn, SETTLEMENT)
                assert jobs_of(service_db) == []  # not visible before the commit
        assert settled(service_db)
        assert payouts.status(payout.id) is payout_core.JobStatus.PENDING

        with paying_loop(service_db, tmp_path):
            done = payouts.wait(payout.id, timeout=60)

    assert [t.user_id for t in done.paid] == ["u_1", "u_2"]
    assert done == payouts_get(service_db, payout.id)


def payouts_get(url: str, job_id: str) -> payout_core.Payout | None:
    with postgres.connect(url) as payouts:
        return payouts.get(job_id)


def test_a_refused_enqueue_leaves_the_callers_transaction_usable(service_db: str) -> None:
    with postgres.connect(service_db) as payouts, psycopg.connect(service_db) as conn:
        payouts.schedule(SETTLEMENT)
        with conn.transaction():
            conn.execute("UPDATE contests SET settled = true WHERE id = 'contest-42'")
            again = {**SETTLEMENT, "settlement_id": "contest-42-again"}
            with pytest.raises(payout_core.DuplicatePayout, match="u_1"):
                payouts.enqueue(conn, again)  # both winners are paid by the first already
            with pytest.raises(payout_core.InvalidSettlement, match="currency"):
                payouts.enqueue(conn, {**again, "currency": "dollars"})
            conn.execute("SELECT 1")  # still usable: the enqueue's savepoint rolled back
        assert settled(service_db)
        assert payouts.get_by_settlement("contest-42-again") is None
        same = payouts.enqueue(conn, SETTLEMENT)  # idempotent on the settlement id
        assert same == payouts.get_by_settlement("contest-42-final")


CRASHING_SERVICE = """
import os, signal, sys
import psycopg
from payout_adapters import postgres

url, settlement = sys.argv[1], {settlement!r}
with postgres.connect(url) as payouts, psycopg.connect(url) as conn:
    with conn.transaction():
        conn.execute("UPDATE contests SET settled = true WHERE id = 'contest-42'")
        payouts.enqueue(conn, settlement)
        print("enqueued", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # dies between its insert and its commit
"""


def test_a_service_killed_before_its_commit_leaves_nothing(service_db: str) -> None:
    script = CRASHING_SERVICE.format(settlement=SETTLEMENT)
    done = subprocess.run(
        [sys.executable, "-c", script, service_db],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "enqueued\n"
    assert jobs_of(service_db) == []
    assert cli.query(service_db, "SELECT count(*) FROM payout_transfers") == [(0,)]
    assert not settled(service_db)


async def _enqueue_async(url: str, *, commit: bool) -> payout_core.Payout:
    async with (
        postgres.connect_async(url, poll_seconds=0.1) as payouts,
        await psycopg.AsyncConnection.connect(url) as conn,
    ):
        # The connection is not in autocommit: its first statement opens the
        # service's transaction, and the enqueue runs inside it.
        await conn.execute("UPDATE contests SET settled = true WHERE id = 'contest-42'")
        payout = await payouts.enqueue(conn, SETTLEMENT)
        await (conn.commit() if commit else conn.rollback())
        if not commit:
            assert await payouts.get_by_settlement("contest-42-final") is None
        return payout


@pytest.mark.asyncio
async def test_async_rollback_commit_and_payment(service_db: str, tmp_path: pathlib.Path) -> None:
    await _enqueue_async(service_db, commit=False)
    assert not settled(service_db)

    payout = await _enqueue_async(service_db, commit=True)
    assert settled(service_db)
    async with postgres.connect_async(service_db, poll_seconds=0.1) as payouts:
        assert await payouts.status(payout.id) is payout_core.JobStatus.PENDING
        with pytest.raises(payout_core.PayoutTimeout):
            await payouts.wait(payout.id, timeout=0)
        with paying_loop(service_db, tmp_path):
            done = await payouts.wait(payout.id, timeout=60)
        assert [t.user_id for t in done.paid] == ["u_1", "u_2"]
        assert await payouts.get(payout.id) == done
        with pytest.raises(payout_core.UnknownPayout):
            await payouts.status("no-such-job")
        again = await payouts.schedule(SETTLEMENT)
        assert again.id == payout.id


# -- the README's service examples, run as written ----------------------------------------------


def readme_examples() -> dict[str, str]:
    """The README's "A service" python blocks, by their first comment line."""
    section = README.read_text(encoding="utf-8").split("### A service, in production", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0]: block for block in blocks}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_readme_service_examples_settle_and_pay_a_contest(
    kind: str, service_db: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [code] = [c for first, c in readme_examples().items() if f"({kind})" in first]
    monkeypatch.setenv("PAYOUT_DATABASE_URL", service_db)
    printed = io.StringIO()
    with paying_loop(service_db, tmp_path), contextlib.redirect_stdout(printed):
        namespace: dict[str, Any] = {}
        exec(compile(textwrap.dedent(code), str(README), "exec"), namespace)  # noqa: S102
    promised = [
        line.split("#", 1)[1].strip()
        for line in code.splitlines()
        if line.strip().startswith("print(") and "#" in line
    ]
    assert printed.getvalue().splitlines() == promised
    assert settled(service_db)
    assert os.environ["PAYOUT_DATABASE_URL"] == service_db
