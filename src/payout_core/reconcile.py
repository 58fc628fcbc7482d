"""The invariants of DESIGN 3, checked over what a store holds.

``payout-core reconcile`` runs these over every job; the property tests run
them after every step. Each broken invariant is reported, not just the first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from payout_core import models

__all__ = ["Mismatch", "check_job"]

S = models.TransferStatus
E = models.LedgerEntryType


@attrs.frozen
class Mismatch:
    subject: str  # "job <id>" or "transfer <id>"
    problem: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


def _check_transfer(t: models.PayoutTransfer, rows: Sequence[models.LedgerEntry]) -> list[Mismatch]:
    found: list[Mismatch] = []
    subject = f"transfer {t.id}"
    kinds = Counter(r.entry_type for r in rows)
    if (t.stripe_transfer_id is not None) != (t.status is S.COMPLETED):
        found.append(
            Mismatch(
                subject, f"stripe_transfer_id is {t.stripe_transfer_id!r} but status is {t.status}"
            )
        )
    if not 0 <= t.attempt_count <= t.max_attempts:
        found.append(
            Mismatch(subject, f"attempt_count {t.attempt_count} outside 0..{t.max_attempts}")
        )
    expected_completed = 1 if t.status is S.COMPLETED else 0
    if kinds[E.PAYOUT_COMPLETED] != expected_completed:
        found.append(
            Mismatch(
                subject,
                f"{kinds[E.PAYOUT_COMPLETED]} payout_completed ledger row(s) for a {t.status} "
                f"transfer (expected {expected_completed})",
            )
        )
    expected_failed = 1 if t.status is S.FAILED_TERMINAL else 0
    if kinds[E.PAYOUT_FAILED] != expected_failed:
        found.append(
            Mismatch(
                subject,
                f"{kinds[E.PAYOUT_FAILED]} payout_failed ledger row(s) for a {t.status} "
                f"transfer (expected {expected_failed})",
            )
        )
    for row in rows:
        if row.entry_type is E.PAYOUT_COMPLETED and (
            row.amount_cents != t.amount_cents or row.stripe_transfer_id != t.stripe_transfer_id
        ):
            found.append(
                Mismatch(
                    subject,
                    f"ledger row {row.idempotency_key} says {row.amount_cents} to "
                    f"{row.stripe_transfer_id}, the transfer says {t.amount_cents} to "
                    f"{t.stripe_transfer_id}",
                )
            )
        if row.attempt_number > t.attempt_count or row.attempt_number < 1:
            found.append(
                Mismatch(
                    subject,
                    f"ledger row {row.idempotency_key} books attempt {row.attempt_number} "
                    f"of {t.attempt_count}",
                )
            )
    return found


def check_job(
    job: models.PayoutJob,
    transfers: Sequence[models.PayoutTransfer],
    ledger: Sequence[models.LedgerEntry],
) -> list[Mismatch]:
    """Every way ``job``, its transfers and its ledger rows disagree."""
    found: list[Mismatch] = []
    subject = f"job {job.id}"
    by_transfer: dict[str, list[models.LedgerEntry]] = {t.id: [] for t in transfers}
    for row in ledger:
        if row.transfer_id not in by_transfer:
            found.append(
                Mismatch(
                    subject, f"ledger row {row.idempotency_key} names a transfer not in this job"
                )
            )
            continue
        by_transfer[row.transfer_id].append(row)
    for t in transfers:
        found.extend(_check_transfer(t, by_transfer[t.id]))

    completed = [t for t in transfers if t.status is S.COMPLETED]
    failed = [t for t in transfers if t.status is S.FAILED_TERMINAL]
    if job.total_transfers != len(transfers):
        found.append(
            Mismatch(subject, f"total_transfers is {job.total_transfers}, it has {len(transfers)}")
        )
    if job.total_amount_cents != sum(t.amount_cents for t in transfers):
        found.append(Mismatch(subject, "total_amount_cents differs from the sum of its transfers"))
    if (job.completed_count, job.failed_count) != (len(completed), len(failed)):
        found.append(
            Mismatch(
                subject,
                f"counts say {job.completed_count} completed and {job.failed_count} failed, "
                f"its transfers say {len(completed)} and {len(failed)}",
            )
        )
    all_terminal = bool(transfers) and len(completed) + len(failed) == len(transfers)
    if (job.status is models.JobStatus.COMPLETE) != all_terminal:
        found.append(
            Mismatch(subject, f"status is {job.status} but all-terminal is {all_terminal}")
        )
    booked = sum(r.amount_cents for r in ledger if r.entry_type is E.PAYOUT_COMPLETED)
    paid = sum(t.amount_cents for t in completed)
    if booked != paid:
        found.append(
            Mismatch(subject, f"ledger debits {booked} but completed transfers total {paid}")
        )
    return found
