"""The reconcile checks name every way a job, its transfers and its ledger can disagree."""

from __future__ import annotations

import attrs
import pytest

from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_core import ledger, models, reconcile, validation
from payout_core.services import scheduling, tick
from tests.kit.times import T0

E = models.LedgerEntryType


@pytest.fixture
def paid(
    clock: ManualClock,
) -> tuple[models.PayoutJob, list[models.PayoutTransfer], list[models.LedgerEntry]]:
    """A finished job: u1 paid, u2 failed for want of an account."""
    store = InMemoryStore(clock=clock)  # the database's clock, not the machine's
    directory = InMemoryAccountDirectory({"u1": "acct_1"})
    settlement = validation.parse_settlement(
        {
            "settlement_id": "s",
            "contest_id": "c",
            "currency": "usd",
            "winners": [
                {"user_id": "u1", "amount_cents": 700},
                {"user_id": "u2", "amount_cents": 300},
            ],
        }
    )
    job = scheduling.schedule_payout_for_settlement(store=store, settlement=settlement, now=T0).job
    tick.run_tick(
        store=store,
        directory=directory,
        gateway=SimulatedGateway(clock=clock),
        clock=clock,
        settings=tick.WorkerSettings(),
    )
    done = store.get_job(job.id)
    assert done is not None
    return done, store.transfers_of(job.id), store.ledger(job_id=job.id)


Paid = tuple[models.PayoutJob, list[models.PayoutTransfer], list[models.LedgerEntry]]


def problems(
    job: models.PayoutJob, transfers: list[models.PayoutTransfer], rows: list[models.LedgerEntry]
) -> str:
    return "\n".join(str(m) for m in reconcile.check_job(job, transfers, rows))


def test_a_consistent_job_has_no_mismatch(paid: Paid) -> None:
    assert problems(*paid) == ""


def test_a_missing_debit_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    kept = [r for r in rows if r.entry_type is not E.PAYOUT_COMPLETED]
    found = problems(job, transfers, kept)
    assert "0 payout_completed ledger row(s) for a completed transfer" in found
    assert "ledger debits 0 but completed transfers total 700" in found


def test_a_duplicate_debit_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    debit = next(r for r in rows if r.entry_type is E.PAYOUT_COMPLETED)
    found = problems(job, transfers, [*rows, attrs.evolve(debit, idempotency_key="x")])
    assert "2 payout_completed ledger row(s)" in found


def test_a_debit_that_disagrees_with_its_transfer_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    changed = [
        attrs.evolve(r, amount_cents=701) if r.entry_type is E.PAYOUT_COMPLETED else r for r in rows
    ]
    assert "says 701 to tr_" in problems(job, transfers, changed)


def test_a_missing_failure_row_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    kept = [r for r in rows if r.entry_type is not E.PAYOUT_FAILED]
    assert "0 payout_failed ledger row(s) for a failed_terminal" in problems(job, transfers, kept)


def test_a_row_of_another_job_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    stray = attrs.evolve(rows[0], transfer_id="elsewhere", idempotency_key="k")
    assert "names a transfer not in this job" in problems(job, transfers, [*rows, stray])


def test_a_row_for_an_attempt_never_made_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    assert "books attempt 9 of 1" in problems(
        job, transfers, [attrs.evolve(r, attempt_number=9) for r in rows]
    )


def test_an_id_on_a_transfer_that_was_not_completed_is_named(paid: Paid) -> None:
    job, transfers, rows = paid
    broken = [
        attrs.evolve(t, stripe_transfer_id="tr_x")
        if t.status is models.TransferStatus.FAILED_TERMINAL
        else t
        for t in transfers
    ]
    assert "stripe_transfer_id is 'tr_x' but status is failed_terminal" in problems(
        job, broken, rows
    )


def test_too_many_attempts_are_named(paid: Paid) -> None:
    job, transfers, rows = paid
    broken = [attrs.evolve(transfers[0], attempt_count=99), *transfers[1:]]
    assert "attempt_count 99 outside 0..5" in problems(job, broken, rows)


def test_job_totals_counts_and_status_are_checked(paid: Paid) -> None:
    job, transfers, rows = paid
    broken = attrs.evolve(
        job,
        total_transfers=3,
        total_amount_cents=1,
        completed_count=0,
        status=models.JobStatus.PROCESSING,
    )
    found = problems(broken, transfers, rows)
    assert "total_transfers is 3, it has 2" in found
    assert "total_amount_cents differs" in found
    assert "counts say 0 completed and 1 failed, its transfers say 1 and 1" in found
    assert "status is processing but all-terminal is True" in found


def test_reversal_credits_may_not_exceed_what_was_paid_nor_credit_an_unpaid_transfer(
    paid: Paid,
) -> None:
    job, transfers, rows = paid
    done = next(t for t in transfers if t.status is models.TransferStatus.COMPLETED)
    unpaid = next(t for t in transfers if t.status is not models.TransferStatus.COMPLETED)
    assert done.stripe_transfer_id is not None
    back = [
        ledger.reversal_entry(done, stripe_reversal_id=f"trr_{n}", amount_cents=400, now=T0)
        for n in range(2)
    ]
    assert problems(job, transfers, [*rows, back[0]]) == ""

    over = problems(job, transfers, [*rows, *back])
    stray = attrs.evolve(back[0], transfer_id=unpaid.id, idempotency_key="ledger:reversal:x")
    unpaid_credit = problems(job, transfers, [*rows, stray])

    assert f"transfer {done.id}: reversal credits total 800, more than the 700 paid" in over
    assert f"transfer {unpaid.id}: 1 reversal credit(s) for a failed_terminal transfer" in (
        unpaid_credit
    )
