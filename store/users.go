package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/usher-auth/usher/internal/event"
)

// Errors callers branch on.
var (
	ErrNotFound   = errors.New("not found")
	ErrEmailTaken = errors.New("email taken")
	// ErrStale means the user's credentials changed (password, role,
	// disabling) after the caller read them: its work must not outlive that.
	ErrStale    = errors.New("credentials changed")
	ErrDisabled = errors.New("account disabled")
)

// User is an account row.
type User struct {
	ID                 string
	Email              string
	Name               string
	Role               string
	PasswordHash       string
	CredentialsVersion int64
	EmailVerifiedAt    *time.Time
	DisabledAt         *time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

const userColumns = `u.id, u.email, u.name, u.role, u.password_hash, u.credentials_version,
	u.email_verified_at, u.disabled_at, u.created_at, u.updated_at`

func userDest(u *User) []any {
	return []any{&u.ID, &u.Email, &u.Name, &u.Role, &u.PasswordHash, &u.CredentialsVersion,
		&u.EmailVerifiedAt, &u.DisabledAt, &u.CreatedAt, &u.UpdatedAt}
}

func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	err := row.Scan(append(userDest(&u), extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// NewUser is what registration and import insert.
type NewUser struct {
	ID           string // empty: the database picks one
	Email        string // lower-cased by the caller's validation
	PasswordHash string
	Name         string
	Role         string // empty: "user"
	Verified     bool
}

func insertUser(ctx context.Context, tx pgx.Tx, nu NewUser) (User, error) {
	role := nu.Role
	if role == "" {
		role = "user"
	}
	u, err := scanUser(tx.QueryRow(ctx, `
		INSERT INTO users AS u (id, email, password_hash, name, role, email_verified_at)
		VALUES (coalesce(nullif($6, '')::uuid, gen_random_uuid()), $1, $2, $3, $4, CASE WHEN $5 THEN now() END)
		RETURNING `+userColumns, nu.Email, nu.PasswordHash, nu.Name, role, nu.Verified, nu.ID))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.ConstraintName == "users_email_key" {
		return u, ErrEmailTaken
	}
	if err != nil {
		return u, fmt.Errorf("insert user: %w", err)
	}
	// No one waits for this bump: the cache's loop applies it.
	_, err = recordBumps(ctx, tx, ListKey)
	return u, err
}

// CreateUser inserts one account without a session (CLI and import).
func (db *DB) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	var u User
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = insertUser(ctx, tx, nu)
		return err
	})
	return u, err
}

// Register inserts an account, its first session, its verification token,
// its cache bump and its user.registered event in one statement: one round
// trip and one commit instead of eight round trips, on the route whose CPU
// the password hash leaves least of.
func (db *DB) Register(ctx context.Context, nu NewUser, ns NewSession, verify OneTimeToken, ev event.Envelope) (User, Session, time.Time, Change, error) {
	var (
		u   User
		s   Session
		now time.Time
		ch  = Change{BumpKeys: []string{ListKey}}
	)
	payload, err := json.Marshal(ev)
	if err != nil {
		return u, s, now, ch, fmt.Errorf("encode event %s: %w", ev.Type, err)
	}
	// Data-modifying CTEs run as one statement; the foreign keys from the
	// session, token and event rows are checked at its end, when the user
	// row exists.
	err = db.pool.QueryRow(ctx, `
		WITH u AS (
			INSERT INTO users AS u (id, email, password_hash, name)
			VALUES (coalesce(nullif($1, '')::uuid, gen_random_uuid()), $2, $3, $4)
			RETURNING `+userColumns+`
		), bump AS (
			INSERT INTO cache_bumps (key) VALUES ($5) RETURNING id
		), s AS (
			INSERT INTO sessions AS s (id, user_id, expires_at, user_agent, ip)
			SELECT $6, u.id, now() + $7::interval, $8, $9 FROM u
			RETURNING `+sessionColumns+`
		), token AS (
			INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
			SELECT $10, u.id, $11, now() + $12::interval FROM u
		), ev AS (
			INSERT INTO outbox (id, type, user_id, occurred_at, payload)
			SELECT $13, $14, u.id, $15, $16 FROM u
		)
		SELECT `+userColumns+`, `+sessionColumns+`, now(), array(SELECT id FROM bump) FROM u, s`,
		nu.ID, nu.Email, nu.PasswordHash, nu.Name, ListKey,
		ns.ID, ns.Lifetime, ns.UserAgent, ns.IP,
		verify.Hash, verify.Purpose, verify.TTL,
		ev.ID, ev.Type, ev.OccurredAt, payload,
	).Scan(append(append(userDest(&u), sessionDest(&s)...), &now, &ch.BumpIDs)...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.ConstraintName == "users_email_key" {
		return u, s, now, ch, ErrEmailTaken
	}
	if err != nil {
		return u, s, now, ch, fmt.Errorf("register: %w", err)
	}
	return u, s, now, ch, nil
}

// UserByEmail loads an account by its lower-case address.
func (db *DB) UserByEmail(ctx context.Context, email string) (User, error) {
	return scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.email = $1`, email))
}

// UserByID loads an account.
func (db *DB) UserByID(ctx context.Context, id string) (User, error) {
	if !isUUID(id) {
		return User{}, ErrNotFound
	}
	return scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1`, id))
}

// SetName changes a user's display name and records its cache bumps in the
// same statement: one round trip, since profile edits are frequent.
func (db *DB) SetName(ctx context.Context, id, name string) (User, Change, error) {
	ch := Change{BumpKeys: []string{UserKey(id), ListKey}}
	u, err := scanUser(db.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE users SET name = $2, updated_at = now() WHERE id = $1 RETURNING *
		), b AS (
			INSERT INTO cache_bumps (key) SELECT unnest($3::text[]) FROM u RETURNING id
		)
		SELECT `+userColumns+`, array(SELECT id FROM b) FROM u`, id, name, ch.BumpKeys), &ch.BumpIDs)
	return u, ch, err
}

// SetPasswordHash replaces a hash with an equivalent one (re-hash on login
// with current parameters): the password did not change, so neither do the
// credentials version or the sessions. It applies only if the hash is still
// the one the caller verified.
func (db *DB) SetPasswordHash(ctx context.Context, id, oldHash, newHash string) error {
	_, err := db.pool.Exec(ctx, `UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2`, id, oldHash, newHash)
	if err != nil {
		return fmt.Errorf("re-hash password: %w", err)
	}
	return nil
}

// ChangePassword sets a new password hash if the user's credentials are still
// at version, bumps the version, ends every session but keep (empty: all)
// and records the password.changed event.
func (db *DB) ChangePassword(ctx context.Context, id string, version int64, newHash, keep string, ev event.Envelope) (Change, error) {
	var ch Change
	err := db.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE users SET password_hash = $3, credentials_version = credentials_version + 1, updated_at = now()
			WHERE id = $1 AND credentials_version = $2`, id, version, newHash)
		if err != nil {
			return fmt.Errorf("change password: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrStale
		}
		ended, err := revokeSessions(ctx, tx, `user_id = $1 AND id::text <> $2`, id, keep)
		if err != nil {
			return err
		}
		ch, err = userChanged(ctx, tx, id, ev)
		ch.Ended = ended
		return err
	})
	return ch, err
}

// AdminChange is an admin's change to an account; nil fields stay.
type AdminChange struct {
	Role     *string
	Disabled *bool
}

// AdminUpdate applies an admin's change. A role change or disabling bumps the
// credentials version and ends every session of the user.
func (db *DB) AdminUpdate(ctx context.Context, id string, c AdminChange) (User, Change, error) {
	var (
		u  User
		ch Change
	)
	if !isUUID(id) {
		return u, ch, ErrNotFound
	}
	err := db.tx(ctx, func(tx pgx.Tx) error {
		before, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		role, disabled := before.Role, before.DisabledAt != nil
		if c.Role != nil {
			role = *c.Role
		}
		if c.Disabled != nil {
			disabled = *c.Disabled
		}
		endSessions := role != before.Role || disabled && before.DisabledAt == nil
		u, err = scanUser(tx.QueryRow(ctx, `
			UPDATE users u SET role = $2,
				disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) END,
				credentials_version = credentials_version + CASE WHEN $4 THEN 1 ELSE 0 END,
				updated_at = now()
			WHERE u.id = $1 RETURNING `+userColumns, id, role, disabled, endSessions))
		if err != nil {
			return err
		}
		if ch, err = recordBumps(ctx, tx, UserKey(id), ListKey); err != nil || !endSessions {
			return err
		}
		ch.Ended, err = revokeSessions(ctx, tx, `user_id = $1`, id)
		return err
	})
	return u, ch, err
}

// DeleteUser ends every session of the user, then deletes the account; its
// sessions and tokens cascade, the revocations and its events stay.
func (db *DB) DeleteUser(ctx context.Context, id string, ev event.Envelope) (Change, error) {
	var ch Change
	if !isUUID(id) {
		return ch, ErrNotFound
	}
	err := db.tx(ctx, func(tx pgx.Tx) error {
		ended, err := revokeSessions(ctx, tx, `user_id = $1`, id)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		ev.UserID = id
		ch, err = userChanged(ctx, tx, id, ev)
		ch.Ended = ended
		return err
	})
	return ch, err
}

// UserPage is one page of the admin list.
type UserPage struct {
	Users []User
	Next  string // opaque cursor; empty on the last page
}

// ListUsers pages through users in (created_at, id) order, stable under
// inserts, optionally only those whose email starts with prefix.
func (db *DB) ListUsers(ctx context.Context, limit int, cursor, prefix string) (UserPage, error) {
	var (
		after   time.Time
		afterID = "00000000-0000-0000-0000-000000000000"
	)
	if cursor != "" {
		var err error
		if after, afterID, err = decodeCursor(cursor); err != nil {
			return UserPage{}, err
		}
	}
	pattern := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	rows, err := db.pool.Query(ctx, `
		SELECT `+userColumns+` FROM users u
		WHERE (u.created_at, u.id) > ($1, $2::uuid) AND u.email LIKE $3
		ORDER BY u.created_at, u.id
		LIMIT $4`, after, afterID, pattern, limit+1)
	if err != nil {
		return UserPage{}, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var page UserPage
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return UserPage{}, fmt.Errorf("list users: %w", err)
		}
		page.Users = append(page.Users, u)
	}
	if err := rows.Err(); err != nil {
		return UserPage{}, fmt.Errorf("list users: %w", err)
	}
	if len(page.Users) > limit {
		page.Users = page.Users[:limit]
		last := page.Users[limit-1]
		page.Next = encodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}

// ErrBadCursor means a list cursor was not one usher made.
var ErrBadCursor = errors.New("bad cursor")

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(t.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !isUUID(id) {
		return time.Time{}, "", ErrBadCursor
	}
	return t, id, nil
}

// isUUID reports whether s is a canonical UUID, so a malformed id from a
// URL is a plain not-found rather than a database error.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// tx runs f in a transaction, committing if it returns nil.
func (db *DB) tx(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, f)
}

// ImportUsers inserts accounts in batches, skipping addresses that exist. It
// writes no events: imports send no email.
func (db *DB) ImportUsers(ctx context.Context, users []NewUser) (inserted int64, err error) {
	err = db.tx(ctx, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, nu := range users {
			role := nu.Role
			if role == "" {
				role = "user"
			}
			batch.Queue(`
				INSERT INTO users (email, password_hash, name, role, email_verified_at)
				VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
				ON CONFLICT (email) DO NOTHING`, nu.Email, nu.PasswordHash, nu.Name, role, nu.Verified)
		}
		results := tx.SendBatch(ctx, batch)
		defer results.Close()
		for range users {
			tag, err := results.Exec()
			if err != nil {
				return fmt.Errorf("import users: %w", err)
			}
			inserted += tag.RowsAffected()
		}
		if err := results.Close(); err != nil {
			return err
		}
		// No one waits for this bump: the cache's loop applies it.
		_, err := recordBumps(ctx, tx, ListKey)
		return err
	})
	return inserted, err
}
