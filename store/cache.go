package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/usher-auth/usher/internal/event"
)

// Cache keys whose versions a write bumps (DESIGN.md, Redis): the user's
// view, and every page of the admin list.
const ListKey = "users:list"

// UserKey is the cache key of one user's view.
func UserKey(id string) string { return "user:" + id }

// recordBumps notes, in the write's transaction, that the keys' cache
// versions must move on. The rows stay until the bump is applied in Redis,
// so a bump Redis refuses is retried, and readers bypass those keys.
func recordBumps(ctx context.Context, tx pgx.Tx, keys ...string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO cache_bumps (key) SELECT unnest($1::text[])`, keys); err != nil {
		return fmt.Errorf("record cache bumps: %w", err)
	}
	return nil
}

// userChanged records, in the transaction of a change to account id, what
// every such change records: the bumps of its cache entries (its view and
// the admin list) and its event.
func userChanged(ctx context.Context, tx pgx.Tx, id string, ev event.Envelope) error {
	if err := recordBumps(ctx, tx, UserKey(id), ListKey); err != nil {
		return err
	}
	return insertEvents(ctx, tx, ev)
}

// ApplyBumps hands the keys of pending bumps to apply (which increments
// their versions in Redis) and deletes exactly those rows if it succeeds.
// Rows another node is applying are skipped.
func (db *DB) ApplyBumps(ctx context.Context, apply func(keys []string) error) (int, error) {
	var n int
	err := db.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, key FROM cache_bumps ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`)
		if err != nil {
			return fmt.Errorf("read cache bumps: %w", err)
		}
		var (
			ids  []int64
			keys []string
		)
		for rows.Next() {
			var (
				id  int64
				key string
			)
			if err := rows.Scan(&id, &key); err != nil {
				return fmt.Errorf("read cache bumps: %w", err)
			}
			ids, keys = append(ids, id), append(keys, key)
		}
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
		}
		if err := apply(keys); err != nil {
			return err
		}
		n = len(ids)
		_, err = tx.Exec(ctx, `DELETE FROM cache_bumps WHERE id = ANY($1)`, ids)
		return err
	})
	return n, err
}

// ClearBumps deletes bumps that were applied.
func (db *DB) ClearBumps(ctx context.Context, ids []int64) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM cache_bumps WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("clear cache bumps: %w", err)
	}
	return nil
}

// PendingBumps returns the keys whose bumps are not applied yet: their
// cached values may be stale, so readers go to PostgreSQL.
func (db *DB) PendingBumps(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT key FROM cache_bumps`)
	if err != nil {
		return nil, fmt.Errorf("pending cache bumps: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
