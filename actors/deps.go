package actors

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/password"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/store"
)

// Lifetimes of sessions (API.md).
type Lifetimes struct {
	Session time.Duration // absolute, from login
	Idle    time.Duration // without a refresh
	Grace   time.Duration // a predecessor's refresh returns the same successor
}

// deps are what concern actors share.
type deps struct {
	db        *store.DB
	redis     *redis.Client
	sup       *supervisor
	hasher    *hasher
	mint      *minter
	life      Lifetimes
	limits    *ratelimit.Limiter
	nc        *nats.Conn
	namespace string
	log       *slog.Logger
	sealer    *event.Sealer
	ttl       TokenTTLs
	cache     *cache
}

// goWithDeadline does f in a supervised goroutine with the request's
// deadline: how singleton actors do their I/O without blocking Receive.
func (d deps) goWithDeadline(concern string, call Call, f func(context.Context)) {
	d.sup.spawn(concern, call, func() {
		ctx, cancel := context.WithDeadline(context.Background(), call.Deadline)
		defer cancel()
		f(ctx)
	})
}

// allow spends one unit of rule for key; when the limit is reached it has
// answered 429 with the time to wait.
func (d deps) allow(ctx context.Context, call Call, rule ratelimit.Rule, key string) bool {
	ok, retry := d.limits.Allow(ctx, rule, key)
	if !ok {
		secs := max(int(math.Ceil(retry.Seconds())), 1)
		call.answer(Reply{Code: CodeRateLimited, Detail: "too many attempts; retry in " + strconv.Itoa(secs) + " s", RetryAfter: secs})
	}
	return ok
}

// committed follows every write that changed users: their cache versions
// move on, then the sessions it ended are published, before the caller is
// answered, so what the caller does next sees the write.
func (d deps) committed(ctx context.Context, ch store.Change) {
	d.cache.bump(ctx, ch)
	d.revoked(ch.Ended)
}

// revoked publishes ended sessions on <ns>.revocations, the fast path to
// every gateway. PostgreSQL stays the feed: a lost publish costs at most a
// gateway's poll interval.
func (d deps) revoked(ids []string) {
	for _, id := range ids {
		if err := d.nc.Publish(d.namespace+".revocations", []byte(id)); err != nil {
			d.log.Warn("publish revocation", "session", id, "err", err)
		}
	}
}

// fail answers call for err.
func (d deps) fail(call Call, err error) { call.answer(d.replyOf(call.ID, err)) }

// replyOf maps what callers branch on to problem codes and logs the rest,
// for request id.
func (d deps) replyOf(id string, err error) Reply {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Reply{Code: CodeNotFound, Detail: "no such user"}
	case errors.Is(err, store.ErrTokenInvalid):
		return Reply{Code: CodeTokenInvalid, Detail: "this link is not valid or was already used"}
	case errors.Is(err, store.ErrTokenExpired):
		return Reply{Code: CodeTokenExpired, Detail: "this link has expired; ask for a new one"}
	case errors.Is(err, store.ErrEmailTaken):
		return Reply{Code: CodeEmailTaken, Detail: "an account with this email exists", Errors: map[string]string{"email": "already registered"}}
	case errors.Is(err, ErrOverloaded):
		return Reply{Code: CodeOverloaded, Detail: "too many password checks in progress; retry shortly"}
	case errors.Is(err, errBudgetSpent), errors.Is(err, context.DeadlineExceeded):
		return Reply{Code: CodeUnavailable, Detail: "the request ran out of time; retry"}
	}
	d.log.Error("request failed", "request_id", id, "err", err)
	return Reply{Code: CodeInternal, Detail: "internal error"}
}

// isHashRefusal reports a stored hash usher cannot or will not verify: the
// password is treated as wrong.
func isHashRefusal(err error) bool {
	return errors.Is(err, password.ErrUnsupportedHash) || errors.Is(err, password.ErrHashParams)
}
