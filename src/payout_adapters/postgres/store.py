"""The PostgreSQL store: payout-core's ports on psycopg 3 and a connection pool.

Every method is one short transaction on a connection borrowed from the pool
and given back before the method returns: no connection, transaction or lock
is ever held while the gateway is called. The SQL is in
:mod:`payout_adapters.postgres.queries`; rows become models in
:mod:`payout_adapters.postgres.rows`.

The adapters take a :class:`psycopg_pool.ConnectionPool` that the caller opened
(:func:`payout_adapters.postgres.connect_pool`) and never close it.
"""

from __future__ import annotations

import collections
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, LiteralString

import attrs
import psycopg
import psycopg.types.json
import psycopg_pool
from psycopg.rows import DictRow, dict_row

from payout_adapters.postgres import queries as q
from payout_adapters.postgres import rows, translate
from payout_core import errors, models, pacing, ports, validation
from payout_core import reversal as rules
from payout_core import state_machine as sm

__all__ = [
    "Database",
    "PostgresAccountDirectory",
    "PostgresInbox",
    "PostgresRateLimiter",
    "PostgresStore",
]

R = models.ReversalStatus


class Database:
    """Borrow a pooled connection for one transaction."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._pool = pool

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor in a transaction that commits when the block ends and rolls
        back when it raises; database failures become ``StoreUnavailable``."""
        with (
            translate.unavailable(action),
            self._pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            yield cursor

    @contextlib.contextmanager
    def statements(self, action: str) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor whose every statement commits on its own (autocommit): for
        units of work of one statement, which a statement makes atomic anyway.
        It saves the BEGIN and COMMIT round trips of a transaction."""
        with translate.unavailable(action), self._pool.connection() as conn:
            conn.autocommit = True
            try:
                with conn.cursor(row_factory=dict_row) as cursor:
                    yield cursor
            finally:
                if not conn.closed:
                    conn.autocommit = False  # as the pool lends it

    def fetch_all(self, action: str, query: LiteralString, params: dict[str, Any]) -> list[DictRow]:
        with self.statements(action) as cursor:
            return cursor.execute(query, params).fetchall()

    def fetch_one(
        self, action: str, query: LiteralString, params: dict[str, Any]
    ) -> DictRow | None:
        with self.statements(action) as cursor:
            return cursor.execute(query, params).fetchone()


def _check_job(job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]) -> None:
    """A job is written with all its transfers: its totals must be theirs, and
    a winner is in it once. (The row-level rules are the schema's; these span
    rows, and the in-memory store names them the same.)

    Raises:
        StoreRefused: naming the rule as a constraint; nothing was written.
    """
    totals = (len(transfers), sum(t.amount_cents for t in transfers))
    if not transfers or totals != (job.total_transfers, job.total_amount_cents):
        raise errors.StoreRefused(
            "payout_jobs_totals_match_transfers",  # no SQL constraint spans the two tables
            f"a job needs at least one transfer, and its total_transfers and "
            f"total_amount_cents ({job.total_transfers} and {job.total_amount_cents}) "
            f"must be those of its transfers ({totals[0]} and {totals[1]})",
        )
    twice = sorted(u for u, n in collections.Counter(t.user_id for t in transfers).items() if n > 1)
    if twice:
        raise errors.StoreRefused(
            "payout_transfers_contest_user_live_idx",  # ON CONFLICT would skip the second
            f"user(s) {', '.join(map(repr, twice))} twice in one job",
        )


def _id_bound(after: str, what: str) -> uuid.UUID:
    """A page's lower bound: the last id of the page before, a UUID as every id here."""
    key = rows.as_uuid(after)
    if key is None:
        raise ValueError(f"a page of {what}s starts after a {what} id (a UUID), got {after!r}")
    return key


def _outcome_params(
    stored: models.PayoutTransfer,
    updated: models.PayoutTransfer,
    ledger_entry: models.LedgerEntry | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """What an outcome's statement writes: ``updated`` over ``stored``, the
    job's counts moved by it at ``now`` (_ADVANCE_JOB), and its ledger row."""
    params = {
        **rows.outcome_params(stored, updated),
        "job_id": rows.as_uuid(stored.job_id),
        "job_now": now,
        "job_completed": int(updated.status is models.TransferStatus.COMPLETED),
        "job_failed": int(updated.status is models.TransferStatus.FAILED_TERMINAL),
    }
    if ledger_entry is not None:
        params |= _ledger_params(ledger_entry)
    return params


def _ledger_params(entry: models.LedgerEntry) -> dict[str, Any]:
    """What INSERT_LEDGER_ENTRY takes: the row's columns, prefixed ``ledger_``."""
    return {f"ledger_{k}": v for k, v in rows.ledger_params(entry).items()}


class PostgresStore:
    """:class:`payout_core.ports.PayoutStore` on PostgreSQL.

    Safe to share between threads and processes: concurrency is the
    database's (row locks, ``SKIP LOCKED``, unique indexes), not this object's.

    Every lease, due and key-age decision uses the database's clock
    (``now()``). ``clock`` replaces it, for tests only: a
    :class:`~payout_adapters.memory.ManualClock` standing for the database's
    time, so that the store contract suite can move time on both stores.
    """

    def __init__(
        self, pool: psycopg_pool.ConnectionPool, *, clock: ports.Clock | None = None
    ) -> None:
        self._db = Database(pool)
        self._clock = clock

    def _now(self) -> datetime | None:
        """The test clock's time, or ``None``: the SQL then reads ``now()``."""
        return None if self._clock is None else self._clock.now()

    # -- writes ---------------------------------------------------------------

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ports.ScheduleResult:
        _check_job(job, transfers)
        job_params = rows.job_params(job)
        transfer_params = rows.transfers_params(transfers)
        with self._db.transaction("schedule a payout") as cursor:
            try:
                if cursor.execute(q.INSERT_JOB, job_params).fetchone() is None:
                    # Scheduled before, or by a concurrent caller that committed
                    # first (the insert waited for it): that job, untouched.
                    row = cursor.execute(
                        q.FIND_JOB_BY_SETTLEMENT, {"settlement_id": job.settlement_id}
                    ).fetchone()
                    if row is None:  # pragma: no cover - the conflicting row is committed
                        raise errors.StoreUnavailable(
                            f"settlement {job.settlement_id!r} conflicted with a job "
                            "that cannot be read; try again"
                        )
                    return ports.ScheduleResult(job=rows.job_from_row(row), created=False)
                inserted = {
                    r["user_id"] for r in cursor.execute(q.INSERT_TRANSFERS, transfer_params)
                }
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                # Validated before, so not the settlement's fault: name the constraint.
                raise translate.refused(exc, action="schedule a payout") from exc
            already_paid = [t.user_id for t in transfers if t.user_id not in inserted]
            if already_paid:
                # Leaving the block by raising rolls the job back: nothing is written.
                raise errors.DuplicatePayout(job.contest_id, already_paid)
        return ports.ScheduleResult(job=job, created=True)

    def claim_due(self, *, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        if limit < 1:
            return []
        now = self._now()
        params = {
            "now": now,
            "limit": limit,
            "token": token,
            "lease": lease,
            "abandoned_limit": sm.ABANDONED_CLAIMS_LIMIT,
        }
        # Two statements in one round trip (pipeline), each its own unit of work:
        # the claim never takes over what the first finds to escalate.
        with self._db.statements("claim due transfers") as cursor:
            with cursor.connection.pipeline():
                abandoned = cursor.connection.cursor(row_factory=dict_row)
                abandoned.execute(
                    q.ABANDONED_TOO_OFTEN, {"now": now, "limit": sm.ABANDONED_CLAIMS_LIMIT}
                )
                cursor.execute(q.CLAIM_DUE, params)
            claimed = cursor.fetchall()
            self._escalate(cursor, abandoned.fetchall())
        return [rows.transfer_from_row(row) for row in claimed]

    def _escalate(self, cursor: psycopg.Cursor[DictRow], abandoned: list[DictRow]) -> None:
        """Rule 7: a claim that expired one time too many in a row goes to an
        operator instead of to another worker to kill (state_machine.escalate,
        written with the guarded RECORD_OUTCOME)."""
        for row in abandoned:
            stored = rows.transfer_from_row(row)
            escalated = sm.escalate(stored, reason=sm.abandoned_reason(stored), now=row["db_now"])
            cursor.execute(q.RECORD_OUTCOME, rows.outcome_params(stored, escalated))

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        key = rows.as_uuid(claimed.id)
        if key is None or claimed.claim_token is None:
            return sm.IntentRefusal.STALE_CLAIM
        params = {
            "now": self._now(),
            "id": key,
            "token": claimed.claim_token,
            "attempt_count": claimed.attempt_count,
            "destination": destination,
            "margin": margin,
            "trust_window": sm.KEY_TRUST_WINDOW,
        }
        # One UPDATE, durable when it returns: the intent is written before any send.
        with self._db.statements("write a send intent") as cursor:
            row = cursor.execute(q.WRITE_INTENT, params).fetchone()
            if row is not None:
                return rows.transfer_from_row(row)
            # Refused: say why, with the rule the SQL repeats.
            row = cursor.execute(q.TRANSFER_AND_NOW, params).fetchone()
        if row is None:
            return sm.IntentRefusal.STALE_CLAIM
        stored = rows.transfer_from_row(row)
        if stored.attempt_count != claimed.attempt_count:
            return sm.IntentRefusal.STALE_CLAIM
        refusal = sm.refuse_send(
            stored,
            token=claimed.claim_token,
            destination=destination,
            now=row["db_now"],
            margin=margin,
        )
        # None: the row changed between the two statements; whatever changed it owns it.
        return refusal or sm.IntentRefusal.STALE_CLAIM

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
        if claimed.claim_token is None:
            return False  # not a claim: no stored transfer can match it
        params = _outcome_params(claimed, updated, ledger_entry, now=now)
        query = q.RECORD_OUTCOME_AND_EFFECTS
        if ledger_entry is not None:
            query = q.RECORD_OUTCOME_WITH_LEDGER_ENTRY
        # One statement, durable when it returns: no outcome counts before it is.
        # No row updated: the lease was taken over; the newer claim owns it.
        return self._write(
            "record an outcome", query, params, claimed, f"record {updated.status.value}"
        )

    def resolve(
        self,
        *,
        before: models.PayoutTransfer,
        after: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_resolution(before, after, action)
        if rows.as_uuid(before.id) is None:
            return False  # no stored transfer has this id
        params = {
            **_outcome_params(before, after, ledger_entry, now=after.updated_at),
            **rows.operator_action_params(action),
            "now": self._now(),
            "stored_status": before.status.value,
            "stored_updated_at": before.updated_at,
        }
        # One statement, as record's: the verdict counts only once it is durable.
        return self._write(
            "resolve a transfer", q.RESOLVE_TRANSFER, params, before, f"{action.action}"
        )

    def reissue(
        self,
        *,
        failed: models.PayoutTransfer,
        reissued: models.PayoutTransfer,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_reissue(failed, reissued, action)
        if rows.as_uuid(failed.id) is None:
            return False  # no stored transfer has this id
        params = {
            **rows.transfers_params([reissued]),
            **rows.operator_action_params(action),
            "now": self._now(),
            "failed_id": rows.as_uuid(failed.id),
            "failed_job_id": rows.as_uuid(failed.job_id),
            "failed_user_id": failed.user_id,
            "job_now": reissued.updated_at,
        }
        return self._write("reissue a transfer", q.REISSUE_TRANSFER, params, failed, "reissue")

    def _write(
        self,
        action: str,
        query: LiteralString,
        params: dict[str, Any],
        transfer: models.PayoutTransfer | str,
        event: str,
    ) -> bool:
        """Run one of the guarded statements that change a transfer (the model
        as the caller knows it, or its id) and what hangs on it; whether it
        wrote (its guard held). A constraint's or trigger's refusal is a bug in
        what was asked, named as an illegal transition from the stored status."""
        try:
            with self._db.statements(action) as cursor:
                row = cursor.execute(query, params).fetchone()
        except errors.StoreRefused as exc:  # translate.unavailable's, naming the constraint
            problem = errors.Problem(exc.constraint, f"refused by the database: {exc.message}")
            # Read once the connection is back: a pool of one must not wait on itself.
            stored = self.get_transfer(transfer) if isinstance(transfer, str) else transfer
            raise errors.IllegalTransition(
                stored.id if stored else str(transfer),
                stored.status.value if stored else "missing",
                f"{event}: {problem}",
            ) from exc
        return row is not None and row["recorded"] == 1

    # -- reversals (DESIGN 7) ----------------------------------------------------

    def reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        key = rows.as_uuid(transfer_id)
        if key is None:
            return []
        found = self._db.fetch_all(
            "read a transfer's reversals", q.REVERSALS_OF, {"transfer_id": key}
        )
        return [rows.reversal_from_row(row) for row in found]

    def reversal_intent(self, reversal: models.Reversal) -> models.Reversal | ports.ReversalRefused:
        if reversal.status is not R.SENDING or reversal.stripe_reversal_id or reversal.failure_code:
            raise ValueError(f"reversal {reversal.id} is {reversal.status}: an intent is sending")
        if rows.as_uuid(reversal.transfer_id) is None:
            return ports.ReversalRefused(why="no such transfer")
        params = {**rows.reversal_params(reversal), "now": self._now()}
        with self._db.transaction("write a reversal intent") as cursor:
            # Two statements: the second reads what the lock's holder before it committed.
            cursor.execute(q.LOCK_TRANSFER_FOR_REVERSAL, params)
            try:
                row = cursor.execute(q.WRITE_REVERSAL_INTENT, params).fetchone()
            except psycopg.IntegrityError as exc:
                problem = translate.constraint_problem(exc)
                raise errors.IllegalTransition(
                    reversal.transfer_id, "completed", f"reverse: {problem}"
                ) from exc
        if row is None:  # pragma: no cover - the statement always returns its state
            raise errors.StoreUnavailable("a reversal intent returned nothing; try again")
        if row["refusal"] is None:
            return rows.reversal_from_row(row)
        amounts = None
        if row["transfer_status"] == models.TransferStatus.COMPLETED:
            amounts = rules.Amounts(
                paid=row["paid"], reversed=row["reversed"], in_doubt=row["in_doubt"]
            )
        return ports.ReversalRefused(why=row["refusal"], amounts=amounts)

    def settle_reversal(
        self,
        *,
        before: models.Reversal,
        after: models.Reversal,
        ledger_entry: models.LedgerEntry | None,
        action: models.OperatorAction | None,
    ) -> bool:
        rules.check_settlement(before, after, ledger_entry, action)
        params: dict[str, Any] = {**rows.settlement_params(after), "now": self._now()}
        query = q.SETTLE_REVERSAL_AS_FAILED
        if ledger_entry is not None and action is not None:
            params |= _ledger_params(ledger_entry) | rows.operator_action_params(action)
            query = q.SETTLE_REVERSAL_AS_COMPLETED
        # One statement: the answer, its credit and the action, all or nothing.
        return self._write(
            "settle a reversal",
            query,
            params,
            before.transfer_id,
            f"settle reversal {before.idempotency_key} as {after.status.value}",
        )

    def book_reversal(self, entry: models.LedgerEntry) -> bool:
        if entry.entry_type is not models.LedgerEntryType.PAYOUT_REVERSED:
            raise ValueError(f"{entry.idempotency_key} is a {entry.entry_type}, not a reversal")
        return self._write(
            "book a reversal",
            q.BOOK_REVERSAL,
            _ledger_params(entry),
            entry.transfer_id,
            f"book reversal {entry.stripe_reversal_id}",
        )

    def pause_state(self) -> models.PauseState:
        row = self._db.fetch_one("read the pause", q.PAUSE_STATE, {})
        return models.PauseState() if row is None else rows.pause_from_row(row)

    def set_paused(self, action: models.OperatorAction) -> models.PauseState:
        if action.action not in (models.OperatorActionKind.PAUSE, models.OperatorActionKind.RESUME):
            raise ValueError(f"{action.action} neither pauses nor resumes")
        now = self._now()
        with self._db.transaction(f"{action.action.value} the fleet") as cursor:
            before = cursor.execute(q.PAUSE_STATE_FOR_UPDATE, {}).fetchone()
            if before is None:
                raise errors.StoreUnavailable(
                    "cannot pause or resume: payout_control has no row; run `payout-core migrate`"
                )
            params = {
                "now": now,
                "paused": action.action is models.OperatorActionKind.PAUSE,
                "actor": action.actor,
                "reason": action.reason,
            }
            after = cursor.execute(q.SET_PAUSED, params).fetchone()
            if after is None:  # pragma: no cover - the row is locked above
                raise errors.StoreUnavailable("cannot pause or resume: payout_control vanished")
            state = rows.pause_from_row(after)
            recorded = attrs.evolve(
                action,
                transfer_id=None,
                before=rows.pause_from_row(before).as_dict(),
                after=state.as_dict(),
            )
            cursor.execute(
                q.INSERT_OPERATOR_ACTION, {"now": now, **rows.operator_action_params(recorded)}
            )
        return state

    def operator_actions(
        self, limit: int = 20, *, transfer_id: str | None = None
    ) -> list[models.OperatorAction]:
        params = {"limit": max(limit, 0)}
        if transfer_id is None:
            found = self._db.fetch_all("read the operator actions", q.OPERATOR_ACTIONS, params)
        else:
            key = rows.as_uuid(transfer_id)
            if key is None:
                return []
            found = self._db.fetch_all(
                "read a transfer's operator actions",
                q.OPERATOR_ACTIONS_OF_TRANSFER,
                {**params, "transfer_id": key},
            )
        return [rows.operator_action_from_row(row) for row in found]

    def record_run(self, report: models.RunReport) -> None:
        with self._db.transaction("record a run") as cursor:
            cursor.execute(q.UPSERT_RUN, rows.run_params(report))

    # -- reads ----------------------------------------------------------------

    def get_job(self, job_id: str) -> models.PayoutJob | None:
        key = rows.as_uuid(job_id)
        if key is None:
            return None
        row = self._db.fetch_one("read a job", q.GET_JOB, {"id": key})
        return None if row is None else rows.job_from_row(row)

    def find_job(self, settlement_id: str) -> models.PayoutJob | None:
        row = self._db.fetch_one(
            "find a job", q.FIND_JOB_BY_SETTLEMENT, {"settlement_id": settlement_id}
        )
        return None if row is None else rows.job_from_row(row)

    def list_jobs(
        self, *, status: models.JobStatus | None = None, limit: int = 100
    ) -> list[models.PayoutJob]:
        if status is None:
            found = self._db.fetch_all("list jobs", q.LIST_JOBS, {"limit": limit})
        else:
            found = self._db.fetch_all(
                "list jobs", q.LIST_JOBS_OF_STATUS, {"status": status.value, "limit": limit}
            )
        return [rows.job_from_row(row) for row in found]

    def get_transfer(self, transfer_id: str) -> models.PayoutTransfer | None:
        key = rows.as_uuid(transfer_id)
        if key is None:
            return None
        row = self._db.fetch_one("read a transfer", q.GET_TRANSFER, {"id": key})
        return None if row is None else rows.transfer_from_row(row)

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        params: dict[str, Any] = {"limit": max(limit, 0)}
        query = q.JOBS_FIRST
        if after is not None:
            query = q.JOBS_AFTER
            params["after"] = _id_bound(after, "job")
        found = self._db.fetch_all("page through the jobs", query, params)
        return [rows.job_from_row(row) for row in found]

    def transfer_histories(
        self, job_id: str, *, after: str | None, limit: int
    ) -> list[ports.TransferHistory]:
        params: dict[str, Any] = {"job_id": rows.as_uuid(job_id), "limit": max(limit, 0)}
        query = q.TRANSFERS_OF_JOB_FIRST
        if after is not None:
            query = q.TRANSFERS_OF_JOB_AFTER
            params["after"] = _id_bound(after, "transfer")
        if params["job_id"] is None:
            return []  # not an id any job can have
        with self._db.transaction("read a job's transfers and their ledger rows") as cursor:
            cursor.execute(q.READ_ONE_SNAPSHOT)
            transfers = [rows.transfer_from_row(r) for r in cursor.execute(query, params)]
            ids = [rows.as_uuid(t.id) for t in transfers]
            found = cursor.execute(q.LEDGER_OF_TRANSFERS, {"transfer_ids": ids}).fetchall()
        entries: dict[str, list[models.LedgerEntry]] = {t.id: [] for t in transfers}
        for row in found:
            entry = rows.ledger_entry_from_row(row)
            entries[entry.transfer_id].append(entry)
        return [ports.TransferHistory(transfer=t, ledger=tuple(entries[t.id])) for t in transfers]

    def transfers_of(self, job_id: str) -> list[models.PayoutTransfer]:
        key = rows.as_uuid(job_id)
        if key is None:
            return []
        found = self._db.fetch_all("read a job's transfers", q.TRANSFERS_OF_JOB, {"job_id": key})
        return [rows.transfer_from_row(row) for row in found]

    def list_transfers(
        self, *, status: models.TransferStatus | None = None, limit: int = 100
    ) -> list[models.PayoutTransfer]:
        if status is None:
            found = self._db.fetch_all("list transfers", q.LIST_TRANSFERS, {"limit": limit})
        else:
            found = self._db.fetch_all(
                "list transfers",
                q.LIST_TRANSFERS_OF_STATUS,
                {"status": status.value, "limit": limit},
            )
        return [rows.transfer_from_row(row) for row in found]

    def ledger(
        self, *, job_id: str | None = None, transfer_id: str | None = None
    ) -> list[models.LedgerEntry]:
        job_key = None if job_id is None else rows.as_uuid(job_id)
        transfer_key = None if transfer_id is None else rows.as_uuid(transfer_id)
        if (job_id is not None and job_key is None) or (
            transfer_id is not None and transfer_key is None
        ):
            return []  # not an id any row can have
        query: LiteralString
        if job_key is not None and transfer_key is not None:
            query = q.LEDGER_OF_JOB_AND_TRANSFER
        elif job_key is not None:
            query = q.LEDGER_OF_JOB
        elif transfer_key is not None:
            query = q.LEDGER_OF_TRANSFER
        else:
            query = q.LEDGER
        found = self._db.fetch_all(
            "read the ledger", query, {"job_id": job_key, "transfer_id": transfer_key}
        )
        return [rows.ledger_entry_from_row(row) for row in found]

    def queue_depth(self) -> ports.QueueDepth:
        row = self._db.fetch_one("count due transfers", q.QUEUE_DEPTH, {"now": self._now()})
        if row is None:  # pragma: no cover - an aggregate always returns a row
            return ports.QueueDepth(due=0, stuck=0)
        return ports.QueueDepth(
            due=row["due"], stuck=row["stuck"], needs_operator=row["needs_operator"]
        )

    def needing_operator(self, limit: int = 100) -> list[models.PayoutTransfer]:
        found = self._db.fetch_all(
            "list transfers needing an operator", q.NEEDING_OPERATOR, {"limit": limit}
        )
        return [rows.transfer_from_row(row) for row in found]

    def transfer_counts(self) -> dict[models.TransferStatus, int]:
        counts = dict.fromkeys(models.TransferStatus, 0)
        for row in self._db.fetch_all("count transfers", q.TRANSFER_COUNTS, {}):
            counts[models.TransferStatus(row["status"])] = row["n"]
        return counts

    def recent_runs(self, limit: int = 10) -> list[models.RunReport]:
        found = self._db.fetch_all("read recent runs", q.RECENT_RUNS, {"limit": limit})
        return [rows.run_from_row(row) for row in found]


class PostgresAccountDirectory:
    """:class:`payout_core.ports.AccountDirectory` on ``user_stripe_accounts``."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._db = Database(pool)

    def account_for(self, user_id: str) -> str | None:
        row = self._db.fetch_one("read a connected account", q.ACCOUNT_FOR, {"user_id": user_id})
        return None if row is None else str(row["stripe_account_id"])

    def accounts_for(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        found = self._db.fetch_all(
            "read connected accounts", q.ACCOUNTS_FOR, {"user_ids": list(user_ids)}
        )
        return {str(row["user_id"]): str(row["stripe_account_id"]) for row in found}

    def set_account(self, user_id: str, account_id: str) -> None:
        """Pay ``user_id`` to ``account_id`` from now on (connect, or move).

        Raises:
            InvalidAccount: ``account_id`` is not an ``acct_...`` id, or
                ``user_id`` is no user id (:func:`payout_core.validation.account_problems`).
            StoreRefused: the schema refused what the core's rule accepts.
            StoreUnavailable: nothing was written.
        """
        problems = validation.account_problems(user_id, account_id)
        if problems:
            raise errors.InvalidAccount(problems)
        params = {"user_id": user_id, "stripe_account_id": account_id}
        # A constraint's refusal becomes StoreRefused in translate.unavailable.
        with self._db.transaction("connect an account") as cursor:
            cursor.execute(q.SET_ACCOUNT, params)


class PostgresRateLimiter:
    """:class:`payout_core.ports.RateLimiter` for a fleet, on ``payout_rate_schedule``:
    every worker on every host takes its slots from one schedule per budget, so
    ``rates`` is the fleet's pace, however many workers run, and a 429 one of
    them meets slows them all. The schedule is the database's clock, as
    :class:`~payout_adapters.stripe.LocalRateLimiter`'s is the process's."""

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool,
        rates: Mapping[ports.Budget, float],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = set(ports.Budget) - set(rates)
        if missing or not all(r > 0 for r in rates.values()):
            raise ValueError(f"every budget needs a rate > 0, got {dict(rates)}")
        self._db = Database(pool)
        self._interval = {
            b: timedelta(seconds=1.0 / (rates[b] * pacing.HEADROOM)) for b in ports.Budget
        }
        self._sleep = sleep

    def acquire(self, budget: ports.Budget, *, max_wait: float | None = None) -> float | None:
        params = {
            **self._pacing(budget),
            "max_wait": None if max_wait is None else timedelta(seconds=max_wait),
        }
        row = self._db.fetch_one("take a slot of the Stripe rate limit", q.TAKE_RATE_SLOT, params)
        if row is None:
            return None  # booked beyond max_wait: nothing taken
        wait: float = row["wait"].total_seconds()
        if wait > 0:
            self._sleep(wait)
        return wait

    def push_back(self, budget: ports.Budget, retry_after: float | None) -> None:
        params = {
            **self._pacing(budget),
            "pause": None if retry_after is None else timedelta(seconds=max(retry_after, 0.0)),
            "cooldown": timedelta(seconds=pacing.COOLDOWN_SECONDS),
            "cut": pacing.CUT,
            "floor": pacing.FLOOR,
        }
        with self._db.statements("push the Stripe rate limit back") as cursor:
            cursor.execute(q.PUSH_RATE_BACK, params)

    def ready_within(self, budget: ports.Budget, seconds: float) -> int:
        row = self._db.fetch_one("read the Stripe rate limit", q.RATE_BACKLOG, self._pacing(budget))
        backlog, factor = (
            (0.0, 1.0) if row is None else (row["backlog"].total_seconds(), row["factor"])
        )
        interval = self._interval[budget].total_seconds() / factor
        return pacing.ready_within(seconds, backlog=backlog, interval=interval)

    def _pacing(self, budget: ports.Budget) -> dict[str, object]:
        return {
            "budget": budget.value,
            "interval": self._interval[budget],
            "recovery": pacing.RECOVERY_PER_SECOND,
        }


class PostgresInbox:
    """:class:`payout_core.ports.SettlementInbox` on ``payout_settlement_inbox``.

    Other services insert rows themselves, in their own transactions::

        INSERT INTO payout_settlement_inbox (settlement_id, payload) VALUES ($1, $2);
    """

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._db = Database(pool)

    def unprocessed(self, *, limit: int) -> list[ports.InboxItem]:
        with self._db.statements("read the settlement inbox") as cursor:
            # The payload as the core reads JSON: numbers exact (1e2 and 100.0
            # are the amount 100, as from the command line), and a payload it
            # cannot read (nested deeper than Python parses) an Unreadable, for
            # the row to be rejected instead of failing every tick.
            psycopg.types.json.set_json_loads(validation.payload_from_json, cursor)
            found = cursor.execute(q.INBOX_UNPROCESSED, {"limit": limit}).fetchall()
        return [
            ports.InboxItem(
                id=row["id"],
                settlement_id=row["settlement_id"],
                payload=row["payload"],
                received_at=row["received_at"],
            )
            for row in found
        ]

    def mark_accepted(self, item_id: int, *, job_id: str, now: datetime) -> None:
        key = rows.as_uuid(job_id)
        if key is None:
            raise ValueError(f"job id must be a UUID, got {job_id!r}")
        with self._db.transaction("mark an inbox row accepted") as cursor:
            cursor.execute(q.INBOX_MARK_ACCEPTED, {"id": item_id, "job_id": key, "now": now})

    def mark_rejected(self, item_id: int, *, reason: str, now: datetime) -> None:
        with self._db.transaction("mark an inbox row rejected") as cursor:
            cursor.execute(q.INBOX_MARK_REJECTED, {"id": item_id, "reason": reason, "now": now})
