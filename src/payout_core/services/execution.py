"""Running many attempts at once: a batch of claimed transfers, or a
worker's slots, on a pool of threads that share one halt.

Each attempt is :func:`payout_core.services.attempting.execute_transfer`; this
module decides which run, how many at a time, and what happens to the claims
not yet begun when the gateway reports a systemic failure or the worker is
asked to stop (they are given back, having sent and spent nothing).
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
from payout_core.services import attempting

__all__ = ["Slots", "execute_claimed"]

log = logging.getLogger("payout.transfer")


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


def _give_back(transfer: models.PayoutTransfer, store: ports.PayoutStore) -> attempt.AttemptResult:
    """Release a claimed transfer that will not be attempted (halt or shutdown):
    it wrote no intent, so it sent nothing and spent nothing."""
    now = transfer.updated_at
    released = sm.release(transfer, now=now)
    recorded = store.record(claimed=transfer, updated=released, ledger_entry=None, now=now)
    return attempt.AttemptResult(
        transfer=released if recorded else transfer,
        disposition=attempt.Disposition.RELEASED if recorded else attempt.Disposition.STALE,
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
    timing: attempt.Timing
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

    def __call__(self, transfer: models.PayoutTransfer) -> attempt.AttemptResult:
        try:
            if self.halted.is_set() or (self.stop is not None and self.stop.is_set()):
                return _give_back(transfer, self.store)
            result = attempting.execute_transfer(
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
            return attempt.AttemptResult(transfer=transfer, disposition=attempt.Disposition.ERROR)
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
    timing: attempt.Timing,
    concurrency: int,
    stop: threading.Event | None = None,
) -> list[attempt.AttemptResult]:
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
        timing: attempt.Timing,
        stop: threading.Event | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self._attempts = _Attempts(
            store=store, directory=directory, gateway=gateway, clock=clock, timing=timing, stop=stop
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payout")
        self._running: set[Future[attempt.AttemptResult]] = set()

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

    def finished(self, timeout: float | None = None) -> list[attempt.AttemptResult]:
        """Wait up to ``timeout`` (for ever: ``None``) until an attempt ends,
        unless none runs; the results of every attempt ended by then."""
        if not self._running:
            return []
        done, self._running = futures.wait(
            self._running, timeout=timeout, return_when=futures.FIRST_COMPLETED
        )
        return [f.result() for f in done]
