"""Job completion: a job's counts and status are derived from its transfers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from payout_core import models

__all__ = ["summarize"]


def summarize(
    job: models.PayoutJob, transfers: Iterable[models.PayoutTransfer], *, now: datetime
) -> models.PayoutJob:
    """The job as its transfers say it is.

    Complete when every transfer is terminal, whatever the mix of outcomes;
    processing once any transfer has been claimed; pending before that.
    A complete job stays complete (its transfers cannot leave terminal states).
    """
    statuses = [t.status for t in transfers]
    completed = statuses.count(models.TransferStatus.COMPLETED)
    failed = statuses.count(models.TransferStatus.FAILED_TERMINAL)
    all_terminal = bool(statuses) and completed + failed == len(statuses)
    if all_terminal:
        status = models.JobStatus.COMPLETE
    elif job.status is models.JobStatus.PENDING and all(
        s is models.TransferStatus.PENDING for s in statuses
    ):
        status = models.JobStatus.PENDING
    else:
        status = models.JobStatus.PROCESSING
    changed = (status, completed, failed) != (job.status, job.completed_count, job.failed_count)
    if not changed:
        return job
    return attrs.evolve(
        job,
        status=status,
        completed_count=completed,
        failed_count=failed,
        completed_at=now if all_terminal and job.completed_at is None else job.completed_at,
        updated_at=now,
    )
