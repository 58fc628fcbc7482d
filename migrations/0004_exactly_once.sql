-- Exactly once, under every interleaving (DESIGN 3; docs/exactly-once.md).
--
-- An attempt is now spent by its write-ahead send intent, not by its claim,
-- and the intent makes the outcome uncertain durably. The columns below hold
-- what the intents and the rules need; the checks and the trigger repeat the
-- rules, so that no writer can store what must never happen.

-- A claim of the previous release may have sent without leaving a trace: a
-- transfer still processing may have reached Stripe. It becomes uncertain, so
-- whoever takes it over resolves it (a resend, or a look-up) and never fails it
-- blind. Its destination is the one that release would have sent to.
UPDATE payout_transfers AS t
SET outcome_uncertain = true,
    key_first_sent_at = coalesce(t.key_first_sent_at, t.updated_at),
    destination_account = coalesce(
        t.destination_account,
        (SELECT a.stripe_account_id FROM user_stripe_accounts AS a WHERE a.user_id = t.user_id)
    )
WHERE t.status = 'processing';

ALTER TABLE payout_transfers
    -- The claim no longer spends the attempt: the intent does.
    DROP COLUMN claim_counted,
    -- When the latest send intent began (database time): a look-up waits the
    -- send margin after it.
    ADD COLUMN last_send_at      timestamptz,
    -- How many sends the current key has had (for the back-off of resends).
    ADD COLUMN key_sends         integer NOT NULL DEFAULT 0,
    -- Look-ups that failed in a row, and claims that expired in a row without
    -- an outcome: past a bound, the transfer needs an operator.
    ADD COLUMN lookup_failures   integer NOT NULL DEFAULT 0,
    ADD COLUMN abandoned_claims  integer NOT NULL DEFAULT 0,
    -- The latest answer under the current key was the platform's fault (401,
    -- 403): a look-up that then finds nothing gives the attempt back.
    ADD COLUMN platform_refused  boolean NOT NULL DEFAULT false,
    -- Why the transfer needs an operator; while set, no claim takes it.
    ADD COLUMN needs_operator    text;

UPDATE payout_transfers
SET last_send_at = coalesce(key_first_sent_at, updated_at),
    key_first_sent_at = coalesce(key_first_sent_at, updated_at),
    key_sends = 1
WHERE outcome_uncertain;

ALTER TABLE payout_transfers
    -- Rules 2 and 4: doubt starts at an intent, which stamps both times.
    ADD CONSTRAINT payout_transfers_uncertain_check
        CHECK (NOT outcome_uncertain
               OR (key_first_sent_at IS NOT NULL AND last_send_at IS NOT NULL)),
    -- A transfer with every attempt spent is settled, or still in doubt
    -- (never failed while a transfer may exist at Stripe).
    ADD CONSTRAINT payout_transfers_attempts_left_check
        CHECK (status IN ('completed', 'failed_terminal')
               OR outcome_uncertain OR attempt_count < max_attempts),
    ADD CONSTRAINT payout_transfers_counters_check
        CHECK (key_sends >= 0 AND lookup_failures >= 0 AND abandoned_claims >= 0),
    ADD CONSTRAINT payout_transfers_needs_operator_check
        CHECK (needs_operator IS NULL OR status IN ('pending', 'retryable'));

-- The claim index now leaves out the transfers that wait for an operator.
DROP INDEX payout_transfers_claimable_idx;
ALTER TABLE payout_transfers DROP COLUMN claimable_at;
ALTER TABLE payout_transfers ADD COLUMN claimable_at timestamptz GENERATED ALWAYS AS (
    CASE WHEN needs_operator IS NOT NULL THEN NULL
         WHEN status = 'processing' THEN lease_expires_at
         WHEN status IN ('pending', 'retryable') THEN coalesce(next_attempt_at, created_at)
    END
) STORED;

-- claim_due and queue_depth: a range scan over the claimable transfers only.
CREATE INDEX payout_transfers_claimable_idx ON payout_transfers (claimable_at, id)
    WHERE claimable_at IS NOT NULL;
-- The claims of dead workers, for the escalation of one expired claim too many.
CREATE INDEX payout_transfers_processing_idx ON payout_transfers (lease_expires_at)
    WHERE status = 'processing';
-- status and /metrics: the transfers that need an operator, longest waiting first.
CREATE INDEX payout_transfers_needs_operator_idx ON payout_transfers (updated_at, id)
    WHERE needs_operator IS NOT NULL;

-- Rule 3: the destination is pinned by the first send intent and never changes.
CREATE FUNCTION payout_transfers_refuse_new_destination() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payout_transfers.destination_account is pinned to % for transfer %',
        OLD.destination_account, OLD.id
        USING ERRCODE = 'restrict_violation',
              CONSTRAINT = 'payout_transfers_destination_pinned',
              HINT = 'A winner who moved accounts is paid on the pinned one, '
                     'or through a reissue once this transfer failed for good.';
END
$$;

CREATE TRIGGER payout_transfers_destination_pinned
    BEFORE UPDATE OF destination_account ON payout_transfers
    FOR EACH ROW
    WHEN (OLD.destination_account IS NOT NULL
          AND NEW.destination_account IS DISTINCT FROM OLD.destination_account)
    EXECUTE FUNCTION payout_transfers_refuse_new_destination();
