-- Operating money (DESIGN 7): a fleet-wide pause, and an audit trail of what
-- operators did by hand.

-- The pause: one row. While paused, CLAIM_DUE claims nothing, on every worker
-- of the fleet, from its next claim on; transfers in flight finish.
CREATE TABLE payout_control (
    id             boolean     PRIMARY KEY DEFAULT true,
    paused         boolean     NOT NULL DEFAULT false,
    paused_by      text,
    paused_reason  text,
    paused_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT payout_control_one_row CHECK (id),
    CONSTRAINT payout_control_paused_check
        CHECK (paused = (paused_by IS NOT NULL AND paused_reason IS NOT NULL
                         AND paused_at IS NOT NULL))
);
INSERT INTO payout_control (id) VALUES (true);

-- One row per operator action, append-only like the ledger: who, why, what,
-- on which transfer (none for a pause), the state before and after, when.
CREATE TABLE payout_operator_actions (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action       text        NOT NULL,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    transfer_id  uuid        REFERENCES payout_transfers (id),
    before       jsonb,
    after        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT payout_operator_actions_action_check CHECK (action IN ('pause', 'resume')),
    CONSTRAINT payout_operator_actions_actor_check
        CHECK (btrim(actor) <> '' AND length(actor) <= 200),
    CONSTRAINT payout_operator_actions_reason_check
        CHECK (btrim(reason) <> '' AND length(reason) <= 2000)
);
-- The latest actions (status), and a transfer's (transfers show).
CREATE INDEX payout_operator_actions_created_at_idx ON payout_operator_actions (created_at, id);
CREATE INDEX payout_operator_actions_transfer_idx ON payout_operator_actions (transfer_id, id)
    WHERE transfer_id IS NOT NULL;

-- Append-only tables from here on share one guard (the ledger has its own, of
-- 0002): it names the table it refuses a change to.
CREATE FUNCTION payout_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Add a row that corrects it instead of changing or removing one.';
END
$$;

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER payout_operator_actions_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON payout_operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION payout_refuse_change();
