package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResults is a tiny run of two scenarios over three runs, its steps
// measured for real against a local server (so every field is filled as a
// run fills it), and the hashing one also in overload mode.
func fakeResults(t *testing.T) *Results {
	t.Helper()
	fakeOnce.Do(func() { fake = makeFake() })
	return fake
}

var (
	fakeOnce sync.Once
	fake     *Results
)

func makeFake() *Results {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("shed") != "" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"code":"overloaded"}`))
		}
	}))
	defer srv.Close()
	c := newClient(srv.URL, 64)
	defer c.close()
	step := func(mode string, run int, frac float64, shedEvery int) *StepResult {
		l := Load{Rate: 400, Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond}
		rec := Generate(context.Background(), l, func(ctx context.Context, i int) Outcome {
			if shedEvery > 0 && i%shedEvery == 0 {
				return c.call(ctx, http.MethodGet, "/?shed=1", nil, "", nil)
			}
			return c.call(ctx, http.MethodGet, "/", nil, "", nil)
		})
		st := newStepResult(rec, mode, run, fracLabel(frac), frac)
		st.Server = []ServerHistogram{{Metric: MetricHashDuration, Labels: map[string]string{"algorithm": "argon2id", "op": "verify"}, Count: 10, MeanMs: 31, P50Ms: 30, P90Ms: 33, P99Ms: 40}}
		return st
	}
	res := &Results{
		Tool: "usher-bench", StartedAt: time.Now().UTC(), FinishedAt: time.Now().UTC(),
		Parameters: DefaultOptions().parameters(), Environment: environment(),
		HashTime: HashTime{Algorithm: "argon2id", MemoryKiB: 19456, Time: 2, Threads: 1, Samples: 3, MedianMs: 30, MinMs: 29, MaxMs: 31, SamplesMs: []float64{29, 30, 31}},
		Enumeration: Enumeration{Trials: 200, Runs: []EnumerationRun{{Run: 1,
			Login: EnumerationPair{Measured: true, A: "unknown email", B: "wrong password", AMedianMs: 30.5, BMedianMs: 31, DiffMs: 0.5},
			Reset: EnumerationPair{Measured: true, A: "unknown email", B: "known email", AMedianMs: 2, BMedianMs: 2.2, DiffMs: 0.2}}}},
		Notes: []string{"a note"},
	}
	res.Parameters.Modes = []string{ModeQuick, ModeOverload}
	login := &ScenarioResult{Name: "login", Title: "login", Method: "POST", Path: "/v1/auth/login", Hashing: true, SuccessStatus: 200,
		Status: StatusOK, Budget: Budgets["login"], FloorRate: 53.3, FloorRule: "80% of 2 cores ÷ 30 ms hash", P50TargetMs: 35, P99TargetMs: 300,
		Capacity: Capacity{PerRun: []float64{60, 62, 61}, LowestFail: []float64{63, 65, 64}, Median: 61}}
	me := &ScenarioResult{Name: "me", Title: "authenticated GET", Method: "GET", Path: "/v1/users/me", SuccessStatus: 200,
		Status: StatusOK, Budget: Budgets["me"], FloorRate: 6000, FloorRule: "6000 req/s (absolute)", P50TargetMs: 1.5, P99TargetMs: 10,
		Capacity: Capacity{PerRun: []float64{}, LowestFail: []float64{}}}
	// The steps run at once: their numbers only need to be real, not clean.
	type job struct {
		sr   *ScenarioResult
		mode string
		run  int
		frac float64
		shed int
	}
	var jobs []job
	for run := 1; run <= 3; run++ {
		for _, frac := range []float64{HashingP50Load, LatencyLoad, 1} {
			jobs = append(jobs, job{login, ModeQuick, run, frac, 0})
		}
		for _, frac := range []float64{LatencyLoad, 1} {
			jobs = append(jobs, job{me, ModeQuick, run, frac, 0})
		}
	}
	jobs = append(jobs, job{login, ModeOverload, 1, 3, 3})
	steps := make([]*StepResult, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { steps[i] = step(j.mode, j.run, j.frac, j.shed) })
	}
	wg.Wait()
	for i, j := range jobs {
		j.sr.Steps = append(j.sr.Steps, steps[i])
	}
	res.Scenarios = []*ScenarioResult{login, me}
	res.Verdicts = Judge(res)
	return res
}

func TestReportHasOnePlotPerScenarioWithTargets(t *testing.T) {
	// The quick suite only: one percentile plot per scenario.
	res := *fakeResults(t)
	res.Parameters.Modes = []string{ModeQuick}
	login := *res.Scenarios[0]
	login.Steps = login.stepsOf(ModeQuick)
	res.Scenarios = []*ScenarioResult{&login, res.Scenarios[1]}
	page, err := HTML(&res)
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"<script", "http-equiv", `src="http`, `href="http`, "@import", "url(http"} {
		if bytes.Contains(page, []byte(banned)) {
			t.Errorf("report.html contains %q: it must be self-contained", banned)
		}
	}

	// Parse the page as HTML and count, per scenario section, the plots and
	// their labelled target lines.
	type plot struct {
		class   string
		targets int
		labels  []string
		title   string
	}
	sections := map[string][]plot{}
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = false
	dec.AutoClose = xml.HTMLAutoClose
	dec.Entity = xml.HTMLEntity
	var (
		section string
		cur     *plot
		inLabel bool
		inTitle bool
	)
	attr := func(e xml.StartElement, name string) string {
		for _, a := range e.Attr {
			if a.Name.Local == name {
				return a.Value
			}
		}
		return ""
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("report.html does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			switch {
			case e.Name.Local == "section":
				section = attr(e, "data-scenario")
			case e.Name.Local == "svg":
				sections[section] = append(sections[section], plot{class: attr(e, "class")})
				cur = &sections[section][len(sections[section])-1]
			case cur != nil && e.Name.Local == "line" && attr(e, "class") == "target":
				cur.targets++
			case cur != nil && e.Name.Local == "text" && attr(e, "class") == "target-label":
				inLabel = true
			case cur != nil && e.Name.Local == "text" && attr(e, "class") == "plot-title":
				inTitle = true
			}
		case xml.CharData:
			if inLabel {
				cur.labels = append(cur.labels, string(e))
			}
			if inTitle {
				cur.title += string(e)
			}
		case xml.EndElement:
			switch e.Name.Local {
			case "svg":
				cur = nil
			case "text":
				inLabel, inTitle = false, false
			}
		}
	}
	for _, sc := range res.Scenarios {
		var percentile []plot
		timeline := 0
		for _, p := range sections[sc.Name] {
			switch p.class {
			case "percentile-plot":
				percentile = append(percentile, p)
			case "timeline-plot":
				timeline++
			}
		}
		if len(percentile) != 1 || timeline != 1 {
			t.Fatalf("%s: %d percentile and %d timeline plots, want one each", sc.Name, len(percentile), timeline)
		}
		p := percentile[0]
		if p.targets < 2 || len(p.labels) != p.targets {
			t.Errorf("%s: %d target lines with %d labels, want the P50 and P99 targets, each labelled", sc.Name, p.targets, len(p.labels))
		}
		if !strings.Contains(strings.Join(p.labels, "|"), "P99 target < ") {
			t.Errorf("%s: target labels %q lack the P99 target", sc.Name, p.labels)
		}
		if !strings.Contains(p.title, sc.Name) || !strings.Contains(p.title, "percentile") {
			t.Errorf("%s: plot title %q does not say what it shows", sc.Name, p.title)
		}
	}
	if len(sections["login"]) != 2 {
		t.Errorf("login: %d plots, want 2", len(sections["login"]))
	}
}

func TestPercentilePlotIsWellFormedSVG(t *testing.T) {
	res := fakeResults(t)
	svg := PercentilePlot(res, res.Scenarios[0], ModeQuick).SVG()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var lines, targets, paths int
	var texts []string
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("percentile plot is not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			switch e.Name.Local {
			case "line":
				lines++
				for _, a := range e.Attr {
					if a.Name.Local == "class" && a.Value == "target" {
						targets++
					}
				}
			case "path":
				paths++
			case "text":
				inText = true
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(e))
			}
		case xml.EndElement:
			if e.Name.Local == "text" {
				inText = false
			}
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"99%", "99.9%", "99.99%", "percentile", "latency (ms", "P50 target", "P99 target", "run 2"} {
		if !strings.Contains(all, want) {
			t.Errorf("plot text lacks %q: %s", want, all)
		}
	}
	if targets != 2 {
		t.Errorf("%d target lines, want 2", targets)
	}
	if paths < 9 { // 3 loads × 3 runs
		t.Errorf("%d paths, want a line per step and run (9)", paths)
	}
}

// TestResultsJSONHasEveryField writes a tiny fake run and checks that
// every field of every result type is in results.json, even when zero or
// null, so consumers can rely on the keys.
func TestResultsJSONHasEveryField(t *testing.T) {
	res := fakeResults(t)
	dir := t.TempDir()
	if err := WriteReports(dir, res); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Fatalf("report.html not written: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	checkFields(t, "results", reflect.TypeOf(Results{}), doc)

	// Spot checks of what a reader looks for first.
	steps := doc["scenarios"].([]any)[0].(map[string]any)["steps"].([]any)
	first := steps[0].(map[string]any)
	lat := first["latency"].(map[string]any)
	if _, ok := lat["p99_9_ms"]; !ok || lat["p99_9_ms"] != nil {
		t.Errorf("p99_9_ms = %v, want present and null under 10,000 samples", lat["p99_9_ms"])
	}
	if first["hdr_histogram"] == "" {
		t.Error("hdr_histogram is empty")
	}
	over := steps[len(steps)-1].(map[string]any)
	if over["mode"] != ModeOverload || over["shed"].(float64) == 0 || over["errors_by_status"].(map[string]any)["503 overloaded"] == nil {
		t.Errorf("overload step: mode %v shed %v errors %v; want 503 overloaded counted", over["mode"], over["shed"], over["errors_by_status"])
	}
}

// checkFields walks t's exported JSON fields and fails for any missing
// from v, recursing into structs and the elements of slices.
func checkFields(t *testing.T, path string, typ reflect.Type, v any) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Struct:
		if typ == reflect.TypeOf(time.Time{}) {
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			if v != nil {
				t.Errorf("%s: got %T, want an object", path, v)
			}
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			val, ok := obj[name]
			if !ok {
				t.Errorf("%s.%s missing from results.json", path, name)
				continue
			}
			checkFields(t, path+"."+name, f.Type, val)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			if v == nil {
				t.Errorf("%s is null, want a list", path)
			}
			return
		}
		for i, e := range arr {
			if i > 2 {
				break
			}
			checkFields(t, path+"[]", typ.Elem(), e)
		}
	}
}
