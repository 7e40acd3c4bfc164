package migrations

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pressly/goose/v3"
	"github.com/usher-auth/usher/internal/testenv"
)

// fresh creates an empty database for the test and returns its URL and an
// open handle on it.
func fresh(t *testing.T) (string, *sql.DB) {
	t.Helper()
	url := testenv.Database(t)
	return url, openDB(t, url)
}

func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, _, err := open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after testenv's drop, so it runs first.
	t.Cleanup(func() { db.Close() })
	return db
}

// known is the versions of the embedded migrations, ascending.
func known(t *testing.T) []int64 {
	t.Helper()
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var vs []int64
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	if len(vs) < 3 {
		t.Fatalf("got %d migrations, want at least 3 so down and goto tests mean something", len(vs))
	}
	return vs
}

// run runs a migrate subcommand and fails the test if it fails.
func run(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, err := command(url, args...)
	if err != nil {
		t.Fatalf("migrate %s: %v\noutput:\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func command(url string, args ...string) (string, error) {
	var out bytes.Buffer
	err := Command(context.Background(), url, args, &out)
	return out.String(), err
}

// versionRows returns goose's rows, version by version, in the order they
// are stored; the zero row included.
func versionRows(t *testing.T, db *sql.DB) []int64 {
	t.Helper()
	rows, err := db.Query("SELECT version_id FROM goose_db_version ORDER BY version_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func dump(t *testing.T, db *sql.DB) schema {
	t.Helper()
	s, err := dumpSchema(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tableNames(s schema) []string {
	var names []string
	for _, o := range s {
		if o.kind == "table" {
			names = append(names, o.table)
		}
	}
	slices.Sort(names)
	return names
}

func versionOf(t *testing.T, url string) string {
	t.Helper()
	return strings.TrimSpace(run(t, url, "version"))
}

func TestUpThenDownToZeroThenUpGivesTheSameSchema(t *testing.T) {
	t.Parallel()
	url, db := fresh(t)

	if err := Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	first := dump(t, db)
	wantTables := []string{"cache_bumps", "one_time_tokens", "outbox", "reset_requests", "revoked_sessions", "sent_emails", "sessions", "signing_keys", "users"}
	if got := tableNames(first); !slices.Equal(got, wantTables) {
		t.Fatalf("after up: got tables %v, want %v", got, wantTables)
	}

	run(t, url, "goto", "0")
	if got := dump(t, db); len(got) != 0 {
		t.Fatalf("after goto 0: got %d schema objects, want none: %v", len(got), tableNames(got))
	}
	if got := versionOf(t, url); got != "0" {
		t.Fatalf("after goto 0: got version %s, want 0", got)
	}

	run(t, url, "up")
	if diffs := diffSchemas(first, dump(t, db)); len(diffs) > 0 {
		t.Fatalf("up, goto 0, up: got a different schema:\n%s", strings.Join(diffs, "\n"))
	}
}

func TestSchemaConstraints(t *testing.T) {
	t.Parallel()
	_, db := fresh(t)
	if err := Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	const user = `INSERT INTO users (id, email, password_hash) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'x')`
	if _, err := db.Exec(user); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		stmt    string
		wantErr string // constraint the statement must violate, "" if it must succeed
	}{
		{"upper-case email", `INSERT INTO users (email, password_hash) VALUES ('B@example.com', 'x')`, "users_email_lower"},
		{"duplicate email", `INSERT INTO users (email, password_hash) VALUES ('a@example.com', 'x')`, "users_email_key"},
		{"unknown role", `INSERT INTO users (email, password_hash, role) VALUES ('c@example.com', 'x', 'root')`, "users_role_check"},
		{"admin role", `INSERT INTO users (email, password_hash, role) VALUES ('d@example.com', 'x', 'admin')`, ""},
		{"unknown purpose", `INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) VALUES ('\x01', '00000000-0000-0000-0000-000000000001', 'login', now())`, "one_time_tokens_purpose_check"},
		{"session of nobody", `INSERT INTO sessions (id, user_id, expires_at) VALUES (gen_random_uuid(), gen_random_uuid(), now())`, "sessions_user_id_fkey"},
		{"revocation of unknown session", `INSERT INTO revoked_sessions (session_id) VALUES (gen_random_uuid())`, ""},
		{"event of no user", `INSERT INTO outbox (id, type, user_id, payload) VALUES (gen_random_uuid(), 'user.deleted', gen_random_uuid(), '{}')`, ""},
	}
	for _, tt := range tests {
		_, err := db.Exec(tt.stmt)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want success", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v, want a violation of %s", tt.name, err, tt.wantErr)
		}
	}

	// Deleting a user takes its sessions and tokens, not its revocations or events.
	if _, err := db.Exec(`INSERT INTO sessions (id, user_id, expires_at) VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM users WHERE id = '00000000-0000-0000-0000-000000000001'`); err != nil {
		t.Fatal(err)
	}
	var sessions, revoked, events int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM revoked_sessions), (SELECT count(*) FROM outbox)`).Scan(&sessions, &revoked, &events); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 || revoked != 1 || events != 1 {
		t.Fatalf("after deleting the user: got %d sessions, %d revocations, %d events; want 0, 1, 1", sessions, revoked, events)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	url, db := fresh(t)
	run(t, url, "up")

	out := run(t, url, "check")
	if !strings.Contains(out, "no drift") {
		t.Fatalf("check after up: got output %q, want it to say no drift", out)
	}

	if _, err := db.Exec("ALTER TABLE users ADD COLUMN x int"); err != nil {
		t.Fatal(err)
	}
	out, err := command(url, "check")
	if err == nil {
		t.Fatalf("check after adding users.x: got no error, want drift; output:\n%s", out)
	}
	if !strings.Contains(out, "only in the database:   column users.x (integer null)") {
		t.Fatalf("check after adding users.x: got output\n%s\nwant it to name column users.x", out)
	}
	if n := strings.Count(out, "\n  "); n != 1 {
		t.Fatalf("check after adding users.x: got %d differences, want 1; output:\n%s", n, out)
	}
}

func TestCheckReportsEachKindOfDrift(t *testing.T) {
	t.Parallel()
	url, db := fresh(t)
	run(t, url, "up")
	for _, stmt := range []string{
		"DROP TABLE cache_bumps",
		"CREATE TABLE extra (id int)",
		"ALTER TABLE users ALTER COLUMN name DROP DEFAULT",
		"DROP INDEX sessions_expires_at_idx",
		"ALTER TABLE users DROP CONSTRAINT users_role_check",
		"ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'admin', 'root'))",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	out, err := command(url, "check")
	if err == nil {
		t.Fatalf("got no error, want drift; output:\n%s", out)
	}
	for _, want := range []string{
		"only in the migrations: table cache_bumps\n",
		"only in the database:   table extra\n",
		`differs: column users.name: the migrations make "text not null default ''::text", the database has "text not null"`,
		"only in the migrations: index sessions.sessions_expires_at_idx",
		"differs: constraint users.users_role_check",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got output\n%s\nwant it to contain %q", out, want)
		}
	}
	if strings.Contains(out, "column extra.id") || strings.Contains(out, "cache_bumps.") {
		t.Errorf("got output\n%s\nwant the parts of a whole missing or extra table left out", out)
	}
}

func TestDown(t *testing.T) {
	t.Parallel()
	vs := known(t)
	latest := vs[len(vs)-1]
	tests := []struct {
		args []string
		want int64
	}{
		{[]string{"down"}, vs[len(vs)-2]},
		{[]string{"down", "1"}, vs[len(vs)-2]},
		{[]string{"down", "2"}, vs[len(vs)-3]},
		{[]string{"down", fmt.Sprint(len(vs))}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			t.Parallel()
			url, _ := fresh(t)
			run(t, url, "up")
			out := run(t, url, tt.args...)
			if got := versionOf(t, url); got != fmt.Sprint(tt.want) {
				t.Fatalf("got version %s, want %d; output:\n%s", got, tt.want, out)
			}
			if !strings.Contains(out, fmt.Sprintf("down %05d_", latest)) {
				t.Fatalf("got output\n%s\nwant it to report rolling back %d", out, latest)
			}
		})
	}

	t.Run("more than applied", func(t *testing.T) {
		t.Parallel()
		url, _ := fresh(t)
		run(t, url, "goto", fmt.Sprint(vs[0]))
		out, err := command(url, "down", "2")
		if err == nil || !strings.Contains(err.Error(), "only 1 applied") {
			t.Fatalf("got %v, want an error saying only 1 is applied; output:\n%s", err, out)
		}
		if got := versionOf(t, url); got != fmt.Sprint(vs[0]) {
			t.Fatalf("got version %s, want %d: a refused down must not roll back anything", got, vs[0])
		}
	})
}

func TestGoto(t *testing.T) {
	t.Parallel()
	vs := known(t)
	url, db := fresh(t)
	// Each step starts where the previous one left off.
	steps := []struct {
		target     int64
		wantTables []string
	}{
		{vs[0], []string{"one_time_tokens", "revoked_sessions", "sessions", "users"}},
		{vs[2], []string{"cache_bumps", "one_time_tokens", "outbox", "revoked_sessions", "sent_emails", "sessions", "signing_keys", "users"}},
		{vs[1], []string{"cache_bumps", "one_time_tokens", "outbox", "revoked_sessions", "sent_emails", "sessions", "users"}},
		{vs[1], []string{"cache_bumps", "one_time_tokens", "outbox", "revoked_sessions", "sent_emails", "sessions", "users"}},
		{0, nil},
	}
	for _, st := range steps {
		out := run(t, url, "goto", fmt.Sprint(st.target))
		if got := versionOf(t, url); got != fmt.Sprint(st.target) {
			t.Fatalf("goto %d: got version %s, want %d; output:\n%s", st.target, got, st.target, out)
		}
		if got := tableNames(dump(t, db)); !slices.Equal(got, st.wantTables) {
			t.Fatalf("goto %d: got tables %v, want %v", st.target, got, st.wantTables)
		}
	}

	out, err := command(url, "goto", "42")
	if err == nil || !strings.Contains(err.Error(), "no migration has version 42") {
		t.Fatalf("goto 42: got %v, want an error naming version 42; output:\n%s", err, out)
	}
}

func TestForce(t *testing.T) {
	t.Parallel()
	vs := known(t)
	latest := vs[len(vs)-1]
	url, db := fresh(t)

	run(t, url, "force", fmt.Sprint(vs[1]))
	if got, want := versionRows(t, db), []int64{0, vs[0], vs[1]}; !slices.Equal(got, want) {
		t.Fatalf("force %d: got version rows %v, want %v", vs[1], got, want)
	}
	if got := tableNames(dump(t, db)); len(got) != 0 {
		t.Fatalf("force %d: got tables %v, want none: force must not run migrations", vs[1], got)
	}

	// Migrating on runs only what comes after the forced version.
	out := run(t, url, "goto", fmt.Sprint(vs[2]))
	if got := tableNames(dump(t, db)); !slices.Equal(got, []string{"signing_keys"}) {
		t.Fatalf("goto %d after force: got tables %v, want only signing_keys; output:\n%s", vs[2], got, out)
	}

	// force down records without rolling back, and clears what a newer usher recorded.
	if _, err := db.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)"); err != nil {
		t.Fatal(err)
	}
	run(t, url, "force", "0")
	if got, want := versionRows(t, db), []int64{0}; !slices.Equal(got, want) {
		t.Fatalf("force 0: got version rows %v, want %v", got, want)
	}
	if got := tableNames(dump(t, db)); !slices.Equal(got, []string{"signing_keys"}) {
		t.Fatalf("force 0: got tables %v, want signing_keys still there", got)
	}

	run(t, url, "force", fmt.Sprint(latest))
	if got := versionOf(t, url); got != fmt.Sprint(latest) {
		t.Fatalf("force %d: got version %s, want %d", latest, got, latest)
	}

	if _, err := command(url, "force", "42"); err == nil || !strings.Contains(err.Error(), "no migration has version 42") {
		t.Fatalf("force 42: got %v, want an error naming version 42", err)
	}
}

func TestStatusAndVersion(t *testing.T) {
	t.Parallel()
	vs := known(t)
	url, _ := fresh(t)

	if got := versionOf(t, url); got != "0" {
		t.Fatalf("fresh database: got version %s, want 0", got)
	}
	run(t, url, "goto", fmt.Sprint(vs[1]))
	if got := versionOf(t, url); got != fmt.Sprint(vs[1]) {
		t.Fatalf("after goto %d: got version %s, want %d", vs[1], got, vs[1])
	}

	out := run(t, url, "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(vs)+1 {
		t.Fatalf("got %d status lines, want a header and %d migrations:\n%s", len(lines), len(vs), out)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"VERSION", "STATE", "APPLIED", "AT", "MIGRATION"}) {
		t.Fatalf("got header %q, want VERSION STATE APPLIED AT MIGRATION", lines[0])
	}
	for i, v := range vs {
		f := strings.Fields(lines[i+1])
		wantState := "pending"
		wantFields := 4 // version, state, "-", file
		if v <= vs[1] {
			wantState = "applied"
			wantFields = 5 // the time is a date and a clock
		}
		if len(f) != wantFields || f[0] != fmt.Sprint(v) || f[1] != wantState || !strings.HasPrefix(f[len(f)-1], fmt.Sprintf("%05d_", v)) {
			t.Errorf("status line %d: got %q, want version %d %s with its file name", i+1, lines[i+1], v, wantState)
		}
	}
}

func TestUnknownVersion(t *testing.T) {
	t.Parallel()
	vs := known(t)
	latest := vs[len(vs)-1]
	url, db := fresh(t)
	run(t, url, "up")
	if _, err := db.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)"); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("database is at version 99 but this usher knows migrations up to %d: "+
		"run the usher build that applied it, or `usher migrate force %d` if you rolled it back by hand", latest, latest)

	tests := []struct {
		name string
		run  func() (string, error)
	}{
		{"Up", func() (string, error) { return "", Up(context.Background(), db) }},
		{"up", func() (string, error) { return command(url, "up") }},
		{"status", func() (string, error) { return command(url, "status") }},
		{"version", func() (string, error) { return command(url, "version") }},
		{"down", func() (string, error) { return command(url, "down") }},
		{"goto", func() (string, error) { return command(url, "goto", "1") }},
	}
	for _, tt := range tests {
		out, err := tt.run()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v, want one containing %q", tt.name, err, want)
		}
		if tt.name == "status" && !strings.Contains(out, "99") {
			t.Errorf("status: got output\n%s\nwant it to list version 99", out)
		}
	}
	if got, want := versionRows(t, db), append([]int64{0}, append(vs, 99)...); !slices.Equal(got, want) {
		t.Fatalf("got version rows %v, want %v: refused commands must change nothing", got, want)
	}
}

func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	url := testenv.Database(t)
	dbs := []*sql.DB{openDB(t, url), openDB(t, url)}

	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() { errs[i] = Up(context.Background(), db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up %d: %v", i, err)
		}
	}
	want := append([]int64{0}, known(t)...)
	if got := versionRows(t, dbs[0]); !slices.Equal(got, want) {
		t.Fatalf("got version rows %v, want %v: each version once", got, want)
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing []string
		args     []string
		wantFile string
	}{
		{"empty dir", nil, []string{"create", "add_locale"}, "00001_add_locale.sql"},
		{"after existing", []string{"00001_init.sql", "00007_more.sql", "README.md"}, []string{"create", "Add user Locale"}, "00008_add_user_locale.sql"},
		{"dir flag first", []string{"00002_x.sql"}, []string{"create", "--dir", "DIR", "thing"}, "00003_thing.sql"},
		{"dir flag with equals", nil, []string{"create", "thing", "--dir=DIR"}, "00001_thing.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, name := range tt.existing {
				if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := slices.Clone(tt.args)
			hasDir := false
			for i, a := range args {
				if strings.Contains(a, "DIR") {
					args[i] = strings.ReplaceAll(a, "DIR", dir)
					hasDir = true
				}
			}
			if !hasDir {
				args = append(args, "--dir", dir)
			}
			out := run(t, "", args...)
			path := filepath.Join(dir, tt.wantFile)
			if want := "created " + path + "\n"; out != want {
				t.Fatalf("got output %q, want %q", out, want)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if s := string(b); !strings.HasPrefix(s, "-- +goose Up\n") || !strings.Contains(s, "\n-- +goose Down\n") || strings.Count(s, "+goose") != 2 {
				t.Fatalf("got file\n%s\nwant a goose template with exactly an Up and a Down annotation", s)
			}
		})
	}

	t.Run("missing dir", func(t *testing.T) {
		t.Parallel()
		_, err := command("", "create", "x", "--dir", filepath.Join(t.TempDir(), "nope"))
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("got %v, want an error saying the directory does not exist", err)
		}
	})
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	// None of these reach the database: the URL is never dialled.
	const url = "postgres://nobody@127.0.0.1:1/none"
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"up", "now"}, "up takes no arguments"},
		{[]string{"down", "0"}, "N must be a whole number"},
		{[]string{"down", "x"}, "N must be a whole number"},
		{[]string{"down", "1", "2"}, "at most one argument"},
		{[]string{"goto"}, "goto takes one version"},
		{[]string{"goto", "-1"}, "V must be a version number"},
		{[]string{"force", "x"}, "V must be a version number"},
		{[]string{"version", "x"}, "version takes no arguments"},
		{[]string{"status", "x"}, "status takes no arguments"},
		{[]string{"check", "x"}, "check takes no arguments"},
		{[]string{"create"}, "create needs a NAME"},
		{[]string{"create", "a", "b"}, "create takes one NAME"},
		{[]string{"create", "a", "--dri", "x"}, `unknown flag "--dri"`},
		{[]string{"create", "a", "--dir"}, "--dir needs a directory"},
	}
	for _, tt := range tests {
		_, err := command(url, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("migrate %v: got %v, want an error containing %q", tt.args, err, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), "usage: usher migrate") {
			t.Errorf("migrate %v: got %v, want the usage in the error", tt.args, err)
		}
	}
}
