package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestMemoryHonoursLimitAndRefills(t *testing.T) {
	for _, rule := range []Rule{LoginIP, LoginEmail, RegisterIP, ResetEmail, ResetIP, VerifyEmail, VerifyIP, AdminEmail, {Name: "one", Limit: 1, Per: time.Second}} {
		t.Run(rule.Name, func(t *testing.T) {
			m := newMemory(10)
			now := time.Now()
			for i := range rule.Limit {
				if ok, _ := m.allow(now, "k", rule); !ok {
					t.Fatalf("unit %d of %d denied", i+1, rule.Limit)
				}
			}
			ok, retry := m.allow(now, "k", rule)
			if ok {
				t.Fatalf("unit %d of %d allowed", rule.Limit+1, rule.Limit)
			}
			interval := rule.Per / time.Duration(rule.Limit)
			if retry <= 0 || retry > interval+time.Millisecond {
				t.Fatalf("retryAfter %v, want in (0, %v]", retry, interval)
			}
			later := now.Add(retry + time.Millisecond) // past float rounding
			if ok, _ := m.allow(later, "k", rule); !ok {
				t.Fatalf("denied %v later, when retryAfter said a unit would be free", retry)
			}
			if ok, _ := m.allow(later, "k", rule); ok {
				t.Fatal("a second unit allowed when only one was refilled")
			}
		})
	}
}

func TestMemoryDropsIdleKeys(t *testing.T) {
	m := newMemory(100)
	now := time.Now()
	m.allow(now, "short", Rule{Name: "short", Limit: 1, Per: time.Second})
	m.allow(now, "long", Rule{Name: "long", Limit: 1, Per: time.Hour})
	m.allow(now.Add(sweepEvery), "other", Rule{Name: "short", Limit: 1, Per: time.Second})
	if got := m.len(); got != 2 {
		t.Fatalf("%d keys after a sweep, want 2 (the idle key dropped, the key still limited kept)", got)
	}
	if ok, _ := m.allow(now.Add(sweepEvery), "long", Rule{Name: "long", Limit: 1, Per: time.Hour}); ok {
		t.Fatal("a key still limited was forgotten by the sweep")
	}
}

func TestMemoryCapsKeys(t *testing.T) {
	const capacity = 50
	m := newMemory(capacity)
	now := time.Now()
	rule := Rule{Name: "r", Limit: 1, Per: time.Hour}
	m.allow(now, "first", rule)
	for i := range 3 * capacity {
		m.allow(now, fmt.Sprint("k", i), rule)
		m.allow(now, "first", rule) // recently used: kept
	}
	if got := m.len(); got != capacity {
		t.Fatalf("%d keys, want the cap %d", got, capacity)
	}
	if ok, _ := m.allow(now, "first", rule); ok {
		t.Fatal("the most recently used key was evicted")
	}
}
