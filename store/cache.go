package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usher-auth/usher/internal/event"
)

// Cache keys whose versions a write bumps (DESIGN.md, Redis): the user's
// view, and every page of the admin list.
const ListKey = "users:list"

// UserKey is the cache key of one user's view.
func UserKey(id string) string { return "user:" + id }

// Change is what a committed change to accounts leaves its caller to do
// before it answers: move the cache versions of BumpKeys on, then delete
// the rows BumpIDs that record the need until then (ClearBumps), and
// publish the sessions it ended. A bump Redis refuses stays in its row, is
// retried by ApplyBumps, and readers bypass its key meanwhile.
type Change struct {
	BumpKeys []string
	BumpIDs  []int64
	Ended    []string
}

// recordBumps notes, in the write's transaction, that the keys' cache
// versions must move on.
func recordBumps(ctx context.Context, tx pgx.Tx, keys ...string) (Change, error) {
	rows, _ := tx.Query(ctx, `INSERT INTO cache_bumps (key) SELECT unnest($1::text[]) RETURNING id`, keys)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return Change{}, fmt.Errorf("record cache bumps: %w", err)
	}
	return Change{BumpKeys: keys, BumpIDs: ids}, nil
}

// userChanged records, in the transaction of a change to account id, what
// every such change records, in one statement: the bumps of its cache
// entries (its view and the admin list) and its event.
func userChanged(ctx context.Context, tx pgx.Tx, id string, ev event.Envelope) (Change, error) {
	ch := Change{BumpKeys: []string{UserKey(id), ListKey}}
	payload, err := json.Marshal(ev)
	if err != nil {
		return ch, fmt.Errorf("encode event %s: %w", ev.Type, err)
	}
	err = tx.QueryRow(ctx, `
		WITH ev AS (
			INSERT INTO outbox (id, type, user_id, occurred_at, payload)
			VALUES ($2, $3, nullif($4, '')::uuid, $5, $6)
		), b AS (
			INSERT INTO cache_bumps (key) SELECT unnest($1::text[]) RETURNING id
		)
		SELECT array(SELECT id FROM b ORDER BY id)`,
		ch.BumpKeys, ev.ID, ev.Type, ev.UserID, ev.OccurredAt, payload).Scan(&ch.BumpIDs)
	if err != nil {
		return ch, fmt.Errorf("record the change of %s: %w", id, err)
	}
	return ch, nil
}

// stuckBump is a cache_bumps row recorded over $1 milliseconds ago: no
// longer its writer's to apply and clear.
const stuckBump = `created_at < now() - $1 * interval '1 millisecond'`

// ApplyBumps hands the keys of bumps recorded over grace ago to apply
// (which increments their versions in Redis) and deletes exactly those
// rows if it succeeds. Younger rows are their writers' to apply and clear;
// rows another node is applying are skipped.
func (db *DB) ApplyBumps(ctx context.Context, grace time.Duration, apply func(keys []string) error) (int, error) {
	var n int
	err := db.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, key FROM cache_bumps WHERE `+stuckBump+`
			ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`, grace.Milliseconds())
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

// PendingBumps returns the keys of bumps recorded over grace ago and not
// applied yet (Redis refused their writer, or no writer applied them, as
// with the CLI's): their cached values may be stale, so readers go to
// PostgreSQL. Younger rows are mostly applied bumps their writer has not
// yet deleted, and do not count.
func (db *DB) PendingBumps(ctx context.Context, grace time.Duration) ([]string, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT DISTINCT key FROM cache_bumps WHERE `+stuckBump, grace.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("pending cache bumps: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
