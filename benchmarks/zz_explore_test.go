package benchmarks

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestExploreGeneratorCost(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	c := newClient("http://127.0.0.1:18181", 2048)
	rec := Generate(context.Background(), Load{Rate: 6000, Warmup: time.Second, Duration: 4 * time.Second}, get(c))
	s := Summarize(rec.All)
	t.Logf("sent %d ok %d errors %d cpu %v per req %.1f µs; p50 %.2f p99 %.2f max %.2f; thr %d", rec.Sent, rec.OK, rec.Errors, rec.CPU, float64(rec.CPU.Microseconds())/float64(rec.Sent), s.P50, s.P99, s.Max, rec.Throughput)
}
