"""The store's reads: jobs, transfers and the ledger, one by one, by list or page by page.

An id that is no UUID finds nothing (no row can have it), without a round trip.
"""

from __future__ import annotations

from typing import Any, LiteralString

from payout_adapters.postgres import jobs, rows
from payout_adapters.postgres.queries import QUERIES
from payout_adapters.postgres.store_base import StorePart, id_bound
from payout_core import models, ports

__all__ = ["Reads"]


class Reads(StorePart):
    def get_job(self, job_id: str) -> models.PayoutJob | None:
        with self._db.autocommit("read a job") as conn:
            return jobs.get_job_on(conn, job_id)

    def find_job(self, settlement_id: str) -> models.PayoutJob | None:
        with self._db.autocommit("find a job") as conn:
            return jobs.find_job_on(conn, settlement_id)

    def transfers_of(self, job_id: str) -> list[models.PayoutTransfer]:
        with self._db.autocommit("read a job's transfers") as conn:
            return jobs.transfers_of_job_on(conn, job_id)

    def list_jobs(
        self, *, status: models.JobStatus | None = None, limit: int = 100
    ) -> list[models.PayoutJob]:
        if status is None:
            found = self._db.fetch_all("list jobs", QUERIES["list_jobs"], {"limit": limit})
        else:
            found = self._db.fetch_all(
                "list jobs",
                QUERIES["list_jobs_of_status"],
                {"status": status.value, "limit": limit},
            )
        return [rows.JOBS.from_row(row) for row in found]

    def get_transfer(self, transfer_id: str) -> models.PayoutTransfer | None:
        return self._stored(transfer_id)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        params: dict[str, Any] = {"limit": max(limit, 0)}
        query = QUERIES["jobs_first"]
        if after is not None:
            query = QUERIES["jobs_after"]
            params["after"] = id_bound(after, "job")
        found = self._db.fetch_all("page through the jobs", query, params)
        return [rows.JOBS.from_row(row) for row in found]

    def transfer_histories(
        self, job_id: str, *, after: str | None, limit: int
    ) -> list[ports.TransferHistory]:
        params: dict[str, Any] = {"job_id": rows.as_uuid(job_id), "limit": max(limit, 0)}
        query = QUERIES["transfers_of_job_first"]
        if after is not None:
            query = QUERIES["transfers_of_job_after"]
            params["after"] = id_bound(after, "transfer")
        if params["job_id"] is None:
            return []  # not an id any job can have
        with self._db.transaction("read a job's transfers and their ledger rows") as cursor:
            cursor.execute(QUERIES["read_one_snapshot"])
            transfers = [rows.TRANSFERS.from_row(r) for r in cursor.execute(query, params)]
            ids = [rows.as_uuid(t.id) for t in transfers]
            found = cursor.execute(QUERIES["ledger_of_transfers"], {"transfer_ids": ids}).fetchall()
        entries: dict[str, list[models.LedgerEntry]] = {t.id: [] for t in transfers}
        for row in found:
            entry = rows.LEDGER.from_row(row)
            entries[entry.transfer_id].append(entry)
        return [ports.TransferHistory(transfer=t, ledger=tuple(entries[t.id])) for t in transfers]

    def list_transfers(
        self, *, status: models.TransferStatus | None = None, limit: int = 100
    ) -> list[models.PayoutTransfer]:
        if status is None:
            found = self._db.fetch_all(
                "list transfers", QUERIES["list_transfers"], {"limit": limit}
            )
        else:
            found = self._db.fetch_all(
                "list transfers",
                QUERIES["list_transfers_of_status"],
                {"status": status.value, "limit": limit},
            )
        return [rows.TRANSFERS.from_row(row) for row in found]

    def ledger(
        self, *, job_id: str | None = None, transfer_id: str | None = None
    ) -> list[models.LedgerEntry]:
        job_key = None if job_id is None else rows.as_uuid(job_id)
        transfer_key = None if transfer_id is None else rows.as_uuid(transfer_id)
        if (job_id is not None and job_key is None) or (
            transfer_id is not None and transfer_key is None
        ):
            return []  # not an id any row can have
        query: LiteralString
        if job_key is not None and transfer_key is not None:
            query = QUERIES["ledger_of_job_and_transfer"]
        elif job_key is not None:
            query = QUERIES["ledger_of_job"]
        elif transfer_key is not None:
            query = QUERIES["ledger_of_transfer"]
        else:
            query = QUERIES["ledger"]
        found = self._db.fetch_all(
            "read the ledger", query, {"job_id": job_key, "transfer_id": transfer_key}
        )
        return [rows.LEDGER.from_row(row) for row in found]
