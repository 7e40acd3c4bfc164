package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthdm/hollywood/actor"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/password"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// openDB opens a database of the test's own.
func openDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// startNode runs a node on the shared NATS server under a fresh namespace
// and returns a client connection and the namespace.
func startNode(t testing.TB, maxInflight int) (*nats.Conn, string) {
	t.Helper()
	testenv.Require(t, "NATS", "Redis", "PostgreSQL")
	ctx := context.Background()
	db := openDB(t)
	opts, err := redis.ParseURL(testenv.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })

	ns := testenv.Namespace(t)
	nodeConn, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nodeConn.Close)
	secret, _ := token.ParseSecret(token.NewSecret())
	keys, _ := token.Derive(secret)
	node, err := Start(ctx, nodeConn, Config{
		ID: "n1", Namespace: ns, MaxInflight: maxInflight, DB: db, Redis: rdb,
		Limits:     ratelimit.New(rdb, ns, false, nil),
		Tokens:     Tokens{Keys: keys, Issuer: token.Issuer{Issuer: "http://usher.test", Audience: "usher"}, AccessTTL: time.Minute},
		Lifetimes:  Lifetimes{Session: time.Hour, Idle: time.Hour, Grace: time.Second},
		HashParams: password.Params{MemoryKiB: 64, Time: 1, Threads: 1},
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:    prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Stop(ctx); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	client, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client, ns
}

func request(nc *nats.Conn, subject string, req Request, timeout time.Duration) (Reply, error) {
	data, _ := json.Marshal(req)
	msg, err := nc.Request(subject, data, timeout)
	if err != nil {
		return Reply{}, err
	}
	var r Reply
	err = json.Unmarshal(msg.Data, &r)
	return r, err
}

// Every reply must reach the request that caused it: hollywood's own
// request/reply can cross replies (DESIGN.md), the node's Call must not.
func TestConcurrentRequestsGetTheirOwnReplies(t *testing.T) {
	client, ns := startNode(t, 256)
	const n = 10000
	var mismatched, timeouts, overloaded, ok, other atomic.Int64
	var firstOther atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := fmt.Sprintf("nonce-%d", i)
			r, err := request(client, ns+".v1.system.ping", Request{ID: nonce, BudgetMS: 60000}, 60*time.Second)
			switch {
			case err != nil:
				timeouts.Add(1)
			case r.ID != nonce:
				mismatched.Add(1)
			case r.Code == CodeOverloaded:
				overloaded.Add(1)
			case r.Code == "":
				ok.Add(1)
			default:
				other.Add(1)
				firstOther.CompareAndSwap(nil, fmt.Sprintf("%+v", r))
			}
		}()
	}
	wg.Wait()
	t.Logf("ok=%d overloaded=%d", ok.Load(), overloaded.Load())
	if mismatched.Load() != 0 || timeouts.Load() != 0 || other.Load() != 0 {
		t.Fatalf("got %d mismatched, %d timeouts, %d other replies (first: %v); want 0 of each",
			mismatched.Load(), timeouts.Load(), other.Load(), firstOther.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
}

func TestInflightBoundAnswersOverloaded(t *testing.T) {
	client, ns := startNode(t, 1)
	// The slow hook needs a testhooks build; without it, fill the bound by
	// sheer concurrency and expect at least one overloaded answer.
	const n = 200
	var overloaded atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := request(client, ns+".v1.system.ping", Request{ID: fmt.Sprint(i), BudgetMS: 10000}, 10*time.Second)
			if err == nil && r.Code == CodeOverloaded {
				overloaded.Add(1)
			}
		}()
	}
	wg.Wait()
	if overloaded.Load() == 0 {
		t.Fatalf("got no overloaded reply from %d concurrent requests with a bound of 1", n)
	}
}

func TestNodeRefusesBadRequests(t *testing.T) {
	client, ns := startNode(t, 16)
	cases := []struct {
		name, subject string
		data          string
		code          string
	}{
		{"not JSON", ns + ".v1.system.ping", "{", CodeInvalidRequest},
		{"spent budget", ns + ".v1.system.ping", `{"id":"a","budget_ms":0}`, CodeUnavailable},
		{"unknown concern", ns + ".v1.nope.x", `{"id":"a","budget_ms":1000}`, CodeNotFound},
		{"unknown op", ns + ".v1.user.nope", `{"id":"a","budget_ms":1000}`, CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, err := client.Request(c.subject, []byte(c.data), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var r Reply
			json.Unmarshal(msg.Data, &r)
			if r.Code != c.code {
				t.Fatalf("got code %q, want %q: %s", r.Code, c.code, msg.Data)
			}
		})
	}
}

// panicky panics on every Ping: more times than hollywood's restart limit,
// which in v1.0.5 would crash the process.
type panicky struct{}

func (panicky) Receive(c *actor.Context) {
	if _, ok := c.Message().(Ping); ok {
		panic("boom")
	}
}

func TestPanicsBeyondRestartLimitCostOneReplyEach(t *testing.T) {
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sup := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	pid := engine.Spawn(func() actor.Receiver { return panicky{} }, "panicky", sup.opts("test")...)
	for i := range 20 {
		call := newCall(Request{ID: fmt.Sprint(i)}, time.Now().Add(time.Second))
		engine.Send(pid, Ping{call})
		r := wait(call)
		if r.Code != CodeInternal || r.ID != call.ID {
			t.Fatalf("panic %d: got %+v, want code internal for id %s", i, r, call.ID)
		}
	}
	families, _ := reg.Gather()
	var panics float64
	for _, f := range families {
		if f.GetName() == "usher_actor_panics_total" {
			panics = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if panics != 20 {
		t.Fatalf("got %v panics counted, want 20", panics)
	}
}

func TestGoroutinePanicAnswersCaller(t *testing.T) {
	sup := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	call := newCall(Request{ID: "g"}, time.Now().Add(5*time.Second))
	sup.spawn("test", call, func() { panic("boom") })
	if r := wait(call); r.Code != CodeInternal {
		t.Fatalf("got %+v, want code internal", r)
	}
}

func TestIdleSessionChildIsStoppedAndReplaced(t *testing.T) {
	old := sessionIdleAfter
	sessionIdleAfter = 100 * time.Millisecond
	t.Cleanup(func() { sessionIdleAfter = old })

	engine, _ := actor.NewEngine(actor.NewEngineConfig())
	sup := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	router := engine.Spawn(newSessionRouter(deps{sup: sup}), "session", sup.opts("session")...)
	ping := func(id string) {
		t.Helper()
		call := newCall(Request{ID: id}, time.Now().Add(2*time.Second))
		engine.Send(router, Ping{call})
		if r := wait(call); r.Code != "" {
			t.Fatalf("ping %s: got %+v", id, r)
		}
	}
	// Children are spawned as "<router>/s/<key>.<n>", n counting spawns.
	alive := func(n int) bool {
		return engine.Registry.GetPID(router.ID+"/s", fmt.Sprintf("ping.%d", n)) != nil
	}
	ping("1")
	if !alive(1) {
		t.Fatal("no child after the first ping")
	}
	testenv.Eventually(t, 2*time.Second, func() string {
		if alive(1) {
			return "idle child still registered"
		}
		return ""
	})
	ping("2")
	if !alive(2) {
		t.Fatal("no fresh child after the idle one stopped")
	}
}

func TestHasherSurvivesAPanickingJob(t *testing.T) {
	h := newTestHasher(t, 1)
	call := newCall(Request{ID: "p"}, time.Now().Add(5*time.Second))
	if err := h.do(call, func() { panic("boom") }); err != errHashPanicked {
		t.Fatalf("panicking job: got %v, want errHashPanicked", err)
	}
	if _, err := h.hash(call, "still working"); err != nil {
		t.Fatalf("after a panic: got %v, want the workers alive", err)
	}
}

func newTestHasher(t *testing.T, workers int) *hasher {
	t.Helper()
	sup := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	h := newHasher(sup, workers, password.Params{MemoryKiB: 64, Time: 1, Threads: 1}, prometheus.NewRegistry())
	t.Cleanup(h.stop)
	if h.pace <= 0 {
		t.Fatal("no pace from the hash timed at start")
	}
	return h
}

// admitted counts the jobs admit lets in before it refuses one.
func admitted(t *testing.T, h *hasher) int {
	t.Helper()
	for n := range 100 {
		if !h.admit() {
			return n
		}
	}
	t.Fatal("100 jobs admitted, none refused")
	return 0
}

// most is how many jobs admit lets in, from queued ahead, while the
// expected wait stays within limit (at most limit × workers ÷ pace ahead).
func most(h *hasher, limit time.Duration) int {
	return int(limit*time.Duration(h.workers)/h.pace) - h.queued + 1
}

func TestHasherShedsWhatWouldWaitTooLong(t *testing.T) {
	h := newTestHasher(t, 2)
	h.pace = maxWait / 4
	want := most(h, maxWait)
	if n := admitted(t, h); n != want || want != 9 {
		t.Fatalf("admitted %d jobs at a pace of maxWait/4 on 2 workers, want %d (0 to 8 ahead)", n, want)
	}
	ran := false
	call := newCall(Request{ID: "x"}, time.Now().Add(5*time.Second))
	if err := h.do(call, func() { ran = true }); err != ErrOverloaded || ran {
		t.Fatalf("over maxWait: got %v (ran %v), want ErrOverloaded at once", err, ran)
	}
}

func TestHasherBeyondCapacityAdmitsOnlyShortWaits(t *testing.T) {
	h := newTestHasher(t, 2)
	h.pace = overloadWait / 2
	// after ends an interval in which offered jobs came and finished ones
	// left, with queued jobs waiting, and counts what admit lets in then.
	after := func(queued, offered, finished int) (n, normal, strict int) {
		h.queued = queued
		h.windowStart, h.offered, h.finished = time.Now().Add(-interval), offered, finished
		normal, strict = most(h, maxWait), most(h, overloadWait)
		return admitted(t, h), normal, strict
	}
	// An idle queue is not overloaded, whatever the counts.
	if n, normal, _ := after(0, 5, 0); n != normal {
		t.Fatalf("admitted %d jobs after an idle interval, want %d", n, normal)
	}
	// Offered at 1.5 × the rate the workers finish, one interval: a stall
	// looks like that; two in a row: overloaded.
	if n, normal, _ := after(1, 30, 20); n != normal {
		t.Fatalf("admitted %d jobs after one interval over the finished rate, want %d", n, normal)
	}
	if n, _, strict := after(1, 30, 20); n != strict || strict != 4 {
		t.Fatalf("admitted %d jobs after two intervals over, want %d (1 to 4 ahead wait at most overloadWait)", n, strict)
	}
	// Offered near the finished rate: back to maxWait.
	if n, normal, _ := after(1, 25, 20); n != normal {
		t.Fatalf("admitted %d jobs at 1.25 × the finished rate, want %d", n, normal)
	}
}

// A bump this node's Redis refuses is bypassed here at once, though its row
// is too young for PendingBumps to name it to any node.
func TestRefusedBumpIsBypassedAtOnceOnItsNode(t *testing.T) {
	testenv.Require(t, "PostgreSQL")
	ctx := t.Context()
	db := openDB(t)
	u, err := db.CreateUser(ctx, store.NewUser{Email: "refused@example.com", PasswordHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	_, ch, err := db.SetName(ctx, u.ID, "renamed")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on port 1: Redis refuses every call.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	c := newCache(CacheConfig{Enabled: true, UserTTL: time.Minute, ListTTL: time.Minute}, rdb, db, "refused", prometheus.NewRegistry())
	c.bump(ctx, ch)
	c.refreshPending(ctx)
	for _, k := range ch.BumpKeys {
		if !c.isPending(k) {
			t.Fatalf("key %s: not bypassed after its bump was refused", k)
		}
	}
}
