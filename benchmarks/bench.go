// Package benchmarks is usher-bench: it measures every route of BUDGETS.md
// open-loop against a running usher, finds capacity, judges the budgets and
// draws the results.
//
// Run is the whole tool; cmd/usher-bench only turns flags into Options.
package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/usher-auth/usher/internal/password"
)

// Modes.
const (
	ModeQuick    = "quick"    // each scenario at its floor and at the loads its targets apply at
	ModeCapacity = "capacity" // each scenario stepped up to the highest rate that passes
	ModeOverload = "overload" // hashing scenarios at 3× capacity
)

// Budget columns.
const (
	BudgetUsher   = "usher"
	BudgetTypical = "typical"
)

// Options configure a run. The zero value of a field means its default
// (DefaultOptions), except SkipEnumeration, Rate and Capacity.
type Options struct {
	Base     string   // usher's public URL
	Admin    []string // admin addresses (USHER_ADMIN_ADDR) of every process, for /metrics
	Database string   // the server's USHER_DATABASE_URL, for setup
	EventKey string   // the server's USHER_EVENT_KEY, to unseal reset tokens
	Usher    string   // the usher binary, for `usher users import` and `create-admin`
	UsherEnv []string // extra KEY=VALUE for the usher commands

	Scenarios []string      // names from ScenarioNames; default all
	Modes     []string      // ModeQuick, ModeCapacity, ModeOverload, run in order
	Budget    string        // BudgetUsher or BudgetTypical
	Duration  time.Duration // measured time of one step
	Warmup    time.Duration // unmeasured lead-in of each step; negative: none
	Runs      int           // runs of everything; each verdict is their median
	Pause     time.Duration // idle time between steps, for the server to drain; negative: none

	// Rate, when set, offers every scenario this one rate instead of the
	// budget's (a smoke test): no floor or latency verdicts are made.
	Rate float64
	// Capacity gives known capacities (req/s by scenario) for overload
	// mode when capacity mode does not run first.
	Capacity map[string]float64

	Cores           int    // for hashing floors; default runtime.NumCPU()
	Argon2MemoryKiB uint32 // the server's USHER_ARGON2_MEMORY_KIB
	Argon2Time      uint32 // the server's USHER_ARGON2_TIME
	HashSamples     int    // hashes timed for the hash time

	EnumTrials      int  // trials of each side of an enumeration check
	SkipEnumeration bool // leave the enumeration rows out
	CapacityProbes  int  // steps one capacity search may take

	Timeout     time.Duration // per request, from its intended start
	MaxInFlight int           // concurrent requests of one step

	// SMTPSink, when set, is an address where the benchmark receives the
	// server's email itself (USHER_SMTP_URL pointing there), counting it.
	SMTPSink string

	Out      string    // when set, results.json and report.html are written here
	Log      io.Writer // a line per step and phase; default none
	Progress io.Writer // a live progress line (a terminal); default none
}

// DefaultOptions returns the defaults of every option.
func DefaultOptions() Options {
	return Options{
		Base:            "http://127.0.0.1:8080",
		Usher:           "usher",
		Scenarios:       slices.Clone(ScenarioNames),
		Modes:           []string{ModeQuick},
		Budget:          BudgetUsher,
		Duration:        20 * time.Second,
		Warmup:          3 * time.Second,
		Runs:            3,
		Pause:           time.Second,
		Cores:           runtime.NumCPU(),
		Argon2MemoryKiB: password.DefaultParams().MemoryKiB,
		Argon2Time:      password.DefaultParams().Time,
		HashSamples:     15,
		EnumTrials:      200,
		CapacityProbes:  10,
		Timeout:         10 * time.Second,
		MaxInFlight:     2048,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&o.Base, d.Base)
	set(&o.Usher, d.Usher)
	set(&o.Budget, d.Budget)
	if len(o.Scenarios) == 0 {
		o.Scenarios = d.Scenarios
	}
	if len(o.Modes) == 0 {
		o.Modes = d.Modes
	}
	for _, p := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.Duration, d.Duration}, {&o.Warmup, d.Warmup}, {&o.Pause, d.Pause}, {&o.Timeout, d.Timeout}} {
		if *p.v == 0 {
			*p.v = p.def
		}
	}
	o.Warmup, o.Pause = max(o.Warmup, 0), max(o.Pause, 0)
	for _, p := range []struct {
		v   *int
		def int
	}{{&o.Runs, d.Runs}, {&o.Cores, d.Cores}, {&o.HashSamples, d.HashSamples}, {&o.EnumTrials, d.EnumTrials}, {&o.CapacityProbes, d.CapacityProbes}, {&o.MaxInFlight, d.MaxInFlight}} {
		if *p.v == 0 {
			*p.v = p.def
		}
	}
	if o.Argon2MemoryKiB == 0 {
		o.Argon2MemoryKiB = d.Argon2MemoryKiB
	}
	if o.Argon2Time == 0 {
		o.Argon2Time = d.Argon2Time
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

func (o Options) validate() error {
	for _, s := range o.Scenarios {
		if !slices.Contains(ScenarioNames, s) {
			return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(ScenarioNames, ", "))
		}
	}
	for _, m := range o.Modes {
		if m != ModeQuick && m != ModeCapacity && m != ModeOverload {
			return fmt.Errorf("unknown mode %q (quick, capacity or overload)", m)
		}
	}
	if o.Budget != BudgetUsher && o.Budget != BudgetTypical {
		return fmt.Errorf("unknown budget %q (usher or typical)", o.Budget)
	}
	switch {
	case o.Runs < 1:
		return errors.New("runs must be at least 1")
	case o.Duration < 0:
		return errors.New("duration must not be negative")
	case o.Rate < 0:
		return errors.New("rate must not be negative")
	case o.Cores < 1:
		return errors.New("cores must be at least 1")
	}
	return o.hashParams().Validate()
}

// Results is everything a run measured and judged; results.json is its
// JSON form.
type Results struct {
	Tool        string            `json:"tool"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  time.Time         `json:"finished_at"`
	Parameters  Parameters        `json:"parameters"`
	Environment Environment       `json:"environment"`
	HashTime    HashTime          `json:"hash_time"`
	Baseline    Baseline          `json:"baseline"`
	Scenarios   []*ScenarioResult `json:"scenarios"`
	Enumeration Enumeration       `json:"enumeration"`
	Verdicts    []Verdict         `json:"verdicts"`
	Passed      bool              `json:"passed"` // every verdict held
	// EmailsReceived counts the emails the SMTP sink accepted (0 without one).
	EmailsReceived int64    `json:"emails_received"`
	Notes          []string `json:"notes"`
}

// Parameters echo the options of a run (secrets left out).
type Parameters struct {
	Base            string             `json:"base"`
	Admin           []string           `json:"admin"`
	Database        string             `json:"database"` // password redacted
	EventKeySet     bool               `json:"event_key_set"`
	Usher           string             `json:"usher"`
	Scenarios       []string           `json:"scenarios"`
	Modes           []string           `json:"modes"`
	Budget          string             `json:"budget"`
	DurationS       float64            `json:"duration_s"`
	WarmupS         float64            `json:"warmup_s"`
	PauseS          float64            `json:"pause_s"`
	Runs            int                `json:"runs"`
	FixedRate       float64            `json:"fixed_rate"`
	Capacity        map[string]float64 `json:"capacity_given"`
	Cores           int                `json:"cores"`
	Argon2MemoryKiB uint32             `json:"argon2_memory_kib"`
	Argon2Time      uint32             `json:"argon2_time"`
	HashSamples     int                `json:"hash_samples"`
	EnumTrials      int                `json:"enumeration_trials"`
	SkipEnumeration bool               `json:"skip_enumeration"`
	CapacityProbes  int                `json:"capacity_probes"`
	TimeoutS        float64            `json:"timeout_s"`
	MaxInFlight     int                `json:"max_in_flight"`
	SMTPSink        string             `json:"smtp_sink"`
}

// Environment describes the machine the generator ran on.
type Environment struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Hostname   string `json:"hostname"`
	Kernel     string `json:"kernel"`
	CPUModel   string `json:"cpu_model"`
}

// ScenarioResult is one scenario: its budget as resolved for this machine
// and every step it ran.
type ScenarioResult struct {
	Name          string  `json:"name"`
	Title         string  `json:"title"`
	Method        string  `json:"method"`
	Path          string  `json:"path"`
	Hashing       bool    `json:"hashing"`
	SuccessStatus int     `json:"success_status"`
	Status        string  `json:"status"` // ok, not_implemented or error
	Detail        string  `json:"detail"`
	Budget        Budget  `json:"budget"`
	FloorRate     float64 `json:"floor_rate"`
	FloorRule     string  `json:"floor_rule"`
	P50TargetMs   float64 `json:"p50_target_ms"` // usher P50 target, hash time included
	P99TargetMs   float64 `json:"p99_target_ms"`

	Steps    []*StepResult `json:"steps"`
	Capacity Capacity      `json:"capacity"`

	probed bool
}

// Scenario statuses.
const (
	StatusOK             = "ok"
	StatusNotImplemented = "not_implemented"
	StatusError          = "error"
)

// Capacity is the highest rate that passed the floor test, per run (0 when
// none did), and the lowest that failed (0 when none did).
type Capacity struct {
	PerRun     []float64 `json:"per_run"`
	LowestFail []float64 `json:"lowest_fail"`
	Median     float64   `json:"median"`
}

// StepResult is one open-loop step.
type StepResult struct {
	Mode         string  `json:"mode"`
	Run          int     `json:"run"`
	Label        string  `json:"label"`
	LoadFraction float64 `json:"load_fraction"` // of the floor; 0 for a fixed rate
	OfferedRate  float64 `json:"offered_rate"`
	WarmupS      float64 `json:"warmup_s"`
	DurationS    float64 `json:"duration_s"`

	Sent           int64             `json:"sent"`     // warm-up included
	Measured       int64             `json:"measured"` // requests after the warm-up
	OK             int64             `json:"ok"`
	Errors         int64             `json:"errors"`
	ErrorRate      float64           `json:"error_rate"`
	ErrorsByStatus map[string]int64  `json:"errors_by_status"`
	ErrorSamples   map[string]string `json:"error_samples"`
	Shed           int64             `json:"shed"` // 503 overloaded
	AchievedRate   float64           `json:"achieved_rate"`
	Passed         bool              `json:"passed"` // achieved ≥ 95% of offered, errors < 0.1%

	Latency     LatencySummary `json:"latency"`      // every measured request, from its intended start
	Admitted    LatencySummary `json:"admitted"`     // successes only
	ShedLatency LatencySummary `json:"shed_latency"` // 503 overloaded only
	Curve       []CurvePoint   `json:"percentile_curve"`
	SliceS      float64        `json:"slice_s"`
	Timeline    []Interval     `json:"timeline"`
	HDR         string         `json:"hdr_histogram"` // HdrHistogram V2 compressed, base64, in µs

	GeneratorCPUS            float64 `json:"generator_cpu_s"`
	GeneratorCPUPerRequestUs float64 `json:"generator_cpu_per_request_us"`
	// The whole machine during the step, every process on it: the busy
	// share of its CPUs, and that CPU time per request sent.
	MachineBusyShare       float64           `json:"machine_busy_share"`
	MachineCPUPerRequestUs float64           `json:"machine_cpu_per_request_us"`
	Server                 []ServerHistogram `json:"server_histograms"`
}

// Interval is one slice of a step's measured window: requests by intended
// start, and successes by completion.
type Interval struct {
	StartS    float64 `json:"start_s"`
	Sent      int64   `json:"sent"`
	OK        int64   `json:"ok"`
	Errors    int64   `json:"errors"`
	Completed int64   `json:"completed"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
}

// bench is one Run in progress.
type bench struct {
	o   Options
	f   *fixture
	res *Results

	outMu       sync.Mutex
	progressing bool

	enumUsers []string
	unsettled bool // the outbox did not drain once: stop waiting for it
}

// settleWait bounds the wait for the outbox and the mail it causes before a
// step: a reset-request step at 1000/s leaves tens of thousands of emails.
const settleWait = 5 * time.Minute

// Run measures usher as o says and returns the results; with o.Out set it
// also writes results.json and report.html there. The error is about the
// run itself (bad options, setup, a cancelled context); failed verdicts are
// in Results.Passed. Results gathered before a cancellation are returned
// and written too.
func Run(ctx context.Context, o Options) (Results, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return Results{}, err
	}
	b := &bench{o: o, res: &Results{
		Tool:        "usher-bench",
		StartedAt:   time.Now().UTC(),
		Parameters:  o.parameters(),
		Environment: environment(),
		Scenarios:   []*ScenarioResult{},
		Enumeration: Enumeration{Trials: o.EnumTrials, Runs: []EnumerationRun{}},
		Verdicts:    []Verdict{},
		Notes:       []string{},
	}}
	res := b.res
	var sink *smtpSink
	if o.SMTPSink != "" {
		var err error
		if sink, err = startSMTPSink(o.SMTPSink); err != nil {
			return *res, fmt.Errorf("SMTP sink: %w", err)
		}
		defer sink.close()
	}

	params := o.hashParams()
	b.logf("hash time: %d single-threaded argon2id hashes (m=%d KiB, t=%d, p=1) on the idle machine", o.HashSamples, params.MemoryKiB, params.Time)
	ht, hash, err := measureIdleHashTime(ctx, params, o.HashSamples)
	if err != nil {
		return *res, err
	}
	res.HashTime = ht
	b.logf("hash time: %.1f ms median (min %.1f, max %.1f) with %s", ht.MedianMs, ht.MinMs, ht.MaxMs, ht.Params())
	if ht.disturbed() {
		b.note("the machine was not idle while the hash time was measured (other work took %.0f%% of its CPUs in the attempt kept of %d; median %.1f ms vs min %.1f ms): hashing floors and targets derived from it are off",
			100*ht.OthersShare, ht.Attempts, ht.MedianMs, ht.MinMs)
	}
	if res.Baseline, err = measureBaseline(ctx, o); err != nil {
		return *res, err
	}
	bl := res.Baseline.Latency
	b.logf("baseline: a do-nothing HTTP server on this machine at %d req/s: p50 %.2f ms, p99 %.2f ms, max %.1f ms", baselineRate, bl.P50, bl.P99, bl.Max)

	cat := map[string]*scenario{}
	f, err := newFixture(ctx, o, hash)
	if err != nil {
		return *res, err
	}
	defer f.close()
	b.f = f
	for _, s := range catalogue(f) {
		cat[s.name] = s
	}
	var chosen []*scenario
	for _, name := range ScenarioNames { // BUDGETS.md's order, whatever the flag's
		if !slices.Contains(o.Scenarios, name) {
			continue
		}
		s := cat[name]
		chosen = append(chosen, s)
		res.Scenarios = append(res.Scenarios, &ScenarioResult{
			Name: s.name, Title: s.title, Method: s.method, Path: s.path, Hashing: s.budget.Hashing(),
			SuccessStatus: s.success, Status: StatusOK, Budget: s.budget,
			FloorRate:   round(s.budget.Floor(o.Cores, ht.Median()), 2),
			FloorRule:   s.budget.FloorRule(o.Cores, ht.Median()),
			P50TargetMs: round(s.budget.P50Target(ht.Median()), 3),
			P99TargetMs: s.budget.P99Ms,
			Steps:       []*StepResult{},
			Capacity:    Capacity{PerRun: []float64{}, LowestFail: []float64{}},
		})
	}
	if o.Budget == BudgetUsher {
		for _, sr := range res.Scenarios {
			if !sr.Hashing && sr.P99TargetMs < bl.P99 {
				b.note("a do-nothing HTTP server on this machine had a P99 of %.1f ms at %d req/s, above %s's P99 target of %g ms: that target is below what this machine can show", bl.P99, baselineRate, sr.Name, sr.P99TargetMs)
			}
		}
	}
	runErr := b.modes(ctx, chosen)

	res.FinishedAt = time.Now().UTC()
	if sink != nil {
		res.EmailsReceived = sink.received.Load()
	}
	res.Verdicts = Judge(res)
	res.Passed = true
	for _, v := range res.Verdicts {
		res.Passed = res.Passed && v.Pass
	}
	if o.Out != "" {
		if err := WriteReports(o.Out, res); err != nil {
			return *res, errors.Join(runErr, err)
		}
	}
	return *res, runErr
}

func (b *bench) modes(ctx context.Context, chosen []*scenario) error {
	o := b.o
	for _, mode := range o.Modes {
		for run := 1; run <= o.Runs; run++ {
			for i, sc := range chosen {
				sr := b.res.Scenarios[i]
				if !b.ready(ctx, sc, sr) {
					continue
				}
				var err error
				switch mode {
				case ModeQuick:
					err = b.quick(ctx, sc, sr, run)
				case ModeCapacity:
					err = b.capacity(ctx, sc, sr, run)
				case ModeOverload:
					if sc.budget.Hashing() {
						err = b.overload(ctx, sc, sr, run)
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					b.fail(sr, err)
				}
			}
			if mode == ModeQuick && !o.SkipEnumeration {
				if err := b.enumerate(ctx, run); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					b.note("enumeration run %d: %v", run, err)
				}
			}
		}
	}
	return nil
}

// ready probes a scenario's route once; a scenario that failed is not run
// again.
func (b *bench) ready(ctx context.Context, sc *scenario, sr *ScenarioResult) bool {
	if sr.Status != StatusOK {
		return false
	}
	if !sr.probed && sc.probe != nil {
		sr.probed = true
		if err := sc.probe(ctx); err != nil {
			b.fail(sr, err)
			return false
		}
	}
	return true
}

func (b *bench) fail(sr *ScenarioResult, err error) {
	var ni *NotImplementedError
	if errors.As(err, &ni) {
		sr.Status = StatusNotImplemented
	} else {
		sr.Status = StatusError
	}
	sr.Detail = err.Error()
	b.logf("%s: %s — %s", sr.Name, strings.ReplaceAll(sr.Status, "_", " "), sr.Detail)
}

// level is one load of a scenario in quick mode.
type level struct {
	label string
	frac  float64 // of the floor
	rate  float64
}

// levels are the loads quick mode offers a scenario, lowest first: the
// floor, and the loads at which its latency targets apply.
func (b *bench) levels(sr *ScenarioResult) []level {
	if b.o.Rate > 0 {
		return []level{{label: "fixed rate", rate: b.o.Rate}}
	}
	fracs := []float64{LatencyLoad, 1}
	switch {
	case b.o.Budget == BudgetTypical:
		fracs = []float64{LatencyLoad}
	case sr.Hashing:
		fracs = []float64{HashingP50Load, LatencyLoad, 1}
	}
	var out []level
	for _, f := range fracs {
		out = append(out, level{label: fracLabel(f), frac: f, rate: f * sr.FloorRate})
	}
	return out
}

func fracLabel(f float64) string {
	if f == 1 {
		return "floor"
	}
	return fmt.Sprintf("%.0f%% of floor", f*100)
}

func (b *bench) quick(ctx context.Context, sc *scenario, sr *ScenarioResult, run int) error {
	for _, l := range b.levels(sr) {
		if _, err := b.step(ctx, sc, sr, ModeQuick, run, l.label, l.frac, l.rate); err != nil {
			return err
		}
	}
	return nil
}

// capacity steps the offered rate up by 1.25× from the floor while it
// passes, down by 0.7× while it fails, then halves the gap between the
// highest pass and lowest fail until they are within 5%.
func (b *bench) capacity(ctx context.Context, sc *scenario, sr *ScenarioResult, run int) error {
	rate := sr.FloorRate
	if b.o.Rate > 0 {
		rate = b.o.Rate
	}
	if rate <= 0 {
		rate = 10
	}
	pass, fail := 0.0, 0.0
	for range b.o.CapacityProbes {
		st, err := b.step(ctx, sc, sr, ModeCapacity, run, "capacity probe", b.frac(sr, rate), rate)
		if err != nil {
			return err
		}
		if st.Passed {
			pass = max(pass, rate)
		} else if fail == 0 || rate < fail {
			fail = rate
		}
		switch {
		case fail == 0:
			rate *= 1.25
		case pass == 0:
			rate *= 0.7
		default:
			rate = (pass + fail) / 2
		}
		if pass > 0 && fail > 0 && fail/pass <= 1.05 || rate < 1 {
			break
		}
	}
	sr.Capacity.PerRun = append(sr.Capacity.PerRun, round(pass, 1))
	sr.Capacity.LowestFail = append(sr.Capacity.LowestFail, round(fail, 1))
	sr.Capacity.Median = round(median(sr.Capacity.PerRun), 1)
	if pass == 0 {
		b.logf("%s: capacity run %d: no probe passed, down to %.1f req/s (floor %.1f)", sr.Name, run, fail, sr.FloorRate)
	} else {
		b.logf("%s: capacity run %d: %.1f req/s (floor %.1f)", sr.Name, run, pass, sr.FloorRate)
	}
	return nil
}

// overload offers a hashing scenario three times its capacity: the
// measured one when capacity mode ran, else the given one, else the floor.
func (b *bench) overload(ctx context.Context, sc *scenario, sr *ScenarioResult, run int) error {
	base, what := sr.FloorRate, "floor"
	if c := b.o.Capacity[sr.Name]; c > 0 {
		base, what = c, "capacity"
	}
	if sr.Capacity.Median > 0 {
		base, what = sr.Capacity.Median, "capacity"
	}
	rate := 3 * base
	_, err := b.step(ctx, sc, sr, ModeOverload, run, "3× "+what, b.frac(sr, rate), rate)
	return err
}

func (b *bench) frac(sr *ScenarioResult, rate float64) float64 {
	if sr.FloorRate <= 0 {
		return 0
	}
	return round(rate/sr.FloorRate, 3)
}

// step prepares and runs one open-loop step and records it in sr.
func (b *bench) step(ctx context.Context, sc *scenario, sr *ScenarioResult, mode string, run int, label string, frac, rate float64) (*StepResult, error) {
	o := b.o
	c := newClient(o.Base, o.MaxInFlight)
	defer c.close()
	load := Load{Rate: rate, Warmup: o.Warmup, Duration: o.Duration, Timeout: o.Timeout, MaxInFlight: o.MaxInFlight,
		Success: func(s int) bool { return s == sc.success }}
	prefix := fmt.Sprintf("%-13s %-8s run %d/%d  %-16s %8.1f req/s", sr.Name, mode, run, o.Runs, label, rate)
	b.progress(prefix + "  preparing")
	fire, err := sc.prepare(ctx, c, rate, load.Count())
	if err != nil {
		b.clearProgress()
		return nil, err
	}
	if !b.unsettled {
		b.progress(prefix + "  waiting for the outbox and its email to drain")
		left, err := b.f.settle(ctx, settleWait)
		if err != nil {
			b.clearProgress()
			return nil, err
		}
		if left > 0 {
			b.unsettled = true
			b.note("%d events were still unpublished or their email unsent after %v (are the relay and the mailer running, with an SMTP server?); steps no longer wait for them", left, settleWait)
		}
	}
	if b.f.autovacuumOff {
		b.progress(prefix + "  vacuuming the database (autovacuum is off)")
	}
	switch vacuumed, err := b.f.vacuum(ctx); {
	case err != nil:
		b.note("the database was not vacuumed before a step: %v", err)
	case vacuumed:
		b.note("the server's PostgreSQL runs with autovacuum off: each step starts after a VACUUM (ANALYZE) of its database, as autovacuum would keep it, so that one step's dead rows do not slow the next")
	}
	var before scrape
	if len(o.Admin) > 0 {
		if before, err = scrapeAll(ctx, o.Admin); err != nil {
			b.note("server histograms not read: %v", err)
		}
	}
	load.Progress = func(p Progress) {
		at := fmt.Sprintf("%5.1f/%.1fs", p.Elapsed.Seconds(), p.Total.Seconds())
		if p.Elapsed > p.Total {
			at = "draining"
		}
		b.progress(fmt.Sprintf("%s  %s  sent %d  done %d  errors %d  in flight %d",
			prefix, at, p.Sent, p.Done, p.Errors, p.InFlight))
	}
	rec := Generate(ctx, load, fire)
	b.clearProgress()
	if ctx.Err() != nil {
		return nil, ctx.Err() // an interrupted step would only mislead
	}
	st := newStepResult(rec, mode, run, label, frac)
	if before != nil {
		if after, err := scrapeAll(ctx, o.Admin); err == nil {
			st.Server = diff(before, after)
		}
	}
	sr.Steps = append(sr.Steps, st)
	kinds := errorList(st.ErrorsByStatus)
	if kinds != "" {
		kinds = " (" + kinds + ")"
	}
	b.logf("%s  achieved %.1f  p50 %s  p99 %s  max %s  errors %d%s", prefix, st.AchievedRate,
		fmtMs(st.Latency.P50), fmtMs(st.Latency.P99), fmtMs(st.Latency.Max), st.Errors, kinds)
	if st.ErrorsByStatus["429 rate_limited"] > 0 {
		b.note("the server rate-limited the benchmark (429): start it with USHER_RATE_LIMITS=off")
	}
	if n := st.ErrorsByStatus["501 not_implemented"]; n > 0 && n == st.Measured {
		return st, &NotImplementedError{Route: sc.method + " " + sc.path}
	}
	select {
	case <-time.After(o.Pause):
	case <-ctx.Done():
		return st, ctx.Err()
	}
	return st, nil
}

func newStepResult(rec *Recording, mode string, run int, label string, frac float64) *StepResult {
	l := rec.Load
	st := &StepResult{
		Mode: mode, Run: run, Label: label, LoadFraction: frac,
		OfferedRate: round(l.Rate, 2), WarmupS: l.Warmup.Seconds(), DurationS: l.Duration.Seconds(),
		Sent: rec.Sent, Measured: rec.Count, OK: rec.OK, Errors: rec.Errors, Shed: rec.Shed,
		ErrorsByStatus: rec.ByStatus, ErrorSamples: rec.Samples,
		Latency: Summarize(rec.All), Admitted: Summarize(rec.Admitted), ShedLatency: Summarize(rec.ShedHist),
		Curve:         Curve(rec.All),
		SliceS:        SliceWidth(l.Duration).Seconds(),
		Timeline:      []Interval{},
		GeneratorCPUS: rec.CPU.Seconds(),
		Server:        []ServerHistogram{},
	}
	if rec.Count > 0 {
		st.ErrorRate = float64(rec.Errors) / float64(rec.Count)
	}
	if l.Duration > 0 {
		st.AchievedRate = round(float64(rec.Throughput)/l.Duration.Seconds(), 2)
	}
	st.MachineBusyShare = round(rec.MachineBusy, 3)
	if rec.Sent > 0 {
		st.GeneratorCPUPerRequestUs = round(float64(rec.CPU.Microseconds())/float64(rec.Sent), 1)
		st.MachineCPUPerRequestUs = round(float64(rec.MachineCPU.Microseconds())/float64(rec.Sent), 1)
	}
	st.Passed = Passes(st.OfferedRate, st.AchievedRate, st.ErrorRate)
	for i, s := range rec.Slices {
		st.Timeline = append(st.Timeline, Interval{
			StartS: round(float64(i)*st.SliceS, 3), Sent: s.Sent, OK: s.OK, Errors: s.Errors, Completed: s.Completed,
			P50Ms: ms(s.Hist.ValueAtQuantile(50)), P99Ms: ms(s.Hist.ValueAtQuantile(99)), MaxMs: ms(s.Hist.Max()),
		})
	}
	if enc, err := rec.All.Encode(hdrV2); err == nil {
		st.HDR = string(enc)
	}
	return st
}

// hashParams are the server's argon2id parameters, as the bench hashes.
func (o Options) hashParams() password.Params {
	return password.Params{MemoryKiB: o.Argon2MemoryKiB, Time: o.Argon2Time, Threads: 1}
}

func (o Options) parameters() Parameters {
	return Parameters{
		Base: o.Base, Admin: nonNil(o.Admin), Database: redactURL(o.Database), EventKeySet: o.EventKey != "",
		Usher: o.Usher, Scenarios: o.Scenarios, Modes: o.Modes, Budget: o.Budget,
		DurationS: o.Duration.Seconds(), WarmupS: o.Warmup.Seconds(), PauseS: o.Pause.Seconds(), Runs: o.Runs,
		FixedRate: o.Rate, Capacity: nonNilMap(o.Capacity), Cores: o.Cores,
		Argon2MemoryKiB: o.Argon2MemoryKiB, Argon2Time: o.Argon2Time, HashSamples: o.HashSamples,
		EnumTrials: o.EnumTrials, SkipEnumeration: o.SkipEnumeration, CapacityProbes: o.CapacityProbes,
		TimeoutS: o.Timeout.Seconds(), MaxInFlight: o.MaxInFlight, SMTPSink: o.SMTPSink,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]float64) map[string]float64 {
	if m == nil {
		return map[string]float64{}
	}
	return m
}

func environment() Environment {
	e := Environment{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	e.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return e
}

// Output: log lines and one live progress line that they push aside.

func (b *bench) logf(format string, args ...any) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	if b.progressing && b.o.Progress != nil {
		fmt.Fprint(b.o.Progress, "\r\033[K")
		b.progressing = false
	}
	fmt.Fprintf(b.o.Log, format+"\n", args...)
}

func (b *bench) progress(line string) {
	if b.o.Progress == nil {
		return
	}
	b.outMu.Lock()
	defer b.outMu.Unlock()
	fmt.Fprint(b.o.Progress, "\r\033[K"+line)
	b.progressing = true
}

func (b *bench) clearProgress() {
	if b.o.Progress == nil {
		return
	}
	b.outMu.Lock()
	defer b.outMu.Unlock()
	if b.progressing {
		fmt.Fprint(b.o.Progress, "\r\033[K")
		b.progressing = false
	}
}

// note records something the reader of the results should know, once.
func (b *bench) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if slices.Contains(b.res.Notes, n) {
		return
	}
	b.res.Notes = append(b.res.Notes, n)
	b.logf("note: %s", n)
}

func fmtMs(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// errorList is "kind: n, kind: n", by kind.
func errorList(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
