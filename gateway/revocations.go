package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usher-auth/usher/store"
)

// Revocation feed timing (DESIGN.md): PostgreSQL is polled at least this
// often, re-reading an overlap behind the watermark so a revocation whose
// transaction committed late is still seen.
const (
	revocationPoll    = 250 * time.Millisecond
	revocationOverlap = 5 * time.Second
)

// revocations is the in-memory set of ended sessions every authenticated
// request is checked against: no per-request database or Redis round trip,
// and no cache eviction can bring a revoked token back. NATS is the fast
// path; PostgreSQL is the feed.
type revocations struct {
	db   *store.DB
	log  *slog.Logger
	keep time.Duration // access token lifetime + leeway

	mu        sync.RWMutex
	ids       map[string]time.Time // session id → when it may be forgotten
	watermark time.Time
	pruned    time.Time
	loaded    atomic.Bool
}

// startRevocations subscribes first, so nothing published during the load
// is missed, then loads the table and polls it until ctx ends.
func startRevocations(ctx context.Context, nc *nats.Conn, db *store.DB, namespace string, keep time.Duration, log *slog.Logger) (*revocations, error) {
	rv := &revocations{db: db, log: log, keep: keep, ids: map[string]time.Time{}}
	sub, err := nc.Subscribe(namespace+".revocations", func(m *nats.Msg) {
		rv.add(string(m.Data), time.Now())
	})
	if err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		sub.Unsubscribe()
	}()
	go rv.feed(ctx)
	return rv, nil
}

func (rv *revocations) add(sid string, at time.Time) {
	rv.mu.Lock()
	if forget := at.Add(rv.keep); forget.After(rv.ids[sid]) {
		rv.ids[sid] = forget
	}
	rv.mu.Unlock()
}

// revoked reports whether the session has ended.
func (rv *revocations) revoked(sid string) bool {
	rv.mu.RLock()
	_, ok := rv.ids[sid]
	rv.mu.RUnlock()
	return ok
}

// ready is true once the table has been loaded.
func (rv *revocations) ready() bool { return rv.loaded.Load() }

func (rv *revocations) feed(ctx context.Context) {
	t := time.NewTicker(revocationPoll)
	defer t.Stop()
	rv.mu.Lock()
	rv.watermark = time.Now().Add(-rv.keep)
	rv.mu.Unlock()
	for {
		if err := rv.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			rv.log.Warn("poll revocations", "err", err)
		} else {
			rv.loaded.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (rv *revocations) poll(ctx context.Context) error {
	rv.mu.RLock()
	since := rv.watermark.Add(-revocationOverlap)
	rv.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := rv.db.RevokedSince(ctx, since)
	if err != nil {
		return err
	}
	now := time.Now()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, r := range rows {
		if forget := r.RevokedAt.Add(rv.keep); forget.After(rv.ids[r.SessionID]) {
			rv.ids[r.SessionID] = forget
		}
		if r.RevokedAt.After(rv.watermark) {
			rv.watermark = r.RevokedAt
		}
	}
	if now.Sub(rv.pruned) > time.Minute {
		rv.pruned = now
		for sid, forget := range rv.ids {
			if now.After(forget) {
				delete(rv.ids, sid)
			}
		}
	}
	return nil
}
