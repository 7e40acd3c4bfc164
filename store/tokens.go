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

// TokenState reports whether a token could be used now, without using it:
// callers check before spending a password hash on it.
func (db *DB) TokenState(ctx context.Context, hash []byte, purpose string) error {
	return tokenState(ctx, db.pool, hash, purpose)
}

// tokenState is TokenState on q: the pool, or a transaction.
func tokenState(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, hash []byte, purpose string) error {
	var expired bool
	err := q.QueryRow(ctx, `
		SELECT expires_at <= now() FROM one_time_tokens
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL`, hash, purpose).Scan(&expired)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrTokenInvalid
	case err != nil:
		return fmt.Errorf("token state: %w", err)
	case expired:
		return ErrTokenExpired
	}
	return nil
}

// useToken marks a token used and applies set (SQL assignments; args are
// $3…) to its user in one statement, returning the user as updated.
func useToken(ctx context.Context, tx pgx.Tx, hash []byte, purpose, set string, args ...any) (User, error) {
	u, err := scanUser(tx.QueryRow(ctx, `
		WITH t AS (
			UPDATE one_time_tokens SET used_at = now()
			WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
			RETURNING user_id
		)
		UPDATE users u SET `+set+`, updated_at = now() FROM t WHERE u.id = t.user_id
		RETURNING `+userColumns, append([]any{hash, purpose}, args...)...))
	if errors.Is(err, ErrNotFound) {
		// Why not: expired, or unknown or used (or used or expired just now).
		if err := tokenState(ctx, tx, hash, purpose); err != nil {
			return User{}, err
		}
		return User{}, ErrTokenInvalid
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
		if u, err = useToken(ctx, tx, hash, PurposeVerify, `email_verified_at = coalesce(email_verified_at, now())`); err != nil {
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

// ResetPassword uses a reset token, sets the new hash, bumps the credentials
// version and ends every session, with the event made by ev.
func (db *DB) ResetPassword(ctx context.Context, hash []byte, newHash string, ev func(User) (event.Envelope, error)) (Change, error) {
	var ch Change
	err := db.tx(ctx, func(tx pgx.Tx) error {
		u, err := useToken(ctx, tx, hash, PurposeReset, `password_hash = $3, credentials_version = credentials_version + 1`, newHash)
		if err != nil {
			return err
		}
		ended, err := revokeSessions(ctx, tx, `user_id = $1`, u.ID)
		if err != nil {
			return err
		}
		e, err := ev(u)
		if err != nil {
			return err
		}
		ch, err = userChanged(ctx, tx, u.ID, e)
		ch.Ended = ended
		return err
	})
	return ch, err
}
