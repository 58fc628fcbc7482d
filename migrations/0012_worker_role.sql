-- Least privilege for the processes that move money (docs/security.md).
--
-- Two group roles, NOLOGIN: nothing connects as them. Each process connects as
-- a LOGIN role of its own that is a member of one of them, created by whoever
-- administers the server:
--
--     CREATE ROLE payout_worker_1 LOGIN PASSWORD '...' IN ROLE payout_worker;
--     CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE payout_operator;
--
-- payout_worker runs `loop` and `webhooks serve`: it takes settlements from
-- the inbox, claims, writes send intents, records outcomes and their ledger
-- rows, paces the fleet, records its runs, and stores and applies Stripe's
-- events (which may settle a reversal an operator asked for, with that
-- operator's audit row). It reads the connected accounts and the pause; it
-- cannot write either.
--
-- payout_operator runs the operator's commands: pause and resume, transfers
-- resolve, reissue and reverse, accounts set, schedule; status, transfers
-- show, reconcile and ledger export only read.
--
-- Both read every payout table: the statements read what they write
-- (RETURNING, the guards, the ledger's trigger), and a read changes no money.
-- What they may write is listed below, column by column where a row holds
-- facts that never change: who is paid how much, by which job, is written once
-- and is nobody's to UPDATE. Neither role owns anything, nor may CREATE in the
-- schema, DELETE or TRUNCATE anything, nor UPDATE the ledger or the audit trail
-- (the owner is refused that too: the triggers of 0002, 0007 and 0009).
-- Migrations run as the tables' owner, never as these roles.
--
-- Roles belong to the server, not to a database: the first database of a
-- server to run this file creates them (its migrating role needs CREATEROLE,
-- or a superuser creates them beforehand), the others find them and grant
-- them their own tables. A later migration that adds a table, or a column a
-- process writes, grants it in that migration.

DO $$
DECLARE
    group_role text;
BEGIN
    FOREACH group_role IN ARRAY ARRAY['payout_worker', 'payout_operator'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = group_role);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', group_role);
        EXCEPTION
            -- The migration of another database of this server created it meanwhile.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role % does not exist, and % may not create it',
                    group_role, current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Have a superuser (or a role with CREATEROLE) run '
                                 '"CREATE ROLE payout_worker NOLOGIN; '
                                 'CREATE ROLE payout_operator NOLOGIN;", '
                                 'then run payout-core migrate again.';
        END;
    END LOOP;
    -- The schema the tables were created in (PostgreSQL 15 and later grant
    -- USAGE on public to everyone already; CREATE on it to nobody).
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO payout_worker, payout_operator',
                   current_schema());
END
$$;

-- Exactly what follows, whatever the roles held before (a role made by hand).
REVOKE ALL ON payout_jobs, payout_transfers, payout_ledger, user_stripe_accounts,
              payout_settlement_inbox, payout_scheduler_runs, payout_rate_schedule,
              payout_control, payout_operator_actions, payout_reversals,
              payout_webhook_events, payout_schema_migrations
    FROM payout_worker, payout_operator;

GRANT SELECT ON payout_jobs, payout_transfers, payout_ledger, user_stripe_accounts,
                payout_settlement_inbox, payout_scheduler_runs, payout_rate_schedule,
                payout_control, payout_operator_actions, payout_reversals,
                payout_webhook_events, payout_schema_migrations
    TO payout_worker, payout_operator;

-- -- both: scheduling, claims and outcomes, the ledger, the fleet's pace --------------

-- A job and its transfers (schedule, the inbox; a reissue adds a transfer).
GRANT INSERT ON payout_jobs, payout_transfers TO payout_worker, payout_operator;
-- A transfer's state: a claim, a send intent, an outcome, a resolve. Never
-- id, job_id, settlement_id, contest_id, user_id, amount_cents, currency,
-- max_attempts, reissue_of nor created_at.
GRANT UPDATE (status, attempt_count, claim_token, next_attempt_at, lease_expires_at,
              destination_account, stripe_transfer_id, failure_code, failure_message,
              key_generation, key_first_sent_at, last_send_at, key_sends,
              outcome_uncertain, key_replays_error, platform_refused, lookup_failures,
              abandoned_claims, needs_operator, updated_at)
    ON payout_transfers TO payout_worker, payout_operator;
-- A job's progress, moved by its transfers' outcomes.
GRANT UPDATE (status, completed_count, failed_count, completed_at, updated_at)
    ON payout_jobs TO payout_worker, payout_operator;
-- Rows only ever added (the triggers refuse the rest, whoever asks).
GRANT INSERT ON payout_ledger, payout_operator_actions TO payout_worker, payout_operator;
-- A reversal's answer, never what was asked (the trigger of 0009 repeats it).
GRANT UPDATE (status, stripe_reversal_id, failure_code, failure_message, updated_at)
    ON payout_reversals TO payout_worker, payout_operator;
-- One budget toward Stripe for the fleet and the operators' requests alike.
GRANT INSERT, UPDATE ON payout_rate_schedule TO payout_worker, payout_operator;

-- -- the worker alone: the inbox, its runs, Stripe's events -------------------------

GRANT UPDATE (status, job_id, taken_at, rejected_reason)
    ON payout_settlement_inbox TO payout_worker;
GRANT INSERT, UPDATE ON payout_scheduler_runs TO payout_worker;
GRANT INSERT ON payout_webhook_events TO payout_worker;
GRANT UPDATE (processed_at, outcome) ON payout_webhook_events TO payout_worker;

-- -- the operator alone: the pause, reissues, reversals, connected accounts ----------

GRANT UPDATE ON payout_control TO payout_operator;
-- A reissue reopens its job with one more transfer.
GRANT UPDATE (total_transfers, total_amount_cents) ON payout_jobs TO payout_operator;
GRANT INSERT ON payout_reversals TO payout_operator;
GRANT INSERT ON user_stripe_accounts TO payout_operator;
GRANT UPDATE (stripe_account_id, updated_at) ON user_stripe_accounts TO payout_operator;
