package benchmarks

import (
	"fmt"
	"math"
	"time"
)

// Budget is one row of BUDGETS.md. Latencies are in milliseconds; a zero
// target means the column is "–" (none).
type Budget struct {
	// usher's own targets.
	P50Ms       float64 `json:"p50_ms"`           // absolute P50 (non-hashing scenarios)
	P50OverHash float64 `json:"p50_over_hash_ms"` // hashing: P50 ≤ hash time + this
	P99Ms       float64 `json:"p99_ms"`
	FloorRate   float64 `json:"floor_rate"`  // absolute floor, req/s
	FloorShare  float64 `json:"floor_share"` // hashing: floor = cores × share ÷ hash time

	// The industry-typical columns.
	TypicalP50Ms float64 `json:"typical_p50_ms"` // upper end of the range
	TypicalP95Ms float64 `json:"typical_p95_ms"` // upper end where a range is given
	TypicalP99Ms float64 `json:"typical_p99_ms"`
}

// Budgets are the rows of BUDGETS.md by scenario name.
var Budgets = map[string]Budget{
	"login":         {P50OverHash: 5, P99Ms: 300, FloorShare: 0.80, TypicalP50Ms: 150, TypicalP95Ms: 300, TypicalP99Ms: 500},
	"register":      {P50OverHash: 10, P99Ms: 400, FloorShare: 0.75, TypicalP50Ms: 250, TypicalP95Ms: 600, TypicalP99Ms: 900},
	"reset-request": {P50Ms: 5, P99Ms: 25, FloorRate: 1000, TypicalP50Ms: 180, TypicalP95Ms: 400},
	"reset-confirm": {P50OverHash: 10, P99Ms: 400, FloorShare: 0.75, TypicalP50Ms: 170, TypicalP95Ms: 350, TypicalP99Ms: 550},
	"refresh":       {P50Ms: 3, P99Ms: 15, FloorRate: 1400, TypicalP50Ms: 90, TypicalP95Ms: 180},
	"me":            {P50Ms: 1.5, P99Ms: 10, FloorRate: 6000, TypicalP50Ms: 70, TypicalP95Ms: 150},
	"admin-list":    {P50Ms: 3, P99Ms: 15, FloorRate: 2000, TypicalP50Ms: 90, TypicalP95Ms: 180},
	"patch-me":      {P50Ms: 4, P99Ms: 20, FloorRate: 1500, TypicalP50Ms: 120, TypicalP95Ms: 250},
}

// Load fractions of the floor at which BUDGETS.md's targets hold.
const (
	HashingP50Load = 0.30 // hashing scenarios' P50
	LatencyLoad    = 0.70 // every P99, and non-hashing P50
	FloorPass      = 0.95 // achieved ÷ offered a floor or capacity step needs
	MaxErrorRate   = 0.001
)

// Hashing reports whether b's targets are relative to the hash time.
func (b Budget) Hashing() bool { return b.FloorShare > 0 }

// Floor is b's capacity floor in requests per second: absolute, or for a
// hashing scenario cores × share ÷ hash time.
func (b Budget) Floor(cores int, hash time.Duration) float64 {
	if !b.Hashing() {
		return b.FloorRate
	}
	return HashingFloor(cores, b.FloorShare, hash)
}

// HashingFloor is cores × share ÷ hash time, in requests per second.
func HashingFloor(cores int, share float64, hash time.Duration) float64 {
	if hash <= 0 {
		return 0
	}
	return float64(cores) * share / hash.Seconds()
}

// FloorRule says how a floor was computed, for the report.
func (b Budget) FloorRule(cores int, hash time.Duration) string {
	if !b.Hashing() {
		return "absolute"
	}
	return fmt.Sprintf("%.0f%% of %d cores ÷ %.1f ms hash time", b.FloorShare*100, cores, msOf(hash))
}

// P50Target is the usher P50 target in ms for a measured hash time.
func (b Budget) P50Target(hash time.Duration) float64 {
	if b.Hashing() {
		return msOf(hash) + b.P50OverHash
	}
	return b.P50Ms
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Passes is the floor and capacity test: achieved at least 95% of offered
// with errors under 0.1%.
func Passes(offered, achieved, errorRate float64) bool {
	return offered > 0 && achieved >= FloorPass*offered && errorRate < MaxErrorRate
}

func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}
