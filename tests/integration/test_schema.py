"""The database itself refuses what must never happen, whoever writes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import psycopg.errors
import pytest

from payout_adapters.postgres import queries as q
from payout_core import validation

Conn = psycopg.Connection[tuple[Any, ...]]

JOB = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_JOB = uuid.UUID("00000000-0000-4000-8000-000000000002")
TRANSFER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
FINGERPRINT = "0" * 64
# One live or completed transfer per winner per contest; failed ones do not count.
LIVE_WINNER = "payout_transfers_contest_user_live_idx"


def insert_job(
    conn: Conn, job_id: uuid.UUID = JOB, settlement_id: str = "s-1", contest_id: str = "c-1"
) -> None:
    conn.execute(
        "INSERT INTO payout_jobs (id, settlement_id, contest_id, currency, total_transfers, "
        "total_amount_cents, settlement_fingerprint) VALUES (%s, %s, %s, 'usd', 1, 1500, %s)",
        (job_id, settlement_id, contest_id, FINGERPRINT),
    )


def insert_transfer(
    conn: Conn,
    transfer_id: uuid.UUID = TRANSFER,
    job_id: uuid.UUID = JOB,
    settlement_id: str = "s-1",
    contest_id: str = "c-1",
    **columns: object,
) -> None:
    values: dict[str, object] = {
        "id": transfer_id,
        "job_id": job_id,
        "settlement_id": settlement_id,
        "contest_id": contest_id,
        "user_id": "u-1",
        "amount_cents": 1500,
        "currency": "usd",
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    conn.execute(
        f"INSERT INTO payout_transfers ({names}) VALUES ({marks})",
        tuple(values.values()),
    )


def ledger_row(**changes: object) -> dict[str, object]:
    return {
        "idempotency_key": f"ledger:payout:{TRANSFER}:1",
        "entry_type": "payout_completed",
        "direction": "debit",
        "amount_cents": 1500,
        "currency": "usd",
        "transfer_id": TRANSFER,
        "job_id": JOB,
        "contest_id": "c-1",
        "user_id": "u-1",
        "attempt_number": 1,
        "stripe_transfer_id": "tr_1",
        "failure_code": None,
        "created_at": "2026-01-01T00:00:00Z",
        **changes,
    }


@pytest.fixture
def conn(admin: Conn) -> Conn:
    """A job with one pending transfer, written with plain SQL as another program would."""
    insert_job(admin)
    insert_transfer(admin)
    return admin


def refused(
    conn: Conn, statement: str, params: tuple[object, ...] | dict[str, object] = ()
) -> psycopg.errors.IntegrityError:
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        conn.execute(statement, params)
    return caught.value


def constraint_of(error: psycopg.errors.IntegrityError) -> str | None:
    return error.diag.constraint_name


def test_a_settlement_makes_one_job(conn: Conn) -> None:
    error = refused(
        conn,
        "INSERT INTO payout_jobs (id, settlement_id, contest_id, currency, total_transfers, "
        "total_amount_cents, settlement_fingerprint) VALUES (%s, 's-1', 'c-2', 'usd', 1, 1, %s)",
        (OTHER_JOB, FINGERPRINT),
    )
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert constraint_of(error) == "payout_jobs_settlement_id_key"


def test_a_winner_is_paid_once_per_contest_whichever_settlement_asks(conn: Conn) -> None:
    insert_job(conn, OTHER_JOB, settlement_id="s-2", contest_id="c-1")
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_transfer(conn, uuid.uuid4(), OTHER_JOB, settlement_id="s-2")
    assert constraint_of(caught.value) == LIVE_WINNER


def test_a_winner_may_have_any_number_of_failed_transfers_beside_one_live(conn: Conn) -> None:
    conn.execute("UPDATE payout_transfers SET status = 'failed_terminal', failure_code = 'x'")
    insert_job(conn, OTHER_JOB, settlement_id="s-2", contest_id="c-1")
    insert_transfer(
        conn,
        uuid.uuid4(),
        OTHER_JOB,
        settlement_id="s-2",
        status="failed_terminal",
        failure_code="x",
    )
    insert_transfer(conn, uuid.uuid4(), OTHER_JOB, settlement_id="s-2")  # live

    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_transfer(conn, uuid.uuid4(), OTHER_JOB, settlement_id="s-2")
    assert constraint_of(caught.value) == LIVE_WINNER
    with pytest.raises(psycopg.errors.UniqueViolation) as revived:
        # Terminal is terminal; were a failed one brought back, the index would still hold.
        conn.execute("UPDATE payout_transfers SET status = 'pending' WHERE id = %s", (TRANSFER,))
    assert constraint_of(revived.value) == LIVE_WINNER
    count = conn.execute("SELECT count(*) FROM payout_transfers").fetchone()
    assert count == (3,)


def test_a_failed_transfer_is_reissued_at_most_once_and_never_by_itself(conn: Conn) -> None:
    conn.execute("UPDATE payout_transfers SET status = 'failed_terminal', failure_code = 'x'")
    reissue = uuid.uuid4()
    insert_transfer(conn, reissue, reissue_of=TRANSFER, status="failed_terminal", failure_code="x")

    with pytest.raises(psycopg.errors.UniqueViolation) as twice:
        insert_transfer(conn, uuid.uuid4(), reissue_of=TRANSFER)
    with pytest.raises(psycopg.errors.CheckViolation) as itself:
        conn.execute("UPDATE payout_transfers SET reissue_of = id WHERE id = %s", (reissue,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as nothing:
        insert_transfer(conn, uuid.uuid4(), reissue_of=uuid.uuid4())

    assert constraint_of(twice.value) == "payout_transfers_reissue_of_key"
    assert constraint_of(itself.value) == "payout_transfers_reissue_of_check"
    assert constraint_of(nothing.value) == "payout_transfers_reissue_of_fkey"


def test_a_transfer_belongs_to_its_jobs_contest(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        insert_transfer(conn, uuid.uuid4(), contest_id="c-other")


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("amount_cents = 0", "payout_transfers_amount_cents_check"),
        ("amount_cents = -1500", "payout_transfers_amount_cents_check"),
        (
            f"amount_cents = {validation.MAX_AMOUNT_CENTS + 1}",
            "payout_transfers_amount_cents_check",
        ),
        ("status = 'paid'", "payout_transfers_status_check"),
        ("stripe_transfer_id = 'tr_1'", "payout_transfers_stripe_transfer_id_check"),
        ("status = 'completed'", "payout_transfers_stripe_transfer_id_check"),
        ("attempt_count = 6", "payout_transfers_attempts_check"),
        ("attempt_count = -1", "payout_transfers_attempts_check"),
        ("max_attempts = 0", "payout_transfers_attempts_check"),
        ("status = 'processing'", "payout_transfers_claim_check"),
        ("status = 'failed_terminal'", "payout_transfers_failure_code_check"),
        ("destination_account = 'ba_123'", "payout_transfers_destination_account_check"),
        ("user_id = ''", "payout_transfers_user_id_check"),
    ],
)
def test_a_transfer_refuses_an_impossible_state(
    conn: Conn, assignment: str, constraint: str
) -> None:
    error = refused(conn, f"UPDATE payout_transfers SET {assignment}")
    assert isinstance(error, psycopg.errors.CheckViolation)
    assert constraint_of(error) == constraint


def test_a_completed_transfer_with_its_stripe_id_is_accepted(conn: Conn) -> None:
    conn.execute("UPDATE payout_transfers SET status = 'completed', stripe_transfer_id = 'tr_1'")


@pytest.mark.parametrize("currency", ["USD", "us", "usdx", "", "€ur"])
def test_currency_is_three_lowercase_letters(admin: Conn, currency: str) -> None:
    error = refused(
        admin,
        "INSERT INTO payout_jobs (id, settlement_id, contest_id, currency, total_transfers, "
        "total_amount_cents, settlement_fingerprint) VALUES (%s, 's-9', 'c-9', %s, 1, 1, %s)",
        (OTHER_JOB, currency, FINGERPRINT),
    )
    assert constraint_of(error) == "payout_jobs_currency_check"


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("status = 'done'", "payout_jobs_status_check"),
        ("status = 'complete'", "payout_jobs_completed_at_check"),
        ("completed_count = 2", "payout_jobs_counts_check"),
        ("total_amount_cents = 0", "payout_jobs_totals_check"),
        ("settlement_id = ''", "payout_jobs_settlement_id_check"),
    ],
)
def test_a_job_refuses_an_impossible_state(conn: Conn, assignment: str, constraint: str) -> None:
    error = refused(conn, f"UPDATE payout_jobs SET {assignment}")
    assert constraint_of(error) == constraint


def insert_ledger(conn: Conn, row: dict[str, object]) -> None:
    conn.execute(
        "INSERT INTO payout_ledger ("
        + ", ".join(row)
        + ") VALUES ("
        + ", ".join(f"%({k})s" for k in row)
        + ")",
        row,
    )


def test_a_ledger_key_is_booked_once(conn: Conn) -> None:
    insert_ledger(conn, ledger_row(entry_type="payout_attempt_failed", direction="memo"))
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_ledger(conn, ledger_row(entry_type="payout_attempt_failed", direction="memo"))
    assert constraint_of(caught.value) == "payout_ledger_idempotency_key_key"


def test_a_transfer_is_booked_as_paid_once(conn: Conn) -> None:
    insert_ledger(conn, ledger_row())
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_ledger(conn, ledger_row(idempotency_key=f"ledger:payout:{TRANSFER}:2"))
    assert constraint_of(caught.value) == "payout_ledger_one_completion_idx"


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"direction": "memo"}, "payout_ledger_direction_check"),
        ({"entry_type": "payout_failed"}, "payout_ledger_direction_check"),
        ({"amount_cents": 0}, "payout_ledger_amount_cents_check"),
        ({"stripe_transfer_id": None}, "payout_ledger_stripe_transfer_id_check"),
        ({"attempt_number": 0}, "payout_ledger_attempt_number_check"),
        ({"entry_type": "refund", "direction": "memo"}, "payout_ledger_entry_type_check"),
    ],
)
def test_a_ledger_row_refuses_an_impossible_entry(
    conn: Conn, changes: dict[str, object], constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_ledger(conn, ledger_row(**changes))
    assert constraint_of(caught.value) == constraint


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payout_ledger SET amount_cents = 1",
        "UPDATE payout_ledger SET amount_cents = 1 WHERE false",
        "DELETE FROM payout_ledger",
        "TRUNCATE payout_ledger",
        "TRUNCATE payout_ledger CASCADE",
    ],
)
def test_the_ledger_is_append_only(conn: Conn, statement: str) -> None:
    insert_ledger(conn, ledger_row())

    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        conn.execute(statement)

    count = conn.execute("SELECT count(*) FROM payout_ledger").fetchone()
    assert count == (1,)


def insert_action(conn: Conn, action: str, transfer_id: uuid.UUID | None) -> None:
    conn.execute(
        "INSERT INTO payout_operator_actions (action, actor, reason, transfer_id) "
        "VALUES (%s, 'ops-1', 'why', %s)",
        (action, transfer_id),
    )


def test_operator_actions_are_those_payout_core_knows(conn: Conn) -> None:
    for action in ("resolve_found", "resolve_absent", "reissue"):
        insert_action(conn, action, TRANSFER)
    for action in ("pause", "resume"):
        insert_action(conn, action, None)

    with pytest.raises(psycopg.errors.CheckViolation) as unknown:
        insert_action(conn, "refund", TRANSFER)
    assert constraint_of(unknown.value) == "payout_operator_actions_action_check"


@pytest.mark.parametrize(
    ("action", "on_transfer"),
    [("reissue", False), ("resolve_found", False), ("resolve_absent", False), ("pause", True)],
)
def test_an_action_names_a_transfer_unless_it_is_the_fleets(
    conn: Conn, action: str, on_transfer: bool
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_action(conn, action, TRANSFER if on_transfer else None)
    assert constraint_of(caught.value) == "payout_operator_actions_transfer_check"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payout_operator_actions SET reason = 'nothing happened'",
        "UPDATE payout_operator_actions SET reason = 'x' WHERE false",
        "DELETE FROM payout_operator_actions",
        "TRUNCATE payout_operator_actions",
    ],
)
def test_operator_actions_are_append_only(conn: Conn, statement: str) -> None:
    insert_action(conn, "reissue", TRANSFER)

    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        conn.execute(statement)

    count = conn.execute("SELECT count(*) FROM payout_operator_actions").fetchone()
    assert count == (1,)


def test_a_connected_account_must_be_an_acct_id(admin: Conn) -> None:
    error = refused(
        admin,
        "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES ('u-1', 'tr_1')",
    )
    assert constraint_of(error) == "user_stripe_accounts_stripe_account_id_check"


def test_an_inbox_row_is_taken_with_a_verdict(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES ('s-1', %s)",
        (json.dumps({"settlement_id": "s-1"}),),
    )
    accepted_without_job = refused(
        conn, "UPDATE payout_settlement_inbox SET status = 'accepted', taken_at = now()"
    )
    rejected_without_reason = refused(
        conn, "UPDATE payout_settlement_inbox SET status = 'rejected', taken_at = now()"
    )

    assert constraint_of(accepted_without_job) == "payout_settlement_inbox_accepted_check"
    assert constraint_of(rejected_without_reason) == "payout_settlement_inbox_rejected_check"


def plan_nodes(plan: object) -> list[dict[str, object]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan."""
    found: list[dict[str, object]] = []
    todo = [p["Plan"] for p in plan] if isinstance(plan, list) else []
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(node.get("Plans", []))
    return found


def test_the_claim_stays_an_index_scan_however_many_transfers_are_done(admin: Conn) -> None:
    admin.execute(
        "INSERT INTO payout_jobs (id, settlement_id, contest_id, currency, total_transfers, "
        "total_amount_cents, settlement_fingerprint) VALUES (%s, 's-big', 'c-big', 'usd', "
        "20100, 2010000, %s)",
        (JOB, FINGERPRINT),
    )
    admin.execute(
        """
        INSERT INTO payout_transfers (id, job_id, settlement_id, contest_id, user_id,
            amount_cents, currency, status, stripe_transfer_id, attempt_count)
        SELECT gen_random_uuid(), %(job)s, 's-big', 'c-big', 'u-' || n, 100, 'usd',
               CASE WHEN n <= 20000 THEN 'completed' ELSE 'pending' END,
               CASE WHEN n <= 20000 THEN 'tr_' || n END,
               CASE WHEN n <= 20000 THEN 1 ELSE 0 END
        FROM generate_series(1, 20100) AS n
        """,
        {"job": JOB},
    )
    admin.execute("ANALYZE payout_transfers")
    params = {
        "now": "2100-01-01T00:00:00Z",
        "limit": 100,
        "token": "t",
        "lease": "10 minutes",
        "abandoned_limit": 3,
    }

    with admin.transaction(force_rollback=True):
        plan = admin.execute("EXPLAIN (FORMAT JSON) " + q.CLAIM_DUE, params).fetchone()

    assert plan is not None
    text = json.dumps(plan[0])
    assert "payout_transfers_claimable_idx" in text
    # No sequential scan of the transfers (the one-row pause and the jobs, a
    # handful here, may be read whole).
    assert "payout_transfers" not in {
        node.get("Relation Name") for node in plan_nodes(plan[0]) if node["Node Type"] == "Seq Scan"
    }
    # Bounded by the due time, not filtered row by row: the scan stops at the
    # first transfer not yet due, however many wait behind it.
    assert '"Index Cond": "(claimable_at <= ' in text


def test_a_page_of_a_jobs_transfers_is_a_range_scan_however_large_the_job(admin: Conn) -> None:
    insert_job(admin)
    admin.execute("UPDATE payout_jobs SET total_transfers = 20000, total_amount_cents = 2000000")
    admin.execute(
        """
        INSERT INTO payout_transfers (id, job_id, settlement_id, contest_id, user_id,
            amount_cents, currency)
        SELECT gen_random_uuid(), %(job)s, 's-1', 'c-1', 'u-' || n, 100, 'usd'
        FROM generate_series(1, 20000) AS n
        """,
        {"job": JOB},
    )
    admin.execute("ANALYZE payout_transfers")
    params = {"job_id": JOB, "after": uuid.UUID(int=2**127), "limit": 500}

    plan = admin.execute("EXPLAIN (FORMAT JSON) " + q.TRANSFERS_OF_JOB_AFTER, params).fetchone()

    assert plan is not None
    nodes = plan_nodes(plan[0])
    assert {n.get("Index Name") for n in nodes} >= {"payout_transfers_job_id_idx"}
    assert "Sort" not in {n["Node Type"] for n in nodes}
