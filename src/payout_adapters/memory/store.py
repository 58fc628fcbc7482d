"""The payout store in memory: the PostgreSQL store's semantics without a database.

:class:`InMemoryStore` implements :class:`payout_core.ports.PayoutStore`
directly (it fakes the port, not a database driver) and is held to the same
contract suite as the PostgreSQL store (``tests/contracts/store_contract.py``),
so a test that passes on it means what it says. What the database enforces,
it enforces too, with the same errors:

* one job per ``settlement_id``: scheduling again returns that job, ``created=False``;
* one live or completed transfer per ``(contest_id, user_id)`` across all jobs
  (failed ones do not count): ``DuplicatePayout`` naming the winners, and
  nothing written;
* an operator's resolve only over the very row decided on, and a failed
  transfer reissued at most once, never beside a live or completed one;
* its own clock, standing for the database's: claims, leases, due times and
  send intents are decided by it, never by a caller's clock (DESIGN 3, rule 1);
* claims with leases, oldest due first, never one transfer to two callers;
  an expired claim one too many in a row is escalated to an operator instead;
* write-ahead send intents, guarded by the claim and the send margin;
* the stale-claim guard: an outcome is written only over the claim it came from;
* an append-only ledger with unique ``idempotency_key``, at most one
  ``payout_completed`` and one ``payout_failed`` row per transfer, and per
  transfer never more ``payout_reversed`` credits than its payment;
* reversals written ahead as intents, one in doubt per transfer, each settled
  once (a settled reversal never changes);
* the row checks of the schema (``stripe_transfer_id`` iff completed, a claim
  has a lease and a token, ...): a write breaking one raises as the database's
  refusal would (:class:`~payout_core.errors.StoreRefused` naming the
  constraint when a job is scheduled, ``IllegalTransition`` when a transfer
  moves), never as the caller's invalid input.

Every operation is one step under one lock: atomic, and safe to share between
threads. Models are frozen, so what it returns can be kept without copying.

For tests of what happens when the database goes away, see
:attr:`InMemoryStore.available` and :meth:`InMemoryStore.fail_next`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Final

import attrs

from payout_adapters import clock as clock_
from payout_core import completion, errors, idempotency, ledger, models, ports, validation
from payout_core import reversal as rules
from payout_core import state_machine as sm

__all__ = ["OPERATIONS", "InMemoryStore"]

S = models.TransferStatus
R = models.ReversalStatus
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
        "reversal_intent",
        "settle_reversal",
        "book_reversal",
    }
)

# The operator action that closes a transfer needing an operator, by verdict.
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


def _due_order(transfer: models.PayoutTransfer) -> tuple[datetime, str]:
    """Oldest due first, then by id: the claim index's order."""
    return (sm.due_at(transfer) or transfer.created_at, transfer.id)


def _row_refusals(transfer: models.PayoutTransfer) -> list[tuple[str, str]]:
    """The schema's checks on a transfer row (migrations/0001, 0004, 0008) that
    ``transfer`` breaks: (the constraint's name, what it says)."""
    t = transfer
    checks = (
        (
            "payout_transfers_attempts_check",
            0 <= t.attempt_count <= t.max_attempts and t.max_attempts >= 1,
            f"attempt_count {t.attempt_count} is outside 0..{t.max_attempts}",
        ),
        (
            "payout_transfers_stripe_transfer_id_check",
            (t.stripe_transfer_id is not None) == (t.status is S.COMPLETED),
            "stripe_transfer_id must be set if and only if the status is completed",
        ),
        (
            "payout_transfers_claim_check",
            t.status is not S.PROCESSING
            or (t.lease_expires_at is not None and t.claim_token is not None),
            "a processing transfer needs a lease and a claim token",
        ),
        (
            "payout_transfers_failure_code_check",
            t.status is not S.FAILED_TERMINAL or t.failure_code is not None,
            "a failed transfer needs a failure_code",
        ),
        (
            "payout_transfers_destination_account_check",
            t.destination_account is None or validation.is_account_id(t.destination_account),
            f"destination_account {t.destination_account!r} is not acct_...",
        ),
        (
            "payout_transfers_amount_cents_check",
            0 < t.amount_cents <= validation.MAX_AMOUNT_CENTS,
            f"amount_cents {t.amount_cents} is outside 1..{validation.MAX_AMOUNT_CENTS}",
        ),
        (
            "payout_transfers_key_generation_check",
            t.key_generation >= 0,
            "key_generation must be >= 0",
        ),
        (
            "payout_transfers_uncertain_check",
            not t.outcome_uncertain
            or (t.key_first_sent_at is not None and t.last_send_at is not None),
            "an uncertain transfer needs the time of its key's first and last send",
        ),
        (
            "payout_transfers_attempts_left_check",
            t.status.is_terminal or t.outcome_uncertain or t.attempt_count < t.max_attempts,
            "a transfer with every attempt spent is terminal or uncertain",
        ),
        (
            "payout_transfers_counters_check",
            min(t.key_sends, t.lookup_failures, t.abandoned_claims) >= 0,
            "key_sends, lookup_failures and abandoned_claims must be >= 0",
        ),
        (
            "payout_transfers_needs_operator_check",
            not (t.status.is_terminal and t.needs_operator is not None),
            "a terminal transfer needs no operator",
        ),
        (
            "payout_transfers_reissue_of_check",
            t.reissue_of != t.id,
            "a transfer cannot be a reissue of itself",
        ),
    )
    return [(name, said) for name, holds, said in checks if not holds]


def _row_problems(transfer: models.PayoutTransfer) -> list[str]:
    """:func:`_row_refusals` as messages naming their constraint."""
    return [f"{name}: {said}" for name, said in _row_refusals(transfer)]


def _reversal_problems(reversal: models.Reversal) -> list[str]:
    """The schema's checks on a reversal row (migrations/0009), as messages."""
    problems = []
    if reversal.sequence < 1 or reversal.idempotency_key != idempotency.reversal_key(
        reversal.transfer_id, reversal.sequence
    ):
        problems.append(f"idempotency_key {reversal.idempotency_key!r} is not the sequence's")
    if not 0 < reversal.amount_cents <= validation.MAX_AMOUNT_CENTS:
        problems.append(
            f"amount_cents {reversal.amount_cents} is outside 1..{validation.MAX_AMOUNT_CENTS}"
        )
    if not reversal.actor.strip() or len(reversal.actor) > 200:
        problems.append("a reversal names who asked for it (200 characters at most)")
    if not reversal.reason.strip() or len(reversal.reason) > 2000:
        problems.append("a reversal says why (2000 characters at most)")
    if (reversal.status is R.COMPLETED) != (reversal.stripe_reversal_id is not None):
        problems.append("stripe_reversal_id must be set if and only if it is completed")
    if (reversal.status is R.FAILED) != (reversal.failure_code is not None):
        problems.append("failure_code must be set if and only if it failed")
    return problems


# The direction of each kind of ledger row: a payment, a reversal, or a memo.
_DIRECTION: Final = {
    E.PAYOUT_COMPLETED: models.LedgerDirection.DEBIT,
    E.PAYOUT_REVERSED: models.LedgerDirection.CREDIT,
}


def _pin_problems(stored: models.PayoutTransfer, written: models.PayoutTransfer) -> list[str]:
    """The schema's trigger: a pinned destination never changes (rule 3)."""
    if stored.destination_account not in (None, written.destination_account):
        return [f"destination_account is pinned to {stored.destination_account}"]
    return []


@attrs.define
class _Fault:
    remaining: int
    error: Exception | None
    operations: frozenset[str] | None


class InMemoryStore:
    """:class:`payout_core.ports.PayoutStore` in memory, for tests and demos.

    ``clock`` is the store's own time, the database's clock (the system clock
    by default): give it a :class:`~payout_adapters.memory.ManualClock` of its
    own to test workers whose clocks disagree with the database.

    Beyond the port it has, for tests only: :meth:`reset`, read-only views of
    everything stored (:meth:`jobs`, :meth:`transfers`, :meth:`runs`), and the
    outage switches :attr:`available` and :meth:`fail_next`.
    """

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

    # -- writes -------------------------------------------------------------------

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ports.ScheduleResult:
        with self._operation("schedule"):
            existing = self._job_of_settlement.get(job.settlement_id)
            if existing is not None:
                return ports.ScheduleResult(job=self._jobs[existing], created=False)
            self._check_new_job(job, transfers)
            taken = [t.user_id for t in transfers if self._paid(t.contest_id, t.user_id)]
            if taken:
                raise errors.DuplicatePayout(job.contest_id, taken)
            self._jobs[job.id] = job
            self._job_of_settlement[job.settlement_id] = job.id
            self._transfers_of_job[job.id] = []
            for t in transfers:
                self._insert(t)
            return ports.ScheduleResult(job=job, created=True)

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

    def _check_new_job(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> None:
        """What the schema's keys and checks refuse when a job is inserted, in
        the PostgreSQL store's words: :class:`~payout_core.errors.StoreRefused`
        naming the first constraint broken."""
        refusals: list[tuple[str, str]] = []
        if job.id in self._jobs:
            refusals.append(("payout_jobs_pkey", f"job {job.id} exists for another settlement"))
        totals = (len(transfers), sum(t.amount_cents for t in transfers))
        if not transfers or totals != (job.total_transfers, job.total_amount_cents):
            refusals.append(
                (
                    "payout_jobs_totals_match_transfers",
                    "a job needs at least one transfer, and its total_transfers and "
                    "total_amount_cents must be those of its transfers",
                )
            )
        users: set[str] = set()
        for n, t in enumerate(transfers):
            where = f"transfers[{n}]"
            parent = (t.job_id, t.settlement_id, t.contest_id, t.currency)
            if parent != (job.id, job.settlement_id, job.contest_id, job.currency):
                refusals.append(
                    (
                        "payout_transfers_job_fkey",
                        f"{where}: job_id, settlement_id, contest_id, currency not the job's",
                    )
                )
            if t.id in self._transfers:
                refusals.append(("payout_transfers_pkey", f"{where}: transfer {t.id} exists"))
            if t.user_id in users:
                refusals.append(
                    (
                        "payout_transfers_contest_user_live_idx",
                        f"{where}: user {t.user_id!r} twice in one job",
                    )
                )
            users.add(t.user_id)
            refusals.extend((name, f"{where}: {said}") for name, said in _row_refusals(t))
        if refusals:
            constraint, message = refusals[0]
            if len(refusals) > 1:
                message += f" (and {len(refusals) - 1} more)"
            raise errors.StoreRefused(constraint, message)

    def claim_due(self, *, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        with self._operation("claim_due"):
            if limit < 1:
                return []
            now = self._clock.now()
            due = sorted(
                (t for t in map(self._transfers.__getitem__, self._open) if sm.is_due(t, now)),
                key=_due_order,
            )
            if self._pause.paused:
                limit = 0  # escalations still happen; claims do not
            claimed: list[models.PayoutTransfer] = []
            for t in due:
                if sm.abandoned_too_often(t):
                    escalated = sm.escalate(t, reason=sm.abandoned_reason(t), now=now)
                    self._transfers[t.id] = escalated
                    continue
                if len(claimed) < limit:  # and on: every one to escalate is, as in SQL
                    claimed.append(sm.claim(t, now=now, lease=lease, token=token))
            for t in claimed:
                self._transfers[t.id] = t
            for job_id in sorted({t.job_id for t in claimed}):
                self._jobs[job_id] = completion.start(self._jobs[job_id], now=now)
            return claimed

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        with self._operation("write_intent"):
            stored = self._transfers.get(claimed.id)
            if stored is None or stored.attempt_count != claimed.attempt_count:
                return sm.IntentRefusal.STALE_CLAIM
            now = self._clock.now()
            refusal = sm.refuse_send(
                stored, token=claimed.claim_token, destination=destination, now=now, margin=margin
            )
            if refusal is not None:
                return refusal
            written = sm.send(stored, destination=destination, now=now, margin=margin)
            self._transfers[written.id] = written
            return written

    def record(
        self,
        *,
        claimed: models.PayoutTransfer,
        updated: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry | None,
        now: datetime,
    ) -> bool:
        if updated.id != claimed.id:
            raise ValueError(f"cannot record transfer {updated.id} over the claim of {claimed.id}")
        with self._operation("record"):
            stored = self._transfers.get(claimed.id)
            if (
                claimed.claim_token is None
                or stored is None
                or stored.status is not S.PROCESSING
                or stored.claim_token != claimed.claim_token
                or stored.attempt_count != claimed.attempt_count
            ):
                return False  # the lease was taken over; the newer claim owns it
            self._write_outcome(stored, updated, ledger_entry, now=now, event="record")
            return True

    def resolve(
        self,
        *,
        before: models.PayoutTransfer,
        after: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_resolution(before, after, action)
        with self._operation("resolve"):
            stored = self._transfers.get(before.id)
            if (
                stored is None
                or stored.status is not before.status
                or stored.needs_operator is None
                or stored.updated_at != before.updated_at
            ):
                return False  # changed since the operator decided, or needs no operator
            self._write_outcome(
                stored,
                after,
                ledger_entry,
                now=after.updated_at,
                event=action.action,
                also_refused=self._action_problems(action),
            )
            self._act(action)
            return True

    def reissue(
        self,
        *,
        failed: models.PayoutTransfer,
        reissued: models.PayoutTransfer,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_reissue(failed, reissued, action)
        with self._operation("reissue"):
            stored = self._transfers.get(failed.id)
            if (
                stored is None
                or stored.status is not S.FAILED_TERMINAL
                or (stored.job_id, stored.user_id) != (failed.job_id, failed.user_id)
            ):
                return False  # nothing of this winner failed for good to pay again
            # In the order PostgreSQL meets them: the row's checks, the unique
            # indexes (then nothing is inserted), the action's checks.
            refused = _row_problems(reissued)
            if not refused and (
                failed.id in self._reissued
                or self._paid(reissued.contest_id, reissued.user_id)
                or reissued.id in self._transfers
            ):
                return False  # reissued already, or a live or completed transfer pays them
            refused = refused or self._action_problems(action, new=reissued.id)
            if refused:
                raise errors.IllegalTransition(
                    failed.id, stored.status.value, f"reissue: {refused[0]}"
                )
            self._insert(reissued)
            self._reissued.add(failed.id)
            job = self._jobs[reissued.job_id]
            self._jobs[job.id] = completion.reopen(
                job, amount_cents=reissued.amount_cents, now=reissued.updated_at
            )
            self._act(action)
            return True

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
        refused = [*_row_problems(written), *_pin_problems(stored, written), *also_refused]
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
        if entry.direction is not _DIRECTION.get(entry.entry_type, models.LedgerDirection.MEMO):
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

    # -- reversals (DESIGN 7) -----------------------------------------------------

    def reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        with self._operation("reversals_of"):
            return self._reversals_of(transfer_id)

    def _reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        found = [r for r in self._reversals.values() if r.transfer_id == transfer_id]
        return sorted(found, key=lambda r: r.sequence)

    def reversal_intent(self, reversal: models.Reversal) -> models.Reversal | ports.ReversalRefused:
        if reversal.status is not R.SENDING or reversal.stripe_reversal_id or reversal.failure_code:
            raise ValueError(f"reversal {reversal.id} is {reversal.status}: an intent is sending")
        with self._operation("reversal_intent"):
            refused = self._refuse_intent(reversal)
            if refused is not None:
                return refused
            written = attrs.evolve(
                reversal, created_at=self._clock.now(), updated_at=self._clock.now()
            )
            problems = _reversal_problems(written)
            if written.id in self._reversals:
                problems.append(f"reversal {written.id} exists")
            self._refused(written.transfer_id, "reverse", problems)
            self._reversals[written.id] = written
            return written

    def _refuse_intent(self, asked: models.Reversal) -> ports.ReversalRefused | None:
        """WRITE_REVERSAL_INTENT's guard: why ``asked`` must not be written, if it must not."""
        transfer = self._transfers.get(asked.transfer_id)
        if transfer is None:
            return ports.ReversalRefused(why="no such transfer")
        if transfer.status is not S.COMPLETED:
            unpaid = f"the transfer is {transfer.status}, not completed: nothing was paid"
            return ports.ReversalRefused(why=unpaid)
        earlier = self._reversals_of(transfer.id)
        amounts = rules.amounts(
            transfer, [e for e in self._ledger if e.transfer_id == transfer.id], earlier
        )
        in_doubt = [r.idempotency_key for r in earlier if r.status is R.SENDING]
        next_sequence = max((r.sequence for r in earlier), default=0) + 1
        why: str | None = None
        if (transfer.stripe_transfer_id, transfer.currency) != (
            asked.stripe_transfer_id,
            asked.currency,
        ):
            why = (
                f"the transfer was paid by {transfer.stripe_transfer_id} in {transfer.currency}, "
                f"not by {asked.stripe_transfer_id} in {asked.currency}"
            )
        elif in_doubt:
            why = f"reversal {in_doubt[0]} is still in doubt: resolve it first"
        elif asked.sequence != next_sequence:
            why = f"sequence {asked.sequence} is not the next one ({next_sequence})"
        elif asked.amount_cents > amounts.left:
            why = f"cannot reverse {asked.amount_cents}: more than is left"
        return None if why is None else ports.ReversalRefused(why=why, amounts=amounts)

    def settle_reversal(
        self,
        *,
        before: models.Reversal,
        after: models.Reversal,
        ledger_entry: models.LedgerEntry | None,
        action: models.OperatorAction | None,
    ) -> bool:
        rules.check_settlement(before, after, ledger_entry, action)
        with self._operation("settle_reversal"):
            stored = self._reversals.get(before.id)
            if stored is None or stored.status is not R.SENDING:
                return False  # settled meanwhile (a webhook, another run): nothing written
            written = attrs.evolve(
                stored,
                status=after.status,
                stripe_reversal_id=after.stripe_reversal_id,
                failure_code=after.failure_code,
                failure_message=after.failure_message,
                updated_at=after.updated_at,
            )
            problems = _reversal_problems(written)
            if written.stripe_reversal_id is not None and any(
                r.stripe_reversal_id == written.stripe_reversal_id for r in self._reversals.values()
            ):
                problems.append(f"reversal {written.stripe_reversal_id} settles another already")
            credit = ledger_entry
            if credit is not None and credit.idempotency_key in self._ledger_keys:
                credit = None  # booked already (a webhook saw it first): ON CONFLICT DO NOTHING
            if credit is not None:
                problems.extend(self._ledger_problems(credit))
            if action is not None:
                problems.extend(self._action_problems(action))
            event = f"settle reversal {before.idempotency_key} as {after.status.value}"
            self._refused(before.transfer_id, event, problems)
            self._reversals[written.id] = written
            if credit is not None:
                self._append(credit)
            if action is not None:
                self._act(action)
            return True

    def book_reversal(self, entry: models.LedgerEntry) -> bool:
        if entry.entry_type is not E.PAYOUT_REVERSED:
            raise ValueError(f"{entry.idempotency_key} is a {entry.entry_type}, not a reversal")
        with self._operation("book_reversal"):
            if entry.idempotency_key in self._ledger_keys:
                return False  # booked already, whoever saw it first
            event = f"book reversal {entry.stripe_reversal_id}"
            self._refused(entry.transfer_id, event, self._ledger_problems(entry))
            self._append(entry)
            return True

    def pause_state(self) -> models.PauseState:
        with self._operation("pause_state"):
            return self._pause

    def set_paused(self, action: models.OperatorAction) -> models.PauseState:
        with self._operation("set_paused"):
            before = self._pause
            if action.action is models.OperatorActionKind.PAUSE:
                after = models.PauseState(
                    paused=True, actor=action.actor, reason=action.reason, since=self._clock.now()
                )
            elif action.action is models.OperatorActionKind.RESUME:
                after = models.PauseState()
            else:
                raise ValueError(f"{action.action} neither pauses nor resumes")
            self._act(
                attrs.evolve(
                    action, transfer_id=None, before=before.as_dict(), after=after.as_dict()
                )
            )
            self._pause = after
            return after

    def operator_actions(
        self, limit: int = 20, *, transfer_id: str | None = None
    ) -> list[models.OperatorAction]:
        with self._operation("operator_actions"):
            found = [a for a in self._actions if transfer_id in (None, a.transfer_id)]
            return list(reversed(found))[: max(limit, 0)]

    def record_run(self, report: models.RunReport) -> None:
        with self._operation("record_run"):
            self._runs[report.id] = report

    # -- reads --------------------------------------------------------------------

    def get_job(self, job_id: str) -> models.PayoutJob | None:
        with self._operation("get_job"):
            return self._jobs.get(job_id)

    def find_job(self, settlement_id: str) -> models.PayoutJob | None:
        with self._operation("find_job"):
            job_id = self._job_of_settlement.get(settlement_id)
            return None if job_id is None else self._jobs[job_id]

    def list_jobs(
        self, *, status: models.JobStatus | None = None, limit: int = 100
    ) -> list[models.PayoutJob]:
        with self._operation("list_jobs"):
            jobs = [j for j in self._jobs.values() if status is None or j.status is status]
            jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
            return jobs[: max(limit, 0)]

    def get_transfer(self, transfer_id: str) -> models.PayoutTransfer | None:
        with self._operation("get_transfer"):
            return self._transfers.get(transfer_id)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        with self._operation("jobs_after"):
            ids = sorted(j for j in self._jobs if after is None or j > after)
            return [self._jobs[j] for j in ids[: max(limit, 0)]]

    def transfer_histories(
        self, job_id: str, *, after: str | None, limit: int
    ) -> list[ports.TransferHistory]:
        with self._operation("transfer_histories"):
            ids = sorted(
                t for t in self._transfers_of_job.get(job_id, []) if after is None or t > after
            )[: max(limit, 0)]
            entries: dict[str, list[models.LedgerEntry]] = {t: [] for t in ids}
            for entry in self._ledger:
                if entry.transfer_id in entries:
                    entries[entry.transfer_id].append(entry)
            return [
                ports.TransferHistory(transfer=self._transfers[t], ledger=tuple(entries[t]))
                for t in ids
            ]

    def transfers_of(self, job_id: str) -> list[models.PayoutTransfer]:
        with self._operation("transfers_of"):
            ids = self._transfers_of_job.get(job_id, [])
            # Code point order, which is the byte order of the column's "C" collation.
            return sorted((self._transfers[t] for t in ids), key=lambda t: t.user_id)

    def ledger(
        self, *, job_id: str | None = None, transfer_id: str | None = None
    ) -> list[models.LedgerEntry]:
        with self._operation("ledger"):
            return [
                e
                for e in self._ledger
                if (job_id is None or e.job_id == job_id)
                and (transfer_id is None or e.transfer_id == transfer_id)
            ]

    def list_transfers(
        self, *, status: models.TransferStatus | None = None, limit: int = 100
    ) -> list[models.PayoutTransfer]:
        with self._operation("list_transfers"):
            found = [t for t in self._transfers.values() if status is None or t.status is status]
            found.sort(key=lambda t: (t.updated_at, t.id), reverse=True)
            return found[: max(limit, 0)]

    def queue_depth(self) -> ports.QueueDepth:
        with self._operation("queue_depth"):
            now = self._clock.now()
            open_ = list(map(self._transfers.__getitem__, self._open))
            due = [t for t in open_ if sm.is_due(t, now)]
            stuck = sum(1 for t in due if t.status is S.PROCESSING)
            waiting = sum(1 for t in open_ if t.needs_operator is not None)
            return ports.QueueDepth(due=len(due), stuck=stuck, needs_operator=waiting)

    def needing_operator(self, limit: int = 100) -> list[models.PayoutTransfer]:
        with self._operation("needing_operator"):
            found = [
                t
                for t in map(self._transfers.__getitem__, self._open)
                if t.needs_operator is not None
            ]
            found.sort(key=lambda t: (t.updated_at, t.id))
            return found[: max(limit, 0)]

    def transfer_counts(self) -> dict[models.TransferStatus, int]:
        with self._operation("transfer_counts"):
            counts = dict.fromkeys(models.TransferStatus, 0)
            for t in self._transfers.values():
                counts[t.status] += 1
            return counts

    def recent_runs(self, limit: int = 10) -> list[models.RunReport]:
        with self._operation("recent_runs"):
            runs = sorted(self._runs.values(), key=lambda r: (r.started_at, r.id), reverse=True)
            return runs[: max(limit, 0)]
