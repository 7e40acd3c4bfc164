package benchmarks

import (
	"testing"
	"time"
)

// /proc/stat's first line: user nice system idle iowait irq softirq steal,
// then guest times that are already in user and nice.
func TestParseCPUTicks(t *testing.T) {
	s := parseCPUTicks("cpu  386667 3 79595 371370 5307 11 15733 187 50 60")
	if wantBusy, wantIdle := uint64(386667+3+79595+11+15733+187), uint64(371370+5307); s.busy != wantBusy || s.idle != wantIdle {
		t.Fatalf("busy %d idle %d, want %d and %d", s.busy, s.idle, wantBusy, wantIdle)
	}
}

// Between two samples: the busy share of the ticks that passed, and the
// busy ticks as time (100 a second); none passed is no answer.
func TestBusySince(t *testing.T) {
	before := cpuSample{busy: 1000, idle: 5000}
	share, busy, ok := cpuSample{busy: 1150, idle: 5050}.busySince(before)
	if !ok || share != 0.75 || busy != 1500*time.Millisecond {
		t.Fatalf("got share %v, busy %v, ok %v; want 0.75, 1.5s, true", share, busy, ok)
	}
	if _, _, ok := before.busySince(before); ok {
		t.Fatal("no tick passed: got ok, want none")
	}
}
