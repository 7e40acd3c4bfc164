package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/usher-auth/usher/internal/testenv"
)

// usher runs a CLI command in-process against the test's environment.
func usher(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), append([]string{"usher"}, args...), testenv.Env(env...), strings.NewReader(stdin), &out, &errOut); err != nil {
		t.Fatalf("usher %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// metric reads one sample from a process's /metrics.
func metric(t *testing.T, c *child, sample string) float64 {
	t.Helper()
	_, body := get(c.admin+"/metrics", nil)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// adminStack starts serve and an admin created with the CLI.
func adminStack(t *testing.T) (api, *child, []string, pair) {
	env := stack(t, fastHashing...)
	c := start(t, "serve", env...)
	c.waitReady(t)
	a := api{t, c.base}
	usher(t, env, "admin password long\n", "users", "create-admin", "--email", "root@example.com")
	admin := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "root@example.com", "password": "admin password long"}).want(t, "admin login", 200).pair()
	return a, c, env, admin
}

func TestAdminRoutes(t *testing.T) {
	a, _, _, admin := adminStack(t)
	user := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "u@example.com", "password": "plain user password"}).want(t, "register", 201).pair()

	a.do("GET", "/v1/admin/users", "", nil).want(t, "no token", 401, "unauthorized")
	a.do("GET", "/v1/admin/users", user.access, nil).want(t, "user token", 403, "forbidden")
	a.do("GET", "/v1/admin/users/"+user.userID, admin.access, nil).want(t, "admin get", 200)
	a.do("GET", "/v1/admin/users/not-a-uuid", admin.access, nil).want(t, "bad id", 404, "not_found")
	a.do("GET", "/v1/admin/users?limit=0", admin.access, nil).want(t, "limit 0", 400, "invalid_request")
	a.do("GET", "/v1/admin/users?cursor=bogus", admin.access, nil).want(t, "bad cursor", 400, "invalid_request")
	a.do("PATCH", "/v1/admin/users/"+user.userID, admin.access, map[string]any{"role": "root"}).want(t, "bad role", 422, "validation_failed")

	// Disabling ends the sessions; the password then gets 403, a wrong one 401.
	a.do("PATCH", "/v1/admin/users/"+user.userID, admin.access, map[string]any{"disabled": true}).want(t, "disable", 200)
	a.rejectedWithin("disabled user's token", user.access, time.Second)
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "u@example.com", "password": "wrong password!"}).want(t, "disabled, wrong password", 401, "invalid_credentials")
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "u@example.com", "password": "plain user password"}).want(t, "disabled, right password", 403, "account_disabled")
	a.do("PATCH", "/v1/admin/users/"+user.userID, admin.access, map[string]any{"disabled": false}).want(t, "enable", 200)

	// A role change ends the user's sessions.
	user = a.do("POST", "/v1/auth/login", "", map[string]string{"email": "u@example.com", "password": "plain user password"}).want(t, "login", 200).pair()
	a.do("PATCH", "/v1/admin/users/"+user.userID, admin.access, map[string]any{"role": "admin"}).want(t, "promote", 200)
	a.rejectedWithin("token from before the role change", user.access, time.Second)

	a.do("DELETE", "/v1/admin/users/"+user.userID+"/sessions", admin.access, nil).want(t, "end sessions", 204)
	a.do("DELETE", "/v1/admin/users/"+user.userID, admin.access, nil).want(t, "delete", 204)
	a.do("GET", "/v1/admin/users/"+user.userID, admin.access, nil).want(t, "deleted", 404, "not_found")
	a.do("DELETE", "/v1/admin/users/"+user.userID, admin.access, nil).want(t, "delete again", 404, "not_found")
}

func TestAdminListPagesEachUserOnce(t *testing.T) {
	a, _, env, admin := adminStack(t)
	var lines strings.Builder
	hash, _ := bcrypt.GenerateFromPassword([]byte("imported password"), 4)
	for i := range 250 {
		fmt.Fprintf(&lines, `{"email":"p%03d@page.example","name":"P %d","hash":%q,"email_verified":true}`+"\n", i, i, hash)
	}
	if out := usher(t, env, lines.String(), "users", "import"); !strings.Contains(out, "imported 250 of 250") {
		t.Fatalf("import: got %q", out)
	}
	seen := map[string]int{}
	cursor, pages := "", 0
	for {
		q := url.Values{"limit": {"7"}, "email_prefix": {"p"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := a.do("GET", "/v1/admin/users?"+q.Encode(), admin.access, nil).want(t, "page", 200)
		items, _ := r.body["items"].([]any)
		for _, it := range items {
			seen[it.(map[string]any)["email"].(string)]++
		}
		pages++
		cursor = r.str("next_cursor")
		if cursor == "" || pages > 100 {
			break
		}
	}
	if len(seen) != 250 {
		t.Fatalf("got %d distinct users, want 250", len(seen))
	}
	for email, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times, want once", email, n)
		}
	}
	// The prefix filters: root@example.com is not a "p" user.
	if seen["root@example.com"] != 0 {
		t.Fatal("email_prefix=p listed root@example.com")
	}
}

func TestImportedHashes(t *testing.T) {
	a, c, env, _ := adminStack(t)
	hash, _ := bcrypt.GenerateFromPassword([]byte("legacy password 1"), 4)
	usher(t, env, fmt.Sprintf(`{"email":"legacy@example.com","name":"L","hash":%q,"email_verified":false}`+"\n", strings.Replace(string(hash), "$2a$", "$2y$", 1)), "users", "import")

	before := metric(t, c, `usher_hash_duration_seconds_count{algorithm="bcrypt",op="verify"}`)
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "legacy@example.com", "password": "legacy password 1"}).want(t, "bcrypt login", 200)
	if got := metric(t, c, `usher_hash_duration_seconds_count{algorithm="bcrypt",op="verify"}`); got != before+1 {
		t.Fatalf("bcrypt verifications: got %v, want %v", got, before+1)
	}
	// Re-hashed: the next login verifies argon2id.
	argonBefore := metric(t, c, `usher_hash_duration_seconds_count{algorithm="argon2id",op="verify"}`)
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "legacy@example.com", "password": "legacy password 1"}).want(t, "login after re-hash", 200)
	if got := metric(t, c, `usher_hash_duration_seconds_count{algorithm="argon2id",op="verify"}`); got != argonBefore+1 {
		t.Fatalf("argon2id verifications after re-hash: got %v, want %v", got, argonBefore+1)
	}

	// Absurd parameters are refused at import, before anything spends them.
	var out, errOut bytes.Buffer
	absurd := `{"email":"huge@example.com","name":"","hash":"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g","email_verified":false}` + "\n"
	err := run(t.Context(), []string{"usher", "users", "import"}, testenv.Env(env...), strings.NewReader(absurd), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "huge@example.com") {
		t.Fatalf("import of a 4 GiB argon2id hash: got %v, want a refusal naming the line", err)
	}
}

// An unknown email costs exactly one hash, like a wrong password.
func TestUnknownEmailSpendsOneHash(t *testing.T) {
	a, c := serveAPI(t)
	sample := `usher_hash_duration_seconds_count{algorithm="argon2id",op="verify"}`
	before := metric(t, c, sample)
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "whatever it is"}).want(t, "unknown email", 401, "invalid_credentials")
	if got := metric(t, c, sample); got != before+1 {
		t.Fatalf("hashes for an unknown email: got %v, want %v", got-before, 1)
	}
}
