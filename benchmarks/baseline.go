package benchmarks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
)

// baselineRate is the rate the machine's baseline is offered at: about a
// third of GET /me's floor, which a do-nothing server answers with a small
// share of one core, so that what it measures is the machine and not the
// server's work.
const baselineRate = 2000

// Baseline is the latency of a do-nothing HTTP server on this machine,
// offered baselineRate by the same open-loop generator and client as every
// step, before the scenarios run. Whatever tail it has, the machine adds to
// any server: a P99 target below its P99 cannot be told apart from the
// machine's own noise.
type Baseline struct {
	Rate    float64        `json:"rate"`
	Latency LatencySummary `json:"latency"`
}

// measureBaseline serves `{}` to every request from inside usher-bench and
// measures it for one step's warm-up and duration.
func measureBaseline(ctx context.Context, o Options) (Baseline, error) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	c := newClient(srv.URL, o.MaxInFlight)
	defer c.close()
	load := Load{Rate: baselineRate, Warmup: o.Warmup, Duration: o.Duration, Timeout: o.Timeout, MaxInFlight: o.MaxInFlight}
	rec := Generate(ctx, load, func(ctx context.Context, _ int) Outcome {
		return c.call(ctx, http.MethodGet, "/", nil, "", nil)
	})
	if err := ctx.Err(); err != nil {
		return Baseline{}, err
	}
	if rec.Errors > 0 {
		return Baseline{}, fmt.Errorf("baseline: %d of %d requests to a do-nothing server failed (%v)", rec.Errors, rec.Count, errorList(rec.ByStatus))
	}
	return Baseline{Rate: baselineRate, Latency: Summarize(rec.All)}, nil
}
