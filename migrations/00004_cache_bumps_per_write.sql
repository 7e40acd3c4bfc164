-- A cache-version bump per write, not per key: two writes of one key each
-- keep their own row until their bump is applied, so neither can erase the
-- other's record.

-- +goose Up
ALTER TABLE cache_bumps DROP CONSTRAINT cache_bumps_pkey;
ALTER TABLE cache_bumps ADD COLUMN id bigserial PRIMARY KEY;
CREATE INDEX cache_bumps_key_idx ON cache_bumps (key);

-- +goose Down
DROP INDEX cache_bumps_key_idx;
ALTER TABLE cache_bumps DROP CONSTRAINT cache_bumps_pkey;
ALTER TABLE cache_bumps DROP COLUMN id;
DELETE FROM cache_bumps a USING cache_bumps b WHERE a.key = b.key AND a.ctid < b.ctid;
ALTER TABLE cache_bumps ADD CONSTRAINT cache_bumps_pkey PRIMARY KEY (key);
