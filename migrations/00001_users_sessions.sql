-- Users, their sessions and the tokens that act on their behalf. Each
-- migration runs in one transaction with its goose version row.

-- +goose Up
CREATE TABLE users (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored lower-case, so the unique constraint is case-insensitive and a
    -- plain index serves lookups.
    email               text        NOT NULL,
    password_hash       text        NOT NULL,
    name                text        NOT NULL DEFAULT '',
    role                text        NOT NULL DEFAULT 'user',
    -- Bumped by password change or reset, disabling and role change; a new
    -- session is inserted only if it still matches the version it started from.
    credentials_version bigint      NOT NULL DEFAULT 1,
    email_verified_at   timestamptz,
    disabled_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_lower CHECK (email = lower(email)),
    CONSTRAINT users_role_check CHECK (role IN ('user', 'admin'))
);
-- Keyset pagination of the admin user list.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
-- Prefix search (email LIKE 'abc%') whatever the database collation.
CREATE INDEX users_email_pattern_idx ON users (email text_pattern_ops);

CREATE TABLE sessions (
    -- Chosen by the node: the refresh token carries it.
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_counter bigint      NOT NULL DEFAULT 0,
    rotated_at      timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    user_agent      text        NOT NULL DEFAULT '',
    ip              text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- No foreign key on purpose: deleting a user must not erase the record that
-- its sessions were revoked. Pruned after access lifetime + leeway.
CREATE TABLE revoked_sessions (
    session_id uuid        PRIMARY KEY,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
-- Gateways poll rows newer than their watermark.
CREATE INDEX revoked_sessions_revoked_at_idx ON revoked_sessions (revoked_at);

-- Only the SHA-256 of a token is stored.
CREATE TABLE one_time_tokens (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CONSTRAINT one_time_tokens_purpose_check CHECK (purpose IN ('verify_email', 'reset_password'))
);
CREATE INDEX one_time_tokens_user_id_purpose_idx ON one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_expires_at_idx ON one_time_tokens (expires_at);

-- +goose Down
DROP TABLE one_time_tokens;
DROP TABLE revoked_sessions;
DROP TABLE sessions;
DROP TABLE users;
