package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usher-auth/usher/internal/event"
)

// One-time token purposes.
const (
	PurposeVerify = "verify_email"
	PurposeReset  = "reset_password"
)

// OneTimeToken is a token about to be issued. Only its SHA-256 is stored.
type OneTimeToken struct {
	Hash    []byte
	Purpose string
	TTL     time.Duration
}

// Token errors.
var (
	ErrTokenInvalid = errors.New("token invalid")
	ErrTokenExpired = errors.New("token expired")
)

// insertToken issues a token; the user's older unused tokens of the same
// purpose stop working.
func insertToken(ctx context.Context, tx pgx.Tx, userID string, t OneTimeToken) error {
	if _, err := tx.Exec(ctx, `
		DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`, userID, t.Purpose); err != nil {
		return fmt.Errorf("supersede tokens: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
		VALUES ($1, $2, $3, now() + $4::interval)`, t.Hash, userID, t.Purpose, t.TTL); err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	return nil
}

// RequestVerification issues a new verification token for a user and
// records its event.
func (db *DB) RequestVerification(ctx context.Context, userID string, t OneTimeToken, ev event.Envelope) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		if err := insertToken(ctx, tx, userID, t); err != nil {
			return err
		}
		return insertEvents(ctx, tx, ev)
	})
}

// RequestReset logs the request and, if an account has this email, issues
// a reset token and its event. The same statement runs, and writes, whether
// or not it does, so the answer's timing does not tell.
func (db *DB) RequestReset(ctx context.Context, email string, t OneTimeToken, ev event.Envelope) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			WITH u AS (SELECT id FROM users WHERE email = $1),
			logged AS (INSERT INTO reset_requests (email_sha256) VALUES (sha256(convert_to($1, 'UTF8')))),
			old AS (
				DELETE FROM one_time_tokens
				WHERE user_id IN (SELECT id FROM u) AND purpose = $3 AND used_at IS NULL
			),
			tok AS (
				INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
				SELECT $2, id, $3, now() + $4::interval FROM u
			)
			INSERT INTO outbox (id, type, user_id, occurred_at, payload)
			SELECT $5, $6, id, $7, jsonb_set($8::jsonb, '{user_id}', to_jsonb(id::text)) FROM u`,
			email, t.Hash, t.Purpose, t.TTL, ev.ID, ev.Type, ev.OccurredAt, payload)
		if err != nil {
			return fmt.Errorf("request reset: %w", err)
		}
		return nil
	})
}

// TokenOwner returns the user of a token that could be used now, without
// using it: callers check before spending a password hash on it.
func (db *DB) TokenOwner(ctx context.Context, hash []byte, purpose string) (User, error) {
	return tokenOwner(ctx, db.pool, hash, purpose)
}

// rowQuerier is the pool or a transaction, for a query of one row.
type rowQuerier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// tokenOwner is TokenOwner on q.
func tokenOwner(ctx context.Context, q rowQuerier, hash []byte, purpose string) (User, error) {
	var expired bool
	u, err := scanUser(q.QueryRow(ctx, `
		SELECT `+userColumns+`, t.expires_at <= now()
		FROM one_time_tokens t JOIN users u ON u.id = t.user_id
		WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL`, hash, purpose), &expired)
	switch {
	case errors.Is(err, ErrNotFound):
		return u, ErrTokenInvalid
	case err != nil:
		return u, fmt.Errorf("token owner: %w", err)
	case expired:
		return u, ErrTokenExpired
	}
	return u, nil
}

// tokenRefused says why a token could not be used: expired, or unknown or
// used (or used or expired just now).
func tokenRefused(ctx context.Context, q rowQuerier, hash []byte, purpose string) error {
	if _, err := tokenOwner(ctx, q, hash, purpose); err != nil {
		return err
	}
	return ErrTokenInvalid
}

// verifyEmail uses a verification token and marks its user's email
// verified in one statement, returning the user as updated.
func verifyEmail(ctx context.Context, tx pgx.Tx, hash []byte) (User, error) {
	u, err := scanUser(tx.QueryRow(ctx, `
		WITH t AS (
			UPDATE one_time_tokens SET used_at = now()
			WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
			RETURNING user_id
		)
		UPDATE users u SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
		FROM t WHERE u.id = t.user_id
		RETURNING `+userColumns, hash, PurposeVerify))
	if errors.Is(err, ErrNotFound) {
		return User{}, tokenRefused(ctx, tx, hash, PurposeVerify)
	}
	if err != nil {
		return User{}, fmt.Errorf("use token: %w", err)
	}
	return u, nil
}

// ConfirmVerification uses a verification token and marks the email
// verified, with the event made by ev.
func (db *DB) ConfirmVerification(ctx context.Context, hash []byte, ev func(User) (event.Envelope, error)) (User, Change, error) {
	var (
		u  User
		ch Change
	)
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if u, err = verifyEmail(ctx, tx, hash); err != nil {
			return err
		}
		e, err := ev(u)
		if err != nil {
			return err
		}
		ch, err = userChanged(ctx, tx, u.ID, e)
		return err
	})
	return u, ch, err
}

// ResetPassword uses the reset token of user userID (TokenOwner found it
// before the hash), sets the new hash, bumps the credentials version, ends
// every session and records the cache bumps and ev, in one round trip: a
// batch of two statements, which PostgreSQL runs as one implicit
// transaction. The second statement has a snapshot of its own, taken after
// the first locked the user row, so it ends a session a racing login
// committed meanwhile. It does its work only where the first set newHash,
// which nothing else can have written (its salt is new).
func (db *DB) ResetPassword(ctx context.Context, hash []byte, newHash, userID string, ev event.Envelope) (Change, error) {
	ch := Change{BumpKeys: []string{UserKey(userID), ListKey}}
	payload, err := json.Marshal(ev)
	if err != nil {
		return ch, fmt.Errorf("encode event %s: %w", ev.Type, err)
	}
	batch := &pgx.Batch{}
	batch.Queue(`
		WITH t AS (
			UPDATE one_time_tokens SET used_at = now()
			WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() AND user_id = $3
			RETURNING user_id
		)
		UPDATE users u SET password_hash = $4, credentials_version = credentials_version + 1, updated_at = now()
		FROM t WHERE u.id = t.user_id`, hash, PurposeReset, userID, newHash)
	batch.Queue(`
		WITH u AS (
			SELECT id FROM users WHERE id = $1 AND password_hash = $2
		), `+endSessions(`user_id IN (SELECT id FROM u)`)+`, b AS (
			INSERT INTO cache_bumps (key) SELECT unnest($3::text[]) FROM u RETURNING id
		), ev AS (
			INSERT INTO outbox (id, type, user_id, occurred_at, payload)
			SELECT $4, $5, u.id, $6, $7 FROM u
		)
		SELECT array(SELECT session_id::text FROM logged), array(SELECT id FROM b ORDER BY id)`,
		userID, newHash, ch.BumpKeys, ev.ID, ev.Type, ev.OccurredAt, payload).QueryRow(func(row pgx.Row) error {
		return row.Scan(&ch.Ended, &ch.BumpIDs)
	})
	if err := db.pool.SendBatch(ctx, batch).Close(); err != nil {
		return ch, fmt.Errorf("reset password: %w", err)
	}
	if len(ch.BumpIDs) == 0 {
		// The second statement found no newHash: the first used no token.
		return Change{}, tokenRefused(ctx, db.pool, hash, PurposeReset)
	}
	return ch, nil
}
