package benchmarks

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/usher-auth/usher/internal/password"
)

// HashTime is the time of one argon2id hash with the server's parameters,
// measured single-threaded on the (idle) machine before the run.
type HashTime struct {
	Algorithm string    `json:"algorithm"`
	MemoryKiB uint32    `json:"memory_kib"`
	Time      uint32    `json:"time"`
	Threads   uint8     `json:"threads"`
	Samples   int       `json:"samples"`
	MedianMs  float64   `json:"median_ms"`
	MinMs     float64   `json:"min_ms"`
	MaxMs     float64   `json:"max_ms"`
	SamplesMs []float64 `json:"samples_ms"`
	// LoadAverage is the machine's one-minute load average just before:
	// the measurement assumes an idle machine.
	LoadAverage float64 `json:"load_average_1m"`
	// OthersShare is the share of the machine's CPU time that something
	// other than the hashing took while the hashes were timed (Linux; 0
	// elsewhere), in the attempt kept (the lowest median); Attempts is how
	// many were made.
	OthersShare float64 `json:"others_share"`
	Attempts    int     `json:"attempts"`
}

// What counts as an idle machine for the hash time: CPUs at least
// idleEnough idle before it, other work at most othersAtMost of the machine
// while it is timed, and the median within unsteadyOver × the fastest.
const (
	idleEnough   = 0.9
	othersAtMost = 0.1
	unsteadyOver = 1.15
)

// disturbed reports whether other work or unsteady hashes spoiled the
// measurement.
func (h HashTime) disturbed() bool {
	return h.OthersShare > othersAtMost || h.MedianMs > unsteadyOver*h.MinMs
}

// Median is the measured hash time.
func (h HashTime) Median() time.Duration {
	return time.Duration(h.MedianMs * float64(time.Millisecond))
}

// Params names the parameters as the report prints them.
func (h HashTime) Params() string {
	return fmt.Sprintf("%s m=%d KiB, t=%d, p=%d", h.Algorithm, h.MemoryKiB, h.Time, h.Threads)
}

// MeasureHashTime hashes benchPassword n times (after one unmeasured
// hash), one after the other on the calling goroutine, and returns the
// timings and the last hash, which every bench user then shares.
func MeasureHashTime(p password.Params, n int) (HashTime, string, error) {
	if n < 1 {
		n = 1
	}
	ht := HashTime{Algorithm: "argon2id", MemoryKiB: p.MemoryKiB, Time: p.Time, Threads: p.Threads, Samples: n, LoadAverage: loadAverage()}
	// One unmeasured hash first: the first one also pays for mapping the
	// memory the later ones reuse.
	hash, err := password.Hash(benchPassword, p)
	if err != nil {
		return ht, "", err
	}
	for range n {
		start := time.Now()
		h, err := password.Hash(benchPassword, p)
		if err != nil {
			return ht, "", err
		}
		ht.SamplesMs = append(ht.SamplesMs, msOf(time.Since(start)))
		hash = h
	}
	ht.MedianMs = median(ht.SamplesMs)
	ht.MinMs, ht.MaxMs = ht.SamplesMs[0], ht.SamplesMs[0]
	for _, v := range ht.SamplesMs {
		ht.MinMs, ht.MaxMs = min(ht.MinMs, v), max(ht.MaxMs, v)
	}
	return ht, hash, nil
}

// measureIdleHashTime is MeasureHashTime on an idle machine: it waits for
// idle CPUs and times the hashes, and does it again (five attempts at most)
// while other work took more than a tenth of the machine meanwhile or the
// hashes were unsteady (median over 1.15 × the fastest), keeping the
// attempt with the lowest median. A machine busy or disturbed while the
// hashes are timed makes them slower, and a slower hash time would lower
// every hashing floor derived from it.
func measureIdleHashTime(ctx context.Context, p password.Params, n int) (HashTime, string, error) {
	var (
		best     HashTime
		bestHash string
		made     int
	)
	for attempt := 1; attempt <= 5 && ctx.Err() == nil; attempt++ {
		made = attempt
		waitIdle(ctx, time.Minute)
		before := readCPU()
		ht, hash, err := MeasureHashTime(p, n)
		if err != nil {
			return ht, "", err
		}
		if busy, _, ok := readCPU().busySince(before); ok {
			// One CPU hashing is the measurement itself.
			ht.OthersShare = max(0, busy-1/float64(runtime.NumCPU()))
		}
		if attempt == 1 || ht.MedianMs < best.MedianMs {
			best, bestHash = ht, hash
		}
		if !ht.disturbed() {
			break
		}
	}
	best.Attempts = made
	return best, bestHash, ctx.Err()
}

// waitIdle waits, up to limit, for a second in which the machine's CPUs
// were at least idleEnough idle, so that the hash time is not measured
// while the server is still starting or a build is finishing. Without
// /proc/stat it returns after that first second.
func waitIdle(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		before := readCPU()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		busy, _, ok := readCPU().busySince(before)
		if !ok || busy <= 1-idleEnough || time.Now().After(deadline) {
			return
		}
	}
}

// cpuSample is the machine's busy and idle CPU time so far, all CPUs
// together, in /proc/stat's ticks (USER_HZ, 100 a second on Linux).
type cpuSample struct{ busy, idle uint64 }

// readCPU samples /proc/stat (Linux; zero elsewhere).
func readCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPUTicks(line)
}

// parseCPUTicks reads /proc/stat's first line: "cpu" then user nice system
// idle iowait irq softirq steal; idle and iowait count as idle.
func parseCPUTicks(line string) cpuSample {
	var s cpuSample
	for i, f := range strings.Fields(line) {
		v, err := strconv.ParseUint(f, 10, 64)
		if i == 0 || i > 8 || err != nil {
			continue
		}
		if i == 4 || i == 5 {
			s.idle += v
		} else {
			s.busy += v
		}
	}
	return s
}

// busySince is the share of the machine's CPU time that was busy since
// prev, and that busy time; ok is false when no tick passed (or there is
// no /proc/stat).
func (s cpuSample) busySince(prev cpuSample) (share float64, busy time.Duration, ok bool) {
	b, i := s.busy-prev.busy, s.idle-prev.idle
	if b+i == 0 {
		return 0, 0, false
	}
	return float64(b) / float64(b+i), time.Duration(b) * time.Second / 100, true
}

// loadAverage reads the one-minute load average (Linux); 0 elsewhere.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}
