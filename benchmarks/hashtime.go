package benchmarks

import (
	"fmt"
	"os"
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
