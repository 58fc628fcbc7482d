"""Job completion: a job's counts and status follow its transfers.

:func:`advance` moves them by one transfer's outcome, at a cost that does not
depend on the job's size (DESIGN 3, "Job completion"): the stores apply it in
the outcome's transaction. ``payout-core reconcile`` recounts them from the
transfers (:func:`payout_core.reconcile.check_job`) and reports any drift.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from payout_core import models

__all__ = ["advance", "reopen", "start"]


def start(job: models.PayoutJob, *, now: datetime) -> models.PayoutJob:
    """The job's first claim: pending becomes processing."""
    if job.status is not models.JobStatus.PENDING:
        return job
    return attrs.evolve(job, status=models.JobStatus.PROCESSING, updated_at=now)


def advance(
    job: models.PayoutJob, *, outcome: models.TransferStatus, now: datetime
) -> models.PayoutJob:
    """The job after one of its claimed transfers was recorded as ``outcome``:
    one more completed or failed transfer, and complete once every transfer is
    terminal. An outcome that is not terminal changes nothing."""
    completed = job.completed_count + (outcome is models.TransferStatus.COMPLETED)
    failed = job.failed_count + (outcome is models.TransferStatus.FAILED_TERMINAL)
    if (completed, failed) == (job.completed_count, job.failed_count):
        return job
    done = completed + failed == job.total_transfers
    return attrs.evolve(
        job,
        status=models.JobStatus.COMPLETE if done else models.JobStatus.PROCESSING,
        completed_count=completed,
        failed_count=failed,
        completed_at=(job.completed_at or now) if done else job.completed_at,
        updated_at=now,
    )


def reopen(job: models.PayoutJob, *, amount_cents: int, now: datetime) -> models.PayoutJob:
    """The job after a failed winner was reissued (``transfers reissue``): one
    more transfer, its amount added, open again until that one is terminal."""
    return attrs.evolve(
        job,
        status=models.JobStatus.PROCESSING,
        total_transfers=job.total_transfers + 1,
        total_amount_cents=job.total_amount_cents + amount_cents,
        completed_at=None,
        updated_at=now,
    )
