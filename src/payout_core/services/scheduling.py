"""Settlement -> payout job: scheduling is idempotent on ``settlement_id``.

:func:`plan_payout` is the one place a job and its transfers are made of a
settlement, their totals derived from its winners; every caller that writes a
payout (this service, the library's front door) plans it here. The store
stores the plan as it is: it does not judge the totals again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

import attrs

from payout_core import errors, idempotency, models, ports, validation

__all__ = [
    "Plan",
    "accepted",
    "plan",
    "plan_payout",
    "schedule_payout_for_settlement",
    "store_plan",
]

log = logging.getLogger("payout.schedule")


def _new_id() -> str:
    return str(uuid.uuid4())


def plan_payout(
    settlement: models.Settlement,
    *,
    now: datetime,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    new_id: Callable[[], str] = _new_id,
) -> tuple[models.PayoutJob, list[models.PayoutTransfer]]:
    """The pending job of a settlement already checked (by
    :func:`~payout_core.validation.parse_settlement` or
    :func:`~payout_core.validation.check_settlement`) and one pending transfer
    per winner, in the settlement's order; nothing is written.

    Raises:
        ValueError: ``max_attempts`` < 1.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    job = models.PayoutJob(
        id=new_id(),
        settlement_id=settlement.settlement_id,
        contest_id=settlement.contest_id,
        currency=settlement.currency,
        status=models.JobStatus.PENDING,
        total_transfers=len(settlement.winners),
        total_amount_cents=settlement.total_amount_cents,
        settlement_fingerprint=idempotency.settlement_fingerprint(settlement),
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
    return job, transfers


@attrs.frozen(kw_only=True)
class Plan:
    """A settlement checked at its door, and the job and transfers it becomes;
    nothing written yet."""

    job: models.PayoutJob
    transfers: tuple[models.PayoutTransfer, ...]


def plan(
    settlement: object,
    *,
    now: datetime,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    new_id: Callable[[], str] = _new_id,
) -> Plan:
    """Check ``settlement`` once, at the door it came in by (a
    :class:`~payout_core.models.Settlement`: :func:`~payout_core.validation.check_settlement`;
    anything else is its JSON: :func:`~payout_core.validation.parse_settlement`),
    and plan it (:func:`plan_payout`).

    Raises:
        InvalidSettlement: the settlement breaks a rule (every problem listed).
        ValueError: ``max_attempts`` < 1.
    """
    valid = (
        validation.check_settlement(settlement)
        if isinstance(settlement, models.Settlement)
        else validation.parse_settlement(settlement)
    )
    job, transfers = plan_payout(valid, now=now, max_attempts=max_attempts, new_id=new_id)
    return Plan(job=job, transfers=tuple(transfers))


def accepted(planned: Plan, result: ports.ScheduleResult) -> ports.ScheduleResult:
    """What a store's answer to ``planned`` means: a new job, the same
    settlement's job from before, or a conflict.

    Raises:
        SettlementConflict: the settlement id is known with other contents.
    """
    if result.job.settlement_fingerprint != planned.job.settlement_fingerprint:
        raise errors.SettlementConflict(planned.job.settlement_id, result.job.id)
    log.info(
        "payout.job.scheduled" if result.created else "payout.job.already_scheduled",
        extra={"job_id": result.job.id, "settlement_id": result.job.settlement_id},
    )
    return result


def store_plan(store: ports.PayoutStore, planned: Plan) -> ports.ScheduleResult:
    """Write ``planned`` unless its settlement has a job already; that job then.

    Raises:
        SettlementConflict: the settlement id is known with other contents.
        DuplicatePayout: a winner is already paid by another settlement of the contest.
        StoreUnavailable: the store failed.
    """
    existing = store.find_job(planned.job.settlement_id)
    if existing is None:
        # A concurrent caller may win the race between find_job and here: the
        # store then returns its job with created=False, checked by accepted().
        result = store.schedule(planned.job, planned.transfers)
    else:
        result = ports.ScheduleResult(job=existing, created=False)
    return accepted(planned, result)


def schedule_payout_for_settlement(
    *,
    store: ports.PayoutStore,
    settlement: models.Settlement,
    now: datetime,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    new_id: Callable[[], str] = _new_id,
) -> ports.ScheduleResult:
    """Create the settlement's job and one transfer per winner, or return the
    job already created for it: :func:`plan`, then :func:`store_plan`.

    Raises:
        InvalidSettlement: the settlement breaks a rule (every problem listed).
        SettlementConflict: the settlement id is known with other contents.
        DuplicatePayout: a winner is already paid by another settlement of the contest.
        StoreUnavailable: the store failed.
    """
    planned = plan(settlement, now=now, max_attempts=max_attempts, new_id=new_id)
    return store_plan(store, planned)
