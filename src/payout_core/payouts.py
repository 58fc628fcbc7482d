"""The front door for a service that pays contests: :class:`Payouts`.

A service builds one through an adapter and uses nothing else:

- ``payout_adapters.postgres.connect(url)``, or ``payout_adapters.postgres.payouts(pool)``
  over a pool the service already owns;
- ``payout_adapters.postgres.connect_async(url)`` for asyncio services: an
  :class:`~payout_adapters.postgres.AsyncPayouts` with the same calls, awaited;
- ``payout_adapters.memory.PayoutWorld`` in tests (the pytest plugin's
  ``payout_world`` fixture): the same calls over the in-memory adapters, with a
  simulated Stripe and a worker the test drives.

What the service does through it: schedule a settlement, or enqueue it in its
own open transaction (committed or rolled back with the service's rows), look
a payout up by job id or settlement id, read its status, wait for it to
finish. Paying is the worker's (``payout-core loop``), never the caller's.

Both the sync and the async front doors use the same pieces: the plan of a
settlement checked once, at this door (:func:`plan`, from
:mod:`payout_core.services.scheduling`), what a store's answer to it means
(:func:`accepted`), a payout as a caller sees it (:class:`Payout`), and the
deadline of a wait (:class:`Deadline`). The async twin runs the same plan
through the same SQL; only the waiting on I/O differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

import attrs

from payout_core import errors, models, ports
from payout_core.services import scheduling
from payout_core.services.scheduling import Plan, accepted, plan

__all__ = [
    "Deadline",
    "Enqueuer",
    "Payout",
    "PayoutTimeout",
    "Payouts",
    "Plan",
    "SettlementInput",
    "UnknownPayout",
    "accepted",
    "plan",
]

# A settlement as a service holds it: the model, or its JSON (parsed) form.
SettlementInput = models.Settlement | Mapping[str, object]

Conn_contra = TypeVar("Conn_contra", contravariant=True)
Conn = TypeVar("Conn")


class Enqueuer(Protocol[Conn_contra]):
    """Writes a plan on the caller's own connection, inside its open
    transaction: the payout commits or rolls back with the caller's rows."""

    def schedule_on(
        self,
        connection: Conn_contra,
        job: models.PayoutJob,
        transfers: Sequence[models.PayoutTransfer],
    ) -> ports.ScheduleResult:
        """As :meth:`payout_core.ports.PayoutStore.schedule`, on ``connection``.

        Raises:
            DuplicatePayout: a winner is already paid by another settlement of
                the contest (nothing was written; the caller's transaction
                stays usable).
            StoreUnavailable: the write failed.
        """
        ...

    def transfers_on(self, connection: Conn_contra, job_id: str) -> list[models.PayoutTransfer]:
        """The transfers of job ``job_id`` as ``connection`` sees them, ordered by user id."""
        ...


class UnknownPayout(errors.PayoutError, LookupError):
    """No payout job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no payout job {job_id!r}")
        self.job_id = job_id


class PayoutTimeout(errors.PayoutError, TimeoutError):
    """The payout did not finish within the wait; ``payout`` is how it stood."""

    def __init__(self, payout: Payout, timeout: timedelta) -> None:
        super().__init__(
            f"payout job {payout.id!r} did not finish within {timeout.total_seconds():g}s: "
            f"{payout.job.completed_count} paid, {payout.job.failed_count} failed, "
            f"{len(payout.transfers) - payout.job.completed_count - payout.job.failed_count} "
            "still open"
        )
        self.payout = payout


@attrs.frozen(kw_only=True)
class Payout:
    """A payout job and its transfers (ordered by user id), as a service sees them."""

    job: models.PayoutJob
    transfers: tuple[models.PayoutTransfer, ...]

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def settlement_id(self) -> str:
        return self.job.settlement_id

    @property
    def status(self) -> models.JobStatus:
        return self.job.status

    @property
    def finished(self) -> bool:
        """Every transfer is paid or failed for good: nothing more will happen."""
        return self.job.status is models.JobStatus.COMPLETE

    @property
    def paid(self) -> tuple[models.PayoutTransfer, ...]:
        return tuple(t for t in self.transfers if t.status is models.TransferStatus.COMPLETED)

    @property
    def failed(self) -> tuple[models.PayoutTransfer, ...]:
        """Failed for good: each waits for an operator (README, the runbook)."""
        return tuple(t for t in self.transfers if t.status is models.TransferStatus.FAILED_TERMINAL)


def _user(transfer: models.PayoutTransfer) -> str:
    return transfer.user_id


@attrs.frozen
class Deadline:
    """When a wait gives up, on a monotonic clock (a wall clock may jump)."""

    timeout: timedelta
    ends_at: float
    monotonic: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)

    @classmethod
    def after(
        cls, timeout: timedelta | float, monotonic: Callable[[], float] = time.monotonic
    ) -> Deadline:
        span = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        if span < timedelta(0):
            raise ValueError(f"a wait's timeout cannot be negative, got {span}")
        return cls(span, monotonic() + span.total_seconds(), monotonic)

    @property
    def passed(self) -> bool:
        return self.monotonic() >= self.ends_at

    def finished(self, job_id: str, payout: Payout | None) -> Payout | None:
        """One look of a wait: ``payout`` when it is finished, ``None`` to
        look again later.

        Raises:
            UnknownPayout: ``payout`` is ``None``: no job ``job_id``.
            PayoutTimeout: the deadline passed before it finished.
        """
        if payout is None:
            raise UnknownPayout(job_id)
        if payout.finished:
            return payout
        if self.passed:
            raise PayoutTimeout(payout, self.timeout)
        return None

    def pause(self, poll_seconds: float) -> float:
        """How long to sleep before looking again: ``poll_seconds``, or what is left."""
        return max(0.0, min(poll_seconds, self.ends_at - self.monotonic()))


@attrs.frozen(kw_only=True)
class Payouts(Generic[Conn]):
    """Schedule, enqueue, look up and wait for payouts.

    Build it through an adapter (see the module's docstring), not by hand.
    ``drive``, when set, is called while waiting instead of sleeping: the
    in-memory world runs its worker there; in production the fleet of
    ``payout-core loop`` workers pays and a wait only polls.
    """

    store: ports.PayoutStore
    clock: ports.Clock
    enqueuer: Enqueuer[Conn]
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS
    poll_seconds: float = 0.5
    drive: Callable[[], object] | None = None
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, repr=False)
    monotonic: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)

    def schedule(self, settlement: SettlementInput) -> Payout:
        """Create the settlement's payout job (one transfer per winner) in a
        transaction of its own, or return the job already made for it: calling
        twice with one settlement makes one job.

        Raises:
            InvalidSettlement: the settlement breaks a rule (nothing written).
            SettlementConflict: the settlement id is known with other contents.
            DuplicatePayout: a winner is already paid by another settlement of the contest.
            StoreUnavailable: the store failed; nothing was written.
        """
        planned = plan(settlement, now=self.clock.now(), max_attempts=self.max_attempts)
        return self._payout(scheduling.store_plan(self.store, planned).job)

    def enqueue(self, connection: Conn, settlement: SettlementInput) -> Payout:
        """Write the settlement's payout job on ``connection``, inside the
        caller's open transaction: it exists when the caller commits, and
        never if the caller rolls back. Idempotent on the settlement id, like
        :meth:`schedule`. On an error nothing is written and the caller's
        transaction remains usable.

        Raises:
            InvalidSettlement, SettlementConflict, DuplicatePayout, StoreUnavailable:
                as :meth:`schedule`.
        """
        planned = plan(settlement, now=self.clock.now(), max_attempts=self.max_attempts)
        result = accepted(
            planned, self.enqueuer.schedule_on(connection, planned.job, planned.transfers)
        )
        if result.created:
            return Payout(job=result.job, transfers=tuple(sorted(planned.transfers, key=_user)))
        return Payout(
            job=result.job, transfers=tuple(self.enqueuer.transfers_on(connection, result.job.id))
        )

    def get(self, job_id: str) -> Payout | None:
        """The payout job ``job_id`` with its transfers, or ``None``."""
        job = self.store.get_job(job_id)
        return None if job is None else self._payout(job)

    def get_by_settlement(self, settlement_id: str) -> Payout | None:
        """The payout job of settlement ``settlement_id``, or ``None``."""
        job = self.store.find_job(settlement_id)
        return None if job is None else self._payout(job)

    def status(self, job_id: str) -> models.JobStatus:
        """pending, processing or complete.

        Raises:
            UnknownPayout: no job ``job_id``.
        """
        job = self.store.get_job(job_id)
        if job is None:
            raise UnknownPayout(job_id)
        return job.status

    def wait(self, job_id: str, *, timeout: timedelta | float) -> Payout:
        """Wait until every transfer of ``job_id`` is paid or failed for good;
        the payout then.

        Raises:
            UnknownPayout: no job ``job_id``.
            PayoutTimeout: not finished within ``timeout`` (carries the payout as it stood).
        """
        deadline = Deadline.after(timeout, self.monotonic)
        while (done := deadline.finished(job_id, self.get(job_id))) is None:
            if self.drive is not None:
                self.drive()
            else:
                self.sleep(deadline.pause(self.poll_seconds))
        return done

    def _payout(self, job: models.PayoutJob) -> Payout:
        return Payout(job=job, transfers=tuple(self.store.transfers_of(job.id)))
