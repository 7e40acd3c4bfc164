package benchmarks

import (
	"fmt"
	"math"
)

// Verdict is one target of BUDGETS.md judged on the median of the runs.
type Verdict struct {
	Scenario    string    `json:"scenario"`
	Check       string    `json:"check"` // floor, p50, p95, p99, overload p99, enumeration, runs
	Description string    `json:"description"`
	Step        string    `json:"step"` // the step it reads
	Rate        float64   `json:"offered_rate"`
	Target      float64   `json:"target"`
	Unit        string    `json:"unit"`
	PerRun      []float64 `json:"per_run"`
	Median      float64   `json:"median"`
	ErrorRates  []float64 `json:"error_rate_per_run"`
	ErrorMedian float64   `json:"error_rate_median"`
	Pass        bool      `json:"pass"`
	Detail      string    `json:"detail"`
}

// Judge makes the verdicts of BUDGETS.md from the steps in res: for each
// scenario its floor and latency targets from quick mode (the usher or the
// typical columns, as res.Parameters.Budget says), the admitted P99 in
// overload mode, and the enumeration rows. A verdict reads the median over
// the runs of each quantity. A scenario that could not run fails.
func Judge(res *Results) []Verdict {
	out := []Verdict{}
	typical := res.Parameters.Budget == BudgetTypical
	hashMs := res.HashTime.MedianMs
	for _, sr := range res.Scenarios {
		if sr.Status != StatusOK {
			out = append(out, Verdict{Scenario: sr.Name, Check: "runs", Description: "the scenario runs",
				PerRun: []float64{}, ErrorRates: []float64{}, Detail: sr.Status + ": " + sr.Detail})
			continue
		}
		quick := sr.stepsOf(ModeQuick)
		if len(quick) > 0 && res.Parameters.FixedRate == 0 {
			b := sr.Budget
			if typical {
				if b.TypicalP50Ms > 0 {
					out = append(out, latency(sr, quick, LatencyLoad, "p50", b.TypicalP50Ms, true, "typical "))
				}
				if b.TypicalP95Ms > 0 {
					out = append(out, latency(sr, quick, LatencyLoad, "p95", b.TypicalP95Ms, false, "typical "))
				}
				if b.TypicalP99Ms > 0 {
					out = append(out, latency(sr, quick, LatencyLoad, "p99", b.TypicalP99Ms, false, "typical "))
				}
			} else {
				out = append(out, floor(sr, quick))
				if sr.Hashing {
					v := latency(sr, quick, HashingP50Load, "p50", sr.P50TargetMs, true, "")
					v.Description = fmt.Sprintf("P50 ≤ hash time %.1f ms + %g ms = %.1f ms at 30%% of floor", hashMs, b.P50OverHash, sr.P50TargetMs)
					if v.Rate > 0 {
						v.Description += fmt.Sprintf(" (%.1f req/s)", v.Rate)
					}
					out = append(out, v)
				} else {
					out = append(out, latency(sr, quick, LatencyLoad, "p50", sr.P50TargetMs, false, ""))
				}
				out = append(out, latency(sr, quick, LatencyLoad, "p99", b.P99Ms, false, ""))
			}
		}
		if over := sr.stepsOf(ModeOverload); len(over) > 0 {
			target := sr.Budget.P99Ms
			if typical {
				target = sr.Budget.TypicalP99Ms
			}
			if target > 0 {
				out = append(out, overloadVerdict(sr, over, target))
			}
		}
	}
	out = append(out, enumerationVerdicts(res)...)
	return out
}

func (sr *ScenarioResult) stepsOf(mode string) []*StepResult {
	var out []*StepResult
	for _, s := range sr.Steps {
		if s.Mode == mode {
			out = append(out, s)
		}
	}
	return out
}

func at(steps []*StepResult, frac float64) []*StepResult {
	var out []*StepResult
	for _, s := range steps {
		if math.Abs(s.LoadFraction-frac) < 1e-6 {
			out = append(out, s)
		}
	}
	return out
}

// floor: offered at the floor, the median achieved ÷ offered must be at
// least 95% and the median error rate under 0.1%.
func floor(sr *ScenarioResult, quick []*StepResult) Verdict {
	v := Verdict{Scenario: sr.Name, Check: "floor", Step: fracLabel(1), Rate: sr.FloorRate, Target: FloorPass,
		Unit: "achieved/offered", PerRun: []float64{}, ErrorRates: []float64{},
		Description: fmt.Sprintf("offered the floor %.1f req/s (%s), achieves ≥ 95%% with errors < 0.1%%", sr.FloorRate, sr.FloorRule)}
	steps := at(quick, 1)
	for _, s := range steps {
		v.PerRun = append(v.PerRun, round(s.AchievedRate/s.OfferedRate, 4))
		v.ErrorRates = append(v.ErrorRates, s.ErrorRate)
	}
	if len(steps) == 0 {
		v.Detail = "not measured"
		return v
	}
	v.Median, v.ErrorMedian = median(v.PerRun), median(v.ErrorRates)
	v.Pass = v.Median >= FloorPass && v.ErrorMedian < MaxErrorRate
	v.Detail = fmt.Sprintf("achieved %.1f%% of offered, errors %.3f%% (medians of %d runs)", 100*v.Median, 100*v.ErrorMedian, len(steps))
	return v
}

// latency: the median over runs of a percentile at a load must meet the
// target (≤ when inclusive, else <), with the median error rate under 0.1%.
func latency(sr *ScenarioResult, quick []*StepResult, frac float64, check string, target float64, inclusive bool, prefix string) Verdict {
	op := "<"
	if inclusive {
		op = "≤"
	}
	v := Verdict{Scenario: sr.Name, Check: check, Step: fracLabel(frac), Rate: round(frac*sr.FloorRate, 2), Target: target,
		Unit: "ms", PerRun: []float64{}, ErrorRates: []float64{},
		Description: fmt.Sprintf("%s%s %s %g ms at %s (%.1f req/s)", prefix, pname(check), op, target, fracLabel(frac), frac*sr.FloorRate)}
	steps := at(quick, frac)
	for _, s := range steps {
		v.PerRun = append(v.PerRun, percentile(s.Latency, check))
		v.ErrorRates = append(v.ErrorRates, s.ErrorRate)
	}
	if len(steps) == 0 {
		v.Detail = "not measured"
		return v
	}
	v.Median, v.ErrorMedian = median(v.PerRun), median(v.ErrorRates)
	met := v.Median < target || inclusive && v.Median == target
	v.Pass = met && v.ErrorMedian < MaxErrorRate
	v.Detail = fmt.Sprintf("median %s %.2f ms over %d runs", pname(check), v.Median, len(steps))
	if v.ErrorMedian >= MaxErrorRate {
		v.Detail += fmt.Sprintf("; errors %.2f%% ≥ 0.1%%", 100*v.ErrorMedian)
	}
	return v
}

// overloadVerdict: beyond capacity the admitted requests still meet their
// P99; the shed ones are counted.
func overloadVerdict(sr *ScenarioResult, over []*StepResult, target float64) Verdict {
	v := Verdict{Scenario: sr.Name, Check: "overload p99", Step: over[0].Label, Rate: over[0].OfferedRate, Target: target,
		Unit: "ms", PerRun: []float64{}, ErrorRates: []float64{},
		Description: fmt.Sprintf("at %s (%.1f req/s) the admitted requests' P99 < %g ms", over[0].Label, over[0].OfferedRate, target)}
	var shed, other []float64
	for _, s := range over {
		v.PerRun = append(v.PerRun, s.Admitted.P99)
		v.ErrorRates = append(v.ErrorRates, s.ErrorRate)
		if s.Measured > 0 {
			shed = append(shed, float64(s.Shed)/float64(s.Measured))
			other = append(other, float64(s.Errors-s.Shed)/float64(s.Measured))
		}
	}
	v.Median, v.ErrorMedian = median(v.PerRun), median(v.ErrorRates)
	v.Pass = v.Median < target && median(other) < MaxErrorRate
	v.Detail = fmt.Sprintf("shed with 503 overloaded: %.1f%%; other errors %.2f%% (medians)", 100*finite(median(shed)), 100*finite(median(other)))
	return v
}

func enumerationVerdicts(res *Results) []Verdict {
	var out []Verdict
	hashMs := res.HashTime.MedianMs
	type side struct {
		check, desc string
		target      float64
		get         func(EnumerationRun) EnumerationPair
	}
	for _, sd := range []side{
		{"login enumeration", fmt.Sprintf("login medians of unknown email and wrong password differ by < 10%% of hash time (%.2f ms)", hashMs/10), hashMs / 10,
			func(r EnumerationRun) EnumerationPair { return r.Login }},
		{"reset enumeration", "reset request medians of unknown and known email differ by < 1 ms", 1,
			func(r EnumerationRun) EnumerationPair { return r.Reset }},
	} {
		v := Verdict{Scenario: "enumeration", Check: sd.check, Description: sd.desc, Target: round(sd.target, 3), Unit: "ms",
			PerRun: []float64{}, ErrorRates: []float64{}}
		ran, failed := false, ""
		for _, r := range res.Enumeration.Runs {
			p := sd.get(r)
			switch {
			case p.Measured:
				v.PerRun = append(v.PerRun, p.DiffMs)
				ran = true
			case p.Error != "" && p.Error != "login not selected" && p.Error != "reset-request not selected":
				ran, failed = true, p.Error
			}
		}
		if !ran {
			continue
		}
		if len(v.PerRun) > 0 {
			v.Median = median(v.PerRun)
		}
		v.Pass = failed == "" && len(v.PerRun) > 0 && v.Median < sd.target
		v.Detail = fmt.Sprintf("median difference %.3f ms over %d runs, %d trials each side", v.Median, len(v.PerRun), res.Enumeration.Trials)
		if failed != "" {
			v.Detail = failed
		}
		out = append(out, v)
	}
	return out
}

func pname(check string) string {
	switch check {
	case "p50":
		return "P50"
	case "p95":
		return "P95"
	case "p99":
		return "P99"
	}
	return check
}

func percentile(s LatencySummary, check string) float64 {
	switch check {
	case "p50":
		return s.P50
	case "p95":
		return s.P95
	}
	return s.P99
}
