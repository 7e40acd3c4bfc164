package benchmarks

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteReports writes results.json and report.html into dir.
func WriteReports(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	page, err := HTML(res)
	if err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "report.html"), page, 0o644)
}

// row is a table row: the steps of one scenario, mode and load over the
// runs, shown as medians.
type row struct {
	mode  string
	label string
	steps []*StepResult
}

// rows groups the quick and overload steps of sr by load, in the order
// they first ran. Capacity probes are summarized separately.
func rows(sr *ScenarioResult) []row {
	var out []row
	for _, s := range sr.Steps {
		if s.Mode == ModeCapacity {
			continue
		}
		i := slices.IndexFunc(out, func(r row) bool { return r.mode == s.Mode && r.label == s.Label })
		if i < 0 {
			out = append(out, row{mode: s.Mode, label: s.Label})
			i = len(out) - 1
		}
		out[i].steps = append(out[i].steps, s)
	}
	return out
}

// med is the median over r's runs of f.
func (r row) med(f func(*StepResult) float64) float64 {
	xs := make([]float64, len(r.steps))
	for i, s := range r.steps {
		xs[i] = f(s)
	}
	return median(xs)
}

// tableRow is one row of the table, formatted, as the terminal and the
// page both print it.
type tableRow struct {
	Step, Offered, Achieved, P50, P90, P95, P99, P999, Max, Errors, Shed, CPU, Machine string
	ErrorKinds                                                                         string
}

// cells formats r's medians over the runs.
func (r row) cells() tableRow {
	p999 := "–"
	if v, ok := r.medP999(); ok {
		p999 = fmtMs(v)
	}
	label := r.label
	if r.mode == ModeOverload {
		label = "overload " + label
	}
	return tableRow{
		Step:     label,
		Offered:  fmt.Sprintf("%.1f", r.med(func(s *StepResult) float64 { return s.OfferedRate })),
		Achieved: fmt.Sprintf("%.1f", r.med(func(s *StepResult) float64 { return s.AchievedRate })),
		P50:      fmtMs(r.med(func(s *StepResult) float64 { return s.Latency.P50 })),
		P90:      fmtMs(r.med(func(s *StepResult) float64 { return s.Latency.P90 })),
		P95:      fmtMs(r.med(func(s *StepResult) float64 { return s.Latency.P95 })),
		P99:      fmtMs(r.med(func(s *StepResult) float64 { return s.Latency.P99 })),
		P999:     p999,
		Max:      fmtMs(r.med(func(s *StepResult) float64 { return s.Latency.Max })),
		Errors: fmt.Sprintf("%.0f (%.2f%%)", r.med(func(s *StepResult) float64 { return float64(s.Errors) }),
			100*r.med(func(s *StepResult) float64 { return s.ErrorRate })),
		Shed:       fmt.Sprintf("%.0f", r.med(func(s *StepResult) float64 { return float64(s.Shed) })),
		CPU:        fmt.Sprintf("%.0f µs", r.med(func(s *StepResult) float64 { return s.GeneratorCPUPerRequestUs })),
		Machine:    r.machine(),
		ErrorKinds: errorList(r.errorKinds()),
	}
}

// machine is the machine's median busy share and CPU per request, or –
// where it was not measured.
func (r row) machine() string {
	busy := r.med(func(s *StepResult) float64 { return s.MachineBusyShare })
	if busy == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%, %s", 100*busy, fmtMs(r.med(func(s *StepResult) float64 { return s.MachineCPUPerRequestUs })/1000))
}

// medP999 is the median P99.9 of the runs that have one.
func (r row) medP999() (float64, bool) {
	var xs []float64
	for _, s := range r.steps {
		if s.Latency.P999 != nil {
			xs = append(xs, *s.Latency.P999)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	return median(xs), true
}

// errorKinds sums the errors of r's runs by kind.
func (r row) errorKinds() map[string]int64 {
	m := map[string]int64{}
	for _, s := range r.steps {
		for k, n := range s.ErrorsByStatus {
			m[k] += n
		}
	}
	return m
}

// serverAt summarizes a server histogram over the runs of one step: the
// series with the most observations, with the medians of its figures.
func serverAt(steps []*StepResult, metric string) (ServerHistogram, bool) {
	best := map[string][]ServerHistogram{}
	var keys []string
	for _, s := range steps {
		for _, h := range s.Server {
			if h.Metric != metric {
				continue
			}
			k := seriesKey(h.Metric, h.Labels)
			if _, ok := best[k]; !ok {
				keys = append(keys, k)
			}
			best[k] = append(best[k], h)
		}
	}
	if len(keys) == 0 {
		return ServerHistogram{}, false
	}
	pick := keys[0]
	total := func(hs []ServerHistogram) (t float64) {
		for _, h := range hs {
			t += h.Count
		}
		return t
	}
	for _, k := range keys {
		if total(best[k]) > total(best[pick]) {
			pick = k
		}
	}
	hs := best[pick]
	get := func(f func(ServerHistogram) float64) float64 {
		xs := make([]float64, len(hs))
		for i, h := range hs {
			xs[i] = f(h)
		}
		return round(median(xs), 3)
	}
	return ServerHistogram{
		Metric: metric, Labels: hs[0].Labels,
		Count:  get(func(h ServerHistogram) float64 { return h.Count }),
		MeanMs: get(func(h ServerHistogram) float64 { return h.MeanMs }),
		P50Ms:  get(func(h ServerHistogram) float64 { return h.P50Ms }),
		P90Ms:  get(func(h ServerHistogram) float64 { return h.P90Ms }),
		P99Ms:  get(func(h ServerHistogram) float64 { return h.P99Ms }),
	}, true
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// hashLines are the hash time, the server's hash histogram beside it, and
// the hash-queue wait at 70% load, as the table and the page print them.
func hashLines(res *Results) (hash string, server []string, wait []string) {
	ht := res.HashTime
	hash = fmt.Sprintf("hash time %.1f ms: median of %d single-threaded hashes before the run, %s (min %.1f, max %.1f ms; other work took %.0f%% of the %d CPUs meanwhile, lowest median of %d attempts)",
		ht.MedianMs, ht.Samples, ht.Params(), ht.MinMs, ht.MaxMs, 100*ht.OthersShare, res.Environment.NumCPU, ht.Attempts)
	for _, sr := range res.Scenarios {
		if !sr.Hashing {
			continue
		}
		steps := at(sr.stepsOf(ModeQuick), LatencyLoad)
		if len(steps) == 0 {
			steps = sr.stepsOf(ModeQuick)
		}
		if len(steps) == 0 {
			continue
		}
		where := fmt.Sprintf("%s at %s (%.1f req/s)", sr.Name, steps[0].Label, steps[0].OfferedRate)
		if h, ok := serverAt(steps, MetricHashDuration); ok {
			server = append(server, fmt.Sprintf("server hash time during %s: mean %.1f ms, p50 ≈ %.1f ms, p99 ≈ %.1f ms over %.0f hashes [%s%s]",
				where, h.MeanMs, h.P50Ms, h.P99Ms, h.Count, h.Metric, labelString(h.Labels)))
		}
		if h, ok := serverAt(steps, MetricHashQueueWait); ok {
			what := "hash-queue wait at 70% load"
			if steps[0].LoadFraction != LatencyLoad {
				what = "hash-queue wait"
			}
			wait = append(wait, fmt.Sprintf("%s, %s: mean %.2f ms, p50 ≈ %.2f ms, p99 ≈ %.2f ms over %.0f jobs [%s]",
				what, where, h.MeanMs, h.P50Ms, h.P99Ms, h.Count, h.Metric))
		}
	}
	if len(res.Parameters.Admin) == 0 {
		server = append(server, "server hash histogram: not read (pass --admin with each process's admin address)")
		wait = append(wait, "hash-queue wait at 70% load: not read (pass --admin)")
	}
	return hash, server, wait
}

// PrintTable writes the terminal summary of res.
func PrintTable(w io.Writer, res *Results) {
	p := res.Parameters
	fmt.Fprintf(w, "\nusher-bench  %s  base %s  budget %s  modes %s  runs %d  cores %d  steps %gs (+%gs warm-up)\n",
		res.StartedAt.Format("2006-01-02 15:04 MST"), p.Base, p.Budget, strings.Join(p.Modes, ","), p.Runs, p.Cores, p.DurationS, p.WarmupS)
	hash, server, wait := hashLines(res)
	fmt.Fprintln(w, hash)
	for _, l := range server {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	table := false
	for _, sr := range res.Scenarios {
		table = table || len(rows(sr)) > 0 || sr.Status != StatusOK
	}
	if table {
		fmt.Fprintln(tw, "scenario\tstep\toffered/s\tachieved/s\tp50\tp90\tp95\tp99\tp99.9\tmax\terrors\tshed\tcpu/req\tmachine")
	}
	var kinds []string
	for _, sr := range res.Scenarios {
		rs := rows(sr)
		if len(rs) == 0 && sr.Status != StatusOK {
			fmt.Fprintf(tw, "%s\t%s\n", sr.Name, strings.ReplaceAll(sr.Status, "_", " "))
			continue
		}
		for _, r := range rs {
			c := r.cells()
			fmt.Fprintln(tw, strings.Join([]string{sr.Name, c.Step, c.Offered, c.Achieved, c.P50, c.P90, c.P95, c.P99, c.P999,
				c.Max, c.Errors, c.Shed, c.CPU, c.Machine}, "\t"))
			if c.ErrorKinds != "" {
				kinds = append(kinds, fmt.Sprintf("  %s %s: %s", sr.Name, c.Step, c.ErrorKinds))
			}
		}
	}
	tw.Flush()
	if table {
		fmt.Fprintf(w, "medians over %d runs; latency from each request's intended start (open loop); p99.9 only above %d samples;\ncpu/req is the load generator's own CPU per request, machine the share of all CPUs busy during the step (every process) and that CPU time per request\n", p.Runs, P999MinSamples)
	}
	if len(kinds) > 0 {
		fmt.Fprintln(w, "errors by kind (all runs):")
		for _, k := range kinds {
			fmt.Fprintln(w, k)
		}
	}
	for _, l := range wait {
		fmt.Fprintln(w, l)
	}
	if p.SMTPSink != "" {
		fmt.Fprintf(w, "emails received by the benchmark's SMTP sink on %s: %d\n", p.SMTPSink, res.EmailsReceived)
	}

	for _, sr := range res.Scenarios {
		if sr.Status != StatusOK {
			fmt.Fprintf(w, "%s: %s — %s\n", sr.Name, strings.ReplaceAll(sr.Status, "_", " "), sr.Detail)
		}
	}
	var caps []string
	for _, sr := range res.Scenarios {
		if len(sr.Capacity.PerRun) > 0 {
			caps = append(caps, fmt.Sprintf("  %-14s %s", sr.Name, capacityText(sr)))
		}
	}
	if len(caps) > 0 {
		fmt.Fprintln(w, "\ncapacity (information only: the highest rate achieved ≥ 95% with errors < 0.1%):")
		for _, c := range caps {
			fmt.Fprintln(w, c)
		}
	}
	for _, l := range overloadLines(res) {
		fmt.Fprintln(w, "overload "+l)
	}
	for _, l := range enumerationLines(res) {
		fmt.Fprintln(w, "enumeration "+l)
	}

	if len(res.Verdicts) > 0 {
		fmt.Fprintln(w, "\nverdicts (each on the median of the runs):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, v := range res.Verdicts {
			mark := "PASS"
			if !v.Pass {
				mark = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\truns %s\t%s\n", mark, v.Scenario, v.Description, nums(v.PerRun), v.Detail)
		}
		tw.Flush()
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	failed := 0
	for _, v := range res.Verdicts {
		if !v.Pass {
			failed++
		}
	}
	switch {
	case len(res.Verdicts) == 0:
		fmt.Fprintln(w, "\nRESULT: no verdicts in this mode (information only)")
	case failed == 0:
		fmt.Fprintf(w, "\nRESULT: PASS — all %d verdicts held\n", len(res.Verdicts))
	default:
		fmt.Fprintf(w, "\nRESULT: FAIL — %d of %d verdicts failed\n", failed, len(res.Verdicts))
	}
}

// capacityText is a scenario's capacity with its runs and floor; a run
// where no probe passed shows as below its lowest failing probe.
func capacityText(sr *ScenarioResult) string {
	c := sr.Capacity
	runs := make([]string, len(c.PerRun))
	for i, v := range c.PerRun {
		runs[i] = fmt.Sprintf("%.1f", v)
		if v == 0 && i < len(c.LowestFail) && c.LowestFail[i] > 0 {
			runs[i] = fmt.Sprintf("< %.1f", c.LowestFail[i])
		}
	}
	head := fmt.Sprintf("%.1f req/s", c.Median)
	if c.Median == 0 {
		head = "no probe passed"
	}
	return fmt.Sprintf("%s (median of runs: %s; floor %.1f req/s)", head, strings.Join(runs, ", "), sr.FloorRate)
}

// num prints a measured value with as many digits as it deserves.
func num(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

func nums(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = num(x)
	}
	return strings.Join(parts, " ")
}

// overloadLines describes each overload step: what was shed and how the
// admitted requests fared.
func overloadLines(res *Results) []string {
	var lines []string
	for _, sr := range res.Scenarios {
		for _, r := range rows(sr) {
			if r.mode != ModeOverload {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s at %s (%.1f req/s): %.0f of %.0f shed with 503 overloaded (shed p50 %s); admitted p50 %s, p99 %s, max %s (medians of %d runs)",
				sr.Name, r.label, r.med(func(s *StepResult) float64 { return s.OfferedRate }),
				r.med(func(s *StepResult) float64 { return float64(s.Shed) }),
				r.med(func(s *StepResult) float64 { return float64(s.Measured) }),
				fmtMs(r.med(func(s *StepResult) float64 { return s.ShedLatency.P50 })),
				fmtMs(r.med(func(s *StepResult) float64 { return s.Admitted.P50 })),
				fmtMs(r.med(func(s *StepResult) float64 { return s.Admitted.P99 })),
				fmtMs(r.med(func(s *StepResult) float64 { return s.Admitted.Max })), len(r.steps)))
		}
	}
	return lines
}

// enumerationLines gives each run's enumeration pairs: the two medians and
// their difference, or why the pair was not measured.
func enumerationLines(res *Results) []string {
	var lines []string
	for _, r := range res.Enumeration.Runs {
		for _, p := range []struct {
			what string
			p    EnumerationPair
		}{{"login", r.Login}, {"reset request", r.Reset}} {
			switch {
			case p.p.Measured:
				lines = append(lines, fmt.Sprintf("run %d, %s: %s median %.2f ms, %s median %.2f ms, difference %.3f ms (%d trials each, interleaved)",
					r.Run, p.what, p.p.A, p.p.AMedianMs, p.p.B, p.p.BMedianMs, p.p.DiffMs, res.Enumeration.Trials))
			case p.p.Error != "":
				lines = append(lines, fmt.Sprintf("run %d, %s: %s", r.Run, p.what, p.p.Error))
			}
		}
	}
	return lines
}
