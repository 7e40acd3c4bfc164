-- Every password-reset request, known address or not, by the SHA-256 of the
-- address. Writing it in both cases also makes both transactions flush the
-- WAL, so the answer's timing does not tell whether an account exists.

-- +goose Up
CREATE TABLE reset_requests (
    id           bigserial   PRIMARY KEY,
    email_sha256 bytea       NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reset_requests_requested_at_idx ON reset_requests (requested_at);

-- +goose Down
DROP TABLE reset_requests;
