package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClaimResult says what ClaimEmail found.
type ClaimResult int

const (
	// Claimed: the caller holds the email until its lease ends and may send it.
	Claimed ClaimResult = iota + 1
	// AlreadySent: the email is marked sent; sending it again would be a
	// duplicate.
	AlreadySent
	// ClaimHeld: another sender holds a live claim; ask again after its lease.
	ClaimHeld
)

func (r ClaimResult) String() string {
	switch r {
	case Claimed:
		return "claimed"
	case AlreadySent:
		return "already sent"
	case ClaimHeld:
		return "held by a live claim"
	}
	return fmt.Sprintf("ClaimResult(%d)", int(r))
}

// ClaimEmail claims the email of event eventID for lease, measured on the
// database's clock. A claim whose lease ended without the email being marked
// sent (its sender died or gave up) can be claimed again. The lease must
// outlast the whole SMTP exchange, or two senders may both hold it.
func (db *DB) ClaimEmail(ctx context.Context, eventID string, lease time.Duration) (ClaimResult, error) {
	var claimed bool
	err := db.pool.QueryRow(ctx, `
		INSERT INTO sent_emails (event_id, claimed_until) VALUES ($1, now() + $2::interval)
		ON CONFLICT (event_id) DO UPDATE SET claimed_until = EXCLUDED.claimed_until
			WHERE sent_emails.sent_at IS NULL AND sent_emails.claimed_until <= now()
		RETURNING true`, eventID, lease).Scan(&claimed)
	switch {
	case err == nil:
		return Claimed, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("claim email %s: %w", eventID, err)
	}
	// The row exists: sent, or claimed by someone whose lease still runs.
	var sent bool
	err = db.pool.QueryRow(ctx, `SELECT sent_at IS NOT NULL FROM sent_emails WHERE event_id = $1`, eventID).Scan(&sent)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Released or pruned in between: ask again later rather than loop.
		return ClaimHeld, nil
	case err != nil:
		return 0, fmt.Errorf("claim email %s: %w", eventID, err)
	case sent:
		return AlreadySent, nil
	}
	return ClaimHeld, nil
}

// MarkEmailSent records that the SMTP server accepted the email of event
// eventID, so a redelivered event is not sent again.
func (db *DB) MarkEmailSent(ctx context.Context, eventID string) error {
	// An upsert: a claim pruned meanwhile must not lose the mark.
	_, err := db.pool.Exec(ctx, `
		INSERT INTO sent_emails (event_id, claimed_until, sent_at) VALUES ($1, now(), now())
		ON CONFLICT (event_id) DO UPDATE SET sent_at = coalesce(sent_emails.sent_at, now())`, eventID)
	if err != nil {
		return fmt.Errorf("mark email %s sent: %w", eventID, err)
	}
	return nil
}

// ReleaseEmail gives up the claim on an email that was not sent, so that a
// retry can claim it at once instead of waiting for the lease to end. An
// email marked sent stays marked.
func (db *DB) ReleaseEmail(ctx context.Context, eventID string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM sent_emails WHERE event_id = $1 AND sent_at IS NULL`, eventID)
	if err != nil {
		return fmt.Errorf("release email %s: %w", eventID, err)
	}
	return nil
}
