-- The fleet's pace toward Stripe (DESIGN 6): PAYOUT_STRIPE_RATE_LIMIT is one
-- budget for every worker on every host, kept here as a GCRA schedule: for each
-- budget (Stripe limits each endpoint on its own), the time its next request
-- may leave. One short statement per request takes a slot and moves it on.
--
-- UNLOGGED: the schedule is worth nothing after a crash (it is only ever about
-- the next second), so it costs no WAL and no flush; PostgreSQL empties it on
-- crash recovery, and the next request starts it again.
CREATE UNLOGGED TABLE payout_rate_schedule (
    budget   text        PRIMARY KEY,
    next_at  timestamptz NOT NULL,

    CONSTRAINT payout_rate_schedule_budget_check CHECK (budget IN ('create', 'read'))
);
