package benchmarks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/mailer"
)

// The passwords of every bench user. Neither is on the common list, and a
// reset sets the second.
const (
	benchPassword = "usher-bench Kq7-vault-42"
	resetPassword = "usher-bench Rz9-reset-17"
)

// fixture prepares the data the scenarios run on: users imported in bulk
// with one precomputed hash, an admin, sessions, and reset tokens unsealed
// from the outbox.
type fixture struct {
	o      Options
	api    *client
	db     *pgxpool.Pool
	sealer *event.Sealer // nil without an event key
	hash   string        // argon2id of benchPassword with the server's parameters
	runID  string
	next   atomic.Int64
	// autovacuumOff: the server's PostgreSQL does not vacuum by itself, so
	// usher-bench does before each step (vacuum).
	autovacuumOff bool

	adminOnce  sync.Once
	adminEmail string
	adminErr   error
}

func newFixture(ctx context.Context, o Options, hash string) (*fixture, error) {
	if o.Database == "" {
		return nil, errors.New("a database URL is needed for setup (--database, or USHER_DATABASE_URL)")
	}
	db, err := pgxpool.New(ctx, o.Database)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.Ping(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", redactURL(o.Database), err)
	}
	f := &fixture{o: o, api: newClient(o.Base, 64), db: db, hash: hash, runID: randomID()}
	var autovacuum string
	if err := db.QueryRow(pctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		db.Close()
		return nil, fmt.Errorf("read autovacuum: %w", err)
	}
	f.autovacuumOff = autovacuum != "on"
	if o.EventKey != "" {
		key, err := token.ParseSecret(o.EventKey)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("event key: %w", err)
		}
		if f.sealer, err = event.NewSealer(key); err != nil {
			db.Close()
			return nil, err
		}
	}
	return f, nil
}

func (f *fixture) close() {
	f.api.close()
	f.db.Close()
}

func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// email returns a fresh address for a bench user; tag says which scenario
// owns it, so one scenario's users are never another's.
func (f *fixture) email(tag string) string {
	return fmt.Sprintf("bench-%s-%s-%d@example.com", f.runID, tag, f.next.Add(1))
}

// usher runs the usher binary with the caller's environment, the extra
// variables of Options.UsherEnv, and the database URL.
func (f *fixture) usher(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.o.Usher, args...)
	cmd.Env = append(append(os.Environ(), f.o.UsherEnv...), "USHER_DATABASE_URL="+f.o.Database)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", f.o.Usher, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// importUsers creates n verified users owned by tag with `usher users
// import`, all with the precomputed hash of benchPassword.
func (f *fixture) importUsers(ctx context.Context, tag string, n int) ([]string, error) {
	var in bytes.Buffer
	emails := make([]string, n)
	enc := json.NewEncoder(&in)
	for i := range emails {
		emails[i] = f.email(tag)
		enc.Encode(map[string]any{"email": emails[i], "name": "bench " + tag, "hash": f.hash, "email_verified": true})
	}
	if _, err := f.usher(ctx, in.Bytes(), "users", "import"); err != nil {
		return nil, fmt.Errorf("import %d %s users: %w", n, tag, err)
	}
	return emails, nil
}

// admin creates the run's admin once with `usher users create-admin`.
func (f *fixture) admin(ctx context.Context) (string, error) {
	f.adminOnce.Do(func() {
		email := f.email("admin")
		_, err := f.usher(ctx, []byte(benchPassword+"\n"), "users", "create-admin", "--email", email)
		f.adminEmail, f.adminErr = email, err
	})
	return f.adminEmail, f.adminErr
}

// session is one logged-in session. Its lock serializes refreshes, since
// each presents the token the previous one returned; it is a channel so
// that waiting for it respects a context.
type session struct {
	lock    chan struct{}
	access  string
	refresh string
	at      time.Time
	// lost is set when a refresh did not return a successor: the session
	// may have rotated without us (a timeout) or ended, so it is replaced
	// before the next step.
	lost bool
}

type tokenPair struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

func newSession(p tokenPair) *session {
	return &session{lock: make(chan struct{}, 1), access: p.Access, refresh: p.Refresh, at: time.Now()}
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// login opens one session per address, a few at a time (each costs the
// server a hash).
func (f *fixture) login(ctx context.Context, emails []string) ([]*session, error) {
	out := make([]*session, len(emails))
	err := parallel(ctx, len(emails), 2*f.o.Cores, func(i int) error {
		var p tokenPair
		o := f.setupCall(ctx, http.MethodPost, "/v1/auth/login", jsonBody(map[string]string{"email": emails[i], "password": benchPassword}), &p)
		if err := expect(o, http.StatusOK, "POST /v1/auth/login"); err != nil {
			return fmt.Errorf("log in %s: %w", emails[i], err)
		}
		out[i] = newSession(p)
		return nil
	})
	return out, err
}

// renewAfter is how old an access token may be before a step: the
// default lifetime is 15 minutes and one step lasts well under a minute.
const renewAfter = 5 * time.Minute

// renew refreshes the sessions whose access token is getting old.
func (f *fixture) renew(ctx context.Context, sessions []*session) error {
	return parallel(ctx, len(sessions), 8, func(i int) error {
		s := sessions[i]
		if time.Since(s.at) < renewAfter {
			return nil
		}
		var p tokenPair
		o := f.setupCall(ctx, http.MethodPost, "/v1/auth/refresh", jsonBody(map[string]string{"refresh_token": s.refresh}), &p)
		if err := expect(o, http.StatusOK, "POST /v1/auth/refresh"); err != nil {
			return err
		}
		s.access, s.refresh, s.at = p.Access, p.Refresh, time.Now()
		return nil
	})
}

// resetTokens requests a password reset for each address and reads the
// tokens back from the outbox rows the requests wrote, unsealed with the
// event key: the server has no switch that exposes them.
func (f *fixture) resetTokens(ctx context.Context, emails []string) ([]string, error) {
	if f.sealer == nil {
		return nil, errors.New("reset tokens need the server's USHER_EVENT_KEY (--event-key) to unseal the outbox")
	}
	var mark int64
	if err := f.db.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM outbox`).Scan(&mark); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	err := parallel(ctx, len(emails), 8, func(i int) error {
		o := f.setupCall(ctx, http.MethodPost, "/v1/auth/password-reset/request", jsonBody(map[string]string{"email": emails[i]}), nil)
		return expect(o, http.StatusAccepted, "POST /v1/auth/password-reset/request")
	})
	if err != nil {
		return nil, err
	}
	return f.readResetTokens(ctx, mark, emails, 30*time.Second)
}

// readResetTokens reads the reset tokens of emails from the outbox rows
// after seq mark, waiting up to wait for all of them; of several tokens
// for one address the latest wins, as on the server.
func (f *fixture) readResetTokens(ctx context.Context, mark int64, emails []string, wait time.Duration) ([]string, error) {
	want := make(map[string]int, len(emails))
	for i, e := range emails {
		want[strings.ToLower(e)] = i
	}
	tokens := make([]string, len(emails))
	found, foreign := 0, 0
	deadline := time.Now().Add(wait)
	for {
		rows, err := f.db.Query(ctx, `SELECT seq, payload FROM outbox WHERE type = $1 AND seq > $2 ORDER BY seq`, event.ResetRequested, mark)
		if err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		for rows.Next() {
			var (
				seq     int64
				payload []byte
				env     event.Envelope
			)
			if err := rows.Scan(&seq, &payload); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read outbox: %w", err)
			}
			mark = seq
			if err := json.Unmarshal(payload, &env); err != nil {
				continue
			}
			m, err := f.sealer.Open(&env)
			if errors.Is(err, event.ErrUnknownKey) {
				foreign++
				continue
			}
			if err != nil {
				continue
			}
			if i, ok := want[strings.ToLower(m.To)]; ok {
				if tokens[i] == "" {
					found++
				}
				tokens[i] = m.Token
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		if found == len(emails) {
			return tokens, nil
		}
		if foreign > 0 && (found == 0 && foreign >= len(emails) || time.Now().After(deadline)) {
			return nil, fmt.Errorf("%d reset events in the outbox are sealed with another key: --event-key must be the server's USHER_EVENT_KEY", foreign)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("found %d of %d reset tokens in the outbox after %v", found, len(emails), wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settle waits up to max for the outbox relay to publish every pending
// event, so that a step does not share the machine with the email work
// the previous step or its setup caused. It returns how many were left.
func (f *fixture) settle(ctx context.Context, max time.Duration) (int64, error) {
	deadline := time.Now().Add(max)
	for {
		// Unpublished events, and published emails the mailer has not sent
		// yet: a step measures its own scenario, not the previous one's mail.
		var n int64
		if err := f.db.QueryRow(ctx, `
			SELECT count(*) FROM outbox o
			WHERE o.published_at IS NULL
			   OR o.type = ANY($1) AND NOT EXISTS (
				SELECT 1 FROM sent_emails s WHERE s.event_id = o.id AND s.sent_at IS NOT NULL)`,
			mailer.MailTypes()).Scan(&n); err != nil {
			return 0, fmt.Errorf("read outbox: %w", err)
		}
		if n == 0 || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// vacuum vacuums and analyses the server's database when its PostgreSQL
// runs with autovacuum off (the shared one of this machine does), and
// reports whether it did. usher's queue-like tables (outbox, cache_bumps,
// one-time tokens) churn: left unvacuumed they bloat, and every later step
// scans the dead rows. With autovacuum on it does nothing, and the run
// measures the server maintained as it is.
func (f *fixture) vacuum(ctx context.Context) (bool, error) {
	if !f.autovacuumOff {
		return false, nil
	}
	if _, err := f.db.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		return false, fmt.Errorf("vacuum: %w", err)
	}
	return true, nil
}

// setupCall is a setup request: a server still busy with the previous
// step may shed it (503) or drop it, so it is tried a few times.
func (f *fixture) setupCall(ctx context.Context, method, path string, body []byte, out any) Outcome {
	var o Outcome
	for attempt := range 6 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return Outcome{Err: ctx.Err()}
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			}
		}
		o = f.api.call(ctx, method, path, body, "", out)
		if o.Err == nil && o.Status != http.StatusServiceUnavailable || ctx.Err() != nil {
			return o
		}
	}
	return o
}

// parallel runs fn(0..n-1) on k workers and returns the first error.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	if k < 1 {
		k = 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(k, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// redactURL hides a password in a database URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
