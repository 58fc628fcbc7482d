"""Inbox -> jobs: every settlement another service wrote becomes a job exactly once."""

from __future__ import annotations

import logging
from datetime import datetime

import attrs

from payout_core import errors, models, ports, validation
from payout_core.services import scheduling

__all__ = ["IntakeResult", "take_settlements"]

log = logging.getLogger("payout.inbox")


@attrs.frozen(kw_only=True)
class IntakeResult:
    accepted: int = 0
    rejected: int = 0


def _plan(item: ports.InboxItem, *, now: datetime, max_attempts: int) -> scheduling.Plan:
    """The row's payload checked (once: it is JSON) and planned."""
    planned = scheduling.plan(item.payload, now=now, max_attempts=max_attempts)
    if planned.job.settlement_id != item.settlement_id:
        raise errors.InvalidSettlement(
            [
                errors.Problem(
                    "settlement_id",
                    f"payload says {validation.shown(planned.job.settlement_id)} but the row "
                    f"says {validation.shown(item.settlement_id)}",
                )
            ]
        )
    return planned


def take_settlements(
    *,
    inbox: ports.SettlementInbox,
    store: ports.PayoutStore,
    now: datetime,
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    limit: int = 100,
) -> IntakeResult:
    """Schedule every unprocessed inbox row; reject the malformed ones with a reason.

    A rejected row never blocks the rows behind it. A row whose settlement was
    already scheduled with the same contents is accepted as that job; with other
    contents it is rejected (a changed settlement is never paid twice). A row
    the store refuses although it passed validation (:class:`StoreRefused`: a
    rule the core does not know) is rejected too, saying so, rather than fail
    every tick from now on: taking it again could only be refused again.

    Raises:
        StoreUnavailable: the tick fails; rows not yet marked are taken next time.
    """
    accepted = rejected = 0
    for item in inbox.unprocessed(limit=limit):
        ids = {"inbox_id": item.id, "settlement_id": item.settlement_id}
        try:
            result = scheduling.store_plan(store, _plan(item, now=now, max_attempts=max_attempts))
        except (
            errors.InvalidSettlement,
            errors.SettlementConflict,
            errors.DuplicatePayout,
        ) as refusal:
            inbox.mark_rejected(item.id, reason=str(refusal), now=now)
            log.warning("payout.inbox.rejected", extra={**ids, "reason": str(refusal)})
            rejected += 1
            continue
        except errors.StoreRefused as refusal:
            reason = f"not the settlement's fault: it is valid, but {refusal}"
            inbox.mark_rejected(item.id, reason=reason, now=now)
            log.error(  # noqa: TRY400 - the reason is the whole story; no traceback
                "payout.inbox.store_refused", extra={**ids, "reason": reason}
            )
            rejected += 1
            continue
        inbox.mark_accepted(item.id, job_id=result.job.id, now=now)
        log.info("payout.inbox.accepted", extra={**ids, "job_id": result.job.id})
        accepted += 1
    return IntakeResult(accepted=accepted, rejected=rejected)
