-- Least privilege for the services that hand payout-core their settlements
-- (docs/security.md, docs/library.md).
--
-- payout_service, NOLOGIN like the roles of 0012: a contest service connects as
-- a LOGIN role of its own that is a member of it:
--
--     CREATE ROLE contest_service LOGIN PASSWORD '...' IN ROLE payout_service;
--
-- It schedules or enqueues a settlement (payout_core.Payouts: a job and its
-- transfers, written in the service's own transaction), or inserts it into the
-- settlement inbox (services in other languages), and reads back its jobs,
-- their transfers and its inbox rows. It cannot change a row once written,
-- claim or pay anything, read the ledger, the connected accounts or anyone's
-- audit trail, nor pause the fleet: a leaked service password can ask for a
-- payout (which validation, the unique indexes and the workers still judge),
-- never move or rewrite one.
--
-- Roles belong to the server: the first database to run this creates it (its
-- migrating role needs CREATEROLE, or a superuser creates it beforehand).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payout_service') THEN
        BEGIN
            CREATE ROLE payout_service NOLOGIN;
        EXCEPTION
            -- The migration of another database of this server created it meanwhile.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role payout_service does not exist, and % may not create it',
                    current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Have a superuser (or a role with CREATEROLE) run '
                                 '"CREATE ROLE payout_service NOLOGIN;", '
                                 'then run payout-core migrate again.';
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO payout_service', current_schema());
END
$$;

-- Exactly what follows, whatever the role held before (a role made by hand).
REVOKE ALL ON payout_jobs, payout_transfers, payout_ledger, user_stripe_accounts,
              payout_settlement_inbox, payout_scheduler_runs, payout_rate_schedule,
              payout_control, payout_operator_actions, payout_reversals,
              payout_webhook_events, payout_schema_migrations
    FROM payout_service;

-- A settlement's job and transfers (written once), or its inbox row; and
-- reading them back (the insert's RETURNING, look-ups, waits).
GRANT SELECT, INSERT ON payout_jobs, payout_transfers, payout_settlement_inbox
    TO payout_service;
