package benchmarks

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// The idle share comes from /proc/stat: it counts ticks that move, and a
// machine spinning every CPU is not reported idle.
func TestWaitIdleReadsProcStat(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	busy0, idle0 := cpuTicks()
	if busy0 == 0 || idle0 == 0 {
		t.Fatalf("cpuTicks: busy %d idle %d, want both counted", busy0, idle0)
	}
	stop := make(chan struct{})
	defer close(stop)
	for range runtime.NumCPU() {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	start := time.Now()
	share := waitIdle(context.Background(), 1500*time.Millisecond)
	if share >= 0.9 || share < 0 {
		t.Fatalf("idle share %.2f with every CPU spinning, want < 0.9", share)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("waitIdle took %s past its 1.5 s limit", took)
	}
}
