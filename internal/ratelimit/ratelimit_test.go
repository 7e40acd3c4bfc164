package ratelimit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/internal/testenv"
)

// node is one Limiter as a usher node would hold it, with its own metrics.
type node struct {
	*ratelimit.Limiter
	reg *prometheus.Registry
}

func (n node) fallbacks(t *testing.T) float64 {
	t.Helper()
	return gather(t, n.reg, "usher_ratelimit_fallback_total", "")
}

func (n node) denials(t *testing.T, rule string) float64 {
	t.Helper()
	return gather(t, n.reg, "usher_ratelimit_denied_total", rule)
}

// gather reads one counter from reg, with the given rule label if not empty.
func gather(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if rule == "" || hasLabel(m.GetLabel(), "rule", rule) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(labels []*dto.LabelPair, name, value string) bool {
	for _, l := range labels {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// setup returns a namespace whose Redis keys are deleted when the test
// ends, and a direct client to the shared Redis.
func setup(t *testing.T) (string, *redis.Client) {
	t.Helper()
	testenv.Require(t, "Redis")
	opt, err := redis.ParseURL(testenv.RedisURL)
	if err != nil {
		t.Fatalf("parse %s: %v", testenv.RedisURL, err)
	}
	direct := redis.NewClient(opt)
	ns := testenv.Namespace(t)
	t.Cleanup(func() {
		defer direct.Close()
		ctx := context.Background()
		keys, err := scan(ctx, direct, ns)
		if err != nil {
			t.Errorf("scan %s:* to clean up: %v", ns, err)
			return
		}
		if len(keys) > 0 {
			if err := direct.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("delete %d keys under %s: %v", len(keys), ns, err)
			}
		}
	})
	return ns, direct
}

func scan(ctx context.Context, rdb *redis.Client, ns string) ([]string, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, ns+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// newNode returns a Limiter on the Redis at addr (the shared one if empty).
func newNode(t *testing.T, ns, addr string, enabled bool) node {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL)
	if err != nil {
		t.Fatalf("parse %s: %v", testenv.RedisURL, err)
	}
	if addr != "" {
		opt.Addr = addr
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	return node{ratelimit.New(rdb, ns, enabled, reg), reg}
}

// spend calls Allow n times and returns how many were allowed and the last
// retryAfter.
func spend(n node, rule ratelimit.Rule, key string, calls int) (allowed int, retry time.Duration) {
	for range calls {
		ok, r := n.Allow(context.Background(), rule, key)
		if ok {
			allowed++
		}
		retry = r
	}
	return allowed, retry
}

// exhausted checks that rule's Limit units for key are allowed and the next
// one is denied with a retryAfter in (0, Per].
func exhausted(t *testing.T, n node, rule ratelimit.Rule, key string) {
	t.Helper()
	if got, _ := spend(n, rule, key, rule.Limit); got != rule.Limit {
		t.Fatalf("%s %q: %d of the first %d allowed, want all", rule.Name, key, got, rule.Limit)
	}
	ok, retry := n.Allow(context.Background(), rule, key)
	if ok {
		t.Fatalf("%s %q: unit %d allowed, want denied", rule.Name, key, rule.Limit+1)
	}
	if retry <= 0 || retry > rule.Per {
		t.Fatalf("%s %q: retryAfter %v, want in (0, %v]", rule.Name, key, retry, rule.Per)
	}
}

func TestLimitHonouredExactly(t *testing.T) {
	ns, _ := setup(t)
	n := newNode(t, ns, "", true)
	rules := []ratelimit.Rule{
		ratelimit.LoginIP, ratelimit.LoginEmail, ratelimit.RegisterIP,
		ratelimit.ResetEmail, ratelimit.ResetIP, ratelimit.VerifyEmail, ratelimit.VerifyIP, ratelimit.AdminEmail,
		{Name: "one_per_day", Limit: 1, Per: 24 * time.Hour},
	}
	for _, rule := range rules {
		t.Run(rule.Name, func(t *testing.T) {
			exhausted(t, n, rule, "203.0.113.7")
			if got := n.denials(t, rule.Name); got != 1 {
				t.Errorf("usher_ratelimit_denied_total{rule=%q} = %v, want 1", rule.Name, got)
			}
		})
	}
	if n.Degraded() {
		t.Error("Degraded() with Redis up")
	}
	if got := n.fallbacks(t); got != 0 {
		t.Errorf("usher_ratelimit_fallback_total = %v with Redis up, want 0", got)
	}
}

func TestKeysAndRulesIndependent(t *testing.T) {
	ns, _ := setup(t)
	n := newNode(t, ns, "", true)
	a := ratelimit.Rule{Name: "a", Limit: 2, Per: time.Hour}
	b := ratelimit.Rule{Name: "b", Limit: 2, Per: time.Hour}
	exhausted(t, n, a, "k1")
	tests := []struct {
		name string
		rule ratelimit.Rule
		key  string
	}{
		{"same rule, other key", a, "k2"},
		{"other rule, same key", b, "k1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exhausted(t, n, tt.rule, tt.key)
		})
	}
}

func TestConcurrentAllowIsAtomic(t *testing.T) {
	ns, _ := setup(t)
	n := newNode(t, ns, "", true)
	rule := ratelimit.Rule{Name: "burst", Limit: 10, Per: time.Hour}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 20 {
		wg.Go(func() {
			if ok, _ := n.Allow(context.Background(), rule, "k"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n.Degraded() {
		t.Fatal("Degraded() with Redis up: the count was not kept in Redis")
	}
	if allowed != rule.Limit {
		t.Fatalf("%d of 20 concurrent calls allowed, want %d", allowed, rule.Limit)
	}
	if ok, _ := n.Allow(context.Background(), rule, "k"); ok {
		t.Fatal("a call after the concurrent ones allowed, want denied")
	}
}

func TestNodesShareCount(t *testing.T) {
	ns, _ := setup(t)
	nodes := []node{newNode(t, ns, "", true), newNode(t, ns, "", true)}
	rule := ratelimit.Rule{Name: "shared", Limit: 5, Per: time.Hour}
	allowed := 0
	for i := range 2 * rule.Limit {
		if ok, _ := nodes[i%2].Allow(context.Background(), rule, "k"); ok {
			allowed++
		}
	}
	if allowed != rule.Limit {
		t.Fatalf("two nodes allowed %d in all, want %d", allowed, rule.Limit)
	}
}

func TestDisabledAllowsEverything(t *testing.T) {
	ns, direct := setup(t)
	n := newNode(t, ns, "", false)
	rule := ratelimit.Rule{Name: "off", Limit: 1, Per: time.Hour}
	if got, retry := spend(n, rule, "k", 100); got != 100 || retry != 0 {
		t.Fatalf("disabled: %d of 100 allowed, last retryAfter %v; want 100 and 0", got, retry)
	}
	keys, err := scan(context.Background(), direct, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("disabled limiter wrote to Redis: %v", keys)
	}
	// Disabled needs no Redis client at all.
	if ok, _ := ratelimit.New(nil, ns, false, nil).Allow(context.Background(), rule, "k"); !ok {
		t.Error("disabled without a Redis client: denied")
	}
}

func TestRedisCutFallsBackToMemory(t *testing.T) {
	ns, direct := setup(t)
	p := testenv.NewProxy(t, direct.Options().Addr)
	n := newNode(t, ns, p.Addr(), true)
	rule := ratelimit.Rule{Name: "cut", Limit: 3, Per: time.Hour}

	if ok, _ := n.Allow(context.Background(), rule, "warm-up"); !ok || n.Degraded() {
		t.Fatalf("through the proxy before the cut: allowed %v, Degraded() %v; want true, false", ok, n.Degraded())
	}

	p.Cut()
	exhausted(t, n, rule, "during-cut")
	if !n.Degraded() {
		t.Error("Degraded() false with Redis cut")
	}
	if got := n.fallbacks(t); got != float64(rule.Limit+1) {
		t.Errorf("usher_ratelimit_fallback_total = %v, want %d (every call answered from memory)", got, rule.Limit+1)
	}
	if got := n.denials(t, rule.Name); got != 1 {
		t.Errorf("usher_ratelimit_denied_total{rule=%q} = %v, want 1", rule.Name, got)
	}

	p.Restore()
	back := ratelimit.Rule{Name: "back", Limit: 1000, Per: time.Hour}
	testenv.Eventually(t, 5*time.Second, func() string {
		n.Allow(context.Background(), back, "probe")
		if n.Degraded() {
			return "Degraded() still true after Restore"
		}
		return ""
	})
	// Back on Redis: a fresh key's count lands there.
	exhausted(t, n, rule, "after-restore")
	key := ns + ":rl:" + rule.Name + ":" + sha("after-restore")
	if got, err := direct.Exists(context.Background(), key).Result(); err != nil || got != 1 {
		t.Errorf("EXISTS %s after Restore: %d, %v; want 1", key, got, err)
	}
}

func TestRedisStalledAnswersFromMemory(t *testing.T) {
	ns, direct := setup(t)
	p := testenv.NewProxy(t, direct.Options().Addr)
	n := newNode(t, ns, p.Addr(), true)
	rule := ratelimit.Rule{Name: "stall", Limit: 3, Per: time.Hour}
	if ok, _ := n.Allow(context.Background(), rule, "warm-up"); !ok || n.Degraded() {
		t.Fatalf("through the proxy before the stall: allowed %v, Degraded() %v; want true, false", ok, n.Degraded())
	}

	p.Stall()
	done := make(chan struct{})
	var allowed int
	go func() {
		defer close(done)
		allowed, _ = spend(n, rule, "during-stall", 2*rule.Limit)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d calls to Allow with Redis stalled did not return within 5 s", 2*rule.Limit)
	}
	if allowed != rule.Limit {
		t.Errorf("with Redis stalled: %d of %d allowed, want %d", allowed, 2*rule.Limit, rule.Limit)
	}
	if !n.Degraded() {
		t.Error("Degraded() false with Redis stalled")
	}

	p.Restore()
	testenv.Eventually(t, 5*time.Second, func() string {
		n.Allow(context.Background(), ratelimit.Rule{Name: "back", Limit: 1000, Per: time.Hour}, "probe")
		if n.Degraded() {
			return "Degraded() still true after Restore"
		}
		return ""
	})
}

func TestRedisKeysHoldNoRawKey(t *testing.T) {
	ns, direct := setup(t)
	n := newNode(t, ns, "", true)
	const email = "alice.rl-test@example.com"
	rules := []ratelimit.Rule{ratelimit.LoginEmail, ratelimit.ResetEmail}
	for _, rule := range rules {
		n.Allow(context.Background(), rule, email)
	}
	n.Allow(context.Background(), ratelimit.LoginIP, "198.51.100.23")

	keys, err := scan(context.Background(), direct, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("keys under %s: %v, want 3", ns, keys)
	}
	shape := regexp.MustCompile("^" + regexp.QuoteMeta(ns) + ":rl:[a-z_]+:[0-9a-f]{64}$")
	for _, k := range keys {
		if !shape.MatchString(k) {
			t.Errorf("key %q, want %s:rl:<rule>:<hex sha256>", k, ns)
		}
		for _, raw := range []string{email, "alice", "198.51.100.23"} {
			if strings.Contains(k, raw) {
				t.Errorf("key %q holds the raw %q", k, raw)
			}
		}
	}
	want := fmt.Sprintf("%s:rl:%s:%s", ns, ratelimit.LoginEmail.Name, sha(email))
	if got, err := direct.Exists(context.Background(), want).Result(); err != nil || got != 1 {
		t.Errorf("EXISTS %s: %d, %v; want 1", want, got, err)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
