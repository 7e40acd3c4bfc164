package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-auth/usher/benchmarks"
	"github.com/usher-auth/usher/internal/testenv"
)

// usher-bench, run for a few seconds against a started usher serve: every
// scenario runs without errors, results.json carries every field, and the
// email reaches the benchmark's own SMTP sink (steps wait for the previous
// step's email, so a sink that took none would stall them).
func TestUsherBenchAgainstServe(t *testing.T) {
	sink := testenv.FreeAddr(t)
	env := stack(t, append(fastHashing, "USHER_SMTP_URL=smtp://"+sink+"?starttls=none")...)
	c := start(t, "serve", env...)
	c.waitReady(t)
	out := t.TempDir()
	res, err := benchmarks.Run(t.Context(), benchmarks.Options{
		Base:            c.base,
		Admin:           []string{strings.TrimPrefix(c.admin, "http://")},
		Database:        envValue(env, "USHER_DATABASE_URL"),
		EventKey:        envValue(env, "USHER_EVENT_KEY"),
		Usher:           usherBin,
		UsherEnv:        env,
		Rate:            20,
		Duration:        2 * time.Second,
		Warmup:          500 * time.Millisecond,
		Runs:            1,
		HashSamples:     3,
		EnumTrials:      20,
		Argon2MemoryKiB: 64,
		Argon2Time:      1,
		SMTPSink:        sink,
		Out:             out,
	})
	if err != nil {
		t.Fatalf("usher-bench: %v", err)
	}
	if len(res.Scenarios) != len(benchmarks.ScenarioNames) {
		t.Fatalf("got %d scenarios, want %d", len(res.Scenarios), len(benchmarks.ScenarioNames))
	}
	for _, s := range res.Scenarios {
		if s.Status != "ok" || len(s.Steps) == 0 {
			t.Errorf("scenario %s: status %q (%s), %d steps", s.Name, s.Status, s.Detail, len(s.Steps))
			continue
		}
		for _, st := range s.Steps {
			if st.Errors != 0 || st.OK == 0 {
				t.Errorf("scenario %s step %s: %d ok, %d errors %v", s.Name, st.Label, st.OK, st.Errors, st.ErrorsByStatus)
			}
			if st.MachineBusyShare <= 0 || st.MachineBusyShare > 1 || st.MachineCPUPerRequestUs <= 0 {
				t.Errorf("scenario %s step %s: machine busy %v, %v µs per request; want both measured", s.Name, st.Label, st.MachineBusyShare, st.MachineCPUPerRequestUs)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	for _, field := range []string{"tool", "started_at", "finished_at", "parameters", "environment", "hash_time", "baseline", "scenarios", "verdicts", "passed"} {
		if _, ok := doc[field]; !ok {
			t.Errorf("results.json has no %q", field)
		}
	}
	for _, note := range res.Notes {
		if strings.Contains(note, "steps no longer wait") {
			t.Errorf("a step did not settle: %s", note)
		}
	}
	if res.HashTime.Attempts < 1 || res.HashTime.MedianMs <= 0 {
		t.Errorf("hash time: %+v, want a median from at least one attempt", res.HashTime)
	}
	if bl := res.Baseline; bl.Latency.Count < int64(bl.Rate) || bl.Latency.P50 <= 0 || bl.Latency.P99 < bl.Latency.P50 {
		t.Errorf("baseline: %+v, want a do-nothing server's latencies over two seconds", bl)
	}
	if res.EmailsReceived == 0 {
		t.Errorf("the SMTP sink received no email; registrations and reset requests send some")
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Errorf("report.html: %v", err)
	}
}
