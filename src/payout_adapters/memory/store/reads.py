"""The store's reads, and the run reports the runner writes for them.

Every read is a step under the store's lock, as a PostgreSQL read is one
statement: what it returns is one moment's state.
"""

from __future__ import annotations

from payout_adapters.memory.store.tables import Tables
from payout_core import models, ports
from payout_core import state_machine as sm

__all__ = ["Reads"]

S = models.TransferStatus


class Reads(Tables):
    """Jobs, transfers, the ledger, run reports and the queue, as stored now."""

    def record_run(self, report: models.RunReport) -> None:
        with self._operation("record_run"):
            self._runs[report.id] = report

    def get_job(self, job_id: str) -> models.PayoutJob | None:
        with self._operation("get_job"):
            return self._jobs.get(job_id)

    def find_job(self, settlement_id: str) -> models.PayoutJob | None:
        with self._operation("find_job"):
            job_id = self._job_of_settlement.get(settlement_id)
            return None if job_id is None else self._jobs[job_id]

    def list_jobs(
        self, *, status: models.JobStatus | None = None, limit: int = 100
    ) -> list[models.PayoutJob]:
        with self._operation("list_jobs"):
            jobs = [j for j in self._jobs.values() if status is None or j.status is status]
            jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
            return jobs[: max(limit, 0)]

    def get_transfer(self, transfer_id: str) -> models.PayoutTransfer | None:
        with self._operation("get_transfer"):
            return self._transfers.get(transfer_id)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        with self._operation("jobs_after"):
            ids = sorted(j for j in self._jobs if after is None or j > after)
            return [self._jobs[j] for j in ids[: max(limit, 0)]]

    def transfer_histories(
        self, job_id: str, *, after: str | None, limit: int
    ) -> list[ports.TransferHistory]:
        with self._operation("transfer_histories"):
            ids = sorted(
                t for t in self._transfers_of_job.get(job_id, []) if after is None or t > after
            )[: max(limit, 0)]
            entries: dict[str, list[models.LedgerEntry]] = {t: [] for t in ids}
            for entry in self._ledger:
                if entry.transfer_id in entries:
                    entries[entry.transfer_id].append(entry)
            return [
                ports.TransferHistory(transfer=self._transfers[t], ledger=tuple(entries[t]))
                for t in ids
            ]

    def transfers_of(self, job_id: str) -> list[models.PayoutTransfer]:
        with self._operation("transfers_of"):
            ids = self._transfers_of_job.get(job_id, [])
            # Code point order, which is the byte order of the column's "C" collation.
            return sorted((self._transfers[t] for t in ids), key=lambda t: t.user_id)

    def ledger(
        self, *, job_id: str | None = None, transfer_id: str | None = None
    ) -> list[models.LedgerEntry]:
        with self._operation("ledger"):
            return [
                e
                for e in self._ledger
                if (job_id is None or e.job_id == job_id)
                and (transfer_id is None or e.transfer_id == transfer_id)
            ]

    def list_transfers(
        self, *, status: models.TransferStatus | None = None, limit: int = 100
    ) -> list[models.PayoutTransfer]:
        with self._operation("list_transfers"):
            found = [t for t in self._transfers.values() if status is None or t.status is status]
            found.sort(key=lambda t: (t.updated_at, t.id), reverse=True)
            return found[: max(limit, 0)]

    def queue_depth(self) -> ports.QueueDepth:
        with self._operation("queue_depth"):
            now = self._clock.now()
            open_ = list(map(self._transfers.__getitem__, self._open))
            due = [t for t in open_ if sm.is_due(t, now)]
            stuck = sum(1 for t in due if t.status is S.PROCESSING)
            waiting = sum(1 for t in open_ if t.needs_operator is not None)
            return ports.QueueDepth(due=len(due), stuck=stuck, needs_operator=waiting)

    def needing_operator(self, limit: int = 100) -> list[models.PayoutTransfer]:
        with self._operation("needing_operator"):
            found = [
                t
                for t in map(self._transfers.__getitem__, self._open)
                if t.needs_operator is not None
            ]
            found.sort(key=lambda t: (t.updated_at, t.id))
            return found[: max(limit, 0)]

    def transfer_counts(self) -> dict[models.TransferStatus, int]:
        with self._operation("transfer_counts"):
            counts = dict.fromkeys(models.TransferStatus, 0)
            for t in self._transfers.values():
                counts[t.status] += 1
            return counts

    def recent_runs(self, limit: int = 10) -> list[models.RunReport]:
        with self._operation("recent_runs"):
            runs = sorted(self._runs.values(), key=lambda r: (r.started_at, r.id), reverse=True)
            return runs[: max(limit, 0)]
