"""What every part of the in-memory store shares: its tables, its lock, its
outage switches, and the checks that need more than one row.

:class:`Tables` holds the state as PostgreSQL holds its tables (and the indexes
the store's reads use), the one lock every operation is a step under, and the
switches that make operations fail as a database going away would. The parts
of the port (:mod:`.jobs`, :mod:`.claims`, :mod:`.operator`, :mod:`.reversals`,
:mod:`.reads`) build on it; :class:`~payout_adapters.memory.InMemoryStore`
is all of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Final

import attrs

from payout_adapters import clock as clock_
from payout_adapters.memory.store import schema
from payout_core import completion, errors, ledger, models, ports

__all__ = ["OPERATIONS", "Tables"]

S = models.TransferStatus
E = models.LedgerEntryType

#: The names :meth:`InMemoryStore.fail_next` accepts: the store port's methods.
OPERATIONS: Final = frozenset(
    {
        "schedule",
        "claim_due",
        "write_intent",
        "record",
        "get_job",
        "find_job",
        "list_jobs",
        "get_transfer",
        "transfers_of",
        "ledger",
        "list_transfers",
        "queue_depth",
        "needing_operator",
        "transfer_counts",
        "record_run",
        "recent_runs",
        "jobs_after",
        "transfer_histories",
        "resolve",
        "reissue",
        "reversals_of",
        "reversals_in_doubt",
        "reversal_intent",
        "settle_reversal",
        "book_reversal",
    }
)


# What record() takes from the outcome; the rest of a transfer (who, how much,
# which job) never changes after scheduling, as the PostgreSQL UPDATE's SET list.
_OUTCOME_FIELDS: Final = (
    "status",
    "attempt_count",
    "claim_token",
    "next_attempt_at",
    "lease_expires_at",
    "destination_account",
    "stripe_transfer_id",
    "failure_code",
    "failure_message",
    "key_generation",
    "key_first_sent_at",
    "last_send_at",
    "key_sends",
    "outcome_uncertain",
    "key_replays_error",
    "platform_refused",
    "lookup_failures",
    "abandoned_claims",
    "needs_operator",
    "updated_at",
)


@attrs.define
class _Fault:
    remaining: int
    error: Exception | None
    operations: frozenset[str] | None


class Tables:
    """The store's state and what every operation on it shares."""

    def __init__(self, *, clock: ports.Clock | None = None) -> None:
        self._lock = threading.RLock()
        self._clock: ports.Clock = clock or clock_.SystemClock()
        self._clear()

    def _clear(self) -> None:
        self._jobs: dict[str, models.PayoutJob] = {}
        self._job_of_settlement: dict[str, str] = {}
        self._transfers: dict[str, models.PayoutTransfer] = {}
        self._transfers_of_job: dict[str, list[str]] = {}
        # The winner's latest transfer: a live or completed one if there is one.
        self._transfer_of_winner: dict[tuple[str, str], str] = {}
        self._reissued: set[str] = set()  # failed transfers reissued already
        self._open: set[str] = set()  # transfers not yet terminal: the claim scans these
        self._ledger: list[models.LedgerEntry] = []
        self._ledger_keys: set[str] = set()
        self._reversals: dict[str, models.Reversal] = {}  # by id, in write order
        self._booked: set[tuple[str, models.LedgerEntryType]] = set()
        self._runs: dict[str, models.RunReport] = {}
        self._pause = models.PauseState()
        self._actions: list[models.OperatorAction] = []
        self._available = True
        self._faults: list[_Fault] = []

    # -- test controls ------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, and end any simulated outage: as if just built."""
        with self._lock:
            self._clear()

    @property
    def available(self) -> bool:
        """While ``False``, every store operation raises
        :class:`~payout_core.errors.StoreUnavailable` and writes nothing, as a
        database that went away; set it back to ``True`` for the database to return."""
        with self._lock:
            return self._available

    @available.setter
    def available(self, value: bool) -> None:
        with self._lock:
            self._available = value

    def fail_next(
        self,
        times: int = 1,
        *,
        error: Exception | None = None,
        operations: Iterable[str] | None = None,
    ) -> None:
        """Make the next ``times`` store operations fail without writing anything.

        ``operations`` limits it to some of the port's methods (names from
        :data:`OPERATIONS`, e.g. ``{"record"}`` to lose outcomes but keep
        claiming); ``error`` is what they raise, a
        :class:`~payout_core.errors.StoreUnavailable` by default. Several calls
        add up; the oldest matching one is spent first.

        Raises:
            ValueError: ``times`` < 1, or an operation that is not a store method.
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        names = None if operations is None else frozenset(operations)
        if names is not None and not names <= OPERATIONS:
            unknown = ", ".join(sorted(names - OPERATIONS))
            raise ValueError(f"not store operations: {unknown} (known: {sorted(OPERATIONS)})")
        with self._lock:
            self._faults.append(_Fault(remaining=times, error=error, operations=names))

    def jobs(self) -> list[models.PayoutJob]:
        """Every job, in the order they were scheduled."""
        with self._lock:
            return list(self._jobs.values())

    def transfers(self) -> list[models.PayoutTransfer]:
        """Every transfer as stored now, in the order they were scheduled."""
        with self._lock:
            return list(self._transfers.values())

    def runs(self) -> list[models.RunReport]:
        """Every run report, in the order first recorded."""
        with self._lock:
            return list(self._runs.values())

    @contextlib.contextmanager
    def _operation(self, name: str) -> Iterator[None]:
        """One atomic step: under the lock, after the outage checks."""
        with self._lock:
            if not self._available:
                raise errors.StoreUnavailable(
                    f"cannot {name}: the in-memory store is unavailable (available=False)"
                )
            for fault in self._faults:
                if fault.operations is None or name in fault.operations:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    if fault.error is not None:
                        raise fault.error
                    raise errors.StoreUnavailable(f"cannot {name}: simulated outage (fail_next)")
            yield

    # -- what several operations share ---------------------------------------

    def _paid(self, contest_id: str, user_id: str) -> bool:
        """Whether a live or completed transfer pays the winner: what the
        partial unique index on (contest_id, user_id) refuses a second of."""
        latest = self._transfer_of_winner.get((contest_id, user_id))
        return latest is not None and self._transfers[latest].status is not S.FAILED_TERMINAL

    def _insert(self, transfer: models.PayoutTransfer) -> None:
        self._transfers[transfer.id] = transfer
        self._transfers_of_job[transfer.job_id].append(transfer.id)
        self._transfer_of_winner[(transfer.contest_id, transfer.user_id)] = transfer.id
        if not transfer.status.is_terminal:
            self._open.add(transfer.id)

    def _write_outcome(
        self,
        stored: models.PayoutTransfer,
        updated: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry | None,
        *,
        now: datetime,
        event: str,
        also_refused: Sequence[str] = (),
    ) -> None:
        """Write ``updated`` over ``stored`` with its ledger row, and move the
        job's counts by it, as the PostgreSQL statement does: all or nothing
        (nothing also when ``also_refused`` names a problem with the rest)."""
        written = attrs.evolve(stored, **{f: getattr(updated, f) for f in _OUTCOME_FIELDS})
        refused = [
            *schema.row_problems(written),
            *schema.pin_problems(stored, written),
            *also_refused,
        ]
        if ledger_entry is not None:
            refused.extend(self._ledger_problems(ledger_entry))
        if refused:
            raise errors.IllegalTransition(
                stored.id, stored.status.value, f"{event} {written.status.value}: {refused[0]}"
            )
        self._transfers[written.id] = written
        if written.status.is_terminal:
            self._open.discard(written.id)
        if ledger_entry is not None:
            self._append(ledger_entry)
        # The job's counts move by this outcome alone, as in PostgreSQL.
        job = self._jobs[written.job_id]
        self._jobs[job.id] = completion.advance(job, outcome=written.status, now=now)

    def _action_problems(self, action: models.OperatorAction, *, new: str = "") -> list[str]:
        """The schema's checks on an action on a transfer: it names one, stored
        (or ``new``, written with it)."""
        if action.transfer_id is None:
            return [f"a {action.action} action names its transfer"]
        if action.transfer_id not in self._transfers and action.transfer_id != new:
            return [f"the action's transfer {action.transfer_id} does not exist"]
        return []

    def _act(self, action: models.OperatorAction) -> None:
        """Append ``action`` at the store's time (the database's, in PostgreSQL)."""
        self._actions.append(attrs.evolve(action, created_at=self._clock.now()))

    def _append(self, entry: models.LedgerEntry) -> None:
        self._ledger.append(entry)
        self._ledger_keys.add(entry.idempotency_key)
        self._booked.add((entry.transfer_id, entry.entry_type))

    def _ledger_problems(self, entry: models.LedgerEntry) -> list[str]:
        """What the ledger's keys, checks and trigger refuse (migrations/0002, 0009)."""
        problems = []
        if entry.idempotency_key in self._ledger_keys:
            problems.append(f"ledger key {entry.idempotency_key!r} is already booked")
        once = (E.PAYOUT_COMPLETED, E.PAYOUT_FAILED)
        if entry.entry_type in once and (entry.transfer_id, entry.entry_type) in self._booked:
            problems.append(f"transfer {entry.transfer_id} already has a {entry.entry_type} row")
        if entry.transfer_id not in self._transfers or entry.job_id not in self._jobs:
            problems.append("the ledger row's transfer or job does not exist")
        if entry.direction is not schema.DIRECTION.get(
            entry.entry_type, models.LedgerDirection.MEMO
        ):
            problems.append("a payment is a debit, a reversal a credit, anything else a memo")
        if entry.entry_type in (E.PAYOUT_COMPLETED, E.PAYOUT_REVERSED) and (
            entry.stripe_transfer_id is None
        ):
            problems.append(f"a {entry.entry_type} row needs its stripe_transfer_id")
        if (entry.stripe_reversal_id is not None) != (entry.entry_type is E.PAYOUT_REVERSED):
            problems.append("stripe_reversal_id is set on payout_reversed rows only")
        if entry.stripe_reversal_id is not None and any(
            e.stripe_reversal_id == entry.stripe_reversal_id for e in self._ledger
        ):
            problems.append(f"reversal {entry.stripe_reversal_id} is already booked")
        if entry.attempt_number < 1:
            problems.append("attempt_number must be >= 1")
        if entry.entry_type is E.PAYOUT_REVERSED:
            problems.extend(self._credit_problems(entry))
        return problems

    def _credit_problems(self, credit: models.LedgerEntry) -> list[str]:
        """The ledger's trigger (payout_ledger_reversed_within_paid): per transfer,
        never more back than its payment. (A row whose key is booked already
        never gets here: the callers book nothing then, as ON CONFLICT does.)"""
        rows = [e for e in self._ledger if e.transfer_id == credit.transfer_id]
        paid = next((e for e in rows if e.entry_type is E.PAYOUT_COMPLETED), None)
        if paid is None:
            return [
                f"transfer {credit.transfer_id} was never paid: a reversal of "
                f"{credit.amount_cents} {credit.currency} has nothing to reverse"
            ]
        if (credit.currency, credit.stripe_transfer_id) != (paid.currency, paid.stripe_transfer_id):
            return [
                f"transfer {credit.transfer_id} was paid in {paid.currency} by "
                f"{paid.stripe_transfer_id}; a reversal in {credit.currency} of "
                f"{credit.stripe_transfer_id} is not of it"
            ]
        reversed_ = ledger.booked_reversals(rows)
        if reversed_ + credit.amount_cents > paid.amount_cents:
            return [
                f"transfer {credit.transfer_id} was paid {paid.amount_cents} {paid.currency}, "
                f"{reversed_} came back already: {credit.amount_cents} more is too much"
            ]
        return []

    def _refused(self, transfer_id: str, event: str, problems: Sequence[str]) -> None:
        """Raise what PostgreSQL's refusal becomes, when there is one."""
        if problems:
            stored = self._transfers.get(transfer_id)
            status = "missing" if stored is None else stored.status.value
            raise errors.IllegalTransition(transfer_id, status, f"{event}: {problems[0]}")
