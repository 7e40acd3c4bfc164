package benchmarks

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"strings"
)

// Plots of one scenario in one mode.
type figure struct {
	Mode       string
	Percentile template.HTML
	Timeline   template.HTML
}

type scenarioView struct {
	*ScenarioResult
	StatusText string
	Targets    []string
	Rows       []tableRow
	Figures    []figure
}

type verdictView struct {
	Verdict
	Runs string
	Med  string
}

type pageView struct {
	Res        *Results
	Title      string
	Passed     bool
	NoVerdicts bool
	Failed     int
	Hash       string
	Server     []string
	Wait       []string
	Verdicts   []verdictView
	Scenarios  []scenarioView
	Enum       []string
	Capacity   []string
	Overload   []string
}

// HTML renders res as one self-contained page: styles inline, plots as
// inline SVG, no script and nothing loaded from elsewhere.
func HTML(res *Results) ([]byte, error) {
	v := pageView{Res: res, Title: "usher-bench report", Passed: res.Passed, NoVerdicts: len(res.Verdicts) == 0}
	v.Hash, v.Server, v.Wait = hashLines(res)
	for _, vd := range res.Verdicts {
		if !vd.Pass {
			v.Failed++
		}
		med := "–"
		if len(vd.PerRun) > 0 {
			med = num(vd.Median)
		}
		v.Verdicts = append(v.Verdicts, verdictView{Verdict: vd, Runs: nums(vd.PerRun), Med: med})
	}
	for _, sr := range res.Scenarios {
		v.Scenarios = append(v.Scenarios, viewScenario(res, sr))
		if len(sr.Capacity.PerRun) > 0 {
			v.Capacity = append(v.Capacity, sr.Name+": "+capacityText(sr))
		}
	}
	v.Overload = overloadLines(res)
	v.Enum = enumerationLines(res)
	var out bytes.Buffer
	if err := pageTemplate.Execute(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func viewScenario(res *Results, sr *ScenarioResult) scenarioView {
	v := scenarioView{ScenarioResult: sr, StatusText: strings.ReplaceAll(sr.Status, "_", " ")}
	b := sr.Budget
	if sr.Hashing {
		v.Targets = append(v.Targets, fmt.Sprintf("usher: P50 ≤ hash time + %g ms = %.1f ms at 30%% of floor; P99 < %g ms at 70%%; floor %s",
			b.P50OverHash, sr.P50TargetMs, b.P99Ms, floorText(sr)))
	} else {
		v.Targets = append(v.Targets, fmt.Sprintf("usher: P50 < %g ms and P99 < %g ms at 70%% of floor; floor %s", b.P50Ms, b.P99Ms, floorText(sr)))
	}
	typ := fmt.Sprintf("typical: P50 ≤ %g ms, P95 < %g ms", b.TypicalP50Ms, b.TypicalP95Ms)
	if b.TypicalP99Ms > 0 {
		typ += fmt.Sprintf(", P99 < %g ms", b.TypicalP99Ms)
	}
	v.Targets = append(v.Targets, typ)
	for _, r := range rows(sr) {
		v.Rows = append(v.Rows, r.cells())
	}
	for _, mode := range []string{ModeQuick, ModeCapacity, ModeOverload} {
		steps := sr.stepsOf(mode)
		if len(steps) == 0 {
			continue
		}
		v.Figures = append(v.Figures, figure{
			Mode:       mode,
			Percentile: template.HTML(PercentilePlot(res, sr, mode).SVG()),
			Timeline:   template.HTML(TimelinePlot(res, sr, mode).SVG()),
		})
	}
	return v
}

// targetLines are the targets drawn on a scenario's plots for a mode.
func targetLines(res *Results, sr *ScenarioResult, mode string) []Target {
	b := sr.Budget
	if res.Parameters.Budget == BudgetTypical {
		var ts []Target
		if b.TypicalP50Ms > 0 {
			ts = append(ts, Target{Y: b.TypicalP50Ms, Label: fmt.Sprintf("typical P50 target ≤ %g ms", b.TypicalP50Ms)})
		}
		if b.TypicalP95Ms > 0 {
			ts = append(ts, Target{Y: b.TypicalP95Ms, Label: fmt.Sprintf("typical P95 target < %g ms", b.TypicalP95Ms)})
		}
		if b.TypicalP99Ms > 0 {
			ts = append(ts, Target{Y: b.TypicalP99Ms, Label: fmt.Sprintf("typical P99 target < %g ms", b.TypicalP99Ms)})
		}
		return ts
	}
	p99 := Target{Y: b.P99Ms, Label: fmt.Sprintf("P99 target < %g ms (at 70%% of floor)", b.P99Ms)}
	if mode == ModeOverload {
		p99.Label = fmt.Sprintf("P99 target < %g ms (admitted requests)", b.P99Ms)
		return []Target{p99}
	}
	if sr.Hashing {
		return []Target{
			{Y: sr.P50TargetMs, Label: fmt.Sprintf("P50 target ≤ %.1f ms = hash time + %g ms (at 30%% of floor)", sr.P50TargetMs, b.P50OverHash)},
			p99,
		}
	}
	return []Target{{Y: sr.P50TargetMs, Label: fmt.Sprintf("P50 target < %g ms (at 70%% of floor)", sr.P50TargetMs)}, p99}
}

// stepColors gives each load of a scenario its own colour, in the order
// the loads first ran.
func stepColors(steps []*StepResult) map[string]string {
	colors := map[string]string{}
	for _, s := range steps {
		if _, ok := colors[stepKey(s)]; !ok {
			colors[stepKey(s)] = Palette[len(colors)%len(Palette)]
		}
	}
	return colors
}

// stepKey tells loads apart; capacity probes differ by rate.
func stepKey(s *StepResult) string {
	if s.Mode == ModeCapacity {
		return fmt.Sprintf("probe %.1f req/s", s.OfferedRate)
	}
	return fmt.Sprintf("%s, %.1f req/s", s.Label, s.OfferedRate)
}

func modeName(mode string) string {
	switch mode {
	case ModeCapacity:
		return "capacity search"
	case ModeOverload:
		return "overload"
	}
	return "quick suite"
}

// PercentilePlot draws latency by percentile for each step of sr in mode:
// one colour per load, one dash per run, target lines across.
func PercentilePlot(res *Results, sr *ScenarioResult, mode string) Plot {
	steps := sr.stepsOf(mode)
	colors := stepColors(steps)
	p := Plot{
		Class:    "percentile-plot",
		Title:    fmt.Sprintf("%s (%s %s) — latency by percentile, %s", sr.Name, sr.Method, sr.Path, modeName(mode)),
		Subtitle: fmt.Sprintf("open-loop arrivals; latency from each request's intended start; %gs per step after %gs warm-up; floor %.1f req/s", res.Parameters.DurationS, res.Parameters.WarmupS, sr.FloorRate),
		XLabel:   "percentile (log scale of 1/(1−p): 90%, 99%, 99.9% evenly spaced)",
		YLabel:   "latency (ms, log scale)",
		X:        PercentileAxis(),
		Y:        Axis{Log: true},
		Targets:  targetLines(res, sr, mode),
	}
	runs := 0
	for _, s := range steps {
		runs = max(runs, s.Run)
		var pts []XY
		for _, c := range s.Curve {
			x := PercentileX(c.Percentile)
			if c.Percentile == 100 {
				x = math.Min(4, math.Log10(float64(max(s.Latency.Count, 1))))
			}
			pts = append(pts, XY{X: x, Y: c.Ms})
		}
		p.Series = append(p.Series, Series{
			Name:   stepKey(s) + runSuffix(s.Run, res.Parameters.Runs),
			Color:  colors[stepKey(s)],
			Dash:   Dashes[(s.Run-1)%len(Dashes)],
			Points: pts,
		})
	}
	if runs > 1 {
		styles := []string{"solid", "dashed", "dotted", "dash-dot"}
		var parts []string
		for r := 1; r <= runs; r++ {
			parts = append(parts, fmt.Sprintf("%s run %d", styles[(r-1)%len(styles)], r))
		}
		p.Note = "colour = offered load; line style = run (" + strings.Join(parts, ", ") + ")"
	}
	return p
}

func runSuffix(run, runs int) string {
	if runs <= 1 {
		return ""
	}
	return fmt.Sprintf(" · run %d", run)
}

// TimelinePlot draws latency over time: the steps of sr in mode laid end to
// end, P50 and P99 of each interval (by intended start) and the maximum,
// with a cross where an interval had errors.
func TimelinePlot(res *Results, sr *ScenarioResult, mode string) Plot {
	steps := sr.stepsOf(mode)
	p := Plot{
		Class:    "timeline-plot",
		Title:    fmt.Sprintf("%s (%s %s) — latency over time, %s", sr.Name, sr.Method, sr.Path, modeName(mode)),
		Subtitle: "each shaded band is one step (run · load), laid end to end; values per interval by intended start; warm-up not shown",
		XLabel:   "measured time, steps end to end (s)",
		YLabel:   "latency (ms, log scale)",
		Y:        Axis{Log: true},
	}
	for _, t := range targetLines(res, sr, mode) {
		if strings.Contains(t.Label, "P99") {
			p.Targets = append(p.Targets, t)
		}
	}
	p50 := Series{Name: "P50 per interval", Color: Palette[0], Width: 1.6}
	p99 := Series{Name: "P99 per interval", Color: Palette[1], Width: 1.6}
	mx := Series{Name: "max per interval", Color: "#9a9a9a", Width: 1, Dash: "3 2"}
	errs := Series{Name: "interval with errors", Color: targetColor, Markers: true}
	offset := 0.0
	for _, s := range steps {
		label := fmt.Sprintf("r%d · %s", s.Run, s.Label)
		if s.Mode == ModeCapacity {
			label = fmt.Sprintf("r%d · %.0f/s", s.Run, s.OfferedRate)
		}
		p.Bands = append(p.Bands, Band{X0: offset, X1: offset + s.DurationS, Label: label})
		for _, iv := range s.Timeline {
			x := offset + iv.StartS + s.SliceS/2
			if iv.Sent == 0 {
				p50.Points = append(p50.Points, XY{x, math.NaN()})
				p99.Points = append(p99.Points, XY{x, math.NaN()})
				mx.Points = append(mx.Points, XY{x, math.NaN()})
				continue
			}
			p50.Points = append(p50.Points, XY{x, iv.P50Ms})
			p99.Points = append(p99.Points, XY{x, iv.P99Ms})
			mx.Points = append(mx.Points, XY{x, iv.MaxMs})
			if iv.Errors > 0 {
				errs.Points = append(errs.Points, XY{x, iv.P99Ms})
			}
		}
		// Break the lines between steps.
		for _, ser := range []*Series{&p50, &p99, &mx} {
			ser.Points = append(ser.Points, XY{offset, math.NaN()})
		}
		offset += s.DurationS
	}
	p.X = Axis{Min: 0, Max: math.Max(offset, 1)}
	p.Series = []Series{mx, p50, p99}
	if len(errs.Points) > 0 {
		p.Series = append(p.Series, errs)
	}
	return p
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1600px; padding: 0 20px; color: #1b1b1b; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.verdict { display: inline-block; font-weight: 700; padding: 2px 10px; border-radius: 4px; color: #fff; }
.pass { background: #1b7f3b; } .fail { background: #b00020; } .info { background: #555; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.muted { color: #666; font-size: 13px; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; }
.figs svg { border: 1px solid #e5e5e5; border-radius: 4px; max-width: 100%; height: auto; }
ul { margin: 6px 0; } li { margin: 2px 0; }
.status-bad { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1>usher-bench report</h1>
<p>
{{if .NoVerdicts}}<span class="verdict info">NO VERDICTS</span> this mode reports for information only
{{else if .Passed}}<span class="verdict pass">PASS</span> all {{len .Verdicts}} verdicts held
{{else}}<span class="verdict fail">FAIL</span> {{.Failed}} of {{len .Verdicts}} verdicts failed{{end}}
</p>
<p class="muted">{{.Res.StartedAt.Format "2006-01-02 15:04:05 MST"}} to {{.Res.FinishedAt.Format "15:04:05 MST"}} ·
base {{.Res.Parameters.Base}} · budget <b>{{.Res.Parameters.Budget}}</b> · modes {{range $i, $m := .Res.Parameters.Modes}}{{if $i}}, {{end}}{{$m}}{{end}} ·
{{.Res.Parameters.Runs}} run(s), each verdict on their median · {{.Res.Parameters.DurationS}} s per step after {{.Res.Parameters.WarmupS}} s warm-up ·
{{.Res.Parameters.Cores}} cores for the floors{{if .Res.Parameters.FixedRate}} · fixed rate {{.Res.Parameters.FixedRate}} req/s (smoke: no floor or latency verdicts){{end}}</p>
<p class="muted">generator: {{.Res.Environment.GoVersion}} {{.Res.Environment.OS}}/{{.Res.Environment.Arch}}, {{.Res.Environment.NumCPU}} CPUs{{if .Res.Environment.CPUModel}} ({{.Res.Environment.CPUModel}}){{end}}{{if .Res.Environment.Kernel}}, kernel {{.Res.Environment.Kernel}}{{end}}, host {{.Res.Environment.Hostname}}</p>

<h2>Hash time</h2>
<ul>
<li>{{.Hash}}</li>
{{range .Server}}<li>{{.}}</li>{{end}}
{{range .Wait}}<li>{{.}}</li>{{end}}
</ul>

<h2>Verdicts</h2>
{{if .Verdicts}}
<table>
<tr><th class="l">result</th><th class="l">scenario</th><th class="l">target</th><th>per run</th><th>median</th><th class="l">detail</th></tr>
{{range .Verdicts}}<tr><td class="l">{{if .Pass}}<span class="verdict pass">PASS</span>{{else}}<span class="verdict fail">FAIL</span>{{end}}</td>
<td class="l">{{.Scenario}}</td><td class="l">{{.Description}}</td><td>{{.Runs}}</td><td>{{.Med}}{{if and .Unit (ne .Med "–")}} {{.Unit}}{{end}}</td><td class="l">{{.Detail}}</td></tr>
{{end}}</table>
{{else}}<p class="muted">No verdicts: {{if .Res.Parameters.FixedRate}}a fixed rate was offered{{else}}capacity mode is information only{{end}}.</p>{{end}}

{{if .Capacity}}<h2>Capacity (information only)</h2>
<p class="muted">The highest offered rate achieved at ≥ 95% with errors &lt; 0.1%, found by stepping ×1.25 and bisecting.</p>
<ul>{{range .Capacity}}<li>{{.}}</li>{{end}}</ul>{{end}}

{{if .Overload}}<h2>Overload</h2>
<p class="muted">Hashing routes offered three times their capacity: the excess should be shed at once with 503 overloaded while admitted requests keep their P99.</p>
<ul>{{range .Overload}}<li>{{.}}</li>{{end}}</ul>{{end}}

{{if .Enum}}<h2>Enumeration by time</h2>
<ul>{{range .Enum}}<li>{{.}}</li>{{end}}</ul>{{end}}

{{range .Scenarios}}
<section class="scenario" id="scenario-{{.Name}}" data-scenario="{{.Name}}">
<h2>{{.Name}} — {{.Title}} <span class="muted">{{.Method}} {{.Path}}</span></h2>
{{if ne .Status "ok"}}<p class="status-bad">{{.StatusText}}: {{.Detail}}</p>{{end}}
<ul class="muted">{{range .Targets}}<li>{{.}}</li>{{end}}</ul>
{{if .Rows}}
<table>
<tr><th class="l">step</th><th>offered/s</th><th>achieved/s</th><th>P50</th><th>P90</th><th>P95</th><th>P99</th><th>P99.9</th><th>max</th><th>errors</th><th>shed 503</th><th>generator CPU/req</th><th>machine busy, CPU/req</th><th class="l">errors by kind (all runs)</th></tr>
{{range .Rows}}<tr><td class="l">{{.Step}}</td><td>{{.Offered}}</td><td>{{.Achieved}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P95}}</td><td>{{.P99}}</td><td>{{.P999}}</td><td>{{.Max}}</td><td>{{.Errors}}</td><td>{{.Shed}}</td><td>{{.CPU}}</td><td>{{.Machine}}</td><td class="l">{{.ErrorKinds}}</td></tr>
{{end}}</table>
<p class="muted">Medians over the runs. P99.9 only above 10,000 samples.</p>
{{end}}
{{range .Figures}}<div class="figs" data-mode="{{.Mode}}">{{.Percentile}}{{.Timeline}}</div>{{end}}
</section>
{{end}}

{{if .Res.Notes}}<h2>Notes</h2><ul>{{range .Res.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>How to read this report</h2>
<ul class="muted">
<li>Requests arrive open loop: request <i>i</i> is due at start + <i>i</i>/rate whatever the server is doing, and its latency counts from that due time, so a stalled server is charged for its whole queue.</li>
<li>Percentile plots: the x axis spreads the tail (90%, 99%, 99.9%, 99.99% evenly spaced); a line that turns up sharply at the right is a tail. Dashed red lines are the targets; a P99 target is met where the line at 99% is below it.</li>
<li>Latency-over-time plots: steps laid end to end; spikes show when the tail happened; red crosses mark intervals with errors.</li>
<li>Floors are offered open loop on their own: they pass with the achieved rate ≥ 95% of offered and errors &lt; 0.1%. Hashing floors are cores × share ÷ the hash time measured above.</li>
<li>results.json beside this page has every number, per scenario, step and run, with an HdrHistogram (V2, base64, µs) per step.</li>
</ul>
</body>
</html>
`))

func floorText(sr *ScenarioResult) string {
	return fmt.Sprintf("%.1f req/s (%s)", sr.FloorRate, sr.FloorRule)
}
