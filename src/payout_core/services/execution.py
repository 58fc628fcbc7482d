"""Executing claimed transfers: the driver of :func:`payout_core.attempt.run_attempt`.

Each operation the attempt yields is done here at once: the directory, the
store's intent and record, the gateway, the worker's clock. No lock,
transaction or connection is held while the gateway is called: the claim and
the intent were committed before, and the outcome is recorded after, each in
its own short unit of work. The deterministic idempotency key and the
write-ahead intent make that split safe (docs/exactly-once.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor

import attrs

from payout_core import attempt, models, ports
from payout_core import state_machine as sm
from payout_core.attempt import AttemptResult, Disposition, Timing

__all__ = [
    "AttemptResult",
    "Disposition",
    "Slots",
    "Timing",
    "drive",
    "execute_claimed",
    "execute_transfer",
]

log = logging.getLogger("payout.transfer")


def drive(
    steps: attempt.Attempt,
    *,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
) -> AttemptResult:
    """Do each operation ``steps`` yields, at once, and return its result.

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
            result: AttemptResult = done.value
            return result


def execute_transfer(
    *,
    transfer: models.PayoutTransfer,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    timing: Timing,
) -> AttemptResult:
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


def _log(claimed: models.PayoutTransfer, result: AttemptResult) -> None:
    ids = {"transfer_id": claimed.id, "job_id": claimed.job_id}
    updated = result.transfer
    if result.systemic is not None:
        log.error(
            "payout.transfer.systemic",
            extra={**ids, "code": result.systemic.code, "reason": result.systemic.message},
        )
        return
    level = {
        Disposition.FAILED_TERMINAL: logging.WARNING,
        Disposition.NEEDS_OPERATOR: logging.ERROR,
        Disposition.STALE: logging.WARNING,
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


class _Prefetched:
    """The directory, with the accounts of a claimed batch read in one query:
    a transfer's first send reads its account once, right before its intent
    pins it, so a read at the claim a moment earlier serves as well."""

    def __init__(self, directory: ports.AccountDirectory, accounts: dict[str, str]) -> None:
        self._directory = directory
        self._accounts = accounts

    def account_for(self, user_id: str) -> str | None:
        return self._accounts.get(user_id)

    def accounts_for(self, user_ids: Sequence[str]) -> dict[str, str]:
        return self._directory.accounts_for(user_ids)


def _give_back(transfer: models.PayoutTransfer, store: ports.PayoutStore) -> AttemptResult:
    """Release a claimed transfer that will not be attempted (halt or shutdown):
    it wrote no intent, so it sent nothing and spent nothing."""
    now = transfer.updated_at
    released = sm.release(transfer, now=now)
    recorded = store.record(claimed=transfer, updated=released, ledger_entry=None, now=now)
    return AttemptResult(
        transfer=released if recorded else transfer,
        disposition=Disposition.RELEASED if recorded else Disposition.STALE,
    )


@attrs.frozen(kw_only=True)
class _Attempts:
    """What every attempt of a batch of claims needs, and the halt they share.

    Calling it runs one claimed transfer's attempt, or gives its claim back
    once ``halted`` or ``stop`` is set. Never raises: one failing transfer
    never stops the others.
    """

    store: ports.PayoutStore
    directory: ports.AccountDirectory
    gateway: ports.PaymentGateway
    clock: ports.Clock
    timing: Timing
    stop: threading.Event | None
    halted: threading.Event = attrs.Factory(threading.Event)

    def of(self, transfers: Sequence[models.PayoutTransfer]) -> _Attempts:
        """These attempts for the claimed ``transfers``, their accounts read in
        one query (:class:`_Prefetched`); the halt stays shared."""
        unpinned = [t.user_id for t in transfers if t.destination_account is None]
        if len(unpinned) < 2:
            return self
        prefetched = _Prefetched(self.directory, self.directory.accounts_for(unpinned))
        return attrs.evolve(self, directory=prefetched)

    def __call__(self, transfer: models.PayoutTransfer) -> AttemptResult:
        try:
            if self.halted.is_set() or (self.stop is not None and self.stop.is_set()):
                return _give_back(transfer, self.store)
            result = execute_transfer(
                transfer=transfer,
                store=self.store,
                directory=self.directory,
                gateway=self.gateway,
                clock=self.clock,
                timing=self.timing,
            )
        except Exception:
            # A store outage or a bug in an adapter: this transfer's claim stays
            # until its lease expires and another worker takes it over with the
            # same key. The other transfers carry on.
            log.exception("payout.transfer.error", extra={"transfer_id": transfer.id})
            return AttemptResult(transfer=transfer, disposition=Disposition.ERROR)
        if result.systemic is not None:
            self.halted.set()
        return result


def execute_claimed(
    *,
    transfers: Sequence[models.PayoutTransfer],
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    timing: Timing,
    concurrency: int,
    stop: threading.Event | None = None,
) -> list[AttemptResult]:
    """Execute claimed transfers, at most ``concurrency`` at a time.

    One failing transfer never stops the others. A systemic outcome, or
    ``stop`` being set, stops new attempts: the transfers not yet started are
    released without spending an attempt, and those in flight finish.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    run_one = _Attempts(
        store=store, directory=directory, gateway=gateway, clock=clock, timing=timing, stop=stop
    ).of(transfers)
    if concurrency == 1 or len(transfers) <= 1:
        return [run_one(t) for t in transfers]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payout") as pool:
        return list(pool.map(run_one, transfers))


class Slots:
    """A worker's ``concurrency`` attempts in flight, each on a thread of its own.

    The tick claims only for free slots (:attr:`free`) and starts what it
    claimed at once (:meth:`start`): a claimed transfer never waits in a local
    queue while its lease runs, and a worker holds at most ``concurrency``
    claimed transfers. A systemic outcome sets :attr:`halted`: attempts not yet
    begun give their claims back, and those in flight finish.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        store: ports.PayoutStore,
        directory: ports.AccountDirectory,
        gateway: ports.PaymentGateway,
        clock: ports.Clock,
        timing: Timing,
        stop: threading.Event | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self._attempts = _Attempts(
            store=store, directory=directory, gateway=gateway, clock=clock, timing=timing, stop=stop
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payout")
        self._running: set[Future[AttemptResult]] = set()

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True)

    @property
    def halted(self) -> threading.Event:
        return self._attempts.halted

    @property
    def free(self) -> int:
        return self.concurrency - len(self._running)

    @property
    def idle(self) -> bool:
        return not self._running

    def start(self, transfers: Sequence[models.PayoutTransfer]) -> None:
        """Begin an attempt for each of ``transfers``, claimed for free slots."""
        if len(transfers) > self.free:
            raise ValueError(f"{len(transfers)} transfers for {self.free} free slot(s)")
        run_one = self._attempts.of(transfers)
        for transfer in transfers:
            self._running.add(self._pool.submit(run_one, transfer))

    def finished(self, timeout: float | None = None) -> list[AttemptResult]:
        """Wait up to ``timeout`` (for ever: ``None``) until an attempt ends,
        unless none runs; the results of every attempt ended by then."""
        if not self._running:
            return []
        done, self._running = futures.wait(
            self._running, timeout=timeout, return_when=futures.FIRST_COMPLETED
        )
        return [f.result() for f in done]
