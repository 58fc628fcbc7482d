"""The invariants of DESIGN 3, checked over what a store holds.

``payout-core reconcile`` runs these over every job; the property tests run
them after every step. Each broken invariant is reported, not just the first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from payout_core import models

__all__ = ["JobCheck", "Mismatch", "check_job"]

S = models.TransferStatus
E = models.LedgerEntryType


@attrs.frozen
class Mismatch:
    subject: str  # "job <id>" or "transfer <id>"
    problem: str
    transfer_id: str | None = attrs.field(default=None, kw_only=True)  # a transfer's

    @classmethod
    def of_transfer(cls, transfer_id: str, problem: str) -> Mismatch:
        return cls(f"transfer {transfer_id}", problem, transfer_id=transfer_id)

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


def _check_transfer(t: models.PayoutTransfer, rows: Sequence[models.LedgerEntry]) -> list[Mismatch]:
    found: list[Mismatch] = []
    kinds = Counter(r.entry_type for r in rows)
    if (t.stripe_transfer_id is not None) != (t.status is S.COMPLETED):
        found.append(
            Mismatch.of_transfer(
                t.id, f"stripe_transfer_id is {t.stripe_transfer_id!r} but status is {t.status}"
            )
        )
    if not 0 <= t.attempt_count <= t.max_attempts:
        found.append(
            Mismatch.of_transfer(
                t.id, f"attempt_count {t.attempt_count} outside 0..{t.max_attempts}"
            )
        )
    expected_completed = 1 if t.status is S.COMPLETED else 0
    if kinds[E.PAYOUT_COMPLETED] != expected_completed:
        found.append(
            Mismatch.of_transfer(
                t.id,
                f"{kinds[E.PAYOUT_COMPLETED]} payout_completed ledger row(s) for a {t.status} "
                f"transfer (expected {expected_completed})",
            )
        )
    expected_failed = 1 if t.status is S.FAILED_TERMINAL else 0
    if kinds[E.PAYOUT_FAILED] != expected_failed:
        found.append(
            Mismatch.of_transfer(
                t.id,
                f"{kinds[E.PAYOUT_FAILED]} payout_failed ledger row(s) for a {t.status} "
                f"transfer (expected {expected_failed})",
            )
        )
    reversal_rows = [r for r in rows if r.entry_type is E.PAYOUT_REVERSED]
    came_back = sum(r.amount_cents for r in reversal_rows)
    if reversal_rows and t.status is not S.COMPLETED:
        found.append(
            Mismatch.of_transfer(
                t.id, f"{len(reversal_rows)} reversal credit(s) for a {t.status} transfer"
            )
        )
    if came_back > t.amount_cents:
        found.append(
            Mismatch.of_transfer(
                t.id, f"reversal credits total {came_back}, more than the {t.amount_cents} paid"
            )
        )
    for row in reversal_rows:
        if (row.currency, row.stripe_transfer_id) != (t.currency, t.stripe_transfer_id) or (
            row.stripe_reversal_id is None
        ):
            found.append(
                Mismatch.of_transfer(
                    t.id,
                    f"reversal credit {row.idempotency_key} is of {row.currency} "
                    f"{row.stripe_transfer_id} (reversal {row.stripe_reversal_id}), the transfer "
                    f"{t.currency} {t.stripe_transfer_id}",
                )
            )
    for row in rows:
        if row.entry_type is E.PAYOUT_COMPLETED and (
            row.amount_cents != t.amount_cents or row.stripe_transfer_id != t.stripe_transfer_id
        ):
            found.append(
                Mismatch.of_transfer(
                    t.id,
                    f"ledger row {row.idempotency_key} says {row.amount_cents} to "
                    f"{row.stripe_transfer_id}, the transfer says {t.amount_cents} to "
                    f"{t.stripe_transfer_id}",
                )
            )
        if row.attempt_number > t.attempt_count or row.attempt_number < 1:
            found.append(
                Mismatch.of_transfer(
                    t.id,
                    f"ledger row {row.idempotency_key} books attempt {row.attempt_number} "
                    f"of {t.attempt_count}",
                )
            )
    return found


@attrs.define
class JobCheck:
    """Checks one job transfer by transfer, so that a job of any size is
    checked page by page in bounded memory (``payout-core reconcile``):
    :meth:`add` each transfer with its ledger rows, then :meth:`finish`."""

    job: models.PayoutJob
    found: list[Mismatch] = attrs.field(factory=list)
    _transfers: int = 0
    _amount: int = 0
    _completed: int = 0
    _failed: int = 0
    _booked: int = 0
    _paid: int = 0
    _failed_ids: set[str] = attrs.field(factory=set)
    _reissues: dict[str, str] = attrs.field(factory=dict)  # failed id -> its reissue

    def add(self, transfer: models.PayoutTransfer, rows: Sequence[models.LedgerEntry]) -> None:
        self.found.extend(_check_transfer(transfer, rows))
        self._transfers += 1
        self._amount += transfer.amount_cents
        self._completed += transfer.status is S.COMPLETED
        self._failed += transfer.status is S.FAILED_TERMINAL
        if transfer.status is S.COMPLETED:
            self._paid += transfer.amount_cents
        if transfer.status is S.FAILED_TERMINAL:
            self._failed_ids.add(transfer.id)
        self._booked += sum(r.amount_cents for r in rows if r.entry_type is E.PAYOUT_COMPLETED)
        if transfer.reissue_of is not None:
            earlier = self._reissues.setdefault(transfer.reissue_of, transfer.id)
            if earlier != transfer.id:
                self.found.append(
                    Mismatch.of_transfer(
                        transfer.id,
                        f"reissues {transfer.reissue_of}, which {earlier} reissues too",
                    )
                )

    def finish(self) -> list[Mismatch]:
        """Every way the job's totals disagree with what was added (and each
        transfer's own problems)."""
        job, found = self.job, list(self.found)
        subject = f"job {job.id}"
        for failed_id, reissue in sorted(self._reissues.items()):
            if failed_id not in self._failed_ids:
                found.append(
                    Mismatch.of_transfer(
                        reissue,
                        f"reissues {failed_id}, which is no failed_terminal transfer of its job",
                    )
                )
        if job.total_transfers != self._transfers:
            found.append(
                Mismatch(
                    subject, f"total_transfers is {job.total_transfers}, it has {self._transfers}"
                )
            )
        if job.total_amount_cents != self._amount:
            found.append(
                Mismatch(subject, "total_amount_cents differs from the sum of its transfers")
            )
        if (job.completed_count, job.failed_count) != (self._completed, self._failed):
            found.append(
                Mismatch(
                    subject,
                    f"counts say {job.completed_count} completed and {job.failed_count} failed, "
                    f"its transfers say {self._completed} and {self._failed}",
                )
            )
        all_terminal = self._transfers > 0 and self._completed + self._failed == self._transfers
        if (job.status is models.JobStatus.COMPLETE) != all_terminal:
            found.append(
                Mismatch(subject, f"status is {job.status} but all-terminal is {all_terminal}")
            )
        if self._booked != self._paid:
            found.append(
                Mismatch(
                    subject,
                    f"ledger debits {self._booked} but completed transfers total {self._paid}",
                )
            )
        return found


def check_job(
    job: models.PayoutJob,
    transfers: Sequence[models.PayoutTransfer],
    ledger: Sequence[models.LedgerEntry],
) -> list[Mismatch]:
    """Every way ``job``, its transfers and its ledger rows disagree."""
    check = JobCheck(job)
    by_transfer: dict[str, list[models.LedgerEntry]] = {t.id: [] for t in transfers}
    for row in ledger:
        if row.transfer_id not in by_transfer:
            check.found.append(
                Mismatch(
                    f"job {job.id}",
                    f"ledger row {row.idempotency_key} names a transfer not in this job",
                )
            )
            continue
        by_transfer[row.transfer_id].append(row)
    for t in transfers:
        check.add(t, by_transfer[t.id])
    return check.finish()
