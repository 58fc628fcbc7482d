"""Settlement -> payout job: scheduling is idempotent on ``settlement_id``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from payout_core import errors, idempotency, models, ports, validation

__all__ = ["schedule_payout_for_settlement"]

log = logging.getLogger("payout.schedule")


def _new_id() -> str:
    return str(uuid.uuid4())


def schedule_payout_for_settlement(
    *,
    store: ports.PayoutStore,
    settlement: models.Settlement,
    now: datetime,
    max_attempts: int = 5,
    new_id: Callable[[], str] = _new_id,
) -> ports.ScheduleResult:
    """Create the settlement's job and one transfer per winner, or return the
    job already created for it.

    Raises:
        InvalidSettlement: the settlement breaks a rule (every problem listed).
        SettlementConflict: the settlement id is known with other contents.
        DuplicatePayout: a winner is already paid by another settlement of the contest.
        StoreUnavailable: the store failed.
    """
    # Validate the model as if it came from JSON: one validator for both paths.
    settlement = validation.parse_settlement(settlement.to_payload())
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    fingerprint = idempotency.settlement_fingerprint(settlement)

    existing = store.find_job(settlement.settlement_id)
    if existing is None:
        job = models.PayoutJob(
            id=new_id(),
            settlement_id=settlement.settlement_id,
            contest_id=settlement.contest_id,
            currency=settlement.currency,
            status=models.JobStatus.PENDING,
            total_transfers=len(settlement.winners),
            total_amount_cents=settlement.total_amount_cents,
            settlement_fingerprint=fingerprint,
            created_at=now,
            updated_at=now,
        )
        transfers = [
            models.PayoutTransfer(
                id=new_id(),
                job_id=job.id,
                settlement_id=settlement.settlement_id,
                contest_id=settlement.contest_id,
                user_id=winner.user_id,
                amount_cents=winner.amount_cents,
                currency=settlement.currency,
                max_attempts=max_attempts,
                created_at=now,
                updated_at=now,
            )
            for winner in settlement.winners
        ]
        # A concurrent caller may win the race between find_job and here: the
        # store then returns its job with created=False, checked below.
        result = store.schedule(job, transfers)
    else:
        result = ports.ScheduleResult(job=existing, created=False)

    if result.job.settlement_fingerprint != fingerprint:
        raise errors.SettlementConflict(settlement.settlement_id, result.job.id)
    log.info(
        "payout.job.scheduled" if result.created else "payout.job.already_scheduled",
        extra={"job_id": result.job.id, "settlement_id": settlement.settlement_id},
    )
    return result
