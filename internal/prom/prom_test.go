package prom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A second registration of the same metric hands back the first, so the
// count goes on; a nil registry takes nothing.
func TestRegisterReturnsTheCollectorAlreadyThere(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "usher_test_total", Help: "test"}
	first := Register(reg, prometheus.NewCounter(opts))
	first.Inc()
	second := Register(reg, prometheus.NewCounter(opts))
	second.Inc()
	if second != first {
		t.Fatal("the second registration returned a new counter, not the registered one")
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 2 {
		t.Fatalf("gathered %v, %v; want one counter at 2", mfs, err)
	}
	lone := prometheus.NewCounter(opts)
	if Register(nil, lone) != lone {
		t.Fatal("a nil registry must return the collector itself")
	}
}
