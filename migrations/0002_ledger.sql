-- The ledger: one row per attempt outcome, append-only.
--
-- payout_completed moves money (direction debit, from the platform's
-- balance); payout_attempt_failed and payout_failed are memos. Rows are only
-- ever inserted: a trigger refuses UPDATE, DELETE and TRUNCATE, whoever asks.

CREATE TABLE payout_ledger (
    -- Write order: ledger() lists rows by it.
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- ledger:payout:<transfer id>:<attempt number>: an attempt is booked once.
    idempotency_key     text        NOT NULL,
    entry_type          text        NOT NULL,
    direction           text        NOT NULL,
    amount_cents        bigint      NOT NULL,
    currency            text        NOT NULL,
    transfer_id         uuid        NOT NULL REFERENCES payout_transfers (id),
    job_id              uuid        NOT NULL REFERENCES payout_jobs (id),
    contest_id          text        NOT NULL,
    user_id             text        NOT NULL,
    attempt_number      integer     NOT NULL,
    stripe_transfer_id  text,
    failure_code        text,
    created_at          timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT payout_ledger_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT payout_ledger_entry_type_check
        CHECK (entry_type IN ('payout_completed', 'payout_attempt_failed', 'payout_failed')),
    -- Only a completed payout moves money.
    CONSTRAINT payout_ledger_direction_check
        CHECK (direction IN ('debit', 'memo')
               AND (direction = 'debit') = (entry_type = 'payout_completed')),
    CONSTRAINT payout_ledger_amount_cents_check
        CHECK (amount_cents > 0 AND amount_cents <= 99999999),
    CONSTRAINT payout_ledger_currency_check CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT payout_ledger_attempt_number_check CHECK (attempt_number >= 1),
    CONSTRAINT payout_ledger_stripe_transfer_id_check
        CHECK (entry_type <> 'payout_completed' OR stripe_transfer_id IS NOT NULL)
);

-- At most one payout_completed and one payout_failed row per transfer: a
-- transfer is paid, or given up, once.
CREATE UNIQUE INDEX payout_ledger_one_completion_idx ON payout_ledger (transfer_id)
    WHERE entry_type = 'payout_completed';
CREATE UNIQUE INDEX payout_ledger_one_failure_idx ON payout_ledger (transfer_id)
    WHERE entry_type = 'payout_failed';
-- ledger(job_id=...) and ledger(transfer_id=...), in write order.
CREATE INDEX payout_ledger_job_idx ON payout_ledger (job_id, id);
CREATE INDEX payout_ledger_transfer_idx ON payout_ledger (transfer_id, id);

CREATE FUNCTION payout_ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payout_ledger is append-only: % is refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Book a correcting entry instead of changing or removing one.';
END
$$;

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER payout_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON payout_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION payout_ledger_refuse_change();
