"""A whole payout world in memory, for a service's own tests.

The same front door as production (:class:`payout_core.Payouts`) over the
in-memory adapters: a store, an account directory, a simulated Stripe (which
moves no money, and takes scripted faults), a manual clock, and a worker the
test drives. The pytest plugin (:mod:`payout_adapters.pytest_plugin`)
hands one to every test that asks for ``payout_world``::

    def test_the_winner_is_paid(payout_world):
        payout_world.directory.set_account("u_1", "acct_1")
        payout = payout_world.payouts.schedule(SETTLEMENT)
        assert payout_world.payouts.wait(payout.id, timeout=5).paid

Waiting drives the worker (one tick, then the clock moves on to the next
retry) instead of sleeping, so backoffs of minutes take milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import attrs

from payout_adapters.memory import faults
from payout_adapters.memory.clock import ManualClock
from payout_adapters.memory.directory import InMemoryAccountDirectory
from payout_adapters.memory.gateway import SimulatedGateway
from payout_adapters.memory.store import InMemoryStore
from payout_core import errors, models, ports
from payout_core.payouts import Payouts
from payout_core.services import tick, worker

__all__ = ["InMemoryTransaction", "PayoutWorld"]

# Where a world's clock starts unless told otherwise.
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)

# How far the clock moves when a tick found nothing due and no retry is
# waiting: past any lease (a claim a crashed worker left), so it is taken over.
_IDLE_STEP: Final = timedelta(minutes=11)


class InMemoryTransaction:
    """Stands for the caller's open database transaction in a test: what is
    enqueued on it is written when it commits, and never if it rolls back.

    In memory the job is written at commit, so a winner already paid by
    another settlement is refused then (:class:`~payout_core.errors.DuplicatePayout`
    from :meth:`PayoutWorld.transaction`'s exit), where PostgreSQL refuses it
    at :meth:`~payout_core.Payouts.enqueue`.
    """

    def __init__(self) -> None:
        self._plans: list[tuple[models.PayoutJob, tuple[models.PayoutTransfer, ...]]] = []
        self._open = True

    def _defer(self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]) -> None:
        if not self._open:
            raise errors.StoreUnavailable("the transaction is over: enqueue in an open one")
        self._plans.append((job, tuple(transfers)))

    def _commit(self, store: ports.PayoutStore) -> None:
        self._open = False
        for job, transfers in self._plans:
            store.schedule(job, transfers)

    def _rollback(self) -> None:
        self._open = False
        self._plans.clear()


@attrs.frozen
class _TransactionEnqueuer:
    store: ports.PayoutStore

    def schedule_on(
        self,
        connection: InMemoryTransaction,
        job: models.PayoutJob,
        transfers: Sequence[models.PayoutTransfer],
    ) -> ports.ScheduleResult:
        existing = self.store.find_job(job.settlement_id)
        if existing is not None:
            return ports.ScheduleResult(job=existing, created=False)
        connection._defer(job, transfers)
        return ports.ScheduleResult(job=job, created=True)

    def transfers_on(
        self, connection: InMemoryTransaction, job_id: str
    ) -> list[models.PayoutTransfer]:
        del connection  # a committed job's transfers are the store's
        return self.store.transfers_of(job_id)


@attrs.define
class PayoutWorld:
    """Store, directory, simulated Stripe, manual clock and worker, wired; and
    :attr:`payouts`, the front door over them."""

    clock: ManualClock
    store: InMemoryStore
    directory: InMemoryAccountDirectory
    stripe: SimulatedGateway
    settings: tick.WorkerSettings
    worker: worker.Worker = attrs.field(init=False)
    payouts: Payouts[InMemoryTransaction] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.worker = worker.Worker(
            store=self.store,
            directory=self.directory,
            gateway=self.stripe,
            clock=self.clock,
            settings=self.settings,
        )
        self.payouts = Payouts(
            store=self.store,
            clock=self.clock,
            enqueuer=_TransactionEnqueuer(self.store),
            max_attempts=self.settings.max_attempts,
            drive=self.step,
        )

    @classmethod
    def create(
        cls,
        *,
        start: datetime = DEFAULT_START,
        accounts: dict[str, str] | None = None,
        handler: faults.Handler | None = None,
        settings: tick.WorkerSettings | None = None,
    ) -> PayoutWorld:
        """A fresh world at ``start``; ``accounts`` maps user ids to their
        Stripe connected accounts; ``handler`` scripts the simulated Stripe's
        failures (:mod:`payout_adapters.memory.faults`)."""
        clock = ManualClock(start)
        return cls(
            clock=clock,
            store=InMemoryStore(clock=clock),
            directory=InMemoryAccountDirectory(accounts),
            stripe=SimulatedGateway(handler=handler, clock=clock),
            settings=settings if settings is not None else tick.WorkerSettings(concurrency=4),
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[InMemoryTransaction]:
        """A stand-in for the service's transaction: committed when the block
        ends, rolled back when it raises (the exception goes on)."""
        transaction = InMemoryTransaction()
        try:
            yield transaction
        except BaseException:
            transaction._rollback()
            raise
        transaction._commit(self.store)

    def tick(self) -> models.RunReport:
        """One tick of the worker: claim and pay what is due now."""
        return self.worker.tick()

    def step(self) -> models.RunReport:
        """One tick; when it found nothing due, the clock moves on to the next
        retry (or past a lease), so that a wait never waits for real time."""
        report = self.tick()
        if report.claimed == 0:
            self.clock.advance(self._until_next_due())
        return report

    def _until_next_due(self) -> timedelta:
        now = self.clock.now()
        waiting = [
            t.next_attempt_at
            for t in self.store.list_transfers(status=models.TransferStatus.RETRYABLE, limit=1000)
            if t.next_attempt_at is not None and t.next_attempt_at > now
        ]
        return min(waiting) - now if waiting else _IDLE_STEP
