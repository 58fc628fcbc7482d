"""One attempt of one claimed transfer, against the ports: the driver of
:func:`payout_core.attempt.run_attempt`.

Each operation the attempt yields is done here at once: the directory, the
store's intent and record, the gateway, the worker's clock. No lock,
transaction or connection is held while the gateway is called: the claim and
the intent were committed before, and the outcome is recorded after, each in
its own short unit of work. The deterministic idempotency key and the
write-ahead intent make that split safe (docs/exactly-once.md).

The worker's clock is read twice in an attempt that sends, both before the
request leaves: once just before the intent (:class:`~payout_core.attempt.ReadLocalClock`)
and once as the request is about to leave (:meth:`~payout_core.attempt.Send.too_late`).
Rule 2's start limit is the time between those two reads. Nothing after the
send reads it: the outcome is recorded at the database's time (rule 1), and an
attempt that sends nothing reads it at most once, before an intent that was
refused.

Running many attempts at once, on a pool of slots, is
:mod:`payout_core.services.execution`.
"""

from __future__ import annotations

import logging

from payout_core import attempt, models, ports

__all__ = ["drive", "execute_transfer"]

log = logging.getLogger("payout.transfer")


def drive(
    steps: attempt.Attempt,
    *,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
) -> attempt.AttemptResult:
    """Do each operation ``steps`` yields, at once, and return its result.

    ``clock`` is read only for :class:`~payout_core.attempt.ReadLocalClock`
    and, as the request leaves, for :meth:`~payout_core.attempt.Send.too_late`.

    Raises:
        InfrastructureError: the store failed; the claim stays until its lease expires.
    """
    answer: object = None
    op = next(steps)
    while True:
        match op:
            case attempt.ReadAccount(user_id=user_id):
                answer = directory.account_for(user_id)
            case attempt.ReadLocalClock():
                answer = clock.now()
            case attempt.WriteIntent(claimed=claimed, destination=destination, margin=margin):
                answer = store.write_intent(claimed=claimed, destination=destination, margin=margin)
            case attempt.Send(request=request):
                # Read here, not before: the closer to the request, the shorter
                # the stall the start limit cannot see.
                if op.too_late(clock.now()):
                    log.warning(
                        "payout.transfer.send_too_late",
                        extra={"idempotency_key": request.idempotency_key},
                    )
                    answer = attempt.TOO_LATE
                else:
                    answer = gateway.create_transfer(request)
            case attempt.LookUp(lookup=lookup):
                answer = gateway.find_transfer(lookup)
            case attempt.Record(claimed=claimed, updated=updated, ledger_entry=entry, now=now):
                answer = store.record(claimed=claimed, updated=updated, ledger_entry=entry, now=now)
        try:
            op = steps.send(answer)
        except StopIteration as done:
            result: attempt.AttemptResult = done.value
            return result


def execute_transfer(
    *,
    transfer: models.PayoutTransfer,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    timing: attempt.Timing,
) -> attempt.AttemptResult:
    """Run one attempt of a claimed transfer and record its outcome.

    Raises:
        IllegalTransition: ``transfer`` is not a claimed (processing) transfer.
        InfrastructureError: the store failed; the claim stays until its lease expires.
    """
    result = drive(
        attempt.run_attempt(transfer, timing=timing),
        store=store,
        directory=directory,
        gateway=gateway,
        clock=clock,
    )
    _log(transfer, result)
    return result


def _log(claimed: models.PayoutTransfer, result: attempt.AttemptResult) -> None:
    ids = {"transfer_id": claimed.id, "job_id": claimed.job_id}
    updated = result.transfer
    if result.systemic is not None:
        log.error(
            "payout.transfer.systemic",
            extra={**ids, "code": result.systemic.code, "reason": result.systemic.message},
        )
        return
    level = {
        attempt.Disposition.FAILED_TERMINAL: logging.WARNING,
        attempt.Disposition.NEEDS_OPERATOR: logging.ERROR,
        attempt.Disposition.STALE: logging.WARNING,
    }.get(result.disposition, logging.INFO)
    log.log(
        level,
        f"payout.transfer.{result.disposition.value}",
        extra={
            **ids,
            "attempt": updated.attempt_count,
            "code": updated.failure_code,
            "stripe_transfer_id": updated.stripe_transfer_id,
            "next_attempt_at": updated.next_attempt_at,
            "needs_operator": updated.needs_operator,
        },
    )
