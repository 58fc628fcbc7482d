-- Stripe's events (DESIGN 7, "Reversals"): the webhook endpoint stores each
-- event it verified before it answers Stripe, and the runner applies it after.
-- Stripe never waits for the work; an event delivered twice (Stripe retries
-- until it is answered 2xx, and may deliver one event more than once) is
-- stored once, keyed by its id, and applied once.

CREATE TABLE payout_webhook_events (
    -- Stripe's event id (evt_...): a delivery of a known event stores nothing.
    id            text        PRIMARY KEY,
    -- Arrival order, which the runner applies them in (received_at is the
    -- endpoint's clock, and two events may share it).
    arrival       bigint      GENERATED ALWAYS AS IDENTITY,
    type          text        NOT NULL,
    -- The event as Stripe sent it, signature verified.
    payload       jsonb       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- Applied (processed_at) with what it did, or why nothing (outcome).
    processed_at  timestamptz,
    outcome       text,

    CONSTRAINT payout_webhook_events_id_check CHECK (id <> '' AND length(id) <= 255),
    CONSTRAINT payout_webhook_events_type_check CHECK (type <> ''),
    CONSTRAINT payout_webhook_events_processed_check
        CHECK ((processed_at IS NULL) = (outcome IS NULL))
);

-- The events not yet applied, in arrival order: a range scan over them only,
-- however many were applied before.
CREATE INDEX payout_webhook_events_unprocessed_idx ON payout_webhook_events (arrival)
    WHERE processed_at IS NULL;
