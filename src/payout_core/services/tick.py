"""One tick of the runner: take settlements from the inbox, claim due
transfers in batches, execute, record the run."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import attrs

from payout_core import attempt, models, pacing, ports, retry
from payout_core.services import execution, intake

__all__ = ["WorkerSettings", "run_tick", "unsafe_timing"]

log = logging.getLogger("payout.tick")


def _at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def unsafe_timing(
    *,
    lease: timedelta,
    stripe_timeout: timedelta,
    retry_max: timedelta,
    send_start_limit: timedelta = attempt.SEND_START_LIMIT,
) -> list[str]:
    """What in these settings would break the exactly-once rules (rule 8).

    A lease shorter than twice the send margin leaves a worker too little time
    between its claim and its send; a retry cap below the send margin would
    bring an uncertain transfer back before a look-up may be trusted.
    """
    margin = attempt.send_margin(stripe_timeout, send_start_limit)
    problems = []
    if lease < 2 * margin:
        problems.append(
            f"the lease ({lease.total_seconds():g} s) must be at least twice the send margin "
            f"(Stripe timeout + {send_start_limit.total_seconds():g} s = "
            f"{margin.total_seconds():g} s), so at least {2 * margin.total_seconds():g} s"
        )
    if retry_max < margin:
        problems.append(
            f"the retry cap ({retry_max.total_seconds():g} s) must be at least the send margin "
            f"({margin.total_seconds():g} s)"
        )
    return problems


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """How much one tick does, and how fast.

    Raises:
        ValueError: settings that would break the exactly-once rules
            (:func:`unsafe_timing`), or a count below 1.
    """

    batch_size: int = attrs.field(default=100, validator=_at_least_one)
    # The tick's budget: it stops after this many batches even if more is due,
    # so that one tick cannot run for ever and the run record stays current.
    max_batches: int = attrs.field(default=10, validator=_at_least_one)
    concurrency: int = attrs.field(default=8, validator=_at_least_one)
    lease: timedelta = timedelta(seconds=600)
    stripe_timeout: timedelta = timedelta(seconds=30)
    # Shorter only where no money moves (the demo, tests): see attempt.SEND_START_LIMIT.
    send_start_limit: timedelta = attempt.SEND_START_LIMIT
    retry_policy: retry.RetryPolicy = attrs.Factory(retry.RetryPolicy)
    # The attempts each transfer of a settlement taken from the inbox is given.
    max_attempts: int = attrs.field(default=models.DEFAULT_MAX_ATTEMPTS, validator=_at_least_one)

    def __attrs_post_init__(self) -> None:
        problems = unsafe_timing(
            lease=self.lease,
            stripe_timeout=self.stripe_timeout,
            retry_max=timedelta(seconds=self.retry_policy.max_seconds),
            send_start_limit=self.send_start_limit,
        )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def timing(self) -> attempt.Timing:
        return attempt.Timing(
            stripe_timeout=self.stripe_timeout,
            send_start_limit=self.send_start_limit,
            policy=self.retry_policy,
        )


def _new_id() -> str:
    return str(uuid.uuid4())


_COUNTERS = {
    attempt.Disposition.COMPLETED: "completed",
    attempt.Disposition.RETRIED: "retried",
    attempt.Disposition.FAILED_TERMINAL: "failed_terminal",
    attempt.Disposition.RELEASED: "released",
    # The run record has no column of its own for these: the status command
    # and the metrics name every transfer that needs an operator.
    attempt.Disposition.NEEDS_OPERATOR: "retried",
    attempt.Disposition.STALE: "stale",
}


def _tally(report: models.RunReport, results: list[attempt.AttemptResult]) -> models.RunReport:
    """``report`` with ``results`` counted, and halted by the first systemic one."""
    counts: dict[str, int] = {}
    for result in results:
        field = _COUNTERS.get(result.disposition)
        if field is not None:
            counts[field] = counts.get(field, 0) + 1
    report = attrs.evolve(
        report,
        claimed=report.claimed + len(results),
        **{field: getattr(report, field) + n for field, n in counts.items()},
    )
    systemic = next((r.systemic for r in results if r.systemic is not None), None)
    if systemic is not None and report.halted_reason is None:
        report = attrs.evolve(report, halted_reason=f"{systemic.code}: {systemic.message}")
        log.error(
            "payout.tick.halted",
            extra={"run_id": report.id, "code": systemic.code, "reason": systemic.message},
        )
    return report


def run_tick(
    *,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    settings: WorkerSettings,
    stop: threading.Event | None = None,
    inbox: ports.SettlementInbox | None = None,
    new_id: Callable[[], str] = _new_id,
    limiter: ports.RateLimiter | None = None,
    worker: str | None = None,
) -> models.RunReport:
    """Claim and execute due transfers until none is due, the tick's budget
    (``batch_size * max_batches`` claimed) is spent, ``stop`` is set or the
    gateway reports a systemic failure.

    Claims track sending: the worker claims only for its free concurrency slots
    and, with ``limiter`` (the Stripe budget the gateway sends under), only
    what the budget lets leave within :data:`~payout_core.pacing.CLAIM_HORIZON_SECONDS`.
    A claimed transfer starts at once; none waits in a queue while its lease
    runs. ``worker`` names this worker in its claim tokens (``worker/uuid``),
    so that a claim tells which worker holds it.

    With ``inbox``, the tick first takes the settlements other services wrote
    there (:func:`~payout_core.services.intake.take_settlements`), so that
    their transfers are claimed in this same tick; the report counts them.

    The run is recorded at its start and at its end. An infrastructure failure
    (the database went away) ends the tick with ``error`` set instead of
    raising: the runner tries again next tick.
    """
    report = models.RunReport(id=new_id(), started_at=clock.now())
    slots = execution.Slots(
        concurrency=settings.concurrency,
        store=store,
        directory=directory,
        gateway=gateway,
        clock=clock,
        timing=settings.timing,
        stop=stop,
    )
    try:
        with slots:
            try:
                store.record_run(report)
                if inbox is not None:
                    report = _take_inbox(report, inbox, store=store, clock=clock, settings=settings)
                report = _send(
                    slots,
                    store=store,
                    settings=settings,
                    limiter=limiter,
                    report=report,
                    stop=stop,
                    claim_token=lambda: new_id() if worker is None else f"{worker}/{new_id()}",
                )
            finally:
                # Attempts in flight finish and are counted, whatever ended the tick.
                while not slots.idle:
                    report = _tally(report, slots.finished())
    except Exception as exc:
        # The database went away, or a bug: the tick fails, the loop goes on.
        log.exception("payout.tick.failed", extra={"run_id": report.id})
        report = attrs.evolve(report, error=f"{type(exc).__name__}: {exc}")
    report = attrs.evolve(report, finished_at=clock.now())
    try:
        store.record_run(report)
    except Exception:
        log.exception("payout.tick.unrecorded", extra={"run_id": report.id})
    log.info(
        "payout.tick.finished",
        extra={
            "run_id": report.id,
            "claimed": report.claimed,
            "completed": report.completed,
            "retried": report.retried,
            "failed_terminal": report.failed_terminal,
            "released": report.released,
            "halted_reason": report.halted_reason,
            "error": report.error,
        },
    )
    return report


def _take_inbox(
    report: models.RunReport,
    inbox: ports.SettlementInbox,
    *,
    store: ports.PayoutStore,
    clock: ports.Clock,
    settings: WorkerSettings,
) -> models.RunReport:
    taken = intake.take_settlements(
        inbox=inbox, store=store, now=clock.now(), max_attempts=settings.max_attempts
    )
    return attrs.evolve(
        report, settlements_accepted=taken.accepted, settlements_rejected=taken.rejected
    )


# How long a worker waits for the Stripe budget before it asks again, when the
# budget grants nothing within the claim horizon and no attempt is in flight.
_BUDGET_POLL_SECONDS = 0.1

# How long a worker with a slot free waits for more to free before it claims:
# nothing beside a Stripe call (200 ms), but enough for a claim to take several
# transfers when attempts take a millisecond or two.
_GATHER_SECONDS = 0.002


def _send(
    slots: execution.Slots,
    *,
    store: ports.PayoutStore,
    settings: WorkerSettings,
    limiter: ports.RateLimiter | None,
    report: models.RunReport,
    stop: threading.Event | None,
    claim_token: Callable[[], str],
) -> models.RunReport:
    """Keep the slots busy with claimed transfers until the tick ends; the
    report with every finished attempt counted (those still in flight are the
    caller's to wait for)."""
    budget = settings.batch_size * settings.max_batches
    claimed_total = 0
    while not (stop is not None and stop.is_set()) and not slots.halted.is_set():
        wanted = min(slots.free, settings.batch_size, budget - claimed_total)
        granted = wanted
        if wanted > 0 and limiter is not None:
            granted = min(
                wanted, limiter.ready_within(ports.Budget.CREATE, pacing.CLAIM_HORIZON_SECONDS)
            )
        drained = False
        if granted > 0:
            claimed = store.claim_due(limit=granted, lease=settings.lease, token=claim_token())
            claimed_total += len(claimed)
            slots.start(claimed)
            if len(claimed) == granted and slots.free > 0:
                continue  # more may be due for the slots still free
            drained = len(claimed) < granted
        if slots.idle:
            if drained or claimed_total >= budget:
                break  # nothing due, or the tick's budget spent
            # The Stripe budget grants nothing soon: wait for it, not for a lease.
            (time.sleep if stop is None else stop.wait)(_BUDGET_POLL_SECONDS)
            continue
        # Wait for a slot; only briefly while the budget, not the slots, holds claims back.
        report = _tally(report, slots.finished(None if granted == wanted else _BUDGET_POLL_SECONDS))
        if 0 < slots.free < slots.concurrency // 2:
            # Others are about to finish when attempts are fast: one claim for them all.
            report = _tally(report, slots.finished(_GATHER_SECONDS))
    return report
