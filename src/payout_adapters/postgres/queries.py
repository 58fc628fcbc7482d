"""Every SQL statement the PostgreSQL adapter runs, by name.

Each statement is parameterized (``%(name)s``; values are never formatted
into the text) and says above it what it guarantees: which rows it locks,
which index it reads, what it refuses. The migrations in ``migrations/`` are
the schema; this module is everything done with it.
"""

from __future__ import annotations

from typing import Final

# -- columns ------------------------------------------------------------------

JOB_COLUMNS: Final = """
    id, settlement_id, contest_id, currency, status, total_transfers,
    total_amount_cents, completed_count, failed_count, settlement_fingerprint,
    created_at, updated_at, completed_at
"""

TRANSFER_COLUMNS: Final = """
    id, job_id, settlement_id, contest_id, user_id, amount_cents, currency, status,
    attempt_count, max_attempts, next_attempt_at, lease_expires_at, claim_token,
    destination_account, stripe_transfer_id, failure_code,
    failure_message, key_generation, key_first_sent_at, last_send_at, key_sends,
    outcome_uncertain, key_replays_error, platform_refused, lookup_failures,
    abandoned_claims, needs_operator, reissue_of, created_at, updated_at
"""

# The database's time, or the test clock standing in for it (%(now)s is NULL
# in production). Every lease, due and key-age decision reads this, never a
# worker's clock (DESIGN 3, rule 1).
DATABASE_NOW: Final = "coalesce(%(now)s::timestamptz, now())"

LEDGER_COLUMNS: Final = """
    idempotency_key, entry_type, direction, amount_cents, currency, transfer_id,
    job_id, contest_id, user_id, attempt_number, stripe_transfer_id, failure_code,
    stripe_reversal_id, created_at
"""

RUN_COLUMNS: Final = """
    id, started_at, finished_at, settlements_accepted, settlements_rejected, claimed,
    completed, retried, failed_terminal, released, stale, halted_reason, error
"""

# -- schedule -------------------------------------------------------------------

# The job of a settlement, or nothing. Unique index payout_jobs_settlement_id_key.
# ON CONFLICT DO NOTHING waits for a concurrent insert of the same settlement to
# commit or roll back, so of any number of concurrent callers exactly one gets
# a row back: the others then read that job with FIND_JOB_BY_SETTLEMENT.
INSERT_JOB: Final = (
    """
INSERT INTO payout_jobs ("""
    + JOB_COLUMNS
    + """)
VALUES (%(id)s, %(settlement_id)s, %(contest_id)s, %(currency)s, %(status)s,
        %(total_transfers)s, %(total_amount_cents)s, %(completed_count)s, %(failed_count)s,
        %(settlement_fingerprint)s, %(created_at)s, %(updated_at)s, %(completed_at)s)
ON CONFLICT (settlement_id) DO NOTHING
RETURNING id
"""
)

# Transfers given column by column (one array per column, rows.transfers_params),
# in one statement for any number of them.
_INSERT_TRANSFER_ROWS: Final = (
    "INSERT INTO payout_transfers ("
    + TRANSFER_COLUMNS
    + """)
SELECT * FROM unnest(
    %(id)s::uuid[], %(job_id)s::uuid[], %(settlement_id)s::text[], %(contest_id)s::text[],
    %(user_id)s::text[], %(amount_cents)s::bigint[], %(currency)s::text[], %(status)s::text[],
    %(attempt_count)s::integer[], %(max_attempts)s::integer[],
    %(next_attempt_at)s::timestamptz[], %(lease_expires_at)s::timestamptz[],
    %(claim_token)s::text[], %(destination_account)s::text[],
    %(stripe_transfer_id)s::text[], %(failure_code)s::text[], %(failure_message)s::text[],
    %(key_generation)s::integer[], %(key_first_sent_at)s::timestamptz[],
    %(last_send_at)s::timestamptz[], %(key_sends)s::integer[],
    %(outcome_uncertain)s::boolean[], %(key_replays_error)s::boolean[],
    %(platform_refused)s::boolean[], %(lookup_failures)s::integer[],
    %(abandoned_claims)s::integer[], %(needs_operator)s::text[], %(reissue_of)s::uuid[],
    %(created_at)s::timestamptz[], %(updated_at)s::timestamptz[])"""
)

# All of a job's transfers in one statement (one round trip for any number of
# winners). A winner already paid in this contest by another settlement (a
# live or completed transfer: failed ones do not count) is skipped by the
# partial unique index payout_transfers_contest_user_live_idx, named by its
# predicate, instead of aborting: the caller compares the user ids returned
# with those sent, names the missing ones in DuplicatePayout, and rolls the
# whole job back.
INSERT_TRANSFERS: Final = (
    _INSERT_TRANSFER_ROWS
    + """
ON CONFLICT (contest_id, user_id) WHERE status <> 'failed_terminal' DO NOTHING
RETURNING user_id
"""
)

# Which of these winners a live or completed transfer of the contest already
# pays. Partial unique index payout_transfers_contest_user_live_idx.
PAID_USERS_OF_CONTEST: Final = """
SELECT user_id FROM payout_transfers
WHERE contest_id = %(contest_id)s AND user_id = ANY(%(user_ids)s::text[])
  AND status <> 'failed_terminal'
"""

# -- claim ----------------------------------------------------------------------

# The claims of dead workers that are one too many in a row (state_machine.
# abandoned_too_often): the caller escalates each to an operator with the
# guarded RECORD_OUTCOME. CLAIM_DUE never takes them over, so the escalation
# needs no lock or transaction of its own: a worker that still held such a
# claim and records first wins, and the escalation then updates nothing.
# Partial index payout_transfers_processing_idx.
ABANDONED_TOO_OFTEN: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + ", "
    + DATABASE_NOW
    + """ AS db_now
FROM payout_transfers
WHERE status = 'processing'
  AND lease_expires_at <= """
    + DATABASE_NOW
    + """
  AND abandoned_claims + 1 >= %(limit)s
"""
)

# Claim up to %(limit)s due transfers, oldest due first, in one statement that
# commits before any gateway call. Due means claimable_at <= the database's
# now: pending (since created), retryable and due (next_attempt_at), or
# processing with an expired lease (its worker died), unless that worker was
# one too many in a row (ABANDONED_TOO_OFTEN: an operator's, not another
# worker's to die on); never one that needs an operator (claimable_at is NULL
# then). Range scan of the partial index payout_transfers_claimable_idx, which
# holds only claimable transfers. FOR UPDATE SKIP LOCKED: rows another
# claimer is taking are skipped, never waited on, so concurrent workers claim
# disjoint sets. While the fleet is paused (payout_control), it claims nothing.
#
# The SET list is payout_core.state_machine.claim, column by column (old values
# on the right): a claim spends nothing and changes no doubt (the send intent
# does both); a take-over counts one more abandoned claim. updated_at is the
# claim's database time, which the worker decides with.
#
# The claimed transfers' jobs move from pending to processing in the same
# statement (`started`). Job rows are locked in id order (FOR NO KEY UPDATE
# under a sort) so that two claims over the same jobs cannot deadlock.
CLAIM_DUE: Final = (
    """
WITH clock AS (SELECT """
    + DATABASE_NOW
    + """ AS now),
due AS (
    SELECT id, claimable_at AS due_at
    FROM payout_transfers
    -- The expression, not the CTE's column: a bound of the index range scan.
    WHERE claimable_at <= """
    + DATABASE_NOW
    + """
      AND NOT (status = 'processing' AND abandoned_claims + 1 >= %(abandoned_limit)s)
      -- The fleet is paused: nothing is claimed (one row, read once: an InitPlan).
      AND NOT (SELECT paused FROM payout_control)
    ORDER BY claimable_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE payout_transfers AS t
    SET status = 'processing',
        claim_token = %(token)s,
        lease_expires_at = clock.now + %(lease)s,
        abandoned_claims = CASE WHEN t.status = 'processing' THEN t.abandoned_claims + 1
                                ELSE 0 END,
        updated_at = clock.now
    FROM due, clock
    WHERE t.id = due.id
    RETURNING due.due_at, """
    + ", ".join(f"t.{c.strip()}" for c in TRANSFER_COLUMNS.split(","))
    + """
),
started AS (
    UPDATE payout_jobs AS j
    SET status = 'processing', updated_at = clock.now
    FROM (SELECT id FROM payout_jobs
          WHERE id IN (SELECT job_id FROM claimed) AND status = 'pending'
          ORDER BY id
          FOR NO KEY UPDATE) AS locked, clock
    WHERE j.id = locked.id
)
SELECT * FROM claimed ORDER BY due_at, id
"""
)

# The write-ahead send intent (DESIGN 3, rule 2): payout_core.state_machine.send
# in SQL, guarded as state_machine.refuse_send is: the stored transfer is still
# this claim (status, token, attempt count); its lease has at least the send
# margin left by the database's clock; the destination is the pinned one, if
# any; a resend of an uncertain key only while the key is trusted (first sent
# less than the trust window ago, and not replaying an error); a new attempt
# only while one is left. No row back: refused, nothing written (the caller
# reads why with TRANSFER_AND_NOW). Row lock on the transfer until commit.
WRITE_INTENT: Final = (
    """
WITH clock AS (SELECT """
    + DATABASE_NOW
    + """ AS now)
UPDATE payout_transfers AS t
SET destination_account = %(destination)s,
    attempt_count = CASE WHEN t.outcome_uncertain THEN t.attempt_count
                         ELSE t.attempt_count + 1 END,
    key_first_sent_at = CASE WHEN t.outcome_uncertain THEN t.key_first_sent_at
                             ELSE clock.now END,
    key_sends = CASE WHEN t.outcome_uncertain THEN t.key_sends + 1 ELSE 1 END,
    last_send_at = clock.now,
    outcome_uncertain = true,
    updated_at = clock.now
FROM clock
WHERE t.id = %(id)s
  AND t.status = 'processing'
  AND t.claim_token = %(token)s
  AND t.attempt_count = %(attempt_count)s
  AND t.lease_expires_at - clock.now >= %(margin)s
  AND (t.destination_account IS NULL OR t.destination_account = %(destination)s)
  AND CASE WHEN t.outcome_uncertain
           THEN NOT t.key_replays_error
                AND t.key_first_sent_at > clock.now - %(trust_window)s
           ELSE t.attempt_count < t.max_attempts END
RETURNING """
    + ", ".join(f"t.{c.strip()}" for c in TRANSFER_COLUMNS.split(","))
)

# A transfer and the database's time: why an intent was refused. Primary key.
TRANSFER_AND_NOW: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + ", "
    + DATABASE_NOW
    + " AS db_now FROM payout_transfers WHERE id = %(id)s"
)

# -- record ---------------------------------------------------------------------

# A transfer's new state, every column an event may change (the rest, who is
# paid how much by which job, never changes after it is written). Each use
# adds the guard of its event to the WHERE clause: a guard that fails updates
# no row, and whatever hangs on the row (RETURNING) is not written either.
_WRITE_OUTCOME: Final = """
UPDATE payout_transfers
SET status = %(status)s,
    attempt_count = %(attempt_count)s,
    claim_token = %(claim_token)s,
    next_attempt_at = %(next_attempt_at)s,
    lease_expires_at = %(lease_expires_at)s,
    destination_account = %(destination_account)s,
    stripe_transfer_id = %(stripe_transfer_id)s,
    failure_code = %(failure_code)s,
    failure_message = %(failure_message)s,
    key_generation = %(key_generation)s,
    key_first_sent_at = %(key_first_sent_at)s,
    last_send_at = %(last_send_at)s,
    key_sends = %(key_sends)s,
    outcome_uncertain = %(outcome_uncertain)s,
    key_replays_error = %(key_replays_error)s,
    platform_refused = %(platform_refused)s,
    lookup_failures = %(lookup_failures)s,
    abandoned_claims = %(abandoned_claims)s,
    needs_operator = %(needs_operator)s,
    updated_at = %(updated_at)s
WHERE id = %(id)s
"""

# Write an attempt's outcome, only if the stored transfer is still the claim
# the worker holds: status processing, same claim_token, same attempt_count
# (the state machine's guard, repeated in SQL). No row back: the lease was
# taken over, the newer claim owns the transfer, and nothing is written.
# Row lock on the transfer (primary key) until commit.
RECORD_OUTCOME: Final = (
    _WRITE_OUTCOME
    + """  AND status = 'processing'
  AND claim_token = %(claimed_token)s
  AND attempt_count = %(claimed_attempt_count)s
RETURNING id
"""
)

# The job's counts, moved by the outcome the CTE `recorded` wrote (no row
# there: nothing moves). Only an outcome that ends the transfer counts:
# payout_core.completion.advance in SQL, by this outcome alone (0 or 1), never
# recounted, so an outcome costs the same in a 10-winner job and a
# 200,000-winner one. The job's row lock orders concurrent outcomes of the
# job, and each sees the counts the one before it committed (READ COMMITTED
# re-reads a row it waited for). `payout-core reconcile` recounts them
# (payout_core.reconcile).
_ADVANCE_JOB: Final = """
advanced AS (
    UPDATE payout_jobs
    SET completed_count = completed_count + %(job_completed)s,
        failed_count = failed_count + %(job_failed)s,
        status = CASE WHEN completed_count + %(job_completed)s + failed_count + %(job_failed)s
                           = total_transfers
                      THEN 'complete' ELSE 'processing' END,
        completed_at = CASE WHEN completed_count + %(job_completed)s + failed_count
                                 + %(job_failed)s = total_transfers
                            THEN coalesce(completed_at, %(job_now)s) ELSE completed_at END,
        updated_at = %(job_now)s
    WHERE id = %(job_id)s
      AND %(job_completed)s + %(job_failed)s > 0
      AND EXISTS (SELECT FROM recorded)
    RETURNING id
)"""

# Append one ledger row (its parameters prefixed ledger_, rows.ledger_params).
# Its unique idempotency_key books it once; the table's trigger refuses any
# later UPDATE or DELETE, and a payout_reversed credit is refused when it would
# bring more back than was paid (payout_ledger_reversed_within_paid, 0009).
INSERT_LEDGER_ENTRY: Final = (
    "INSERT INTO payout_ledger ("
    + LEDGER_COLUMNS
    + """)
    SELECT %(ledger_idempotency_key)s::text, %(ledger_entry_type)s::text,
           %(ledger_direction)s::text, %(ledger_amount_cents)s::bigint,
           %(ledger_currency)s::text, %(ledger_transfer_id)s::uuid, %(ledger_job_id)s::uuid,
           %(ledger_contest_id)s::text, %(ledger_user_id)s::text,
           %(ledger_attempt_number)s::integer, %(ledger_stripe_transfer_id)s::text,
           %(ledger_failure_code)s::text, %(ledger_stripe_reversal_id)s::text,
           %(ledger_created_at)s::timestamptz"""
)

# The same, as the CTE `booked`, written only with the outcome the CTE
# `recorded` wrote.
_BOOK_LEDGER_ENTRY: Final = "\nbooked AS (" + INSERT_LEDGER_ENTRY + " FROM recorded RETURNING id)"

_RECORDED: Final = " SELECT count(*) AS recorded FROM recorded"

# An outcome, its ledger row and its job's counts in ONE statement: the unit of
# work of PostgresStore.record, atomic as a statement is, durable when it
# returns (autocommit), in one round trip instead of five (BEGIN, three
# statements, COMMIT). RECORD_OUTCOME is its first part, unchanged: when the
# claim was taken over it updates no row, and then the ledger row and the job's
# counts, which hang on its row, are not written either.
RECORD_OUTCOME_AND_EFFECTS: Final = (
    "WITH recorded AS (" + RECORD_OUTCOME + ")," + _ADVANCE_JOB + _RECORDED
)

RECORD_OUTCOME_WITH_LEDGER_ENTRY: Final = (
    "WITH recorded AS ("
    + RECORD_OUTCOME
    + "),"
    + _ADVANCE_JOB
    + ","
    + _BOOK_LEDGER_ENTRY
    + _RECORDED
)

# -- reads ----------------------------------------------------------------------

# Primary key.
GET_JOB: Final = "SELECT " + JOB_COLUMNS + " FROM payout_jobs WHERE id = %(id)s"

# Unique index payout_jobs_settlement_id_key.
FIND_JOB_BY_SETTLEMENT: Final = (
    "SELECT " + JOB_COLUMNS + " FROM payout_jobs WHERE settlement_id = %(settlement_id)s"
)

# Newest first. Index payout_jobs_created_at_idx.
LIST_JOBS: Final = (
    "SELECT " + JOB_COLUMNS + " FROM payout_jobs ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
)

# Of one status, newest first. Index payout_jobs_status_created_at_idx.
LIST_JOBS_OF_STATUS: Final = (
    "SELECT "
    + JOB_COLUMNS
    + """ FROM payout_jobs WHERE status = %(status)s
ORDER BY created_at DESC, id DESC LIMIT %(limit)s"""
)

# Every job, page by page: keyset on the primary key, a range scan per page.
_JOBS_BY_ID: Final = "SELECT " + JOB_COLUMNS + " FROM payout_jobs"
JOBS_FIRST: Final = _JOBS_BY_ID + " ORDER BY id LIMIT %(limit)s"
JOBS_AFTER: Final = _JOBS_BY_ID + " WHERE id > %(after)s ORDER BY id LIMIT %(limit)s"

# A job's transfers, page by page in id order: keyset on index
# payout_transfers_job_id_idx, a range scan per page however large the job.
_TRANSFERS_OF_JOB_BY_ID: Final = (
    "SELECT " + TRANSFER_COLUMNS + " FROM payout_transfers WHERE job_id = %(job_id)s"
)
TRANSFERS_OF_JOB_FIRST: Final = _TRANSFERS_OF_JOB_BY_ID + " ORDER BY id LIMIT %(limit)s"
TRANSFERS_OF_JOB_AFTER: Final = (
    _TRANSFERS_OF_JOB_BY_ID + " AND id > %(after)s ORDER BY id LIMIT %(limit)s"
)

# The ledger rows of a page of transfers, in write order, in one statement.
# Index payout_ledger_transfer_idx.
LEDGER_OF_TRANSFERS: Final = (
    "SELECT "
    + LEDGER_COLUMNS
    + " FROM payout_ledger WHERE transfer_id = ANY(%(transfer_ids)s::uuid[]) ORDER BY id"
)

# The first statement of a transaction whose reads must agree with each other
# (a page of transfers and their ledger rows): one snapshot for all of them,
# so no outcome committed between two reads shows half.
READ_ONE_SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"

# Primary key.
GET_TRANSFER: Final = "SELECT " + TRANSFER_COLUMNS + " FROM payout_transfers WHERE id = %(id)s"

# A job's transfers by user id (byte order: the column's collation is "C").
# Index payout_transfers_job_user_idx.
TRANSFERS_OF_JOB: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + " FROM payout_transfers WHERE job_id = %(job_id)s ORDER BY user_id"
)

# Most recently updated first (a sort of the whole table: for status pages).
LIST_TRANSFERS: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + " FROM payout_transfers ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"
)

# Of one status, most recently updated first. Index payout_transfers_status_updated_at_idx.
LIST_TRANSFERS_OF_STATUS: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + """ FROM payout_transfers WHERE status = %(status)s
ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"""
)

# Ledger rows in write order (the identity column).
LEDGER: Final = "SELECT " + LEDGER_COLUMNS + " FROM payout_ledger ORDER BY id"

# A job's ledger rows in write order. Index payout_ledger_job_idx.
LEDGER_OF_JOB: Final = (
    "SELECT " + LEDGER_COLUMNS + " FROM payout_ledger WHERE job_id = %(job_id)s ORDER BY id"
)

# A transfer's ledger rows in write order. Index payout_ledger_transfer_idx.
LEDGER_OF_TRANSFER: Final = (
    "SELECT "
    + LEDGER_COLUMNS
    + " FROM payout_ledger WHERE transfer_id = %(transfer_id)s ORDER BY id"
)

# Both filters (index payout_ledger_transfer_idx).
LEDGER_OF_JOB_AND_TRANSFER: Final = (
    "SELECT "
    + LEDGER_COLUMNS
    + """ FROM payout_ledger WHERE transfer_id = %(transfer_id)s AND job_id = %(job_id)s
ORDER BY id"""
)

# Due and stuck transfers at the database's time, read from the partial index
# payout_transfers_claimable_idx; those needing an operator from theirs.
QUEUE_DEPTH: Final = (
    """
SELECT (SELECT count(*) FROM payout_transfers WHERE claimable_at <= clock.now) AS due,
       (SELECT count(*) FROM payout_transfers
        WHERE status = 'processing' AND lease_expires_at <= clock.now) AS stuck,
       (SELECT count(*) FROM payout_transfers WHERE needs_operator IS NOT NULL)
           AS needs_operator
FROM (SELECT """
    + DATABASE_NOW
    + """ AS now) AS clock
"""
)

# The transfers waiting for an operator, longest first.
# Index payout_transfers_needs_operator_idx.
NEEDING_OPERATOR: Final = (
    "SELECT "
    + TRANSFER_COLUMNS
    + """ FROM payout_transfers WHERE needs_operator IS NOT NULL
ORDER BY updated_at, id LIMIT %(limit)s"""
)

# How many transfers are in each status, at a cost that does not grow with the
# history: the terminal ones from the jobs' counters (kept by the outcome's statements; one
# row per job), the open ones from index payout_transfers_status_updated_at_idx.
# /metrics reads it after every tick.
TRANSFER_COUNTS: Final = """
SELECT 'completed' AS status, coalesce(sum(completed_count), 0)::bigint AS n FROM payout_jobs
UNION ALL
SELECT 'failed_terminal', coalesce(sum(failed_count), 0)::bigint FROM payout_jobs
UNION ALL
SELECT status, count(*) FROM payout_transfers
WHERE status IN ('pending', 'processing', 'retryable')
GROUP BY status
"""

# -- runs -----------------------------------------------------------------------

# Insert or update the run (primary key): a tick records itself at its start and end.
UPSERT_RUN: Final = (
    "INSERT INTO payout_scheduler_runs ("
    + RUN_COLUMNS
    + """)
VALUES (%(id)s, %(started_at)s, %(finished_at)s, %(settlements_accepted)s,
        %(settlements_rejected)s, %(claimed)s, %(completed)s, %(retried)s,
        %(failed_terminal)s, %(released)s, %(stale)s, %(halted_reason)s, %(error)s)
ON CONFLICT (id) DO UPDATE SET
    started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at,
    settlements_accepted = EXCLUDED.settlements_accepted,
    settlements_rejected = EXCLUDED.settlements_rejected,
    claimed = EXCLUDED.claimed,
    completed = EXCLUDED.completed,
    retried = EXCLUDED.retried,
    failed_terminal = EXCLUDED.failed_terminal,
    released = EXCLUDED.released,
    stale = EXCLUDED.stale,
    halted_reason = EXCLUDED.halted_reason,
    error = EXCLUDED.error"""
)

# Newest first. Index payout_scheduler_runs_started_at_idx.
RECENT_RUNS: Final = (
    "SELECT "
    + RUN_COLUMNS
    + " FROM payout_scheduler_runs ORDER BY started_at DESC, id DESC LIMIT %(limit)s"
)

# -- connected accounts ---------------------------------------------------------

# Primary key.
ACCOUNT_FOR: Final = """
SELECT stripe_account_id FROM user_stripe_accounts WHERE user_id = %(user_id)s
"""

# Many users at once (a claimed batch): primary key, one round trip.
ACCOUNTS_FOR: Final = """
SELECT user_id, stripe_account_id FROM user_stripe_accounts
WHERE user_id = ANY(%(user_ids)s::text[])
"""

# Connect a user, or move them to another account. The check constraint
# refuses anything but acct_...
SET_ACCOUNT: Final = """
INSERT INTO user_stripe_accounts (user_id, stripe_account_id)
VALUES (%(user_id)s, %(stripe_account_id)s)
ON CONFLICT (user_id) DO UPDATE
SET stripe_account_id = EXCLUDED.stripe_account_id, updated_at = now()
"""

# -- the fleet's pace toward Stripe ---------------------------------------------

# The share of the configured rate in force for a budget's row s:
# payout_core.pacing.factor_now in SQL (the last cut's factor, grown back since).
_FACTOR_NOW: Final = (
    "least(1.0, s.factor + coalesce(extract(epoch FROM now() - s.cut_at), 0) * %(recovery)s)"
)

# Take the budget's next slot and move it on by one interval at the pace in
# force (the configured interval / _FACTOR_NOW): a GCRA. The answer is how long
# to wait for the slot (zero when it is already due); no row when the slot is
# further away than %(max_wait)s (then nothing is taken). One short statement
# on one row per request, on an UNLOGGED table (no WAL flush); concurrent
# callers queue on the row lock for as long as the statement takes.
TAKE_RATE_SLOT: Final = (
    """
INSERT INTO payout_rate_schedule AS s (budget, next_at)
VALUES (%(budget)s, now() + %(interval)s)
ON CONFLICT (budget) DO UPDATE
SET next_at = greatest(s.next_at, now()) + %(interval)s / """
    + _FACTOR_NOW
    + """
WHERE %(max_wait)s::interval IS NULL OR s.next_at - now() <= %(max_wait)s::interval
RETURNING greatest(s.next_at - %(interval)s / """
    + _FACTOR_NOW
    + """ - now(), interval '0') AS wait
"""
)

# Stripe said 429 (payout_core.pacing.factor_after_429 in SQL): the pace is cut,
# unless the last cut is more recent than the cooldown, and nobody takes a slot
# of the budget before now + %(pause)s (Retry-After), or one slot at the new
# pace when Stripe named no time.
PUSH_RATE_BACK: Final = (
    """
WITH cut AS (
    SELECT s.cut_at IS NULL OR s.cut_at <= now() - %(cooldown)s AS due,
           greatest(%(floor)s, """
    + _FACTOR_NOW
    + """ * %(cut)s) AS factor
    FROM payout_rate_schedule AS s
    WHERE s.budget = %(budget)s
    UNION ALL SELECT true, %(cut)s  -- no row yet: the first cut is from the full rate
    LIMIT 1
)
INSERT INTO payout_rate_schedule AS s (budget, next_at, factor, cut_at)
SELECT %(budget)s, now() + coalesce(%(pause)s, %(interval)s / cut.factor), cut.factor, now()
FROM cut
ON CONFLICT (budget) DO UPDATE
SET factor = CASE WHEN (SELECT due FROM cut) THEN EXCLUDED.factor ELSE s.factor END,
    cut_at = CASE WHEN (SELECT due FROM cut) THEN EXCLUDED.cut_at ELSE s.cut_at END,
    next_at = greatest(s.next_at, EXCLUDED.next_at)
"""
)

# How far ahead the budget's schedule is booked, and its pace in force.
RATE_BACKLOG: Final = (
    """
SELECT greatest(s.next_at - now(), interval '0') AS backlog, """
    + _FACTOR_NOW
    + """ AS factor
FROM payout_rate_schedule AS s
WHERE s.budget = %(budget)s
"""
)

# -- the pause and the operator actions --------------------------------------------

PAUSE_COLUMNS: Final = "paused, paused_by, paused_reason, paused_at"

PAUSE_STATE: Final = "SELECT " + PAUSE_COLUMNS + " FROM payout_control WHERE id"

# The pause before an action, locked until the action commits: two operators
# acting at once are recorded one after the other, each with what it changed.
PAUSE_STATE_FOR_UPDATE: Final = PAUSE_STATE + " FOR UPDATE"

SET_PAUSED: Final = (
    """
UPDATE payout_control
SET paused = %(paused)s,
    paused_by = CASE WHEN %(paused)s THEN %(actor)s END,
    paused_reason = CASE WHEN %(paused)s THEN %(reason)s END,
    paused_at = CASE WHEN %(paused)s THEN """
    + DATABASE_NOW
    + """ END,
    updated_at = """
    + DATABASE_NOW
    + """
WHERE id
RETURNING """
    + PAUSE_COLUMNS
)

OPERATOR_ACTION_COLUMNS: Final = "action, actor, reason, transfer_id, before, after, created_at"

# Append one operator action; the table's trigger refuses any later change.
INSERT_OPERATOR_ACTION: Final = (
    "INSERT INTO payout_operator_actions ("
    + OPERATOR_ACTION_COLUMNS
    + """)
SELECT %(action)s::text, %(actor)s::text, %(reason)s::text, %(transfer_id)s::uuid,
       %(before)s::jsonb, %(after)s::jsonb, """
    + DATABASE_NOW
)

# The same, as the CTE `acted`, written only with the change the CTE
# `recorded` wrote: an action is recorded if and only if it happened.
_RECORD_ACTION: Final = "\nacted AS (" + INSERT_OPERATOR_ACTION + " FROM recorded RETURNING id)"

# transfers resolve (payout_core.state_machine.resolve_found / resolve_absent):
# the operator's verdict, its ledger row, the job's counts and the action in
# ONE statement, as record's. Guarded by what the operator decided on: the
# stored transfer is still that row (same status and updated_at: no claim,
# outcome or other resolve came between) and still needs an operator. No row
# back: nothing is written. Row lock on the transfer (primary key) until commit.
RESOLVE_TRANSFER: Final = (
    "WITH recorded AS ("
    + _WRITE_OUTCOME
    + """  AND status = %(stored_status)s
  AND needs_operator IS NOT NULL
  AND updated_at = %(stored_updated_at)s
RETURNING id
),"""
    + _ADVANCE_JOB
    + ","
    + _BOOK_LEDGER_ENTRY
    + ","
    + _RECORD_ACTION
    + _RECORDED
)

# transfers reissue (payout_core.state_machine.reissue): the new transfer, the
# job reopened and the action in ONE statement. The failed transfer must be
# stored as failed_terminal, of this job and winner; terminal is terminal, so
# it needs no lock. ON CONFLICT DO NOTHING, with no target, arbitrates every
# unique index: payout_transfers_reissue_of_key (this failed transfer was
# reissued already) and payout_transfers_contest_user_live_idx (a live or
# completed transfer pays the winner) turn the insert into nothing, also
# against a concurrent reissue or schedule (the second waits for the first to
# commit); so does a taken primary key. Nothing inserted: the job and the
# action are not written either. The job reopens: one more transfer, its
# amount added, processing and not complete. Row lock on the job until commit.
REISSUE_TRANSFER: Final = (
    """
WITH failed AS (
    SELECT id FROM payout_transfers
    WHERE id = %(failed_id)s AND status = 'failed_terminal'
      AND job_id = %(failed_job_id)s AND user_id = %(failed_user_id)s
),
recorded AS ("""
    + _INSERT_TRANSFER_ROWS
    + """
    WHERE EXISTS (SELECT FROM failed)
    ON CONFLICT DO NOTHING
    RETURNING job_id, amount_cents
),
reopened AS (
    UPDATE payout_jobs AS j
    SET total_transfers = j.total_transfers + 1,
        total_amount_cents = j.total_amount_cents + r.amount_cents,
        status = 'processing',
        completed_at = NULL,
        updated_at = %(job_now)s
    FROM recorded AS r
    WHERE j.id = r.job_id
    RETURNING j.id
),"""
    + _RECORD_ACTION
    + _RECORDED
)

# Newest first. Index payout_operator_actions_created_at_idx.
OPERATOR_ACTIONS: Final = (
    "SELECT "
    + OPERATOR_ACTION_COLUMNS
    + " FROM payout_operator_actions ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
)

# One transfer's, newest first. Index payout_operator_actions_transfer_idx.
OPERATOR_ACTIONS_OF_TRANSFER: Final = (
    "SELECT "
    + OPERATOR_ACTION_COLUMNS
    + " FROM payout_operator_actions WHERE transfer_id = %(transfer_id)s"
    " ORDER BY id DESC LIMIT %(limit)s"
)

# -- reversals (DESIGN 7) ----------------------------------------------------------

REVERSAL_COLUMNS: Final = """
    id, transfer_id, sequence, idempotency_key, stripe_transfer_id, amount_cents,
    currency, actor, reason, status, stripe_reversal_id, failure_code, failure_message,
    created_at, updated_at
"""

# A transfer's reversals, first first. Unique index payout_reversals_transfer_sequence_key.
REVERSALS_OF: Final = (
    "SELECT "
    + REVERSAL_COLUMNS
    + " FROM payout_reversals WHERE transfer_id = %(transfer_id)s ORDER BY sequence"
)

# The first statement of a reversal's intent: the transfer's row lock (primary
# key), held until commit. The ledger's trigger takes the same lock before it
# books a credit (0009), so intents and credits of one transfer happen one
# after the other, and WRITE_REVERSAL_INTENT, a statement of its own, reads
# (READ COMMITTED) what the holder before it committed.
LOCK_TRANSFER_FOR_REVERSAL: Final = (
    "SELECT id FROM payout_transfers WHERE id = %(transfer_id)s FOR NO KEY UPDATE"
)

# The write-ahead intent of a reversal, written only if the transfer is
# completed (by this Stripe transfer, in this currency), none of its reversals
# is in doubt, this sequence is the next, and the amount is no more than what
# is left: paid less every credit booked in the ledger, payout-core's and the
# dashboard's. `refusal` says why not (nothing written then), with the
# amounts; payout_reversals_one_sending_idx is the last line behind the guard.
# created_at and updated_at are the database's time.
WRITE_REVERSAL_INTENT: Final = (
    """
WITH clock AS (SELECT """
    + DATABASE_NOW
    + """ AS now),
transfer AS (
    SELECT t.status, t.amount_cents, t.currency, t.stripe_transfer_id
    FROM (SELECT) AS one LEFT JOIN payout_transfers AS t ON t.id = %(transfer_id)s
),
booked AS (
    SELECT coalesce(sum(amount_cents), 0) AS reversed
    FROM payout_ledger
    WHERE transfer_id = %(transfer_id)s AND entry_type = 'payout_reversed'
),
asked AS (
    SELECT coalesce(max(sequence), 0) AS last_sequence,
           coalesce(sum(amount_cents) FILTER (WHERE status = 'sending'), 0) AS in_doubt,
           min(idempotency_key) FILTER (WHERE status = 'sending') AS in_doubt_key
    FROM payout_reversals
    WHERE transfer_id = %(transfer_id)s
),
state AS (
    SELECT transfer.status AS transfer_status,
           CASE WHEN transfer.status = 'completed' THEN transfer.amount_cents ELSE 0 END
               AS paid,
           booked.reversed,
           asked.in_doubt,
           CASE
               WHEN transfer.status IS NULL THEN 'no such transfer'
               WHEN transfer.status <> 'completed'
                   THEN format('the transfer is %%s, not completed: nothing was paid',
                               transfer.status)
               WHEN (transfer.stripe_transfer_id, transfer.currency)
                    IS DISTINCT FROM (%(stripe_transfer_id)s::text, %(currency)s::text)
                   THEN format('the transfer was paid by %%s in %%s, not by %%s in %%s',
                               transfer.stripe_transfer_id, transfer.currency,
                               %(stripe_transfer_id)s::text, %(currency)s::text)
               WHEN asked.in_doubt_key IS NOT NULL
                   THEN format('reversal %%s is still in doubt: resolve it first',
                               asked.in_doubt_key)
               WHEN %(sequence)s::integer <> asked.last_sequence + 1
                   THEN format('sequence %%s is not the next one (%%s)',
                               %(sequence)s::integer, asked.last_sequence + 1)
               WHEN %(amount_cents)s::bigint > transfer.amount_cents - booked.reversed
                   THEN format('cannot reverse %%s: more than is left', %(amount_cents)s::bigint)
           END AS refusal
    FROM transfer, booked, asked
),
written AS (
    INSERT INTO payout_reversals ("""
    + REVERSAL_COLUMNS
    + """)
    SELECT %(id)s::uuid, %(transfer_id)s::uuid, %(sequence)s::integer,
           %(idempotency_key)s::text, %(stripe_transfer_id)s::text,
           %(amount_cents)s::bigint, %(currency)s::text, %(actor)s::text, %(reason)s::text,
           'sending', NULL, NULL, NULL, clock.now, clock.now
    FROM state, clock
    WHERE state.refusal IS NULL
    RETURNING """
    + REVERSAL_COLUMNS
    + """
)
SELECT state.*, written.* FROM state LEFT JOIN written ON true
"""
)

# A reversal's conclusive answer, only while the stored reversal is still in
# doubt (no row back otherwise: settled meanwhile, nothing written). The
# table's trigger refuses any change to a settled row (0009). Row lock on the
# reversal (primary key) until commit.
_SETTLE_REVERSAL: Final = """
UPDATE payout_reversals
SET status = %(status)s,
    stripe_reversal_id = %(stripe_reversal_id)s,
    failure_code = %(failure_code)s,
    failure_message = %(failure_message)s,
    updated_at = %(updated_at)s
WHERE id = %(id)s AND status = 'sending'
RETURNING id
"""

# Stripe reversed nothing under the key: the reversal fails, nothing is booked.
SETTLE_REVERSAL_AS_FAILED: Final = "WITH recorded AS (" + _SETTLE_REVERSAL + ")" + _RECORDED

# Stripe reversed it: the reversal, its credit and the operator's action in ONE
# statement, each written only with the reversal the CTE `recorded` settled.
# The credit is booked unless its key is (a webhook saw the reversal first):
# ON CONFLICT on payout_ledger_idempotency_key_key. The ledger's trigger
# refuses a credit beyond what was paid, and then nothing at all is written.
SETTLE_REVERSAL_AS_COMPLETED: Final = (
    "WITH recorded AS ("
    + _SETTLE_REVERSAL
    + "),\nbooked AS ("
    + INSERT_LEDGER_ENTRY
    + " FROM recorded ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),"
    + _RECORD_ACTION
    + _RECORDED
)

# A reversal payout-core did not ask for (Stripe's dashboard): its credit,
# once (payout_ledger_idempotency_key_key); a row back when this booked it.
BOOK_REVERSAL: Final = (
    INSERT_LEDGER_ENTRY + " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1 AS recorded"
)

# -- settlement inbox -----------------------------------------------------------

# Rows not yet taken, oldest first. Partial index payout_settlement_inbox_new_idx.
INBOX_UNPROCESSED: Final = """
SELECT id, settlement_id, payload, received_at
FROM payout_settlement_inbox
WHERE status = 'new'
ORDER BY id
LIMIT %(limit)s
"""

# The row became job %(job_id)s. Only a new row changes: a row another runner
# already marked keeps its first verdict.
INBOX_MARK_ACCEPTED: Final = """
UPDATE payout_settlement_inbox
SET status = 'accepted', job_id = %(job_id)s, taken_at = %(now)s
WHERE id = %(id)s AND status = 'new'
"""

# The row can never become a job; the reason is for the service that sent it.
INBOX_MARK_REJECTED: Final = """
UPDATE payout_settlement_inbox
SET status = 'rejected', rejected_reason = %(reason)s, taken_at = %(now)s
WHERE id = %(id)s AND status = 'new'
"""

# -- Stripe's events (the webhook endpoint) ------------------------------------------

# Store an event unless its id is known (primary key): a row back when new.
# The payload must be JSON (the jsonb cast refuses anything else).
ACCEPT_EVENT: Final = """
INSERT INTO payout_webhook_events (id, type, payload, received_at)
VALUES (%(id)s, %(type)s, %(payload)s::jsonb, %(received_at)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

# The events not yet applied, in arrival order. Partial index
# payout_webhook_events_unprocessed_idx.
UNPROCESSED_EVENTS: Final = """
SELECT id, type, payload::text AS payload, received_at
FROM payout_webhook_events
WHERE processed_at IS NULL
ORDER BY arrival
LIMIT %(limit)s
"""

# The event was applied. Only once: an event marked already keeps its first outcome.
MARK_EVENT_PROCESSED: Final = """
UPDATE payout_webhook_events
SET processed_at = %(now)s, outcome = %(outcome)s
WHERE id = %(id)s AND processed_at IS NULL
"""

# -- migrations -----------------------------------------------------------------

# One advisory lock for every migrating process of every host: two `migrate`
# runs at once apply each file once, in order. Session-level, held across the
# per-file transactions and released at the end (or when the session ends).
MIGRATION_LOCK_ID: Final = 7_305_867_011_232_010_573  # fixed; any bigint works

ACQUIRE_MIGRATION_LOCK: Final = "SELECT pg_advisory_lock(%(lock_id)s)"

RELEASE_MIGRATION_LOCK: Final = "SELECT pg_advisory_unlock(%(lock_id)s)"

# The migrations' own bookkeeping, created under the lock before anything else.
CREATE_MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS payout_schema_migrations (
    name        text        PRIMARY KEY,
    checksum    text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

# Whether any migration ever ran here (read without the lock, to report, never to apply).
MIGRATIONS_TABLE_EXISTS: Final = "SELECT to_regclass('payout_schema_migrations') IS NOT NULL"

APPLIED_MIGRATIONS: Final = "SELECT name, checksum FROM payout_schema_migrations ORDER BY name"

# In the same transaction as the file's own statements: applied and recorded together.
RECORD_MIGRATION: Final = """
INSERT INTO payout_schema_migrations (name, checksum) VALUES (%(name)s, %(checksum)s)
"""
