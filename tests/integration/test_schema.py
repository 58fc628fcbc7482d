"""The database itself refuses what must never happen, whoever writes."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import psycopg
import psycopg.errors
import pytest

from payout_adapters.postgres import queries as q
from payout_core import validation
from tests.kit.waiting import wait_for

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


# -- money that comes back (0009) ------------------------------------------------------

WITHIN_PAID = "payout_ledger_reversed_within_paid"


def credit_row(trr: str = "trr_1", amount_cents: int = 500, **changes: object) -> dict[str, object]:
    """A payout_reversed credit of TRANSFER, keyed by its Stripe reversal."""
    credit: dict[str, object] = {
        "idempotency_key": f"ledger:reversal:{trr}",
        "entry_type": "payout_reversed",
        "direction": "credit",
        "amount_cents": amount_cents,
        "stripe_reversal_id": trr,
    }
    return ledger_row(**(credit | changes))


def booked_credits(conn: Conn) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT count(*), coalesce(sum(amount_cents), 0) FROM payout_ledger "
        "WHERE entry_type = 'payout_reversed'"
    ).fetchone()


@pytest.fixture
def paid(conn: Conn) -> Conn:
    """TRANSFER completed by tr_1 and booked as paid (1500 usd)."""
    conn.execute("UPDATE payout_transfers SET status = 'completed', stripe_transfer_id = 'tr_1'")
    insert_ledger(conn, ledger_row())
    return conn


def test_credits_never_exceed_what_was_paid(paid: Conn) -> None:
    insert_ledger(paid, credit_row("trr_1", 1000))

    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_ledger(paid, credit_row("trr_2", 501))

    assert constraint_of(caught.value) == WITHIN_PAID
    assert "paid 1500 usd, 1000 came back already: 501 more is too much" in str(caught.value)
    insert_ledger(paid, credit_row("trr_2", 500))  # all of it back: no more
    assert booked_credits(paid) == (2, 1500)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"currency": "eur"}, "was paid in usd by tr_1"),
        ({"stripe_transfer_id": "tr_other"}, "was paid in usd by tr_1"),
    ],
)
def test_a_credit_is_of_the_payment_it_reverses(
    paid: Conn, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=message) as caught:
        insert_ledger(paid, credit_row() | changes)
    assert constraint_of(caught.value) == WITHIN_PAID


def test_a_credit_of_a_transfer_never_paid_is_refused(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="never paid") as caught:
        insert_ledger(conn, credit_row())
    assert constraint_of(caught.value) == WITHIN_PAID
    assert booked_credits(conn) == (0, 0)


def test_a_credit_booked_already_is_not_counted_twice_by_its_own_key(paid: Conn) -> None:
    insert_ledger(paid, credit_row(amount_cents=1500))
    row = credit_row(amount_cents=1500)

    # The command settles what a webhook booked first: nothing, and no refusal.
    paid.execute(
        "INSERT INTO payout_ledger ("
        + ", ".join(row)
        + ") VALUES ("
        + ", ".join(f"%({k})s" for k in row)
        + ") ON CONFLICT (idempotency_key) DO NOTHING",
        row,
    )

    assert booked_credits(paid) == (1, 1500)


def test_a_stripe_reversal_is_booked_once_under_any_key(paid: Conn) -> None:
    insert_ledger(paid, credit_row())
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_ledger(paid, credit_row(idempotency_key="ledger:reversal:other"))
    assert constraint_of(caught.value) == "payout_ledger_stripe_reversal_id_key"


def wait_until_blocked_or_done(admin: Conn, worker: threading.Thread) -> None:
    """Until ``worker`` waits for a lock in this database, or has ended."""

    def blocked_or_done() -> bool:
        if not worker.is_alive():
            return True
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return row is not None and row[0] > 0

    wait_for("the worker to wait for a lock or end", blocked_or_done)


def test_two_credits_at_once_that_together_exceed_the_payment_book_one(
    paid: Conn, database_url: str
) -> None:
    answers: list[object] = []
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        insert_ledger(first, credit_row("trr_1", 1000))  # uncommitted: holds the transfer

        def book_the_other() -> None:
            try:
                insert_ledger(second, credit_row("trr_2", 1000))
                second.commit()
                answers.append("booked")
            except psycopg.errors.CheckViolation as exc:
                second.rollback()
                answers.append(exc)

        other = threading.Thread(target=book_the_other)
        other.start()
        wait_until_blocked_or_done(paid, other)
        first.commit()
        other.join(timeout=10)

    [answer] = answers
    assert isinstance(answer, psycopg.errors.CheckViolation), answer
    assert constraint_of(answer) == WITHIN_PAID
    assert booked_credits(paid) == (1, 1000)


@pytest.mark.parametrize(
    ("row", "constraint"),
    [
        (credit_row(direction="memo"), "payout_ledger_direction_check"),
        (credit_row(direction="debit"), "payout_ledger_direction_check"),
        (ledger_row(direction="credit"), "payout_ledger_direction_check"),
        (
            ledger_row(entry_type="payout_attempt_failed", direction="credit"),
            "payout_ledger_direction_check",
        ),
        (credit_row(stripe_reversal_id=None), "payout_ledger_stripe_reversal_id_check"),
        (
            ledger_row(entry_type="payout_failed", direction="memo", stripe_reversal_id="trr_1"),
            "payout_ledger_stripe_reversal_id_check",
        ),
    ],
)
def test_a_credit_is_a_reversal_and_a_reversal_a_credit(
    paid: Conn, row: dict[str, object], constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_ledger(paid, {**row, "idempotency_key": "ledger:other"})
    assert constraint_of(caught.value) == constraint


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payout_ledger SET amount_cents = 1 WHERE entry_type = 'payout_reversed'",
        "DELETE FROM payout_ledger WHERE entry_type = 'payout_reversed'",
        "TRUNCATE payout_ledger",
    ],
)
def test_the_ledger_stays_append_only_with_credits(paid: Conn, statement: str) -> None:
    insert_ledger(paid, credit_row())

    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        paid.execute(statement)

    assert booked_credits(paid) == (1, 500)


def insert_reversal(conn: Conn, **changes: object) -> uuid.UUID:
    sequence = changes.get("sequence", 1)
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "transfer_id": TRANSFER,
        "sequence": sequence,
        "idempotency_key": f"payout-reversal:{TRANSFER}:{sequence}",
        "stripe_transfer_id": "tr_1",
        "amount_cents": 500,
        "currency": "usd",
        "actor": "ops-1",
        "reason": "chargeback",
        **changes,
    }
    conn.execute(
        "INSERT INTO payout_reversals ("
        + ", ".join(values)
        + ") VALUES ("
        + ", ".join(["%s"] * len(values))
        + ")",
        tuple(values.values()),
    )
    return uuid.UUID(str(values["id"]))


SETTLE = "UPDATE payout_reversals SET status = %s, stripe_reversal_id = %s, failure_code = %s"


def test_one_reversal_of_a_transfer_in_doubt_at_a_time(paid: Conn) -> None:
    first = insert_reversal(paid)

    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        insert_reversal(paid, sequence=2)
    assert constraint_of(caught.value) == "payout_reversals_one_sending_idx"

    paid.execute(SETTLE + " WHERE id = %s", ("failed", None, "insufficient_funds", first))
    insert_reversal(paid, sequence=2)  # the first one is no longer in doubt


def test_a_reversal_key_is_its_transfers_and_sequences_and_used_once(paid: Conn) -> None:
    first = insert_reversal(paid)
    paid.execute(SETTLE + " WHERE id = %s", ("failed", None, "x", first))

    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_reversal(paid)
    with pytest.raises(psycopg.errors.CheckViolation) as wrong_key:
        insert_reversal(paid, sequence=2, idempotency_key=f"payout-reversal:{TRANSFER}:7")
    assert constraint_of(wrong_key.value) == "payout_reversals_idempotency_key_check"


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"amount_cents": 0}, "payout_reversals_amount_cents_check"),
        ({"actor": " "}, "payout_reversals_actor_check"),
        ({"reason": ""}, "payout_reversals_reason_check"),
        ({"status": "done"}, "payout_reversals_status_check"),
        ({"status": "completed"}, "payout_reversals_stripe_reversal_id_check"),
        ({"stripe_reversal_id": "trr_1"}, "payout_reversals_stripe_reversal_id_check"),
        ({"status": "failed"}, "payout_reversals_failure_code_check"),
        ({"failure_code": "x"}, "payout_reversals_failure_code_check"),
        ({"sequence": 0, "idempotency_key": f"payout-reversal:{TRANSFER}:0"}, None),
    ],
)
def test_a_reversal_refuses_an_impossible_state(
    paid: Conn, changes: dict[str, object], constraint: str | None
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_reversal(paid, **changes)
    assert constraint_of(caught.value) == (constraint or "payout_reversals_sequence_check")


@pytest.mark.parametrize(
    ("status", "stripe_reversal_id", "failure_code"),
    [("completed", "trr_1", None), ("failed", None, "insufficient_funds")],
)
@pytest.mark.parametrize(
    "change",
    [
        "status = 'sending', stripe_reversal_id = NULL, failure_code = NULL",
        "updated_at = now()",
        "failure_message = 'on second thoughts'",
    ],
)
def test_a_settled_reversal_never_changes(
    paid: Conn, status: str, stripe_reversal_id: str | None, failure_code: str | None, change: str
) -> None:
    reversal = insert_reversal(paid)
    paid.execute(SETTLE + " WHERE id = %s", (status, stripe_reversal_id, failure_code, reversal))

    with pytest.raises(psycopg.errors.RestrictViolation, match="never changes") as caught:
        paid.execute(f"UPDATE payout_reversals SET {change}")

    assert constraint_of(caught.value) == "payout_reversals_settled_once"
    row = paid.execute("SELECT status, failure_message FROM payout_reversals").fetchone()
    assert row == (status, None)


@pytest.mark.parametrize("change", ["amount_cents = 400", "actor = 'someone else'"])
def test_what_a_reversal_asked_for_never_changes(paid: Conn, change: str) -> None:
    insert_reversal(paid)

    with pytest.raises(psycopg.errors.RestrictViolation, match="never what was asked"):
        paid.execute(f"UPDATE payout_reversals SET {change}")


@pytest.mark.parametrize("statement", ["DELETE FROM payout_reversals", "TRUNCATE payout_reversals"])
def test_reversals_are_kept(paid: Conn, statement: str) -> None:
    insert_reversal(paid)

    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        paid.execute(statement)

    assert paid.execute("SELECT count(*) FROM payout_reversals").fetchone() == (1,)


def insert_action(conn: Conn, action: str, transfer_id: uuid.UUID | None) -> None:
    conn.execute(
        "INSERT INTO payout_operator_actions (action, actor, reason, transfer_id) "
        "VALUES (%s, 'ops-1', 'why', %s)",
        (action, transfer_id),
    )


def test_operator_actions_are_those_payout_core_knows(conn: Conn) -> None:
    for action in ("resolve_found", "resolve_absent", "reissue", "reverse"):
        insert_action(conn, action, TRANSFER)
    for action in ("pause", "resume"):
        insert_action(conn, action, None)

    with pytest.raises(psycopg.errors.CheckViolation) as unknown:
        insert_action(conn, "refund", TRANSFER)
    assert constraint_of(unknown.value) == "payout_operator_actions_action_check"


@pytest.mark.parametrize(
    ("action", "on_transfer"),
    [
        ("reissue", False),
        ("resolve_found", False),
        ("resolve_absent", False),
        ("reverse", False),
        ("pause", True),
    ],
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
        plan = admin.execute("EXPLAIN (FORMAT JSON) " + q.QUERIES["claim_due"], params).fetchone()

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

    plan = admin.execute(
        "EXPLAIN (FORMAT JSON) " + q.QUERIES["transfers_of_job_after"], params
    ).fetchone()

    assert plan is not None
    nodes = plan_nodes(plan[0])
    assert {n.get("Index Name") for n in nodes} >= {"payout_transfers_job_id_idx"}
    assert "Sort" not in {n["Node Type"] for n in nodes}
