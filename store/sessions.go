package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is a login: the refresh token chain of one device.
type Session struct {
	ID             string
	UserID         string
	RefreshCounter int64
	RotatedAt      time.Time
	CreatedAt      time.Time
	ExpiresAt      time.Time
	LastUsedAt     time.Time
	UserAgent      string
	IP             string
}

const sessionColumns = `s.id, s.user_id, s.refresh_counter, s.rotated_at, s.created_at, s.expires_at,
	s.last_used_at, s.user_agent, s.ip`

func sessionDest(s *Session) []any {
	return []any{&s.ID, &s.UserID, &s.RefreshCounter, &s.RotatedAt, &s.CreatedAt, &s.ExpiresAt,
		&s.LastUsedAt, &s.UserAgent, &s.IP}
}

// NewSession is a session about to start; the id is chosen by the caller
// because the refresh token carries it.
type NewSession struct {
	ID        string
	Lifetime  time.Duration // absolute, from now; never extended
	UserAgent string
	IP        string
}

// StartSession starts a session for a user whose password the caller
// verified at credentials version. Under the user row's lock, so a password
// change or disabling that committed in between wins: ErrStale.
//
// One statement, one round trip, on the route whose CPU the password hash
// leaves least of: the CTE's FOR UPDATE locks the row until the statement
// commits, and a row it had to wait for is read again as committed.
func (db *DB) StartSession(ctx context.Context, userID string, version int64, ns NewSession) (User, Session, time.Time, error) {
	var (
		u   User
		s   Session
		now time.Time
	)
	err := db.pool.QueryRow(ctx, `
		WITH u AS (
			SELECT `+userColumns+` FROM users u WHERE u.id = $1 FOR UPDATE
		), s AS (
			INSERT INTO sessions AS s (id, user_id, expires_at, user_agent, ip)
			SELECT $2, u.id, now() + $3::interval, $4, $5 FROM u
			WHERE u.credentials_version = $6 AND u.disabled_at IS NULL
			RETURNING `+sessionColumns+`
		)
		SELECT `+userColumns+`, `+sessionColumns+`, now() FROM u, s`,
		userID, ns.ID, ns.Lifetime, ns.UserAgent, ns.IP, version,
	).Scan(append(append(userDest(&u), sessionDest(&s)...), &now)...)
	if errors.Is(err, pgx.ErrNoRows) {
		// No session: say why, from the row as it is now.
		u, err = db.UserByID(ctx, userID)
		switch {
		case err == nil && u.CredentialsVersion == version && u.DisabledAt != nil:
			err = ErrDisabled
		case err == nil || errors.Is(err, ErrNotFound):
			err = ErrStale
		}
	}
	if err != nil && !errors.Is(err, ErrStale) && !errors.Is(err, ErrDisabled) {
		err = fmt.Errorf("start session: %w", err)
	}
	return u, s, now, err
}

// Refresh errors.
var (
	// ErrSessionEnded: the session was revoked, its user disabled, or it
	// never existed.
	ErrSessionEnded = errors.New("session ended")
	// ErrSessionExpired: past its absolute lifetime or idle too long.
	ErrSessionExpired = errors.New("session expired")
	// ErrReuse: a refresh token other than the current one or its grace-time
	// predecessor was presented; the session has been ended.
	ErrReuse = errors.New("refresh token reused")
)

// Rotation is the outcome of a refresh: the session with its new counter.
type Rotation struct {
	User    User
	Session Session
	Now     time.Time
}

// Refresh rotates the session's refresh token presented at counter, under the
// session row's lock, so concurrent refreshes on any number of nodes are
// ordered. The current token moves the counter on; its immediate predecessor
// within grace of the last rotation gets the same successor again; any other
// counter ends the session (ErrReuse, committed).
func (db *DB) Refresh(ctx context.Context, sid string, counter int64, grace, idle time.Duration) (Rotation, error) {
	var r Rotation
	if !isUUID(sid) {
		return r, ErrSessionEnded
	}
	// The common case, the current token of a live session, in one
	// statement: the row lock orders concurrent refreshes, and a refresh
	// that lost the race matches nothing and takes the path below.
	err := db.pool.QueryRow(ctx, `
		UPDATE sessions s SET refresh_counter = s.refresh_counter + 1, rotated_at = now(), last_used_at = now()
		FROM users u
		WHERE s.id = $1 AND s.refresh_counter = $2 AND s.revoked_at IS NULL
		  AND u.id = s.user_id AND u.disabled_at IS NULL
		  AND now() < s.expires_at AND now() < s.last_used_at + $3::interval
		RETURNING `+userColumns+`, `+sessionColumns+`, now()`, sid, counter, idle).
		Scan(append(userDest(&r.User), append(sessionDest(&r.Session), &r.Now)...)...)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("refresh: %w", err)
	}
	var reused bool
	err = db.tx(ctx, func(tx pgx.Tx) error {
		var revoked *time.Time
		row := tx.QueryRow(ctx, `
			SELECT `+userColumns+`, `+sessionColumns+`, s.revoked_at, now()
			FROM sessions s JOIN users u ON u.id = s.user_id
			WHERE s.id = $1 FOR UPDATE OF s`, sid)
		var err error
		r.User, err = scanUser(row, append(sessionDest(&r.Session), &revoked, &r.Now)...)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrSessionEnded
			}
			return fmt.Errorf("refresh: %w", err)
		}
		s := &r.Session
		switch {
		case revoked != nil, r.User.DisabledAt != nil:
			return ErrSessionEnded
		case !r.Now.Before(s.ExpiresAt), !r.Now.Before(s.LastUsedAt.Add(idle)):
			return ErrSessionExpired
		case counter == s.RefreshCounter:
			return tx.QueryRow(ctx, `
				UPDATE sessions SET refresh_counter = refresh_counter + 1, rotated_at = now(), last_used_at = now()
				WHERE id = $1 RETURNING refresh_counter, rotated_at, last_used_at`, sid).
				Scan(&s.RefreshCounter, &s.RotatedAt, &s.LastUsedAt)
		case counter == s.RefreshCounter-1 && r.Now.Sub(s.RotatedAt) <= grace:
			return nil // the same successor the first refresh got
		}
		reused = true
		_, err = revokeSessions(ctx, tx, `id = $1`, sid)
		return err
	})
	if err == nil && reused {
		err = ErrReuse
	}
	return r, err
}

// SessionsOf lists a user's live sessions, newest first.
func (db *DB) SessionsOf(ctx context.Context, userID string) ([]Session, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT `+sessionColumns+` FROM sessions s
		WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
		ORDER BY s.created_at DESC, s.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Session, error) {
		var s Session
		return s, row.Scan(sessionDest(&s)...)
	})
}

// EndSession ends one live session; with userID set, only if it is that
// user's. ErrNotFound when there was no such live session.
func (db *DB) EndSession(ctx context.Context, sid, userID string) error {
	if !isUUID(sid) {
		return ErrNotFound
	}
	var ended []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		ended, err = revokeSessions(ctx, tx, `id = $1 AND ($2 = '' OR user_id::text = $2)`, sid, userID)
		return err
	})
	if err == nil && len(ended) == 0 {
		err = ErrNotFound
	}
	return err
}

// EndSessionsOf ends every live session of a user and returns their ids.
func (db *DB) EndSessionsOf(ctx context.Context, userID string) ([]string, error) {
	if !isUUID(userID) {
		return nil, ErrNotFound
	}
	var ended []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE id = $1`, userID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		var err error
		ended, err = revokeSessions(ctx, tx, `user_id = $1`, userID)
		return err
	})
	return ended, err
}

// endSessions is two CTEs, ended and logged, that end the live sessions
// matching where and record each in revoked_sessions: the feed every
// gateway polls. logged returns the session_id of each.
func endSessions(where string) string {
	return `ended AS (
			UPDATE sessions SET revoked_at = now()
			WHERE revoked_at IS NULL AND ` + where + `
			RETURNING id
		), logged AS (
			INSERT INTO revoked_sessions (session_id, revoked_at)
			SELECT id, clock_timestamp() FROM ended
			ON CONFLICT (session_id) DO NOTHING
			RETURNING session_id
		)`
}

// revokeSessions ends the live sessions matching where, in tx, and returns
// their ids.
func revokeSessions(ctx context.Context, tx pgx.Tx, where string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, `WITH `+endSessions(where)+` SELECT session_id::text FROM logged`, args...)
	if err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	return ids, nil
}

// Revocation is one ended session, as gateways poll them.
type Revocation struct {
	SessionID string
	RevokedAt time.Time
}

// RevokedSince returns revocations recorded after since.
func (db *DB) RevokedSince(ctx context.Context, since time.Time) ([]Revocation, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT session_id::text, revoked_at FROM revoked_sessions WHERE revoked_at > $1 ORDER BY revoked_at`, since)
	if err != nil {
		return nil, fmt.Errorf("poll revocations: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Revocation, error) {
		var r Revocation
		return r, row.Scan(&r.SessionID, &r.RevokedAt)
	})
}
