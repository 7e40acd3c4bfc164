package benchmarks

import (
	"math"
	"testing"
	"time"
)

func TestHashingFloor(t *testing.T) {
	for _, c := range []struct {
		cores int
		share float64
		hash  time.Duration
		want  float64
	}{
		{2, 0.80, 30 * time.Millisecond, 53.333},
		{2, 0.75, 30 * time.Millisecond, 50},
		{4, 0.75, 25 * time.Millisecond, 120},
		{1, 0.80, 100 * time.Millisecond, 8},
		{2, 0.80, 0, 0},
	} {
		if got := HashingFloor(c.cores, c.share, c.hash); math.Abs(got-c.want) > 0.001 {
			t.Errorf("HashingFloor(%d, %g, %v) = %.3f, want %.3f", c.cores, c.share, c.hash, got, c.want)
		}
	}
	if got := Budgets["login"].Floor(2, 30*time.Millisecond); math.Abs(got-53.333) > 0.001 {
		t.Errorf("login floor on 2 cores at 30 ms = %.3f, want 53.333", got)
	}
	if got := Budgets["me"].Floor(2, 30*time.Millisecond); got != 6000 {
		t.Errorf("me floor = %g, want the absolute 6000", got)
	}
	if got := Budgets["register"].P50Target(31500 * time.Microsecond); got != 41.5 {
		t.Errorf("register P50 target at 31.5 ms hash = %g, want 41.5", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{10, 500, 12}, 12}, // one noisy run does not decide
		{[]float64{1}, 1},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %g, want %g", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

// runs builds a hashing scenario's quick steps: per run, (p50, p99,
// achieved ratio, error rate) at 30%, 70% and the floor.
func judged(t *testing.T, budget string, perRun [][4]float64) map[string]Verdict {
	t.Helper()
	sr := &ScenarioResult{Name: "login", Hashing: true, Status: StatusOK, Budget: Budgets["login"],
		FloorRate: 50, P50TargetMs: 35, P99TargetMs: 300}
	for i, r := range perRun {
		for _, frac := range []float64{HashingP50Load, LatencyLoad, 1} {
			offered := frac * 50
			sr.Steps = append(sr.Steps, &StepResult{Mode: ModeQuick, Run: i + 1, Label: fracLabel(frac), LoadFraction: frac,
				OfferedRate: offered, AchievedRate: r[2] * offered, ErrorRate: r[3],
				Latency: LatencySummary{P50: r[0], P95: r[1], P99: r[1]}})
		}
	}
	res := &Results{Parameters: Parameters{Budget: budget}, HashTime: HashTime{MedianMs: 30}, Scenarios: []*ScenarioResult{sr}}
	out := map[string]Verdict{}
	for _, v := range Judge(res) {
		out[v.Check] = v
	}
	return out
}

func TestJudgeTakesTheMedianOfRuns(t *testing.T) {
	for _, c := range []struct {
		name   string
		budget string
		runs   [][4]float64
		want   map[string]bool
	}{
		{"all held", BudgetUsher,
			[][4]float64{{33, 100, 1, 0}, {34, 120, 0.99, 0}, {32, 90, 1, 0}},
			map[string]bool{"floor": true, "p50": true, "p99": true}},
		{"one bad run is outvoted", BudgetUsher,
			[][4]float64{{33, 100, 1, 0}, {80, 900, 0.5, 0.2}, {32, 90, 0.97, 0}},
			map[string]bool{"floor": true, "p50": true, "p99": true}},
		{"two bad runs fail", BudgetUsher,
			[][4]float64{{36, 350, 0.9, 0}, {80, 900, 0.5, 0}, {32, 90, 1, 0}},
			map[string]bool{"floor": false, "p50": false, "p99": false}},
		{"P50 at exactly hash time + 5 ms holds", BudgetUsher,
			[][4]float64{{35, 100, 1, 0}, {35, 100, 1, 0}, {35, 100, 1, 0}},
			map[string]bool{"floor": true, "p50": true, "p99": true}},
		{"errors of 0.1% fail the floor and the targets", BudgetUsher,
			[][4]float64{{33, 100, 1, 0.001}, {33, 100, 1, 0.002}, {33, 100, 1, 0.001}},
			map[string]bool{"floor": false, "p50": false, "p99": false}},
		{"typical columns", BudgetTypical,
			[][4]float64{{140, 290, 1, 0}, {160, 310, 1, 0}, {120, 280, 1, 0}},
			map[string]bool{"p50": true, "p95": true, "p99": true}},
		{"typical P95 broken", BudgetTypical,
			[][4]float64{{140, 320, 1, 0}, {160, 310, 1, 0}, {120, 280, 1, 0}},
			map[string]bool{"p50": true, "p95": false, "p99": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := judged(t, c.budget, c.runs)
			if len(got) != len(c.want) {
				t.Fatalf("got verdicts %v, want %v", keys(got), c.want)
			}
			for check, pass := range c.want {
				v, ok := got[check]
				if !ok {
					t.Fatalf("no %s verdict", check)
				}
				if v.Pass != pass {
					t.Errorf("%s: pass %v, want %v (%s; per run %v, median %g)", check, v.Pass, pass, v.Description, v.PerRun, v.Median)
				}
			}
		})
	}
}

func TestJudgeEnumerationAndUnbuiltRoutes(t *testing.T) {
	res := &Results{
		HashTime: HashTime{MedianMs: 30},
		Scenarios: []*ScenarioResult{{Name: "reset-request", Status: StatusNotImplemented,
			Detail: "POST /v1/auth/password-reset/request answered 501 not_implemented"}},
		Enumeration: Enumeration{Trials: 200, Runs: []EnumerationRun{
			{Run: 1, Login: EnumerationPair{Measured: true, DiffMs: 1.0}, Reset: EnumerationPair{Error: "501"}},
			{Run: 2, Login: EnumerationPair{Measured: true, DiffMs: 4.0}, Reset: EnumerationPair{Error: "501"}},
			{Run: 3, Login: EnumerationPair{Measured: true, DiffMs: 2.5}, Reset: EnumerationPair{Error: "501"}},
		}},
	}
	got := map[string]Verdict{}
	for _, v := range Judge(res) {
		got[v.Check] = v
	}
	if v := got["runs"]; v.Pass || v.Scenario != "reset-request" {
		t.Errorf("unbuilt route: got %+v, want a failed runs verdict", v)
	}
	if v := got["login enumeration"]; !v.Pass || v.Median != 2.5 || v.Target != 3 {
		t.Errorf("login enumeration: pass %v median %g target %g; want pass with median 2.5 < 3 (10%% of 30 ms)", v.Pass, v.Median, v.Target)
	}
	if v := got["reset enumeration"]; v.Pass {
		t.Errorf("reset enumeration passed though its route failed: %+v", v)
	}
}

func keys(m map[string]Verdict) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
