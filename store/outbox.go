package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usher-auth/usher/internal/event"
)

// insertEvents writes events to the outbox in the caller's transaction: an
// event exists exactly when its change committed.
func insertEvents(ctx context.Context, tx pgx.Tx, evs ...event.Envelope) error {
	for _, e := range evs {
		payload, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.Type, err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO outbox (id, type, user_id, occurred_at, payload)
			VALUES ($1, $2, nullif($3, '')::uuid, $4, $5)`,
			e.ID, e.Type, e.UserID, e.OccurredAt, payload); err != nil {
			return fmt.Errorf("insert event %s: %w", e.Type, err)
		}
	}
	return nil
}

// QueueEvent records an event that changes nothing else (an admin's email).
func (db *DB) QueueEvent(ctx context.Context, e event.Envelope) error {
	return db.tx(ctx, func(tx pgx.Tx) error { return insertEvents(ctx, tx, e) })
}

// OutboxEvent is an unpublished outbox row.
type OutboxEvent struct {
	ID      string
	Type    string
	Payload []byte
}

// PublishEvents hands up to limit unpublished events, oldest first, to
// publish, and marks them published if it returns nil. Rows are locked with
// SKIP LOCKED, so several relays share the work without sending a row twice
// at once; a relay that dies before commit leaves its rows for the next.
func (db *DB) PublishEvents(ctx context.Context, limit int, publish func([]OutboxEvent) error) (int, error) {
	var n int
	err := db.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT seq, id::text, type, payload FROM outbox
			WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		var (
			seqs   []int64
			events []OutboxEvent
		)
		for rows.Next() {
			var (
				seq int64
				e   OutboxEvent
			)
			if err := rows.Scan(&seq, &e.ID, &e.Type, &e.Payload); err != nil {
				return fmt.Errorf("read outbox: %w", err)
			}
			seqs = append(seqs, seq)
			events = append(events, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(events) == 0 {
			return nil
		}
		if err := publish(events); err != nil {
			return err
		}
		n = len(events)
		_, err = tx.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE seq = ANY($1)`, seqs)
		return err
	})
	return n, err
}

// OutboxStats reports how many events wait and how long the oldest has.
func (db *DB) OutboxStats(ctx context.Context) (depth int64, oldest time.Duration, err error) {
	var age *float64
	err = db.pool.QueryRow(ctx, `
		SELECT count(*), extract(epoch FROM now() - min(occurred_at))::float8
		FROM outbox WHERE published_at IS NULL`).Scan(&depth, &age)
	if age != nil {
		oldest = time.Duration(*age * float64(time.Second))
	}
	return depth, oldest, err
}
