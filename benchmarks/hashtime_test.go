package benchmarks

import "testing"

// /proc/stat's first line: user nice system idle iowait irq softirq steal,
// then guest times that are already in user and nice.
func TestParseCPUTicks(t *testing.T) {
	busy, idle := parseCPUTicks("cpu  386667 3 79595 371370 5307 11 15733 187 50 60")
	if wantBusy, wantIdle := uint64(386667+3+79595+11+15733+187), uint64(371370+5307); busy != wantBusy || idle != wantIdle {
		t.Fatalf("busy %d idle %d, want %d and %d", busy, idle, wantBusy, wantIdle)
	}
}
