"""Builders for store tests: settlements, the job and transfers they become, outcomes.

Everything here goes through the core (the fingerprint, the state machine, the
ledger), so what a test writes is what the services would write, and any store
(in memory or PostgreSQL) accepts it. Ids are UUIDs, as the database requires.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from payout_core import idempotency, ledger, models, ports
from payout_core import state_machine as sm

__all__ = [
    "LEASE",
    "T0",
    "completed",
    "failed",
    "make_job",
    "make_transfers",
    "new_id",
    "record_outcome",
    "released",
    "retried",
    "schedule",
    "settlement",
]

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(minutes=10)

Winner = str | tuple[str, int]


def new_id() -> str:
    return str(uuid.uuid4())


def settlement(
    *winners: Winner,
    settlement_id: str = "s-1",
    contest_id: str = "c-1",
    currency: str = "usd",
) -> models.Settlement:
    """A settlement paying each winner: ``"u-1"`` (1,000 cents) or ``("u-1", 1500)``."""
    return models.Settlement(
        settlement_id=settlement_id,
        contest_id=contest_id,
        currency=currency,
        winners=tuple(
            models.Winner(user_id=w, amount_cents=1000)
            if isinstance(w, str)
            else models.Winner(user_id=w[0], amount_cents=w[1])
            for w in winners
        ),
    )


def make_job(
    of: models.Settlement, *, now: datetime, job_id: str | None = None
) -> models.PayoutJob:
    """The pending job the scheduling service would make of ``of``."""
    return models.PayoutJob(
        id=job_id or new_id(),
        settlement_id=of.settlement_id,
        contest_id=of.contest_id,
        currency=of.currency,
        status=models.JobStatus.PENDING,
        total_transfers=len(of.winners),
        total_amount_cents=of.total_amount_cents,
        settlement_fingerprint=idempotency.settlement_fingerprint(of),
        created_at=now,
        updated_at=now,
    )


def make_transfers(
    job: models.PayoutJob,
    of: models.Settlement,
    *,
    now: datetime,
    max_attempts: int = 5,
    ids: Sequence[str] | None = None,
) -> list[models.PayoutTransfer]:
    """One pending transfer per winner, in the settlement's order."""
    ids = list(ids) if ids is not None else [new_id() for _ in of.winners]
    return [
        models.PayoutTransfer(
            id=transfer_id,
            job_id=job.id,
            settlement_id=of.settlement_id,
            contest_id=of.contest_id,
            user_id=winner.user_id,
            amount_cents=winner.amount_cents,
            currency=of.currency,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
        for transfer_id, winner in zip(ids, of.winners, strict=True)
    ]


def schedule(
    store: ports.PayoutStore,
    of: models.Settlement,
    *,
    now: datetime,
    max_attempts: int = 5,
) -> tuple[models.PayoutJob, list[models.PayoutTransfer]]:
    """Schedule ``of`` as a new job; its job and transfers as written."""
    job = make_job(of, now=now)
    transfers = make_transfers(job, of, now=now, max_attempts=max_attempts)
    result = store.schedule(job, transfers)
    assert result.created, f"settlement {of.settlement_id} was already scheduled"
    return result.job, transfers


# -- outcomes of a claimed transfer, as the execution service makes them ---------


def completed(claimed: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    sent = sm.send(claimed, destination=f"acct_{claimed.user_id}", now=now)
    return sm.complete(sent, stripe_transfer_id=f"tr_{claimed.id[:8]}", now=now)


def failed(
    claimed: models.PayoutTransfer, *, now: datetime, code: str = "account_invalid"
) -> models.PayoutTransfer:
    return sm.fail(claimed, code=code, message=f"declined: {code}", now=now)


def retried(
    claimed: models.PayoutTransfer,
    *,
    now: datetime,
    after: timedelta = timedelta(seconds=30),
    uncertain: bool = False,
) -> models.PayoutTransfer:
    return sm.retry(
        claimed,
        next_attempt_at=now + after,
        code="rate_limit",
        message="too many requests",
        uncertain=uncertain,
        now=now,
    )


def released(claimed: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    return sm.release(claimed, now=now, reason="authentication_error")


def record_outcome(
    store: ports.PayoutStore,
    claimed: models.PayoutTransfer,
    updated: models.PayoutTransfer,
    *,
    now: datetime,
    book: bool = True,
) -> bool:
    """Record ``updated`` over ``claimed`` with its ledger row (``book``), as the service does."""
    entry = ledger.entry_for(updated, now=now) if book else None
    return store.record(claimed=claimed, updated=updated, ledger_entry=entry, now=now)
