package actors

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/testenv"
)

// BenchmarkActorRoundTrip is one request message to a concern actor and its
// reply on the Call's own channel: the node's cost without NATS or I/O.
func BenchmarkActorRoundTrip(b *testing.B) {
	engine, _ := actor.NewEngine(actor.NewEngineConfig())
	sup := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	pid := engine.Spawn(newTokenActor(deps{sup: sup}), "token", sup.opts("token")...)
	b.ReportAllocs()
	for b.Loop() {
		call := newCall(Request{ID: "b"}, time.Now().Add(time.Second))
		engine.Send(pid, Ping{call})
		if r := wait(call); r.Code != "" {
			b.Fatal(r)
		}
	}
}

// BenchmarkNATSHop is a request through the shared NATS server to a node
// and back; ping asks every concern, so it includes five actor round trips
// and a PostgreSQL and a Redis ping.
func BenchmarkNATSHop(b *testing.B) {
	client, ns := startNode(b, 1024)
	data, _ := json.Marshal(Request{ID: "b", BudgetMS: 5000})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Request(ns+".v1.system.ping", data, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheHit is a user view read from Redis: its version, then the
// value under it.
func BenchmarkCacheHit(b *testing.B) {
	testenv.Require(b, "Redis")
	opts, _ := redis.ParseURL(testenv.RedisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ns := testenv.Namespace(b)
	c := newCache(CacheConfig{Enabled: true, UserTTL: time.Minute, ListTTL: time.Minute}, rdb, nil, ns, prometheus.NewRegistry())
	ctx := context.Background()
	load := func(context.Context) Reply { return okReply(UserView{ID: "u", Email: "u@example.com"}) }
	c.get(ctx, cacheKindUser, "user:bench", "", load)
	b.Cleanup(func() { rdb.Del(context.Background(), ns+":user:bench:v0") })
	b.ReportAllocs()
	for b.Loop() {
		if r := c.get(ctx, cacheKindUser, "user:bench", "", load); r.Code != "" {
			b.Fatal(r)
		}
	}
	if hits := testutil.ToFloat64(c.hits.WithLabelValues(cacheKindUser)); hits < float64(b.N) {
		b.Fatalf("got %v hits for %d reads: the benchmark measured misses", hits, b.N)
	}
}
