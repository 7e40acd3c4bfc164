package actors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/testhooks"
	"github.com/usher-auth/usher/store"
)

// Cache settings (DESIGN.md, Redis).
type CacheConfig struct {
	Enabled bool
	UserTTL time.Duration // a user's view
	ListTTL time.Duration // an admin list page
}

// Redis timing: the cache is optional, so a slow Redis counts as down
// rather than slowing reads; versions outlive any value they name.
const (
	redisTimeout = 100 * time.Millisecond
	versionTTL   = time.Hour
	pendingPoll  = 250 * time.Millisecond
	clearEvery   = 50 * time.Millisecond
	// A bump row younger than bumpGrace is its writer's: applied and soon
	// deleted, or refused and bypassed by the writer's node at once. Older,
	// it is stuck, and every node bypasses its key and retries it.
	bumpGrace     = 500 * time.Millisecond
	cacheKindUser = "user"
	cacheKindList = "list"
)

// cacheActor is a read-through cache of user views and admin list pages in
// Redis. Keys carry a version that writes bump after commit, so a fill
// that raced a write lands on a key nobody reads. Concurrent misses for one
// key on a node load once. Receive never does I/O: loads run in goroutines
// that report back.
type cacheActor struct {
	deps
	waiting map[string][]Call // key → callers waiting for its load
}

// filled is a load reporting its reply for key.
type filled struct {
	key   string
	reply Reply
}

func newCacheActor(d deps) actor.Producer {
	return func() actor.Receiver { return &cacheActor{deps: d, waiting: map[string][]Call{}} }
}

func (a *cacheActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		a.sup.spawn("cache", m.Call, func() { a.ping(m) })
	case GetMe:
		a.read(c, m.Call, cacheKindUser, store.UserKey(m.Claims.UserID), a.loadUser(m.Call, m.Claims.UserID))
	case GetUser:
		a.read(c, m.Call, cacheKindUser, store.UserKey(m.UserID), a.loadUser(m.Call, m.UserID))
	case ListUsers:
		a.read(c, m.Call, cacheKindList, listPageKey(m), a.loadList(m))
	case filled:
		a.answer(m)
	}
}

func (a *cacheActor) ping(m Ping) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout*5)
	defer cancel()
	if err := a.redis.Ping(ctx).Err(); err != nil {
		m.ok(StateDegraded)
		return
	}
	m.ok(StateUp)
}

// listPageKey names one admin list page under the list's version.
func listPageKey(m ListUsers) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(m.Limit) + "\x00" + m.Cursor + "\x00" + m.EmailPrefix))
	return store.ListKey + ":" + hex.EncodeToString(sum[:12])
}

// read answers call from the cache, joining a load of the same key already
// under way on this node.
func (a *cacheActor) read(c *actor.Context, call Call, kind, key string, load func(context.Context) Reply) {
	if waiters, ok := a.waiting[key]; ok {
		a.waiting[key] = append(waiters, call)
		return
	}
	a.waiting[key] = []Call{call}
	self, engine := c.PID(), c.Engine()
	go func() {
		r := Reply{Code: CodeInternal, Detail: "internal error"}
		defer func() {
			if v := recover(); v != nil {
				a.sup.report("cache", v)
			}
			engine.Send(self, filled{key: key, reply: r})
		}()
		ctx, cancel := context.WithDeadline(context.Background(), call.Deadline)
		defer cancel()
		r = a.cache.get(ctx, kind, key, call.Testhook, load)
	}()
}

// answer gives every caller waiting for key the loaded reply.
func (a *cacheActor) answer(m filled) {
	for _, call := range a.waiting[m.key] {
		call.answer(m.reply)
	}
	delete(a.waiting, m.key)
}

func (a *cacheActor) loadUser(call Call, id string) func(context.Context) Reply {
	return func(ctx context.Context) Reply {
		u, err := a.db.UserByID(ctx, id)
		if err != nil {
			return a.replyOf(call.ID, err)
		}
		return okReply(viewOf(u))
	}
}

func (a *cacheActor) loadList(m ListUsers) func(context.Context) Reply {
	return func(ctx context.Context) Reply {
		page, err := a.db.ListUsers(ctx, m.Limit, m.Cursor, m.EmailPrefix)
		if errors.Is(err, store.ErrBadCursor) {
			return Reply{Code: CodeInvalidRequest, Detail: "cursor is not one this API returned", Errors: map[string]string{"cursor": "invalid"}}
		}
		if err != nil {
			return a.replyOf(m.ID, err)
		}
		out := UserPage{Items: make([]UserView, 0, len(page.Users)), NextCursor: page.Next}
		for _, u := range page.Users {
			out.Items = append(out.Items, viewOf(u))
		}
		return okReply(out)
	}
}

// okReply is the success reply with v encoded as its body.
func okReply(v any) Reply {
	body, err := json.Marshal(v)
	if err != nil {
		return Reply{Code: CodeInternal, Detail: "encode reply"}
	}
	return Reply{Body: body}
}

// cache is the Redis side of the cache actor and of writes: lookups, fills
// and version bumps, with the metrics of both.
type cache struct {
	cfg       CacheConfig
	redis     *redis.Client
	db        *store.DB
	namespace string

	mu      sync.RWMutex
	pending map[string]bool      // keys whose bumps are not applied yet
	refused map[string]time.Time // keys this node's Redis refused to bump, and when
	applied chan []int64         // ids of bumps applied, to delete

	hits, misses, errs, skipped, bumps, loads *prometheus.CounterVec
	latency                                   *prometheus.HistogramVec
}

func newCache(cfg CacheConfig, rdb *redis.Client, db *store.DB, namespace string, reg prometheus.Registerer) *cache {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind"})
	}
	c := &cache{
		cfg: cfg, redis: rdb, db: db, namespace: namespace, pending: map[string]bool{}, refused: map[string]time.Time{},
		applied: make(chan []int64, 4096),
		hits:    counter("usher_cache_hits_total", "Reads answered from Redis."),
		misses:  counter("usher_cache_misses_total", "Reads not found in Redis."),
		errs:    counter("usher_cache_errors_total", "Redis calls that failed or timed out: reads went to PostgreSQL."),
		skipped: counter("usher_cache_skipped_writes_total", "Fills not written: Redis refused (down, or full) or the key had a pending bump."),
		bumps:   counter("usher_cache_invalidations_total", "Cache versions bumped after a committed write."),
		loads:   counter("usher_cache_loads_total", "Reads loaded from PostgreSQL."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "usher_cache_redis_seconds", Help: "Latency of the cache's Redis calls.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05},
		}, []string{"kind"}),
	}
	reg.MustRegister(c.hits, c.misses, c.errs, c.skipped, c.bumps, c.loads, c.latency)
	return c
}

func (c *cache) redisKey(key string) string { return c.namespace + ":" + key }

// versioned is the key whose version stands for key's: list pages share
// the list's; a user's view has its own.
func versioned(key string) string {
	if strings.HasPrefix(key, store.ListKey) {
		return store.ListKey
	}
	return key
}

// versionKey is where a key's version lives in Redis.
func (c *cache) versionKey(key string) string { return c.namespace + ":ver:" + versioned(key) }

func (c *cache) isPending(key string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pending[versioned(key)]
}

// get reads key through the cache, loading and filling on a miss. Redis
// failing or slow only sends the read to PostgreSQL.
func (c *cache) get(ctx context.Context, kind, key, testhook string, load func(context.Context) Reply) Reply {
	if !c.cfg.Enabled || c.isPending(key) {
		return c.load(ctx, kind, testhook, load)
	}
	version, value, err := c.lookup(ctx, kind, key)
	switch {
	case err == nil:
		c.hits.WithLabelValues(kind).Inc()
		return Reply{Body: value}
	case !errors.Is(err, redis.Nil):
		c.errs.WithLabelValues(kind).Inc()
		return c.load(ctx, kind, testhook, load)
	}
	c.misses.WithLabelValues(kind).Inc()
	r := c.load(ctx, kind, testhook, load)
	if r.Code == "" {
		// A write that committed since the version was read has bumped it:
		// this fill lands on a key nobody reads.
		c.fill(ctx, kind, key, version, r.Body)
	}
	return r
}

func (c *cache) load(ctx context.Context, kind, testhook string, load func(context.Context) Reply) Reply {
	c.loads.WithLabelValues(kind).Inc()
	r := load(ctx)
	testhooks.Delay(testhook, "cache.fill.hold", time.Second)
	return r
}

// lookupScript reads a key's version and the value under it in one round
// trip: a hit costs Redis once, not twice.
var lookupScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. ':v' .. v)}
`)

// lookup returns the key's current version and its value; redis.Nil when
// the value is not cached.
func (c *cache) lookup(ctx context.Context, kind, key string) (int64, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	defer c.observe(kind, time.Now())
	res, err := lookupScript.Run(ctx, c.redis, []string{c.versionKey(key)}, c.redisKey(key)).Slice()
	if err != nil {
		return 0, nil, err
	}
	if len(res) != 2 {
		return 0, nil, fmt.Errorf("cache lookup: got %d results", len(res))
	}
	vs, _ := res[0].(string)
	version, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("cache lookup: version %q", vs)
	}
	value, ok := res[1].(string)
	if !ok {
		return version, nil, redis.Nil
	}
	return version, []byte(value), nil
}

func (c *cache) fill(ctx context.Context, kind, key string, version int64, value []byte) {
	ttl := c.cfg.UserTTL
	if kind == cacheKindList {
		ttl = c.cfg.ListTTL
	}
	// Jitter spreads the expiry of keys filled together.
	ttl += time.Duration(rand.Int64N(int64(ttl/10) + 1))
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	defer c.observe(kind, time.Now())
	if err := c.redis.Set(ctx, c.redisKey(key)+":v"+strconv.FormatInt(version, 10), value, ttl).Err(); err != nil {
		c.skipped.WithLabelValues(kind).Inc()
	}
}

func (c *cache) observe(kind string, start time.Time) {
	c.latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// bump applies one write's own bumps: versions moved on in Redis, then its
// rows deleted. If Redis refuses, the rows stay for the retry loop and this
// node bypasses the keys at once; the other nodes do once the rows are
// older than bumpGrace.
func (c *cache) bump(ctx context.Context, ch store.Change) {
	if err := c.incr(ctx, ch.BumpKeys); err != nil {
		c.mu.Lock()
		for _, k := range ch.BumpKeys {
			c.refused[k], c.pending[k] = time.Now(), true
		}
		c.mu.Unlock()
		return
	}
	// Applied: the rows go in the next batch delete, so writes share one
	// commit for their cleanup. A row left behind only bumps again.
	select {
	case c.applied <- ch.BumpIDs:
	default:
		c.db.ClearBumps(ctx, ch.BumpIDs)
	}
}

// clearApplied deletes applied bumps in batches until ctx ends.
func (c *cache) clearApplied(ctx context.Context) {
	t := time.NewTicker(clearEvery)
	defer t.Stop()
	var ids []int64
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-c.applied:
			ids = append(ids, batch...)
		case <-t.C:
			if len(ids) > 0 && c.db.ClearBumps(ctx, ids) == nil {
				ids = ids[:0]
			}
		}
	}
}

// incr moves the versions of keys on.
func (c *cache) incr(ctx context.Context, keys []string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*redisTimeout)
	defer cancel()
	pipe := c.redis.TxPipeline()
	for _, k := range keys {
		vk := c.versionKey(k)
		pipe.Incr(ctx, vk)
		pipe.Expire(ctx, vk, versionTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for _, k := range keys {
		kind := cacheKindUser
		if k == store.ListKey {
			kind = cacheKindList
		}
		c.bumps.WithLabelValues(kind).Inc()
	}
	return nil
}

// applyBumps moves the versions of every pending bump's keys on: those
// Redis refused their writers, and those no writer waited for (the CLI's).
func (c *cache) applyBumps(ctx context.Context) {
	_, err := c.db.ApplyBumps(ctx, bumpGrace, func(keys []string) error { return c.incr(ctx, keys) })
	if err != nil {
		c.refreshPending(ctx)
	}
}

// refreshPending reloads the keys whose bumps wait, so every node bypasses
// them until applied. The keys this node's Redis refused stay in the set
// until PostgreSQL's rows are old enough to name them too.
func (c *cache) refreshPending(ctx context.Context) {
	keys, err := c.db.PendingBumps(ctx, bumpGrace)
	if err != nil {
		return
	}
	pending := make(map[string]bool, len(keys))
	for _, k := range keys {
		pending[k] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, at := range c.refused {
		if time.Since(at) > 2*bumpGrace {
			delete(c.refused, k)
			continue
		}
		pending[k] = true
	}
	c.pending = pending
}

// run retries refused bumps, deletes applied ones and keeps the pending set
// fresh until ctx ends.
func (c *cache) run(ctx context.Context) {
	go c.clearApplied(ctx)
	t := time.NewTicker(pendingPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.refreshPending(ctx)
		c.mu.RLock()
		any := len(c.pending) > 0
		c.mu.RUnlock()
		if any {
			c.applyBumps(ctx)
			c.refreshPending(ctx)
		}
	}
}
