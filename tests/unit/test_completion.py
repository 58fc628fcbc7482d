"""Job completion by increments: the counts a job keeps agree with a recount."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from payout_core import completion, models, reconcile
from tests.kit import builders as b
from tests.kit.times import T0

S = models.TransferStatus
J = models.JobStatus


def a_job(transfers: int) -> models.PayoutJob:
    """Job ``j-1``, pending: ``transfers`` winners of 1,000 cents each."""
    winners = [f"u-{n}" for n in range(1, transfers + 1)]
    return b.make_job(b.settlement(*winners), now=T0, job_id="j-1")


def test_the_first_claim_starts_the_job_and_later_ones_change_nothing() -> None:
    started = completion.start(a_job(2), now=T0 + timedelta(seconds=1))

    assert (started.status, started.updated_at) == (J.PROCESSING, T0 + timedelta(seconds=1))
    assert completion.start(started, now=T0 + timedelta(hours=1)) is started


@given(
    outcomes=st.lists(
        st.sampled_from([S.COMPLETED, S.FAILED_TERMINAL, S.RETRYABLE, S.PENDING]), max_size=40
    ),
    extra=st.integers(0, 3),
)
def test_counts_moved_one_outcome_at_a_time_agree_with_a_recount(
    outcomes: list[models.TransferStatus], extra: int
) -> None:
    terminal = [o for o in outcomes if o.is_terminal]
    total = len(terminal) + extra  # some transfers still open
    if total == 0:
        return
    job = completion.start(a_job(total), now=T0)
    for n, outcome in enumerate(outcomes):
        job = completion.advance(job, outcome=outcome, now=T0 + timedelta(seconds=n))

    completed = terminal.count(S.COMPLETED)
    failed = terminal.count(S.FAILED_TERMINAL)
    assert (job.completed_count, job.failed_count) == (completed, failed)
    assert (job.status is J.COMPLETE) == (extra == 0)
    assert (job.completed_at is not None) == (extra == 0)
    if extra == 0:
        # Completed at the last terminal outcome, and never moved after.
        last = max(i for i, o in enumerate(outcomes) if o.is_terminal)
        assert job.completed_at == T0 + timedelta(seconds=last)


def test_reconcile_reports_counts_that_drifted_from_the_transfers() -> None:
    job = completion.advance(completion.start(a_job(1), now=T0), outcome=S.COMPLETED, now=T0)
    transfer = b.transfer(amount_cents=1000, status=S.RETRYABLE, attempt_count=1)

    mismatches = reconcile.check_job(job, [transfer], [])

    assert [str(m) for m in mismatches] == [
        "job j-1: counts say 1 completed and 0 failed, its transfers say 0 and 0",
        "job j-1: status is complete but all-terminal is False",
    ]
