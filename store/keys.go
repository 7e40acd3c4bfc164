package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKeyRow is a JWT signing key as stored: the private half sealed
// under USHER_SECRET_KEY, so a database dump cannot sign.
type SigningKeyRow struct {
	ID        string
	Public    []byte
	Sealed    []byte
	SignsFrom time.Time
}

// SigningKeys returns the keys not retired, oldest first, and the
// database's clock, which decides which key signs.
func (db *DB) SigningKeys(ctx context.Context) ([]SigningKeyRow, time.Time, error) {
	var now time.Time
	if err := db.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, now, fmt.Errorf("signing keys: %w", err)
	}
	rows, err := db.pool.Query(ctx, `
		SELECT kid, public_key, private_key_enc, signs_from FROM signing_keys
		WHERE retired_at IS NULL ORDER BY signs_from, kid`)
	if err != nil {
		return nil, now, fmt.Errorf("signing keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SigningKeyRow, error) {
		var k SigningKeyRow
		return k, row.Scan(&k.ID, &k.Public, &k.Sealed, &k.SignsFrom)
	})
	if err != nil {
		return nil, now, fmt.Errorf("signing keys: %w", err)
	}
	return keys, now, nil
}

// AddSigningKey stores a key that signs from delay after now: published in
// the JWKS first, so verifiers know it before they see its tokens.
func (db *DB) AddSigningKey(ctx context.Context, k SigningKeyRow, delay time.Duration) error {
	_, err := db.pool.Exec(ctx, `
		INSERT INTO signing_keys (kid, public_key, private_key_enc, signs_from)
		VALUES ($1, $2, $3, now() + $4::interval) ON CONFLICT (kid) DO NOTHING`,
		k.ID, k.Public, k.Sealed, delay)
	if err != nil {
		return fmt.Errorf("add signing key: %w", err)
	}
	return nil
}
