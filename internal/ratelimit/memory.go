package ratelimit

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sweepEvery is how often the in-memory limiter drops idle keys.
const sweepEvery = time.Minute

// memory is the per-process fallback: one token bucket per key with the
// rule's burst and refill, in at most max keys. A key idle for its rule's Per
// has a full bucket again, so dropping it changes nothing; past max keys the
// least recently used key is dropped even if not idle, which can only give
// it back its full burst.
type memory struct {
	mu        sync.Mutex
	max       int
	keys      map[string]*list.Element // of *bucket
	recent    *list.List               // most recently used first
	lastSweep time.Time
}

type bucket struct {
	key  string
	per  time.Duration
	lim  *rate.Limiter
	used time.Time
}

func newMemory(capacity int) *memory {
	return &memory{max: capacity, keys: map[string]*list.Element{}, recent: list.New()}
}

func (m *memory) allow(now time.Time, key string, rule Rule) (bool, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweep(now)
	}
	b := m.bucket(now, key, rule)
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.lim.TokensAt(now)
	wait := time.Duration(missing * float64(rule.Per) / float64(rule.Limit))
	return false, min(max(wait, time.Nanosecond), rule.Per)
}

// bucket returns key's bucket, made full if new, and marks it used now.
func (m *memory) bucket(now time.Time, key string, rule Rule) *bucket {
	if e, ok := m.keys[key]; ok {
		b := e.Value.(*bucket)
		b.used = now
		m.recent.MoveToFront(e)
		return b
	}
	for m.recent.Len() >= m.max {
		m.remove(m.recent.Back())
	}
	every := rate.Limit(float64(rule.Limit) / rule.Per.Seconds())
	b := &bucket{key: key, per: rule.Per, lim: rate.NewLimiter(every, rule.Limit), used: now}
	m.keys[key] = m.recent.PushFront(b)
	return b
}

// sweep drops the keys whose buckets have refilled.
func (m *memory) sweep(now time.Time) {
	m.lastSweep = now
	for e := m.recent.Back(); e != nil; {
		prev := e.Prev()
		if b := e.Value.(*bucket); now.Sub(b.used) >= b.per {
			m.remove(e)
		}
		e = prev
	}
}

func (m *memory) remove(e *list.Element) {
	delete(m.keys, e.Value.(*bucket).key)
	m.recent.Remove(e)
}

func (m *memory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recent.Len()
}
