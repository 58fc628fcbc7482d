-- Money that comes back (DESIGN 7, "Reversals"): a completed transfer may be
-- reversed at Stripe, in part or in full, by `payout-core transfers reverse` or
-- in Stripe's dashboard. Each reversal is booked once as a ledger credit,
-- payout_reversed, keyed by Stripe's reversal id (trr_...).
--
-- The database itself refuses more back than was paid, whoever writes: per
-- transfer, the credits never exceed its payout_completed debit. A trigger
-- checks it row by row, after locking the transfer, so that two credits
-- booked at once (the command and a webhook) are checked one after the other.
--
-- payout_reversals holds the reversals payout-core asks for: each row is the
-- write-ahead intent of one request (DESIGN 3, rule 2), written `sending`
-- before the request leaves, and settled once by a conclusive answer.

-- -- the ledger: credits ----------------------------------------------------------

ALTER TABLE payout_ledger
    -- Stripe's reversal (trr_...): set exactly on payout_reversed rows.
    ADD COLUMN stripe_reversal_id text,
    DROP CONSTRAINT payout_ledger_entry_type_check,
    ADD CONSTRAINT payout_ledger_entry_type_check
        CHECK (entry_type IN ('payout_completed', 'payout_attempt_failed', 'payout_failed',
                              'payout_reversed')),
    -- A payment is a debit, a reversal a credit, anything else a memo.
    DROP CONSTRAINT payout_ledger_direction_check,
    ADD CONSTRAINT payout_ledger_direction_check
        CHECK (direction = CASE entry_type WHEN 'payout_completed' THEN 'debit'
                                           WHEN 'payout_reversed' THEN 'credit'
                                           ELSE 'memo' END),
    -- Money that moved names the Stripe transfer it moved by.
    DROP CONSTRAINT payout_ledger_stripe_transfer_id_check,
    ADD CONSTRAINT payout_ledger_stripe_transfer_id_check
        CHECK (entry_type NOT IN ('payout_completed', 'payout_reversed')
               OR stripe_transfer_id IS NOT NULL),
    ADD CONSTRAINT payout_ledger_stripe_reversal_id_check
        CHECK ((stripe_reversal_id IS NOT NULL) = (entry_type = 'payout_reversed'));

-- One row per Stripe reversal, whichever key it was booked under. Partial:
-- the rows that reverse nothing (nearly all) cost this index nothing.
CREATE UNIQUE INDEX payout_ledger_stripe_reversal_id_key ON payout_ledger (stripe_reversal_id)
    WHERE stripe_reversal_id IS NOT NULL;

-- Never more back than was paid. Per transfer, the payout_reversed credits
-- never exceed its payout_completed debit (same currency, same Stripe
-- transfer); a credit of a transfer never paid is refused.
--
-- The transfer's row is locked first (FOR NO KEY UPDATE: it conflicts with
-- itself, not with the foreign-key checks of other ledger rows), so concurrent
-- credits of one transfer wait for each other. Under READ COMMITTED, each
-- statement here reads a fresh snapshot: once the lock is granted, the sum
-- includes the credit of the transaction that held it. A row with this very
-- key is left out of the sum: the unique key decides about it (an INSERT ...
-- ON CONFLICT DO NOTHING of a credit booked already books nothing, and must
-- not be refused for counting it twice).
CREATE FUNCTION payout_ledger_check_reversal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    paid     payout_ledger%ROWTYPE;
    reversed bigint;
BEGIN
    PERFORM FROM payout_transfers WHERE id = NEW.transfer_id FOR NO KEY UPDATE;
    SELECT * INTO paid FROM payout_ledger
    WHERE transfer_id = NEW.transfer_id AND entry_type = 'payout_completed';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'transfer % was never paid: a reversal of % % has nothing to reverse',
            NEW.transfer_id, NEW.amount_cents, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'payout_ledger_reversed_within_paid';
    END IF;
    IF (NEW.currency, NEW.stripe_transfer_id) IS DISTINCT FROM (paid.currency, paid.stripe_transfer_id)
    THEN
        RAISE EXCEPTION 'transfer % was paid in % by %; a reversal in % of % is not of it',
            NEW.transfer_id, paid.currency, paid.stripe_transfer_id, NEW.currency,
            NEW.stripe_transfer_id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'payout_ledger_reversed_within_paid';
    END IF;
    SELECT coalesce(sum(amount_cents), 0) INTO reversed FROM payout_ledger
    WHERE transfer_id = NEW.transfer_id AND entry_type = 'payout_reversed'
      AND idempotency_key <> NEW.idempotency_key;
    IF reversed + NEW.amount_cents > paid.amount_cents THEN
        RAISE EXCEPTION 'transfer % was paid % %, % came back already: % more is too much',
            NEW.transfer_id, paid.amount_cents, paid.currency, reversed, NEW.amount_cents
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'payout_ledger_reversed_within_paid',
                  HINT = 'A reversal at Stripe never exceeds what was paid: check the transfer.';
    END IF;
    RETURN NEW;
END
$$;

-- Row-level, for credits only: every other row is booked as before. The ledger
-- stays append-only (0002's statement-level guard).
CREATE TRIGGER payout_ledger_reversed_within_paid
    BEFORE INSERT ON payout_ledger
    FOR EACH ROW
    WHEN (NEW.entry_type = 'payout_reversed')
    EXECUTE FUNCTION payout_ledger_check_reversal();

-- -- the reversals payout-core asks for --------------------------------------------

CREATE TABLE payout_reversals (
    id                  uuid        PRIMARY KEY,
    transfer_id         uuid        NOT NULL REFERENCES payout_transfers (id),
    -- The n of its key: 1, 2, ... per transfer.
    sequence            integer     NOT NULL,
    -- payout-reversal:<transfer id>:<n>, sent to Stripe with every request.
    idempotency_key     text        NOT NULL,
    stripe_transfer_id  text        NOT NULL,
    amount_cents        bigint      NOT NULL,
    currency            text        NOT NULL,
    -- Who asked, and why (as payout_operator_actions).
    actor               text        NOT NULL,
    reason              text        NOT NULL,
    -- sending (in doubt) -> completed (Stripe reversed it) or failed (nothing came back).
    status              text        NOT NULL DEFAULT 'sending',
    stripe_reversal_id  text,
    failure_code        text,
    failure_message     text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT payout_reversals_idempotency_key_key UNIQUE (idempotency_key),
    -- reversals_of lists a transfer's by it.
    CONSTRAINT payout_reversals_transfer_sequence_key UNIQUE (transfer_id, sequence),
    CONSTRAINT payout_reversals_sequence_check CHECK (sequence >= 1),
    CONSTRAINT payout_reversals_idempotency_key_check
        CHECK (idempotency_key = 'payout-reversal:' || transfer_id::text || ':' || sequence::text),
    CONSTRAINT payout_reversals_amount_cents_check
        CHECK (amount_cents > 0 AND amount_cents <= 99999999),
    CONSTRAINT payout_reversals_currency_check CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT payout_reversals_actor_check CHECK (btrim(actor) <> '' AND length(actor) <= 200),
    CONSTRAINT payout_reversals_reason_check
        CHECK (btrim(reason) <> '' AND length(reason) <= 2000),
    CONSTRAINT payout_reversals_status_check
        CHECK (status IN ('sending', 'completed', 'failed')),
    -- Completed iff Stripe named the reversal; failed iff it said why not.
    CONSTRAINT payout_reversals_stripe_reversal_id_check
        CHECK ((status = 'completed') = (stripe_reversal_id IS NOT NULL)),
    CONSTRAINT payout_reversals_failure_code_check
        CHECK ((status = 'failed') = (failure_code IS NOT NULL))
);

-- One reversal in doubt per transfer at a time: a new one waits until that one
-- is resolved, so a re-run of a command whose answer was lost resolves it
-- instead of reversing again.
CREATE UNIQUE INDEX payout_reversals_one_sending_idx ON payout_reversals (transfer_id)
    WHERE status = 'sending';
-- A Stripe reversal settles one of them at most.
CREATE UNIQUE INDEX payout_reversals_stripe_reversal_id_key
    ON payout_reversals (stripe_reversal_id) WHERE stripe_reversal_id IS NOT NULL;

-- A reversal is settled once: a completed or failed row never changes again,
-- and what was asked (which transfer, how much, by whom) never changes at all.
CREATE FUNCTION payout_reversals_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'sending' THEN
        RAISE EXCEPTION 'reversal % is % already: a settled reversal never changes',
            OLD.idempotency_key, OLD.status
            USING ERRCODE = 'restrict_violation',
                  CONSTRAINT = 'payout_reversals_settled_once';
    END IF;
    IF (NEW.id, NEW.transfer_id, NEW.sequence, NEW.idempotency_key, NEW.stripe_transfer_id,
        NEW.amount_cents, NEW.currency, NEW.actor, NEW.reason, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.transfer_id, OLD.sequence, OLD.idempotency_key, OLD.stripe_transfer_id,
        OLD.amount_cents, OLD.currency, OLD.actor, OLD.reason, OLD.created_at)
    THEN
        RAISE EXCEPTION 'reversal %: only its answer may be written, never what was asked',
            OLD.idempotency_key
            USING ERRCODE = 'restrict_violation',
                  CONSTRAINT = 'payout_reversals_settled_once';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER payout_reversals_settled_once
    BEFORE UPDATE ON payout_reversals
    FOR EACH ROW EXECUTE FUNCTION payout_reversals_refuse_change();

-- Statement-level, as the other append-only tables (0007's shared guard).
CREATE TRIGGER payout_reversals_kept
    BEFORE DELETE OR TRUNCATE ON payout_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION payout_refuse_change();

-- -- the operator's reversal -------------------------------------------------------

-- `transfers reverse` names its transfer, as resolve and reissue do
-- (payout_operator_actions_transfer_check holds it).
ALTER TABLE payout_operator_actions
    DROP CONSTRAINT payout_operator_actions_action_check,
    ADD CONSTRAINT payout_operator_actions_action_check
        CHECK (action IN ('pause', 'resume', 'resolve_found', 'resolve_absent', 'reissue',
                          'reverse'));
