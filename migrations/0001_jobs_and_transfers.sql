-- Payout jobs (one per settlement) and their transfers (one per winner).
--
-- Column names are those of DESIGN.md section 3: other programs read these
-- tables. The checks repeat the domain's rules so that no writer, ours or
-- another, can store what must never happen.

CREATE TABLE payout_jobs (
    id                      uuid        PRIMARY KEY,
    settlement_id           text        NOT NULL,
    contest_id              text        NOT NULL,
    currency                text        NOT NULL,
    status                  text        NOT NULL DEFAULT 'pending',
    total_transfers         integer     NOT NULL,
    total_amount_cents      bigint      NOT NULL,
    completed_count         integer     NOT NULL DEFAULT 0,
    failed_count            integer     NOT NULL DEFAULT 0,
    -- sha256 of the canonical settlement: a changed resubmission is refused, not paid.
    settlement_fingerprint  text        NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    completed_at            timestamptz,

    -- Settlement -> job: scheduling the same settlement again finds this row.
    CONSTRAINT payout_jobs_settlement_id_key UNIQUE (settlement_id),
    -- The target of the transfers' foreign key: a transfer's contest and
    -- currency are its job's (so unique (contest_id, user_id) means what it says).
    CONSTRAINT payout_jobs_transfer_parent_key UNIQUE (id, settlement_id, contest_id, currency),
    CONSTRAINT payout_jobs_settlement_id_check
        CHECK (settlement_id <> '' AND length(settlement_id) <= 200),
    CONSTRAINT payout_jobs_contest_id_check
        CHECK (contest_id <> '' AND length(contest_id) <= 200),
    CONSTRAINT payout_jobs_currency_check CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT payout_jobs_status_check
        CHECK (status IN ('pending', 'processing', 'complete')),
    CONSTRAINT payout_jobs_totals_check
        CHECK (total_transfers > 0 AND total_amount_cents > 0),
    CONSTRAINT payout_jobs_counts_check
        CHECK (completed_count >= 0 AND failed_count >= 0
               AND completed_count + failed_count <= total_transfers),
    CONSTRAINT payout_jobs_completed_at_check
        CHECK ((status = 'complete') = (completed_at IS NOT NULL)),
    CONSTRAINT payout_jobs_fingerprint_check
        CHECK (settlement_fingerprint ~ '^[0-9a-f]{64}$')
);

-- list_jobs: newest first, optionally of one status.
CREATE INDEX payout_jobs_created_at_idx ON payout_jobs (created_at DESC);
CREATE INDEX payout_jobs_status_created_at_idx ON payout_jobs (status, created_at DESC);


CREATE TABLE payout_transfers (
    id                   uuid        PRIMARY KEY,
    job_id               uuid        NOT NULL,
    settlement_id        text        NOT NULL,
    contest_id           text        NOT NULL,
    -- Byte order ("C"): ids sort the same here as in any program that reads them.
    user_id              text        COLLATE "C" NOT NULL,
    amount_cents         bigint      NOT NULL,
    currency             text        NOT NULL,
    status               text        NOT NULL DEFAULT 'pending',
    attempt_count        integer     NOT NULL DEFAULT 0,
    max_attempts         integer     NOT NULL DEFAULT 5,
    next_attempt_at      timestamptz,
    lease_expires_at     timestamptz,
    -- Which claim holds the transfer: a worker whose lease was taken over
    -- cannot record over the newer claim.
    claim_token          text,
    -- Whether the current claim spent an attempt (a systemic halt gives it back).
    claim_counted        boolean     NOT NULL DEFAULT false,
    destination_account  text,
    stripe_transfer_id   text,
    failure_code         text,
    failure_message      text,
    -- The idempotency key in use is payout:<id>, then payout:<id>:<generation>
    -- once a look-up at Stripe confirmed that no transfer exists under the old key.
    key_generation       integer     NOT NULL DEFAULT 0,
    key_first_sent_at    timestamptz,
    -- An earlier attempt may have created a transfer at Stripe: look it up
    -- before this transfer can ever fail terminally.
    outcome_uncertain    boolean     NOT NULL DEFAULT false,
    -- The current key has a 5xx saved under it at Stripe: look up first.
    key_replays_error    boolean     NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),

    -- The Stripe idempotency key of the current generation, for readers of the table.
    idempotency_key      text GENERATED ALWAYS AS (
        CASE WHEN key_generation = 0 THEN 'payout:' || id::text
             ELSE 'payout:' || id::text || ':' || key_generation::text END
    ) STORED,
    -- When the transfer may be claimed; NULL once terminal. The claim query
    -- reads this one indexed column instead of three per-status conditions.
    claimable_at         timestamptz GENERATED ALWAYS AS (
        CASE WHEN status = 'processing' THEN lease_expires_at
             WHEN status IN ('pending', 'retryable') THEN coalesce(next_attempt_at, created_at)
        END
    ) STORED,

    CONSTRAINT payout_transfers_job_fkey
        FOREIGN KEY (job_id, settlement_id, contest_id, currency)
        REFERENCES payout_jobs (id, settlement_id, contest_id, currency),
    -- Job -> transfers: one payout per winner per contest, whichever settlement asks.
    CONSTRAINT payout_transfers_contest_user_key UNIQUE (contest_id, user_id),
    CONSTRAINT payout_transfers_user_id_check
        CHECK (user_id <> '' AND length(user_id) <= 200),
    -- Stripe refuses more than eight digits of minor units (validation.MAX_AMOUNT_CENTS).
    CONSTRAINT payout_transfers_amount_cents_check
        CHECK (amount_cents > 0 AND amount_cents <= 99999999),
    CONSTRAINT payout_transfers_currency_check CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT payout_transfers_status_check
        CHECK (status IN ('pending', 'processing', 'retryable', 'completed', 'failed_terminal')),
    CONSTRAINT payout_transfers_attempts_check
        CHECK (max_attempts >= 1 AND attempt_count BETWEEN 0 AND max_attempts),
    -- Paid iff there is a Stripe transfer to show for it.
    CONSTRAINT payout_transfers_stripe_transfer_id_check
        CHECK ((stripe_transfer_id IS NOT NULL) = (status = 'completed')),
    -- A claim without a lease could never be taken over if its worker died.
    CONSTRAINT payout_transfers_claim_check
        CHECK (status <> 'processing' OR (lease_expires_at IS NOT NULL AND claim_token IS NOT NULL)),
    CONSTRAINT payout_transfers_failure_code_check
        CHECK (status <> 'failed_terminal' OR failure_code IS NOT NULL),
    CONSTRAINT payout_transfers_destination_account_check
        CHECK (destination_account ~ '^acct_[^[:space:]]+$'),
    CONSTRAINT payout_transfers_key_generation_check CHECK (key_generation >= 0)
);

-- claim_due and queue_depth: a range scan over the claimable transfers only,
-- in due order, however many terminal transfers the table holds.
CREATE INDEX payout_transfers_claimable_idx ON payout_transfers (claimable_at, id)
    WHERE status IN ('pending', 'retryable', 'processing');
-- transfers_of (ordered by user) and the job's counts in record().
CREATE INDEX payout_transfers_job_user_idx ON payout_transfers (job_id, user_id);
-- list_transfers: of one status, most recently updated first.
CREATE INDEX payout_transfers_status_updated_at_idx ON payout_transfers (status, updated_at DESC);
