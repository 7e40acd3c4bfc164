package benchmarks

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the migrations

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/internal/testenv"
)

// TestResetTokensAreUnsealedFromTheOutbox writes sealed reset events as
// the server does and reads the tokens back with the event key: the latest
// token of an address wins, other types and rows before the mark are
// ignored, and a key that opens nothing is named as the problem.
func TestResetTokensAreUnsealedFromTheOutbox(t *testing.T) {
	ctx := context.Background()
	url := testdb.New(t)
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := event.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	insert := func(typ, to, token string) {
		t.Helper()
		env := event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC()}
		if err := sealer.Seal(&env, event.Mail{To: to, Purpose: typ, Token: token}); err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(env)
		if _, err := sqlDB.ExecContext(ctx, `INSERT INTO outbox (id, type, payload) VALUES ($1, $2, $3)`, env.ID, typ, payload); err != nil {
			t.Fatalf("insert outbox row: %v", err)
		}
	}
	insert(event.ResetRequested, "a@example.com", "before-the-mark")
	var mark int64
	if err := sqlDB.QueryRowContext(ctx, `SELECT max(seq) FROM outbox`).Scan(&mark); err != nil {
		t.Fatal(err)
	}
	insert(event.ResetRequested, "a@example.com", "a-old")
	insert(event.VerificationRequested, "b@example.com", "not-a-reset")
	insert(event.ResetRequested, "b@example.com", "b-1")
	insert(event.ResetRequested, "a@example.com", "a-new")
	insert(event.ResetRequested, "someone-else@example.com", "other")

	f, err := newFixture(ctx, Options{Database: url, Base: "http://127.0.0.1:1", EventKey: base64.StdEncoding.EncodeToString(key), Cores: 1}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	tokens, err := f.readResetTokens(ctx, mark, []string{"a@example.com", "B@example.com"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tokens, ",") != "a-new,b-1" {
		t.Fatalf("got tokens %q, want [a-new b-1]", tokens)
	}
	if _, err := f.readResetTokens(ctx, mark, []string{"c@example.com"}, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "found 0 of 1") {
		t.Fatalf("missing address: got %v, want a 'found 0 of 1' error", err)
	}

	other := make([]byte, 32)
	rand.Read(other)
	f.sealer, _ = event.NewSealer(other)
	if _, err := f.readResetTokens(ctx, mark, []string{"a@example.com"}, time.Second); err == nil || !strings.Contains(err.Error(), "USHER_EVENT_KEY") {
		t.Fatalf("wrong key: got %v, want an error naming USHER_EVENT_KEY", err)
	}
}

// Before a step the database is vacuumed exactly when its server runs
// without autovacuum: with it on nothing happens; with it off the vacuum
// runs and the dead rows of a churned table are gone after it.
func TestStepsVacuumOnlyWithoutAutovacuum(t *testing.T) {
	ctx := t.Context()
	url := testdb.New(t)
	f, err := newFixture(ctx, Options{Database: url, Base: "http://127.0.0.1:1", Cores: 1}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	var autovacuum string
	if err := f.db.QueryRow(ctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	if f.autovacuumOff != (autovacuum == "off") {
		t.Fatalf("autovacuum %s: the fixture read autovacuumOff %v", autovacuum, f.autovacuumOff)
	}
	if _, err := f.db.Exec(ctx, `INSERT INTO cache_bumps (key) SELECT 'k' FROM generate_series(1, 1000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `DELETE FROM cache_bumps`); err != nil {
		t.Fatal(err)
	}
	// stat reads one of cache_bumps' statistics.
	stat := func(column string) int64 {
		t.Helper()
		var n int64
		if err := f.db.QueryRow(ctx, `SELECT `+column+` FROM pg_stat_user_tables WHERE relname = 'cache_bumps'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	vacuums := func() int64 { return stat("vacuum_count") }

	// The DELETE's dead rows reach the statistics when its backend flushes
	// them, which may be a while; the vacuum must come after.
	testenv.Eventually(t, 15*time.Second, func() string {
		if dead := stat("n_dead_tup"); dead < 1000 {
			return fmt.Sprintf("%d dead rows counted, want the 1000 deleted", dead)
		}
		return ""
	})
	f.autovacuumOff = false
	if vacuumed, err := f.vacuum(ctx); err != nil || vacuumed || vacuums() != 0 {
		t.Fatalf("autovacuum on: vacuumed %v, %v, %d vacuums; want none", vacuumed, err, vacuums())
	}
	f.autovacuumOff = true
	if vacuumed, err := f.vacuum(ctx); err != nil || !vacuumed || vacuums() != 1 {
		t.Fatalf("autovacuum off: vacuumed %v, %v, %d vacuums; want one", vacuumed, err, vacuums())
	}
	if dead := stat("n_dead_tup"); dead != 0 {
		t.Fatalf("cache_bumps after the vacuum: %d dead rows, want 0", dead)
	}
}
