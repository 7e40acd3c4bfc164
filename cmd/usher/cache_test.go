package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/mailer/mailpittest"
)

const (
	hitsUser  = `usher_cache_hits_total{kind="user"}`
	loadsUser = `usher_cache_loads_total{kind="user"}`
)

func TestSecondReadIsACacheHit(t *testing.T) {
	a, c := serveAPI(t)
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "hit@example.com", "password": "cache me if you can"}).want(t, "register", 201).pair()
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "first read", 200)
	hits, loads := metric(t, c, hitsUser), metric(t, c, loadsUser)
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "second read", 200)
	if got := metric(t, c, hitsUser); got != hits+1 {
		t.Errorf("hits: got %v, want %v", got, hits+1)
	}
	if got := metric(t, c, loadsUser); got != loads {
		t.Errorf("PostgreSQL loads on a hit: got %v more, want none", got-loads)
	}
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	a, c := serveAPI(t)
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "herd@example.com", "password": "thundering herd"}).want(t, "register", 201).pair()
	loads := metric(t, c, loadsUser)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The hold keeps the first load open until all 100 have arrived.
			r := a.doWithHook("GET", "/v1/users/me", p.access, "cache.fill.hold", nil)
			if r.status != 200 {
				t.Errorf("concurrent read: got %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	if got := metric(t, c, loadsUser); got != loads+1 {
		t.Fatalf("PostgreSQL loads for 100 concurrent misses: got %v, want 1 (hits %v, misses %v, errors %v)", got-loads,
			metric(t, c, hitsUser), metric(t, c, `usher_cache_misses_total{kind="user"}`), metric(t, c, `usher_cache_errors_total{kind="user"}`))
	}
}

// Two serve processes share the database, Redis and namespace: a write
// through one is read through the other's node.
func TestEveryWriteIsSeenThroughASecondNode(t *testing.T) {
	mp := mailpittest.Start(t)
	env := stack(t, append(fastHashing, "USHER_SMTP_URL="+mp.SMTPURL())...)
	n1 := start(t, "serve", env...)
	n1.waitReady(t)
	n2 := start(t, "serve", env...)
	n2.waitReady(t)
	a, b := api{t, n1.base}, api{t, n2.base}
	usher(t, env, "admin password long\n", "users", "create-admin", "--email", "root@example.com")
	admin := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "root@example.com", "password": "admin password long"}).want(t, "admin login", 200).pair()
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "w@example.com", "password": "written through one"}).want(t, "register", 201).pair()

	read := func(what, field string, want any) {
		t.Helper()
		r := b.do("GET", "/v1/admin/users/"+p.userID, admin.access, nil).want(t, what, 200)
		if r.body[field] != want {
			t.Fatalf("%s through the second node: got %s=%v, want %v (%s)", what, field, r.body[field], want, r.raw)
		}
	}
	listed := func(what, email string) bool {
		t.Helper()
		r := b.do("GET", "/v1/admin/users?limit=100", admin.access, nil).want(t, what, 200)
		return strings.Contains(r.raw, `"email":"`+email+`"`)
	}
	read("cached before the writes", "name", "")
	read("cached before verification", "email_verified", false)
	if !listed("list before", "w@example.com") {
		t.Fatal("registered user missing from the list")
	}

	a.do("PATCH", "/v1/users/me", p.access, map[string]string{"name": "Renamed"}).want(t, "patch", 200)
	read("profile update", "name", "Renamed")

	welcome := mailFor(t, mp, 1, "w@example.com")
	a.do("POST", "/v1/auth/verify-email/confirm", "", map[string]string{"token": tokenIn(t, welcome[0])}).want(t, "verify", 200)
	read("email verification", "email_verified", true)

	before := b.do("GET", "/v1/admin/users/"+p.userID, admin.access, nil).str("updated_at")
	a.do("POST", "/v1/users/me/password", p.access, map[string]string{"current_password": "written through one", "new_password": "a changed password"}).want(t, "password", 204)
	if after := b.do("GET", "/v1/admin/users/"+p.userID, admin.access, nil).str("updated_at"); after == before {
		t.Fatalf("password change: updated_at still %s through the second node", after)
	}

	a.do("PATCH", "/v1/admin/users/"+p.userID, admin.access, map[string]any{"disabled": true}).want(t, "disable", 200)
	read("disabling", "disabled", true)
	a.do("PATCH", "/v1/admin/users/"+p.userID, admin.access, map[string]any{"role": "admin", "disabled": false}).want(t, "role", 200)
	read("role change", "role", "admin")

	usher(t, env, "", "users", "set-role", "w@example.com", "user")
	testenv.Eventually(t, 2*time.Second, func() string {
		if r := b.do("GET", "/v1/admin/users/"+p.userID, admin.access, nil); r.body["role"] != "user" {
			return "CLI role change not seen: " + r.raw
		}
		return ""
	})

	usher(t, env, `{"email":"imported@example.com","name":"","hash":"$2a$04$abcdefghijklmnopqrstuu5JqO3bgoY9GTVh4NOUIimn8Oq/yN4q.","email_verified":false}`+"\n", "users", "import")
	testenv.Eventually(t, 2*time.Second, func() string {
		if !listed("list after import", "imported@example.com") {
			return "imported user not listed through the second node"
		}
		return ""
	})

	a.do("POST", "/v1/auth/register", "", map[string]string{"email": "new@example.com", "password": "registered later"}).want(t, "register 2", 201)
	if !listed("list after register", "new@example.com") {
		t.Fatal("registration not seen in the list through the second node")
	}

	a.do("DELETE", "/v1/admin/users/"+p.userID, admin.access, nil).want(t, "delete", 204)
	b.do("GET", "/v1/admin/users/"+p.userID, admin.access, nil).want(t, "deleted user through the second node", 404, "not_found")
}

// A fill that loaded before a write committed and stored after it must not
// be served afterwards.
func TestFillRacingAWriteIsNeverServed(t *testing.T) {
	a, _ := serveAPI(t)
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "race@example.com", "password": "racing the cache"}).want(t, "register", 201).pair()
	done := make(chan response)
	go func() { done <- a.doWithHook("GET", "/v1/users/me", p.access, "cache.fill.hold", nil) }()
	time.Sleep(300 * time.Millisecond) // the fill has loaded the old name and waits
	a.do("PATCH", "/v1/users/me", p.access, map[string]string{"name": "After"}).want(t, "patch", 200)
	if r := <-done; r.status != 200 {
		t.Fatalf("held read: got %d", r.status)
	}
	for i := range 3 {
		if r := a.do("GET", "/v1/users/me", p.access, nil); r.str("name") != "After" {
			t.Fatalf("read %d after the race: got name %q, want After", i, r.str("name"))
		}
	}
}

func TestRedisOutageOnlyDegradesTheCache(t *testing.T) {
	testenv.Require(t, "Redis")
	proxy := testenv.NewProxy(t, strings.TrimPrefix(strings.TrimSuffix(testenv.RedisURL, "/0"), "redis://"))
	a, c := serveAPI(t, "USHER_REDIS_URL=redis://"+proxy.Addr()+"/0")
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "down@example.com", "password": "redis goes away"}).want(t, "register", 201).pair()
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "warm", 200)

	proxy.Cut()
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "read during the cut", 200)
	r := a.do("GET", "/readyz", "", nil).want(t, "readyz during the cut", 200)
	if checks, _ := r.body["checks"].(map[string]any); checks["redis"] != "degraded" {
		t.Fatalf("readyz during the cut: got %s, want redis degraded", r.raw)
	}
	a.do("PATCH", "/v1/users/me", p.access, map[string]string{"name": "Written in the dark"}).want(t, "write during the cut", 200)
	if r := a.do("GET", "/v1/users/me", p.access, nil); r.str("name") != "Written in the dark" {
		t.Fatalf("read after a write during the cut: got %q", r.str("name"))
	}

	proxy.Restore()
	testenv.Eventually(t, 5*time.Second, func() string {
		if r := a.do("GET", "/v1/users/me", p.access, nil); r.str("name") != "Written in the dark" {
			return "stale value after restore: " + r.raw
		}
		before := metric(t, c, hitsUser)
		a.do("GET", "/v1/users/me", p.access, nil)
		if metric(t, c, hitsUser) <= before {
			return "no cache hits yet after restore"
		}
		return ""
	})
}

// The cache holds views, never secrets.
func TestCacheHoldsNoSecrets(t *testing.T) {
	env := stack(t, fastHashing...)
	c := start(t, "serve", env...)
	c.waitReady(t)
	a := api{t, c.base}
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "secret@example.com", "password": "nothing to hide"}).want(t, "register", 201).pair()
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "me", 200)
	usher(t, env, "admin password long\n", "users", "create-admin", "--email", "root@example.com")
	admin := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "root@example.com", "password": "admin password long"}).want(t, "admin", 200).pair()
	a.do("GET", "/v1/admin/users", admin.access, nil).want(t, "list", 200)
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "secret@example.com", "password": "wrong!"})

	ns := envValue(env, "USHER_NAMESPACE")
	opts, _ := redis.ParseURL(testenv.RedisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, ns+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys under %s: got %v, %v", ns, keys, err)
	}
	forbidden := []string{"$argon2id$", p.access, p.refresh, sid(p), admin.access, sid(admin), "secret@example.com:"}
	for _, k := range keys {
		v, _ := rdb.Get(ctx, k).Result()
		for _, f := range forbidden {
			if strings.Contains(k, f) || f != "" && strings.Contains(v, f) {
				t.Fatalf("key %s (value %.80q) contains %q", k, v, f)
			}
		}
	}
}

func TestCacheStats(t *testing.T) {
	env := stack(t, fastHashing...)
	c := start(t, "serve", env...)
	c.waitReady(t)
	a := api{t, c.base}
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "stats@example.com", "password": "count my keys"}).want(t, "register", 201).pair()
	a.do("GET", "/v1/users/me", p.access, nil).want(t, "fill", 200)
	out := usher(t, env, "", "cache", "stats")
	for _, want := range []string{"hit ratio", "memory", "policy"} {
		if !strings.Contains(out, want) {
			t.Fatalf("cache stats: got %q, want it to show %s", out, want)
		}
	}
	var keys int
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "keys under") {
			fields := strings.Fields(line)
			keys, _ = strconv.Atoi(fields[len(fields)-1])
		}
	}
	if keys < 2 { // the user's view and its version at least
		t.Fatalf("cache stats: got %d keys under the namespace, want the filled view counted:\n%s", keys, out)
	}
}
