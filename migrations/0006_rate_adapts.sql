-- The fleet's pace adapts to Stripe (payout_core.pacing): a 429 cuts a budget's
-- rate to a share of the configured one (factor), at most once per cooldown
-- (cut_at), and the share grows back with time since the cut.
ALTER TABLE payout_rate_schedule
    ADD COLUMN factor double precision NOT NULL DEFAULT 1,
    ADD COLUMN cut_at timestamptz,
    ADD CONSTRAINT payout_rate_schedule_factor_check CHECK (factor > 0 AND factor <= 1);
