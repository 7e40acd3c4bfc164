-- JWT signing keys, shared by every node so `usher keys rotate` works across
-- machines.

-- +goose Up
CREATE TABLE signing_keys (
    kid             text        PRIMARY KEY,
    public_key      bytea       NOT NULL,
    -- Encrypted under USHER_SECRET_KEY: a dump alone cannot sign tokens.
    private_key_enc bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- A key is published in the JWKS before it signs, so gateways know it
    -- by the time tokens carry its kid.
    signs_from      timestamptz NOT NULL,
    retired_at      timestamptz
);

-- +goose Down
DROP TABLE signing_keys;
