package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pruneLock is the advisory lock that makes one node at a time prune.
const pruneLock = 0x757368657270 // "usherp"

// Retention says how long ended rows are kept.
type Retention struct {
	// Revocations must outlive every access token of the session: access
	// lifetime + leeway.
	Revocations time.Duration
	// Ended is kept for expired sessions and used or expired one-time tokens.
	Ended time.Duration
	// Published is kept for published outbox rows and sent_emails.
	Published time.Duration
}

// Prune deletes what retention allows, if no other node is pruning now. It
// returns the rows deleted per table.
func (db *DB) Prune(ctx context.Context, r Retention) (map[string]int64, error) {
	deleted := map[string]int64{}
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLock).Scan(&got); err != nil || !got {
			return err
		}
		for _, q := range []struct {
			table, sql string
			keep       time.Duration
		}{
			{"sessions", `DELETE FROM sessions WHERE expires_at < now() - $1::interval OR revoked_at < now() - $1::interval`, r.Ended},
			{"one_time_tokens", `DELETE FROM one_time_tokens WHERE expires_at < now() - $1::interval OR used_at < now() - $1::interval`, r.Ended},
			{"revoked_sessions", `DELETE FROM revoked_sessions WHERE revoked_at < now() - $1::interval`, r.Revocations},
			{"outbox", `DELETE FROM outbox WHERE published_at < now() - $1::interval`, r.Published},
			{"sent_emails", `DELETE FROM sent_emails WHERE created_at < now() - $1::interval`, r.Published},
			{"reset_requests", `DELETE FROM reset_requests WHERE requested_at < now() - $1::interval`, r.Ended},
		} {
			tag, err := tx.Exec(ctx, q.sql, q.keep)
			if err != nil {
				return fmt.Errorf("prune %s: %w", q.table, err)
			}
			deleted[q.table] = tag.RowsAffected()
		}
		return nil
	})
	return deleted, err
}
