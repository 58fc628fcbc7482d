"""Scheduling: a settlement's planned job and transfers, written at once.

The plan is stored as the core made it (:func:`payout_core.services.scheduling.plan_payout`
derived its totals from a checked settlement): nothing here judges the
settlement or the totals again. What is refused is what the schema's keys
refuse whatever the plan: a job or transfer id taken, transfers that are not
the job's, a winner twice, a winner paid already, a row the schema's checks refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

from payout_adapters.memory.store import schema
from payout_adapters.memory.store.tables import Tables
from payout_core import errors, models, ports

__all__ = ["Jobs"]


class Jobs(Tables):
    """The store's scheduling: one job per settlement, its transfers with it."""

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ports.ScheduleResult:
        with self._operation("schedule"):
            existing = self._job_of_settlement.get(job.settlement_id)
            if existing is not None:
                return ports.ScheduleResult(job=self._jobs[existing], created=False)
            self._check_new_job(job, transfers)
            taken = [t.user_id for t in transfers if self._paid(t.contest_id, t.user_id)]
            if taken:
                raise errors.DuplicatePayout(job.contest_id, taken)
            self._jobs[job.id] = job
            self._job_of_settlement[job.settlement_id] = job.id
            self._transfers_of_job[job.id] = []
            for t in transfers:
                self._insert(t)
            return ports.ScheduleResult(job=job, created=True)

    def _check_new_job(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> None:
        """What the schema's keys and checks refuse when a job is inserted, in
        the PostgreSQL store's words: :class:`~payout_core.errors.StoreRefused`
        naming the first constraint broken."""
        refusals: list[tuple[str, str]] = []
        if job.id in self._jobs:
            refusals.append(("payout_jobs_pkey", f"job {job.id} exists for another settlement"))
        users: set[str] = set()
        for n, t in enumerate(transfers):
            where = f"transfers[{n}]"
            parent = (t.job_id, t.settlement_id, t.contest_id, t.currency)
            if parent != (job.id, job.settlement_id, job.contest_id, job.currency):
                refusals.append(
                    (
                        "payout_transfers_job_fkey",
                        f"{where}: job_id, settlement_id, contest_id, currency not the job's",
                    )
                )
            if t.id in self._transfers:
                refusals.append(("payout_transfers_pkey", f"{where}: transfer {t.id} exists"))
            if t.user_id in users:
                refusals.append(
                    (
                        "payout_transfers_contest_user_live_idx",
                        f"{where}: user {t.user_id!r} twice in one job",
                    )
                )
            users.add(t.user_id)
            refusals.extend((name, f"{where}: {said}") for name, said in schema.row_refusals(t))
        if refusals:
            constraint, message = refusals[0]
            if len(refusals) > 1:
                message += f" (and {len(refusals) - 1} more)"
            raise errors.StoreRefused(constraint, message)
