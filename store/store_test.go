package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/internal/testenv"
)

func openTestDB(t *testing.T) *DB { return openBenchDB(t) }

func openBenchDB(t testing.TB) *DB {
	t.Helper()
	url := testdb.New(t)
	db, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// newUser creates the user email, with a password hash of "h".
func newUser(t testing.TB, db *DB, email string) User {
	t.Helper()
	u, err := db.CreateUser(t.Context(), NewUser{Email: email, PasswordHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func count(t *testing.T, db *DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestResetRequestForUnknownEmailWritesNothing(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "known@example.com")
	ev := func() event.Envelope {
		return event.Envelope{ID: uuid.NewString(), Type: event.ResetRequested, OccurredAt: time.Now()}
	}
	if err := db.RequestReset(ctx, "unknown@example.com", OneTimeToken{Hash: []byte("a"), Purpose: PurposeReset, TTL: time.Hour}, ev()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox`) + count(t, db, `SELECT count(*) FROM one_time_tokens`); n != 0 {
		t.Fatalf("unknown email: got %d rows, want none", n)
	}
	if n := count(t, db, `SELECT count(*) FROM reset_requests`); n != 1 {
		t.Fatalf("unknown email: got %d logged requests, want 1: both cases must write", n)
	}
	if err := db.RequestReset(ctx, "known@example.com", OneTimeToken{Hash: []byte("b"), Purpose: PurposeReset, TTL: time.Hour}, ev()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE user_id = $1 AND payload->>'user_id' = $2`, u.ID, u.ID); n != 1 {
		t.Fatalf("known email: got %d events with the user id, want 1", n)
	}
	// A second request supersedes the first token.
	if err := db.RequestReset(ctx, "known@example.com", OneTimeToken{Hash: []byte("c"), Purpose: PurposeReset, TTL: time.Hour}, ev()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TokenOwner(ctx, []byte("b"), PurposeReset); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("superseded token: got %v, want ErrTokenInvalid", err)
	}
	if owner, err := db.TokenOwner(ctx, []byte("c"), PurposeReset); err != nil || owner.ID != u.ID || owner.Email != "known@example.com" {
		t.Fatalf("newest token: got %+v, %v; want usable, of %s", owner, err, u.ID)
	}
}

func TestTokensAreSingleUseAndExpire(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "v@example.com")
	noEvent := func(u User) (event.Envelope, error) {
		return event.Envelope{ID: uuid.NewString(), Type: event.EmailVerified, OccurredAt: time.Now(), UserID: u.ID}, nil
	}
	if err := db.RequestVerification(ctx, u.ID, OneTimeToken{Hash: []byte("v1"), Purpose: PurposeVerify, TTL: time.Hour}, event.Envelope{ID: uuid.NewString(), Type: event.VerificationRequested, OccurredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got, ch, err := db.ConfirmVerification(ctx, []byte("v1"), noEvent)
	if err != nil || got.EmailVerifiedAt == nil {
		t.Fatalf("confirm: got %+v, %v", got, err)
	}
	wantBumps(t, db, ch, UserKey(u.ID), ListKey)
	if _, _, err := db.ConfirmVerification(ctx, []byte("v1"), noEvent); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("second use: got %v, want ErrTokenInvalid", err)
	}
	db.RequestVerification(ctx, u.ID, OneTimeToken{Hash: []byte("v2"), Purpose: PurposeVerify, TTL: time.Millisecond}, event.Envelope{ID: uuid.NewString(), Type: event.VerificationRequested, OccurredAt: time.Now()})
	time.Sleep(20 * time.Millisecond)
	if _, _, err := db.ConfirmVerification(ctx, []byte("v2"), noEvent); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: got %v, want ErrTokenExpired", err)
	}
	// A verification token does not reset a password, and is still good
	// for verification afterwards.
	db.RequestVerification(ctx, u.ID, OneTimeToken{Hash: []byte("v3"), Purpose: PurposeVerify, TTL: time.Hour}, event.Envelope{ID: uuid.NewString(), Type: event.VerificationRequested, OccurredAt: time.Now()})
	if _, err := db.ResetPassword(ctx, []byte("v3"), "h2", u.ID, changedEvent(u.ID)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a token of the wrong purpose: got %v, want ErrTokenInvalid", err)
	}
	if _, _, err := db.ConfirmVerification(ctx, []byte("v3"), noEvent); err != nil {
		t.Fatalf("the verification token after a refused reset: %v", err)
	}
}

// Several relays may run; no event is handed to two of them at once and
// every event is published.
func TestParallelRelaysPublishEachEventOnce(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	for range 300 {
		if err := db.QueueEvent(ctx, event.Envelope{ID: uuid.NewString(), Type: event.UserDeleted, OccurredAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := db.PublishEvents(ctx, 17, func(evs []OutboxEvent) error {
					mu.Lock()
					defer mu.Unlock()
					for _, e := range evs {
						seen[e.ID]++
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 300 {
		t.Fatalf("got %d events published, want 300", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s published %d times, want once", id, n)
		}
	}
	if depth, _, _ := db.OutboxStats(ctx); depth != 0 {
		t.Fatalf("outbox depth after relaying: got %d, want 0", depth)
	}
}

func TestFailedPublishLeavesEventsForTheNextPass(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	db.QueueEvent(ctx, event.Envelope{ID: uuid.NewString(), Type: event.UserDeleted, OccurredAt: time.Now()})
	if _, err := db.PublishEvents(ctx, 10, func([]OutboxEvent) error { return errors.New("NATS down") }); err == nil {
		t.Fatal("want the publish error")
	}
	if depth, _, _ := db.OutboxStats(ctx); depth != 1 {
		t.Fatalf("after a failed publish: got depth %d, want 1", depth)
	}
}

// Registration writes the account, its session, its verification token,
// its cache bump and its event together, or, for a taken address, nothing.
func TestRegisterWritesEverythingOrNothing(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	register := func(sid string) (User, Session, Change, error) {
		u, s, _, ch, err := db.Register(ctx, NewUser{ID: uuid.NewString(), Email: "r@example.com", PasswordHash: "h", Name: "R"},
			NewSession{ID: sid, Lifetime: time.Hour, UserAgent: "ua", IP: "192.0.2.1"},
			OneTimeToken{Hash: []byte(sid), Purpose: PurposeVerify, TTL: time.Hour},
			event.Envelope{ID: uuid.NewString(), Type: event.UserRegistered, OccurredAt: time.Now()})
		return u, s, ch, err
	}
	sid := uuid.NewString()
	u, s, ch, err := register(sid)
	if err != nil {
		t.Fatal(err)
	}
	wantBumps(t, db, ch, ListKey)
	if u.Email != "r@example.com" || u.Name != "R" || u.Role != "user" || s.ID != sid || s.UserID != u.ID || s.IP != "192.0.2.1" {
		t.Fatalf("got user %+v, session %+v", u, s)
	}
	rows := func() int {
		return count(t, db, `SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM sessions)
			+ (SELECT count(*) FROM one_time_tokens WHERE purpose = $1) + (SELECT count(*) FROM outbox WHERE user_id IS NOT NULL)
			+ (SELECT count(*) FROM cache_bumps WHERE key = $2)`, PurposeVerify, ListKey)
	}
	if n := rows(); n != 5 {
		t.Fatalf("rows after registering: got %d, want 5 (user, session, token, event, bump)", n)
	}
	if _, _, _, err := register(uuid.NewString()); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("same address again: got %v, want ErrEmailTaken", err)
	}
	if n := rows(); n != 5 {
		t.Fatalf("rows after a taken address: got %d, want still 5", n)
	}
}

// A session starts only for the credentials version the caller verified
// and an enabled account; otherwise nothing is written and the error says
// why.
func TestStartSessionOnlyForTheVerifiedCredentials(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "start@example.com")
	start := func(id string, version int64) (Session, error) {
		_, s, _, err := db.StartSession(ctx, id, version, NewSession{ID: uuid.NewString(), Lifetime: time.Hour, UserAgent: "ua", IP: "192.0.2.7"})
		return s, err
	}
	s, err := start(u.ID, u.CredentialsVersion)
	if err != nil || s.UserID != u.ID || s.IP != "192.0.2.7" || !s.ExpiresAt.After(time.Now().Add(59*time.Minute)) {
		t.Fatalf("verified version: got %+v, %v", s, err)
	}
	if _, err := start(u.ID, u.CredentialsVersion+1); !errors.Is(err, ErrStale) {
		t.Fatalf("another version: got %v, want ErrStale", err)
	}
	if _, err := start(uuid.NewString(), 0); !errors.Is(err, ErrStale) {
		t.Fatalf("an account gone: got %v, want ErrStale", err)
	}
	disabled := true
	if _, _, err := db.AdminUpdate(ctx, u.ID, AdminChange{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := start(u.ID, u.CredentialsVersion+1); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled (disabling moved the version on): got %v, want ErrDisabled", err)
	}
	if n := count(t, db, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); n != 1 {
		t.Fatalf("sessions: got %d, want only the first", n)
	}
}

// A reset uses its token, sets the hash, moves the credentials version on,
// ends every session and records the bumps and the event, all in one; a
// token it cannot use changes nothing.
func TestResetPasswordDoesAllOrNothing(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "reset@example.com")
	var sessions []string
	for range 2 {
		_, s, _, err := db.StartSession(ctx, u.ID, u.CredentialsVersion, NewSession{ID: uuid.NewString(), Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s.ID)
	}
	request := func(token string) {
		t.Helper()
		if err := db.RequestReset(ctx, u.Email, OneTimeToken{Hash: []byte(token), Purpose: PurposeReset, TTL: time.Hour},
			event.Envelope{ID: uuid.NewString(), Type: event.ResetRequested, OccurredAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	state := func() string {
		var s string
		if err := db.pool.QueryRow(ctx, `
			SELECT u.password_hash || ' v' || u.credentials_version
				|| ' ended ' || (SELECT count(*) FROM sessions WHERE user_id = u.id AND revoked_at IS NOT NULL)
				|| ' events ' || (SELECT count(*) FROM outbox WHERE type = $2)
			FROM users u WHERE u.id = $1`, u.ID, event.PasswordChanged).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	request("t1")
	before := state()
	if _, err := db.ResetPassword(ctx, []byte("t1"), "new", uuid.NewString(), changedEvent(u.ID)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("another user's reset with this token: got %v, want ErrTokenInvalid", err)
	}
	if _, err := db.ResetPassword(ctx, []byte("unknown"), "new", u.ID, changedEvent(u.ID)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("unknown token: got %v, want ErrTokenInvalid", err)
	}
	if got := state(); got != before {
		t.Fatalf("refused resets changed %q into %q", before, got)
	}

	ch, err := db.ResetPassword(ctx, []byte("t1"), "new", u.ID, changedEvent(u.ID))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ch.Ended)
	slices.Sort(sessions)
	if !slices.Equal(ch.Ended, sessions) {
		t.Fatalf("ended sessions: got %v, want %v", ch.Ended, sessions)
	}
	wantBumps(t, db, ch, UserKey(u.ID), ListKey)
	if got, want := state(), fmt.Sprintf("new v%d ended 2 events 1", u.CredentialsVersion+1); got != want {
		t.Fatalf("after the reset: got %q, want %q", got, want)
	}
	if _, err := db.ResetPassword(ctx, []byte("t1"), "newer", u.ID, changedEvent(u.ID)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("the token again: got %v, want ErrTokenInvalid", err)
	}
	if got, want := state(), fmt.Sprintf("new v%d ended 2 events 1", u.CredentialsVersion+1); got != want {
		t.Fatalf("after a reused token: got %q, want still %q", got, want)
	}
}

// A login that locked the user row first and commits its session while
// the reset waits for that lock: the reset's second statement reads the
// rows anew and ends that session too. Were both statements one snapshot,
// the session would outlive the password it was started with.
func TestResetEndsASessionCommittedWhileItWaited(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "racing@example.com")
	if err := db.RequestReset(ctx, u.Email, OneTimeToken{Hash: []byte("t"), Purpose: PurposeReset, TTL: time.Hour},
		event.Envelope{ID: uuid.NewString(), Type: event.ResetRequested, OccurredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// StartSession's lock and insert, held open.
	login, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer login.Rollback(context.Background())
	sid := uuid.NewString()
	if _, err := login.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := login.Exec(ctx, `INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')`, sid, u.ID); err != nil {
		t.Fatal(err)
	}

	type result struct {
		ch  Change
		err error
	}
	reset := make(chan result, 1)
	go func() {
		ch, err := db.ResetPassword(ctx, []byte("t"), "new", u.ID, changedEvent(u.ID))
		reset <- result{ch, err}
	}()
	testenv.Eventually(t, 10*time.Second, func() string {
		if count(t, db, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
			return "the reset is not waiting for the login's lock"
		}
		return ""
	})
	if err := login.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	r := <-reset
	if r.err != nil || !slices.Equal(r.ch.Ended, []string{sid}) {
		t.Fatalf("reset: ended %v, %v; want the racing login's session %s", r.ch.Ended, r.err, sid)
	}
	if n := count(t, db, `SELECT count(*) FROM sessions WHERE id = $1 AND revoked_at IS NOT NULL`, sid); n != 1 {
		t.Fatalf("the racing login's session is still live")
	}
}

func TestRefreshReuseEndsTheSessionDurably(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	sid := uuid.NewString()
	_, _, _, _, err := db.Register(ctx, NewUser{Email: "s@example.com", PasswordHash: "h"},
		NewSession{ID: sid, Lifetime: time.Hour}, OneTimeToken{Hash: []byte("t"), Purpose: PurposeVerify, TTL: time.Hour},
		event.Envelope{ID: uuid.NewString(), Type: event.UserRegistered, OccurredAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for counter := range int64(3) {
		if _, err := db.Refresh(ctx, sid, counter, time.Minute, time.Hour); err != nil {
			t.Fatalf("rotation at %d: %v", counter, err)
		}
	}
	// Counter 2 is the predecessor (current is 3): same successor, no change.
	r, err := db.Refresh(ctx, sid, 2, time.Minute, time.Hour)
	if err != nil || r.Session.RefreshCounter != 3 {
		t.Fatalf("grace replay: got counter %d, %v; want 3", r.Session.RefreshCounter, err)
	}
	if _, err := db.Refresh(ctx, sid, 1, time.Minute, time.Hour); !errors.Is(err, ErrReuse) {
		t.Fatalf("two generations old: got %v, want ErrReuse", err)
	}
	if n := count(t, db, `SELECT count(*) FROM revoked_sessions WHERE session_id = $1`, sid); n != 1 {
		t.Fatalf("revocation rows: got %d, want 1 (the reuse must commit it)", n)
	}
	if _, err := db.Refresh(ctx, sid, 3, time.Minute, time.Hour); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("after reuse: got %v, want ErrSessionEnded", err)
	}
}

func TestPruneKeepsWhatRetentionKeeps(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	u := newUser(t, db, "p@example.com")
	for _, s := range []struct {
		id      string
		expires string
	}{{uuid.NewString(), "-2 days"}, {uuid.NewString(), "1 day"}} {
		if _, err := db.pool.Exec(ctx, `INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + $3::interval)`, s.id, u.ID, s.expires); err != nil {
			t.Fatal(err)
		}
	}
	db.pool.Exec(ctx, `INSERT INTO revoked_sessions (session_id, revoked_at) VALUES ($1, now() - interval '1 hour'), ($2, now())`, uuid.NewString(), uuid.NewString())
	deleted, err := db.Prune(ctx, Retention{Revocations: 30 * time.Minute, Ended: 24 * time.Hour, Published: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if deleted["sessions"] != 1 || deleted["revoked_sessions"] != 1 {
		t.Fatalf("got %v, want one expired session and one old revocation deleted", deleted)
	}
	if n := count(t, db, `SELECT count(*) FROM sessions`) + count(t, db, `SELECT count(*) FROM revoked_sessions`); n != 2 {
		t.Fatalf("rows left: got %d, want 2", n)
	}
}

// BenchmarkRegister is one registration's writes: account, session,
// verification token, cache bump and event.
func BenchmarkRegister(b *testing.B) {
	db := openBenchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		sid := uuid.NewString()
		if _, _, _, _, err := db.Register(ctx, NewUser{ID: uuid.NewString(), Email: fmt.Sprintf("b%d@example.com", i), PasswordHash: "h"},
			NewSession{ID: sid, Lifetime: time.Hour}, OneTimeToken{Hash: []byte(sid), Purpose: PurposeVerify, TTL: time.Hour},
			event.Envelope{ID: uuid.NewString(), Type: event.UserRegistered, OccurredAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshRotation is one refresh: the session row locked, checked
// and moved on, in one transaction.
func BenchmarkRefreshRotation(b *testing.B) {
	db := openBenchDB(b)
	ctx := context.Background()
	sid := uuid.NewString()
	if _, _, _, _, err := db.Register(ctx, NewUser{Email: "bench@example.com", PasswordHash: "h"},
		NewSession{ID: sid, Lifetime: time.Hour}, OneTimeToken{Hash: []byte("t"), Purpose: PurposeVerify, TTL: time.Hour},
		event.Envelope{ID: uuid.NewString(), Type: event.UserRegistered, OccurredAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	var counter int64
	b.ReportAllocs()
	for b.Loop() {
		r, err := db.Refresh(ctx, sid, counter, time.Second, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		counter = r.Session.RefreshCounter
	}
}

// wantBumps checks that a write's Change names the cache keys it must bump,
// and the rows that record exactly those bumps.
func wantBumps(t *testing.T, db *DB, ch Change, keys ...string) {
	t.Helper()
	if !slices.Equal(ch.BumpKeys, keys) {
		t.Fatalf("bump keys: got %q, want %q", ch.BumpKeys, keys)
	}
	rows, _ := db.pool.Query(t.Context(), `SELECT key FROM cache_bumps WHERE id = ANY($1) ORDER BY id`, ch.BumpIDs)
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(recorded, keys) {
		t.Fatalf("rows named by the bump ids %v: got %q, %v; want %q", ch.BumpIDs, recorded, err, keys)
	}
}

// BenchmarkStartSession is a login's write: a session started under the
// user row's lock, for the credentials version the login verified.
func BenchmarkStartSession(b *testing.B) {
	db := openBenchDB(b)
	ctx := context.Background()
	u := newUser(b, db, "login@example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := db.StartSession(ctx, u.ID, u.CredentialsVersion, NewSession{ID: uuid.NewString(), Lifetime: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResetPassword is a reset confirmation's write: the token used,
// the password set, the sessions ended, the cache bumps and the event
// recorded. Requesting each token is not timed.
func BenchmarkResetPassword(b *testing.B) {
	db := openBenchDB(b)
	ctx := context.Background()
	u := newUser(b, db, "reset@example.com")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		token := []byte(uuid.NewString())
		if err := db.RequestReset(ctx, u.Email, OneTimeToken{Hash: token, Purpose: PurposeReset, TTL: time.Hour},
			event.Envelope{ID: uuid.NewString(), Type: event.ResetRequested, OccurredAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := db.ResetPassword(ctx, token, uuid.NewString(), u.ID, changedEvent(u.ID)); err != nil {
			b.Fatal(err)
		}
	}
}

func changedEvent(userID string) event.Envelope {
	return event.Envelope{ID: uuid.NewString(), Type: event.PasswordChanged, OccurredAt: time.Now(), UserID: userID}
}

// A bump row younger than the grace is its writer's to apply and delete:
// no other node bypasses its key or bumps it again; an older one is stuck,
// and is both.
func TestOnlyBumpsOlderThanTheGraceArePending(t *testing.T) {
	db := openTestDB(t)
	ctx := t.Context()
	if _, err := db.pool.Exec(ctx, `
		INSERT INTO cache_bumps (key, created_at) VALUES ('user:young', now()), ('user:stuck', now() - interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	if keys, err := db.PendingBumps(ctx, time.Second); err != nil || !slices.Equal(keys, []string{"user:stuck"}) {
		t.Fatalf("pending: got %q, %v; want only the stuck key", keys, err)
	}
	var applied []string
	n, err := db.ApplyBumps(ctx, time.Second, func(keys []string) error { applied = keys; return nil })
	if err != nil || n != 1 || !slices.Equal(applied, []string{"user:stuck"}) {
		t.Fatalf("applied: got %d %q, %v; want only the stuck key", n, applied, err)
	}
	var left []string
	rows, _ := db.pool.Query(ctx, `SELECT key FROM cache_bumps`)
	if left, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || !slices.Equal(left, []string{"user:young"}) {
		t.Fatalf("rows after applying: got %q, %v; want the young one alone", left, err)
	}
	if keys, err := db.PendingBumps(ctx, 0); err != nil || !slices.Equal(keys, []string{"user:young"}) {
		t.Fatalf("pending with no grace: got %q, %v; want the young key", keys, err)
	}
}
