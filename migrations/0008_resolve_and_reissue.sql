-- Operating money (DESIGN 7): `transfers resolve` closes a transfer that needs
-- an operator, and `transfers reissue` pays a failed winner again through a
-- new transfer linked to the failed one.
--
-- A winner is paid by at most one live or completed transfer per contest, and
-- may have any number of failed ones: the unique (contest_id, user_id) becomes
-- a partial unique index that leaves the failed ones out. It is sound because
-- failed_terminal is terminal: no transfer ever moves from it back into the
-- index, so no update can make two rows collide after the fact.

ALTER TABLE payout_transfers
    -- The failed_terminal transfer this one pays again (NULL for a transfer
    -- scheduled from a settlement).
    ADD COLUMN reissue_of uuid,
    ADD CONSTRAINT payout_transfers_reissue_of_fkey
        FOREIGN KEY (reissue_of) REFERENCES payout_transfers (id),
    ADD CONSTRAINT payout_transfers_reissue_of_check CHECK (reissue_of <> id),
    DROP CONSTRAINT payout_transfers_contest_user_key;

-- Job -> transfers: one live or completed payout per winner per contest,
-- whichever settlement or reissue asks. Scheduling's and reissuing's
-- INSERT ... ON CONFLICT name it through its predicate.
CREATE UNIQUE INDEX payout_transfers_contest_user_live_idx
    ON payout_transfers (contest_id, user_id) WHERE status <> 'failed_terminal';

-- A failed transfer is reissued at most once: its reissue, if it fails too, is
-- the one to reissue next. Partial: the rows that reissue nothing (nearly all)
-- cost this index nothing.
CREATE UNIQUE INDEX payout_transfers_reissue_of_key
    ON payout_transfers (reissue_of) WHERE reissue_of IS NOT NULL;

-- transfer_histories (reconcile): a job's transfers page by page in id order,
-- a range scan per page however large the job.
CREATE INDEX payout_transfers_job_id_idx ON payout_transfers (job_id, id);

ALTER TABLE payout_operator_actions
    DROP CONSTRAINT payout_operator_actions_action_check,
    ADD CONSTRAINT payout_operator_actions_action_check
        CHECK (action IN ('pause', 'resume', 'resolve_found', 'resolve_absent', 'reissue')),
    -- A pause concerns the fleet, every other action one transfer.
    ADD CONSTRAINT payout_operator_actions_transfer_check
        CHECK ((action IN ('pause', 'resume')) = (transfer_id IS NULL));
