-- Domain events and the bookkeeping that makes their side effects happen
-- once: the outbox, the mailer's claims and refused cache bumps.

-- +goose Up
-- Written in the same transaction as the change it reports; the relay
-- publishes in seq order and marks rows published.
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,
    id           uuid        NOT NULL,
    type         text        NOT NULL,
    -- No foreign key: events outlive a deleted user.
    user_id      uuid,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    payload      jsonb       NOT NULL,
    published_at timestamptz,
    CONSTRAINT outbox_id_key UNIQUE (id)
);
-- The relay's queue: only what is still to publish.
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
-- The prune removes published rows after their retention.
CREATE INDEX outbox_published_at_idx ON outbox (published_at);

-- An email is claimed (with a lease longer than the SMTP timeout) before it
-- is sent and marked sent after, so a redelivered event is not sent twice.
CREATE TABLE sent_emails (
    event_id      uuid        PRIMARY KEY,
    claimed_until timestamptz NOT NULL,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A cache-version bump that Redis refused, recorded in the write's
-- transaction and retried until applied; reads of the key bypass the cache
-- meanwhile.
CREATE TABLE cache_bumps (
    key        text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE cache_bumps;
DROP TABLE sent_emails;
DROP TABLE outbox;
