// Package ratelimit enforces usher's rate limits (API.md, "Rate limits")
// atomically in Redis, so that every node shares one count per key. While
// Redis is unreachable each process falls back to an in-memory limiter with
// the same limits: a limit is never lifted, only no longer shared.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/prom"
)

// Rule is one limit: at most Limit units per Per for each key, refilled
// evenly (a unit every Per/Limit) after an initial burst of Limit.
type Rule struct {
	Name  string // in Redis keys and metric labels: lower case, no ':'
	Limit int
	Per   time.Duration
}

// The default rules of API.md. A verification resend has the reset
// request's limits but counts apart, so that resending a verification
// email never uses up the account's password resets.
var (
	LoginIP     = Rule{Name: "login_ip", Limit: 30, Per: time.Minute}
	LoginEmail  = Rule{Name: "login_email", Limit: 10, Per: 15 * time.Minute}
	RegisterIP  = Rule{Name: "register_ip", Limit: 10, Per: time.Hour}
	ResetEmail  = Rule{Name: "reset_email", Limit: 3, Per: time.Hour}
	ResetIP     = Rule{Name: "reset_ip", Limit: 10, Per: time.Hour}
	VerifyEmail = Rule{Name: "verify_email", Limit: ResetEmail.Limit, Per: ResetEmail.Per}
	VerifyIP    = Rule{Name: "verify_ip", Limit: ResetIP.Limit, Per: ResetIP.Per}
	AdminEmail  = Rule{Name: "admin_email", Limit: 60, Per: time.Hour}
)

const (
	// redisTimeout bounds each Redis call, so that a stalled Redis costs a
	// login at most this long.
	redisTimeout = 100 * time.Millisecond
	// retryRedisAfter is how long a process answers from memory after a Redis
	// error before it tries Redis again, so that a stalled Redis does not
	// cost every request redisTimeout.
	retryRedisAfter = time.Second
	// maxMemoryKeys caps the in-memory fallback.
	maxMemoryKeys = 100_000
)

// Limiter spends rate-limit units in Redis, or in memory while Redis fails.
// It is safe for concurrent use.
type Limiter struct {
	enabled bool
	ns      string
	redis   *redis_rate.Limiter
	memory  *memory

	degraded   atomic.Bool
	retryRedis atomic.Int64 // unix nanoseconds before which Redis is not tried

	fallback prometheus.Counter
	denied   *prometheus.CounterVec
}

// New returns a Limiter that keeps its counts in rdb under namespace. With
// enabled false (USHER_RATE_LIMITS=off) it allows everything and never calls
// Redis, and rdb may be nil. Its metrics are registered on reg, if not nil;
// a second Limiter on the same reg shares the first one's metrics.
func New(rdb *redis.Client, namespace string, enabled bool, reg prometheus.Registerer) *Limiter {
	l := &Limiter{
		enabled: enabled,
		ns:      namespace,
		memory:  newMemory(maxMemoryKeys),
		fallback: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_ratelimit_fallback_total",
			Help: "Rate-limit checks answered by the in-memory limiter because Redis failed or was recently failing.",
		})),
		denied: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_ratelimit_denied_total",
			Help: "Rate-limit checks denied, by rule.",
		}, []string{"rule"})),
	}
	if enabled {
		if rdb == nil {
			panic("ratelimit.New: enabled without a Redis client")
		}
		// The clone shares rdb's pool; its socket timeouts make a stalled
		// Redis fail fast whatever rdb's ContextTimeoutEnabled says.
		l.redis = redis_rate.NewLimiter(unprefixed{rdb.WithTimeout(redisTimeout)})
	}
	return l
}

// Allow spends one unit of rule for key and reports whether it was
// available. When it was not, retryAfter is when the next unit will be (more
// than 0, at most rule.Per); rounding it up to whole seconds for a
// Retry-After header is the caller's job.
//
// The caller normalizes key (a lower-cased email, a canonical IP): "A@x"
// and "a@x" are different keys here. Only a SHA-256 of the key reaches Redis.
//
// Allow takes at most about 100 ms: on any Redis error, timeout included, the
// in-memory limiter answers this call and Degraded reports true until a
// Redis call succeeds again. Allow logs nothing; the caller logs changes of
// Degraded. It panics if rule.Limit or rule.Per is not positive.
func (l *Limiter) Allow(ctx context.Context, rule Rule, key string) (allowed bool, retryAfter time.Duration) {
	if !l.enabled {
		return true, 0
	}
	if rule.Limit <= 0 || rule.Per <= 0 {
		panic(fmt.Sprintf("ratelimit: rule %q: Limit %d and Per %v must be positive", rule.Name, rule.Limit, rule.Per))
	}
	k := l.key(rule, key)
	allowed, retryAfter, err := l.allowRedis(ctx, rule, k)
	if err != nil {
		if ctx.Err() == nil {
			l.fallback.Inc()
		}
		allowed, retryAfter = l.memory.allow(time.Now(), k, rule)
	}
	if !allowed {
		l.denied.WithLabelValues(rule.Name).Inc()
	}
	return allowed, retryAfter
}

// Degraded reports whether the last Redis call failed, so that limits are
// per process for now.
func (l *Limiter) Degraded() bool { return l.degraded.Load() }

var errRedisResting = errors.New("redis failed less than a second ago")

func (l *Limiter) allowRedis(ctx context.Context, rule Rule, k string) (bool, time.Duration, error) {
	if l.degraded.Load() && time.Now().UnixNano() < l.retryRedis.Load() {
		return false, 0, errRedisResting
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	res, err := l.redis.Allow(rctx, k, redis_rate.Limit{Rate: rule.Limit, Burst: rule.Limit, Period: rule.Per})
	if err != nil {
		// The caller giving up says nothing about Redis.
		if ctx.Err() == nil {
			l.retryRedis.Store(time.Now().Add(retryRedisAfter).UnixNano())
			l.degraded.Store(true)
		}
		return false, 0, err
	}
	l.degraded.Store(false)
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, min(max(res.RetryAfter, time.Nanosecond), rule.Per), nil
}

// key is "<namespace>:rl:<rule>:<hex SHA-256 of key>": emails and IPs never
// reach Redis.
func (l *Limiter) key(rule Rule, key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.ns + ":rl:" + rule.Name + ":" + hex.EncodeToString(sum[:])
}

// unprefixed strips the "rate:" that redis_rate puts before every key, so
// that all of usher's keys stay under "<namespace>:".
type unprefixed struct{ *redis.Client }

const libraryPrefix = "rate:"

func strip(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, libraryPrefix)
	}
	return out
}

func (c unprefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.Client.Eval(ctx, script, strip(keys), args...)
}

func (c unprefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.Client.EvalSha(ctx, sha1, strip(keys), args...)
}

func (c unprefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.Client.EvalRO(ctx, script, strip(keys), args...)
}

func (c unprefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.Client.EvalShaRO(ctx, sha1, strip(keys), args...)
}

func (c unprefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return c.Client.Del(ctx, strip(keys)...)
}
