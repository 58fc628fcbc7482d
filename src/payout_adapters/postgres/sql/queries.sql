-- Every SQL statement of the PostgreSQL adapter but the migrator's, by name.
--
-- Why one file of about 700 lines: it is the adapter's whole conversation with
-- the schema (migrations/), read side by side: the same locks, indexes and
-- guards come back in many statements, and a change to one is checked against
-- the others here. Its sections follow the life of a payout.
--
-- The format (payout_adapters.postgres.queries loads it once, at import):
--
--   -- name_of_query --
--   -- One line: what it does, what it guarantees.
--   -- More lines, if it needs them: the locks it takes, the index it reads, the race it closes.
--   SELECT ... WHERE id = %(id)s
--
-- Values are always parameters, %(name)s, never text. Full-line comments are
-- for the reader and are not sent. A name that starts with _ is a fragment:
-- never run alone, only put into the statements that name it.
--
-- {{name}} is replaced once, when the file is loaded, and only by the code's
-- own text, never by a value: by the fragment or statement of that name, or by
-- a column list of payout_adapters.postgres.rows, derived from a model's
-- fields (so a new field needs no edit here):
--
--   {{job_columns}}        id, settlement_id, ...            payout_jobs
--   {{job_values}}         %(id)s, %(settlement_id)s, ...    their parameters
--   {{transfer_columns}}   id, job_id, ...                   payout_transfers
--   {{t.transfer_columns}} t.id, t.job_id, ...               the same, of the alias t
--   {{transfer_arrays}}    %(id)s::uuid[], ...               one array per column, for unnest
--   {{ledger_columns}}     idempotency_key, ...              payout_ledger
--   {{ledger_values}}      %(ledger_idempotency_key)s::text, ...
--   {{run_columns}}, {{run_values}}                          payout_scheduler_runs
--   {{reversal_columns}}, {{operator_action_columns}}, {{pause_columns}}

-- _database_now --
-- The database's time, or the test clock standing in for it (%(now)s is NULL in production).
-- Every lease, due and key-age decision reads this, never a worker's clock (DESIGN 3, rule 1).
coalesce(%(now)s::timestamptz, now())


-- ==== schedule ======================================================================

-- insert_job --
-- The job of a settlement, or nothing. Unique index payout_jobs_settlement_id_key.
-- ON CONFLICT DO NOTHING waits for a concurrent insert of the same settlement to
-- commit or roll back, so of any number of concurrent callers exactly one gets
-- a row back: the others then read that job with find_job_by_settlement.
INSERT INTO payout_jobs ({{job_columns}})
VALUES ({{job_values}})
ON CONFLICT (settlement_id) DO NOTHING
RETURNING id

-- insert_transfers --
-- All of a job's transfers in one statement (one round trip for any number of winners).
-- Transfers are given column by column (one array per column, rows.TRANSFERS.array_params).
-- A winner already paid in this contest by another settlement (a live or
-- completed transfer: failed ones do not count), or twice in this job, is
-- skipped by the partial unique index payout_transfers_contest_user_live_idx,
-- named by its predicate, instead of aborting: the caller compares the user ids
-- returned with those sent, names the missing ones in DuplicatePayout, and
-- rolls the whole job back.
INSERT INTO payout_transfers ({{transfer_columns}})
SELECT * FROM unnest({{transfer_arrays}})
ON CONFLICT (contest_id, user_id) WHERE status <> 'failed_terminal' DO NOTHING
RETURNING user_id


-- ==== claim =========================================================================

-- abandoned_too_often --
-- The claims of dead workers that are one too many in a row (state_machine.abandoned_too_often).
-- The caller escalates each to an operator with the guarded record_outcome.
-- claim_due never takes them over, so the escalation needs no lock or
-- transaction of its own: a worker that still held such a claim and records
-- first wins, and the escalation then updates nothing.
-- Partial index payout_transfers_processing_idx.
SELECT {{transfer_columns}}, {{_database_now}} AS db_now
FROM payout_transfers
WHERE status = 'processing'
  AND lease_expires_at <= {{_database_now}}
  AND abandoned_claims + 1 >= %(limit)s

-- claim_due --
-- Claim up to %(limit)s due transfers, oldest due first, in one statement that commits before any gateway call.
-- Due means claimable_at <= the database's now: pending (since created),
-- retryable and due (next_attempt_at), or processing with an expired lease (its
-- worker died), unless that worker was one too many in a row
-- (abandoned_too_often: an operator's, not another worker's to die on); never
-- one that needs an operator (claimable_at is NULL then). Range scan of the
-- partial index payout_transfers_claimable_idx, which holds only claimable
-- transfers. FOR UPDATE SKIP LOCKED: rows another claimer is taking are
-- skipped, never waited on, so concurrent workers claim disjoint sets. While
-- the fleet is paused (payout_control), it claims nothing.
--
-- The SET list is payout_core.state_machine.claim, column by column (old values
-- on the right): a claim spends nothing and changes no doubt (the send intent
-- does both); a take-over counts one more abandoned claim. updated_at is the
-- claim's database time, which the worker decides with.
--
-- The claimed transfers' jobs move from pending to processing in the same
-- statement (`started`). Job rows are locked in id order (FOR NO KEY UPDATE
-- under a sort) so that two claims over the same jobs cannot deadlock.
WITH clock AS (SELECT {{_database_now}} AS now),
due AS (
    SELECT id, claimable_at AS due_at
    FROM payout_transfers
    -- The expression, not the CTE's column: a bound of the index range scan.
    WHERE claimable_at <= {{_database_now}}
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
    RETURNING due.due_at, {{t.transfer_columns}}
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

-- write_intent --
-- The write-ahead send intent (DESIGN 3, rule 2): payout_core.state_machine.send in SQL.
-- Guarded as state_machine.refuse_send is: the stored transfer is still this
-- claim (status, token, attempt count); its lease has at least the send margin
-- left by the database's clock; the destination is the pinned one, if any; a
-- resend of an uncertain key only while the key is trusted (first sent less
-- than the trust window ago, and not replaying an error); a new attempt only
-- while one is left. No row back: refused, nothing written (the caller reads
-- why with transfer_and_now). Row lock on the transfer until commit.
WITH clock AS (SELECT {{_database_now}} AS now)
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
RETURNING {{t.transfer_columns}}

-- transfer_and_now --
-- A transfer and the database's time: why an intent was refused. Primary key.
SELECT {{transfer_columns}}, {{_database_now}} AS db_now FROM payout_transfers WHERE id = %(id)s


-- ==== record ========================================================================

-- _write_outcome --
-- A transfer's new state: every column an event may change, and no other.
-- The rest (who is paid how much by which job) never changes after it is
-- written; the workers' role may UPDATE exactly these columns (0012), so a new
-- column that an event changes goes here and into a GRANT of its migration.
-- Each use adds the guard of its event to the WHERE clause: a guard that fails
-- updates no row, and whatever hangs on the row (RETURNING) is not written either.
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

-- record_outcome --
-- Write an attempt's outcome, only if the stored transfer is still the claim the worker holds.
-- The claim: status processing, same claim_token, same attempt_count (the state
-- machine's guard, repeated in SQL). No row back: the lease was taken over,
-- the newer claim owns the transfer, and nothing is written.
-- Row lock on the transfer (primary key) until commit.
{{_write_outcome}}
  AND status = 'processing'
  AND claim_token = %(claimed_token)s
  AND attempt_count = %(claimed_attempt_count)s
RETURNING id

-- _advance_job --
-- The job's counts, moved by the outcome the CTE `recorded` wrote (no row there: nothing moves).
-- Only an outcome that ends the transfer counts: payout_core.completion.advance
-- in SQL, by this outcome alone (0 or 1), never recounted, so an outcome costs
-- the same in a 10-winner job and a 200,000-winner one. The job's row lock
-- orders concurrent outcomes of the job, and each sees the counts the one
-- before it committed (READ COMMITTED re-reads a row it waited for).
-- `payout-core reconcile` recounts them (payout_core.reconcile).
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
)

-- _insert_ledger_entry --
-- Append one ledger row (its parameters prefixed ledger_: rows.LEDGER.params(entry, prefix="ledger_")).
-- Its unique idempotency_key books it once; the table's trigger refuses any
-- later UPDATE or DELETE, and a payout_reversed credit is refused when it would
-- bring more back than was paid (payout_ledger_reversed_within_paid, 0009).
INSERT INTO payout_ledger ({{ledger_columns}})
    SELECT {{ledger_values}}

-- _book_ledger_entry --
-- The same, as the CTE `booked`, written only with the outcome the CTE `recorded` wrote.
booked AS ({{_insert_ledger_entry}} FROM recorded RETURNING id)

-- record_outcome_and_effects --
-- An outcome and its job's counts in ONE statement: the unit of work of PostgresStore.record.
-- Atomic as a statement is, durable when it returns (autocommit), in one round
-- trip instead of five (BEGIN, three statements, COMMIT). record_outcome is its
-- first part, unchanged: when the claim was taken over it updates no row, and
-- then the job's counts (and, in record_outcome_with_ledger_entry, the ledger
-- row), which hang on its row, are not written either.
WITH recorded AS ({{record_outcome}}),
{{_advance_job}}
SELECT count(*) AS recorded FROM recorded

-- record_outcome_with_ledger_entry --
-- An outcome, its ledger row and its job's counts in ONE statement (as record_outcome_and_effects).
WITH recorded AS ({{record_outcome}}),
{{_advance_job}},
{{_book_ledger_entry}}
SELECT count(*) AS recorded FROM recorded


-- ==== reads =========================================================================

-- get_job --
-- A job by its id. Primary key.
SELECT {{job_columns}} FROM payout_jobs WHERE id = %(id)s

-- find_job_by_settlement --
-- A settlement's job. Unique index payout_jobs_settlement_id_key.
SELECT {{job_columns}} FROM payout_jobs WHERE settlement_id = %(settlement_id)s

-- list_jobs --
-- Jobs, newest first. Index payout_jobs_created_at_idx.
SELECT {{job_columns}} FROM payout_jobs ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- list_jobs_of_status --
-- Jobs of one status, newest first. Index payout_jobs_status_created_at_idx.
SELECT {{job_columns}} FROM payout_jobs WHERE status = %(status)s
ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- jobs_first --
-- Every job, page by page (the first page): keyset on the primary key, a range scan per page.
SELECT {{job_columns}} FROM payout_jobs ORDER BY id LIMIT %(limit)s

-- jobs_after --
-- The page of jobs after %(after)s (as jobs_first).
SELECT {{job_columns}} FROM payout_jobs WHERE id > %(after)s ORDER BY id LIMIT %(limit)s

-- transfers_of_job_first --
-- A job's transfers, page by page in id order (the first page).
-- Keyset on index payout_transfers_job_id_idx: a range scan per page however large the job.
SELECT {{transfer_columns}} FROM payout_transfers WHERE job_id = %(job_id)s
ORDER BY id LIMIT %(limit)s

-- transfers_of_job_after --
-- The page of a job's transfers after %(after)s (as transfers_of_job_first).
SELECT {{transfer_columns}} FROM payout_transfers WHERE job_id = %(job_id)s
AND id > %(after)s ORDER BY id LIMIT %(limit)s

-- ledger_of_transfers --
-- The ledger rows of a page of transfers, in write order, in one statement.
-- Index payout_ledger_transfer_idx.
SELECT {{ledger_columns}} FROM payout_ledger WHERE transfer_id = ANY(%(transfer_ids)s::uuid[])
ORDER BY id

-- read_one_snapshot --
-- The first statement of a transaction whose reads must agree with each other.
-- One snapshot for all of them (a page of transfers and their ledger rows; a
-- ledger export), so no outcome committed between two reads shows half.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- get_transfer --
-- A transfer by its id. Primary key.
SELECT {{transfer_columns}} FROM payout_transfers WHERE id = %(id)s

-- transfers_of_job --
-- A job's transfers by user id (byte order: the column's collation is "C").
-- Index payout_transfers_job_user_idx.
SELECT {{transfer_columns}} FROM payout_transfers WHERE job_id = %(job_id)s ORDER BY user_id

-- list_transfers --
-- Transfers, most recently updated first (a sort of the whole table: for status pages).
SELECT {{transfer_columns}} FROM payout_transfers ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s

-- list_transfers_of_status --
-- Transfers of one status, most recently updated first.
-- Index payout_transfers_status_updated_at_idx.
SELECT {{transfer_columns}} FROM payout_transfers WHERE status = %(status)s
ORDER BY updated_at DESC, id DESC LIMIT %(limit)s

-- ledger --
-- Ledger rows in write order (the identity column).
SELECT {{ledger_columns}} FROM payout_ledger ORDER BY id

-- ledger_of_job --
-- A job's ledger rows in write order. Index payout_ledger_job_idx.
SELECT {{ledger_columns}} FROM payout_ledger WHERE job_id = %(job_id)s ORDER BY id

-- ledger_of_transfer --
-- A transfer's ledger rows in write order. Index payout_ledger_transfer_idx.
SELECT {{ledger_columns}} FROM payout_ledger WHERE transfer_id = %(transfer_id)s ORDER BY id

-- ledger_of_job_and_transfer --
-- A transfer's ledger rows, if of this job, in write order (index payout_ledger_transfer_idx).
SELECT {{ledger_columns}} FROM payout_ledger WHERE transfer_id = %(transfer_id)s
AND job_id = %(job_id)s ORDER BY id

-- queue_depth --
-- Due and stuck transfers at the database's time, and those needing an operator.
-- Due and stuck from the partial index payout_transfers_claimable_idx; those
-- needing an operator from theirs.
SELECT (SELECT count(*) FROM payout_transfers WHERE claimable_at <= clock.now) AS due,
       (SELECT count(*) FROM payout_transfers
        WHERE status = 'processing' AND lease_expires_at <= clock.now) AS stuck,
       (SELECT count(*) FROM payout_transfers WHERE needs_operator IS NOT NULL)
           AS needs_operator
FROM (SELECT {{_database_now}} AS now) AS clock

-- needing_operator --
-- The transfers waiting for an operator, longest first. Index payout_transfers_needs_operator_idx.
SELECT {{transfer_columns}} FROM payout_transfers WHERE needs_operator IS NOT NULL
ORDER BY updated_at, id LIMIT %(limit)s

-- transfer_counts --
-- How many transfers are in each status, at a cost that does not grow with the history.
-- The terminal ones from the jobs' counters (kept by the outcome's statements;
-- one row per job), the open ones from index
-- payout_transfers_status_updated_at_idx. /metrics reads it after every tick.
SELECT 'completed' AS status, coalesce(sum(completed_count), 0)::bigint AS n FROM payout_jobs
UNION ALL
SELECT 'failed_terminal', coalesce(sum(failed_count), 0)::bigint FROM payout_jobs
UNION ALL
SELECT status, count(*) FROM payout_transfers
WHERE status IN ('pending', 'processing', 'retryable')
GROUP BY status


-- ==== runs ==========================================================================

-- upsert_run --
-- Insert or update the run (primary key): a tick records itself at its start and end.
INSERT INTO payout_scheduler_runs ({{run_columns}})
VALUES ({{run_values}})
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
    error = EXCLUDED.error

-- recent_runs --
-- Runs, newest first. Index payout_scheduler_runs_started_at_idx.
SELECT {{run_columns}} FROM payout_scheduler_runs ORDER BY started_at DESC, id DESC
LIMIT %(limit)s


-- ==== connected accounts ============================================================

-- account_for --
-- A user's connected account. Primary key.
SELECT stripe_account_id FROM user_stripe_accounts WHERE user_id = %(user_id)s

-- accounts_for --
-- Many users' accounts at once (a claimed batch): primary key, one round trip.
SELECT user_id, stripe_account_id FROM user_stripe_accounts
WHERE user_id = ANY(%(user_ids)s::text[])

-- set_account --
-- Connect a user, or move them to another account.
-- The check constraint refuses anything but acct_...
INSERT INTO user_stripe_accounts (user_id, stripe_account_id)
VALUES (%(user_id)s, %(stripe_account_id)s)
ON CONFLICT (user_id) DO UPDATE
SET stripe_account_id = EXCLUDED.stripe_account_id, updated_at = now()


-- ==== the fleet's pace toward Stripe ================================================

-- _factor_now --
-- The share of the configured rate in force for a budget's row s.
-- payout_core.pacing.factor_now in SQL: the last cut's factor, grown back since.
least(1.0, s.factor + coalesce(extract(epoch FROM now() - s.cut_at), 0) * %(recovery)s)

-- take_rate_slot --
-- Take the budget's next slot and move it on by one interval at the pace in force: a GCRA.
-- The pace in force is the configured interval / _factor_now. The answer is
-- how long to wait for the slot (zero when it is already due); no row when the
-- slot is further away than %(max_wait)s (then nothing is taken). One short
-- statement on one row per request, on an UNLOGGED table (no WAL flush);
-- concurrent callers queue on the row lock for as long as the statement takes.
INSERT INTO payout_rate_schedule AS s (budget, next_at)
VALUES (%(budget)s, now() + %(interval)s)
ON CONFLICT (budget) DO UPDATE
SET next_at = greatest(s.next_at, now()) + %(interval)s / {{_factor_now}}
WHERE %(max_wait)s::interval IS NULL OR s.next_at - now() <= %(max_wait)s::interval
RETURNING greatest(s.next_at - %(interval)s / {{_factor_now}} - now(), interval '0') AS wait

-- push_rate_back --
-- Stripe said 429 (payout_core.pacing.factor_after_429 in SQL): the pace is cut.
-- Unless the last cut is more recent than the cooldown; and nobody takes a
-- slot of the budget before now + %(pause)s (Retry-After), or one slot at the
-- new pace when Stripe named no time.
WITH cut AS (
    SELECT s.cut_at IS NULL OR s.cut_at <= now() - %(cooldown)s AS due,
           greatest(%(floor)s, {{_factor_now}} * %(cut)s) AS factor
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

-- rate_backlog --
-- How far ahead the budget's schedule is booked, and its pace in force.
SELECT greatest(s.next_at - now(), interval '0') AS backlog, {{_factor_now}} AS factor
FROM payout_rate_schedule AS s
WHERE s.budget = %(budget)s


-- ==== the pause and the operator actions ============================================

-- pause_state --
-- Whether the fleet is paused, by whom, why, since when: the one row of payout_control.
SELECT {{pause_columns}} FROM payout_control WHERE id

-- pause_state_for_update --
-- The pause before an action, locked until the action commits.
-- Two operators acting at once are recorded one after the other, each with what it changed.
{{pause_state}} FOR UPDATE

-- set_paused --
-- Pause or resume the fleet, at the database's time; the new state back.
UPDATE payout_control
SET paused = %(paused)s,
    paused_by = CASE WHEN %(paused)s THEN %(actor)s END,
    paused_reason = CASE WHEN %(paused)s THEN %(reason)s END,
    paused_at = CASE WHEN %(paused)s THEN {{_database_now}} END,
    updated_at = {{_database_now}}
WHERE id
RETURNING {{pause_columns}}

-- insert_operator_action --
-- Append one operator action, at the database's time; the table's trigger refuses any later change.
-- Its parameters are prefixed operator_ (store_base.operator_action_params):
-- they go with the transfer's, the reversal's or the pause's in one statement.
INSERT INTO payout_operator_actions (action, actor, reason, transfer_id, before, after, created_at)
SELECT %(operator_action)s::text, %(operator_actor)s::text, %(operator_reason)s::text,
       %(operator_transfer_id)s::uuid, %(operator_before)s::jsonb, %(operator_after)s::jsonb,
       {{_database_now}}

-- _record_action --
-- The same, as the CTE `acted`, written only with the change the CTE `recorded` wrote.
-- An action is recorded if and only if it happened.
acted AS ({{insert_operator_action}} FROM recorded RETURNING id)

-- resolve_transfer --
-- transfers resolve (state_machine.resolve_found / resolve_absent), all in ONE statement.
-- The operator's verdict, its ledger row, the job's counts and the action, as
-- record's. Guarded by what the operator decided on: the stored transfer is
-- still that row (same status and updated_at: no claim, outcome or other
-- resolve came between) and still needs an operator. No row back: nothing is
-- written. Row lock on the transfer (primary key) until commit.
WITH recorded AS (
{{_write_outcome}}
  AND status = %(stored_status)s
  AND needs_operator IS NOT NULL
  AND updated_at = %(stored_updated_at)s
RETURNING id
),
{{_advance_job}},
{{_book_ledger_entry}},
{{_record_action}}
SELECT count(*) AS recorded FROM recorded

-- reissue_transfer --
-- transfers reissue (state_machine.reissue): the new transfer, the job reopened and the action in ONE statement.
-- The failed transfer must be stored as failed_terminal, of this job and
-- winner; terminal is terminal, so it needs no lock. ON CONFLICT DO NOTHING,
-- with no target, arbitrates every unique index:
-- payout_transfers_reissue_of_key (this failed transfer was reissued already)
-- and payout_transfers_contest_user_live_idx (a live or completed transfer pays
-- the winner) turn the insert into nothing, also against a concurrent reissue
-- or schedule (the second waits for the first to commit); so does a taken
-- primary key. Nothing inserted: the job and the action are not written
-- either. The job reopens: one more transfer, its amount added, processing and
-- not complete. Row lock on the job until commit.
WITH failed AS (
    SELECT id FROM payout_transfers
    WHERE id = %(failed_id)s AND status = 'failed_terminal'
      AND job_id = %(failed_job_id)s AND user_id = %(failed_user_id)s
),
recorded AS (
    INSERT INTO payout_transfers ({{transfer_columns}})
    SELECT * FROM unnest({{transfer_arrays}})
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
),
{{_record_action}}
SELECT count(*) AS recorded FROM recorded

-- operator_actions --
-- Operator actions, newest first. Index payout_operator_actions_created_at_idx.
SELECT {{operator_action_columns}} FROM payout_operator_actions
ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- operator_actions_of_transfer --
-- One transfer's operator actions, newest first. Index payout_operator_actions_transfer_idx.
SELECT {{operator_action_columns}} FROM payout_operator_actions
WHERE transfer_id = %(transfer_id)s ORDER BY id DESC LIMIT %(limit)s


-- ==== reversals (DESIGN 7) ==========================================================

-- reversals_of --
-- A transfer's reversals, first first. Unique index payout_reversals_transfer_sequence_key.
SELECT {{reversal_columns}} FROM payout_reversals WHERE transfer_id = %(transfer_id)s
ORDER BY sequence

-- reversals_in_doubt --
-- The reversals still sending, the oldest intent first. Partial index payout_reversals_one_sending_idx
-- holds just these (one at most per transfer).
SELECT {{reversal_columns}} FROM payout_reversals WHERE status = 'sending'
ORDER BY created_at, id
LIMIT %(limit)s

-- lock_transfer_for_reversal --
-- The first statement of a reversal's intent: the transfer's row lock (primary key), held until commit.
-- The ledger's trigger takes the same lock before it books a credit (0009), so
-- intents and credits of one transfer happen one after the other, and
-- write_reversal_intent, a statement of its own, reads (READ COMMITTED) what
-- the holder before it committed.
SELECT id FROM payout_transfers WHERE id = %(transfer_id)s FOR NO KEY UPDATE

-- write_reversal_intent --
-- The write-ahead intent of a reversal, or `refusal` saying why not (nothing written then), with the amounts.
-- Written only if the transfer is completed (by this Stripe transfer, in this
-- currency), none of its reversals is in doubt, this sequence is the next, and
-- the amount is no more than what is left: paid less every credit booked in
-- the ledger, payout-core's and the dashboard's. payout_reversals_one_sending_idx
-- is the last line behind the guard. created_at and updated_at are the
-- database's time.
WITH clock AS (SELECT {{_database_now}} AS now),
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
    INSERT INTO payout_reversals (
        id, transfer_id, sequence, idempotency_key, stripe_transfer_id, amount_cents,
        currency, actor, reason, status, stripe_reversal_id, failure_code, failure_message,
        created_at, updated_at)
    SELECT %(id)s::uuid, %(transfer_id)s::uuid, %(sequence)s::integer,
           %(idempotency_key)s::text, %(stripe_transfer_id)s::text,
           %(amount_cents)s::bigint, %(currency)s::text, %(actor)s::text, %(reason)s::text,
           'sending', NULL, NULL, NULL, clock.now, clock.now
    FROM state, clock
    WHERE state.refusal IS NULL
    RETURNING {{reversal_columns}}
)
SELECT state.*, written.* FROM state LEFT JOIN written ON true

-- _settle_reversal --
-- A reversal's conclusive answer, only while the stored reversal is still in doubt.
-- No row back otherwise: settled meanwhile, nothing written. The table's
-- trigger refuses any change to a settled row (0009). Row lock on the reversal
-- (primary key) until commit.
UPDATE payout_reversals
SET status = %(status)s,
    stripe_reversal_id = %(stripe_reversal_id)s,
    failure_code = %(failure_code)s,
    failure_message = %(failure_message)s,
    updated_at = %(updated_at)s
WHERE id = %(id)s AND status = 'sending'
RETURNING id

-- settle_reversal_as_failed --
-- Stripe reversed nothing under the key: the reversal fails, nothing is booked.
WITH recorded AS ({{_settle_reversal}})
SELECT count(*) AS recorded FROM recorded

-- settle_reversal_as_completed --
-- Stripe reversed it: the reversal, its credit and the operator's action in ONE statement.
-- Each is written only with the reversal the CTE `recorded` settled. The
-- credit is booked unless its key is (a webhook saw the reversal first): ON
-- CONFLICT on payout_ledger_idempotency_key_key. The ledger's trigger refuses a
-- credit beyond what was paid, and then nothing at all is written.
WITH recorded AS ({{_settle_reversal}}),
booked AS ({{_insert_ledger_entry}} FROM recorded
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),
{{_record_action}}
SELECT count(*) AS recorded FROM recorded

-- book_reversal --
-- A reversal payout-core did not ask for (Stripe's dashboard): its credit, once.
-- Unique index payout_ledger_idempotency_key_key; a row back when this booked it.
{{_insert_ledger_entry}} ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1 AS recorded


-- ==== settlement inbox ==============================================================

-- inbox_unprocessed --
-- Rows not yet taken, oldest first. Partial index payout_settlement_inbox_new_idx.
SELECT id, settlement_id, payload, received_at
FROM payout_settlement_inbox
WHERE status = 'new'
ORDER BY id
LIMIT %(limit)s

-- inbox_mark_accepted --
-- The row became job %(job_id)s. Only a new row changes: a row another runner already marked keeps its first verdict.
UPDATE payout_settlement_inbox
SET status = 'accepted', job_id = %(job_id)s, taken_at = %(now)s
WHERE id = %(id)s AND status = 'new'

-- inbox_mark_rejected --
-- The row can never become a job; the reason is for the service that sent it.
UPDATE payout_settlement_inbox
SET status = 'rejected', rejected_reason = %(reason)s, taken_at = %(now)s
WHERE id = %(id)s AND status = 'new'


-- ==== Stripe's events (the webhook endpoint) ========================================

-- accept_event --
-- Store an event unless its id is known (primary key): a row back when new.
-- The payload must be JSON (the jsonb cast refuses anything else).
INSERT INTO payout_webhook_events (id, type, payload, received_at)
VALUES (%(id)s, %(type)s, %(payload)s::jsonb, %(received_at)s)
ON CONFLICT (id) DO NOTHING
RETURNING id

-- unprocessed_events --
-- The events not yet applied, in arrival order. Partial index payout_webhook_events_unprocessed_idx.
SELECT id, type, payload::text AS payload, received_at
FROM payout_webhook_events
WHERE processed_at IS NULL
ORDER BY arrival
LIMIT %(limit)s

-- mark_event_processed --
-- The event was applied. Only once: an event marked already keeps its first outcome.
UPDATE payout_webhook_events
SET processed_at = %(now)s, outcome = %(outcome)s
WHERE id = %(id)s AND processed_at IS NULL


-- ==== the ledger export (ledger_reader) =============================================

-- plan_for_every_row --
-- An export reads every row it asks for: plan for the whole result, not the first tenth.
-- (A cursor is planned for a tenth by default.) With it, a window of a small
-- share of the ledger is a range scan of payout_ledger_created_at_idx (0011)
-- and a sort by id on the server; one of most of the ledger, a scan of the
-- primary key, already in id order. EXPLAIN on 300,000 rows: docs/performance.md.
SET LOCAL cursor_tuple_fraction = 1.0

-- ledger_in_window --
-- A window of the ledger, in write order. Index payout_ledger_created_at_idx, or the primary key.
-- (See plan_for_every_row.)
SELECT {{ledger_columns}} FROM payout_ledger
WHERE created_at >= %(since)s AND created_at < %(until)s
ORDER BY id

-- ledger_of_job_in_window --
-- A window of one job's rows, in write order. Index payout_ledger_job_idx (job_id, id).
-- The job's rows in id order, the window a filter on them.
SELECT {{ledger_columns}} FROM payout_ledger WHERE job_id = %(job_id)s
AND created_at >= %(since)s AND created_at < %(until)s ORDER BY id
