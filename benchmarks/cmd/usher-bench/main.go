// Command usher-bench measures a running usher against BUDGETS.md: every
// budgeted route open-loop, capacity, overload, and the enumeration rows.
// It exits 0 when every verdict held, 1 when one failed, 2 on an error.
//
// See benchmarks/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/usher-auth/usher/benchmarks"
)

// errFailed means the run finished and at least one verdict failed.
var errFailed = errors.New("some verdicts failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errFailed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "usher-bench:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	d := benchmarks.DefaultOptions()
	fs := flag.NewFlagSet("usher-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		base  = fs.String("base", d.Base, "usher's public URL")
		admin = fs.String("admin", "", "comma-separated admin addresses (USHER_ADMIN_ADDR) of every usher process, for /metrics")
		// The secrets' defaults are read after parsing, so -h never prints them.
		database  = fs.String("database", "", "the server's database URL, for setup (default $USHER_DATABASE_URL)")
		eventKey  = fs.String("event-key", "", "the server's USHER_EVENT_KEY, to unseal reset tokens (default $USHER_EVENT_KEY, else $USHER_DATA_DIR/dev-keys.json)")
		usher     = fs.String("usher", defaultUsher(), "the usher binary, for 'usher users import' and 'usher users create-admin'")
		scenarios = fs.String("scenarios", strings.Join(benchmarks.ScenarioNames, ","), "comma-separated scenarios")
		duration  = fs.Duration("duration", d.Duration, "measured time of each step")
		warmup    = fs.Duration("warmup", d.Warmup, "unmeasured warm-up before each step")
		budget    = fs.String("budget", d.Budget, "which columns of BUDGETS.md to check: usher or typical")
		runs      = fs.Int("runs", d.Runs, "runs of everything; each verdict is their median")
		mode      = fs.String("mode", "quick", "quick, capacity or overload; a comma list runs them in order (capacity,overload uses the capacity found)")
		out       = fs.String("out", "bench-results", "directory for results.json and report.html")
		memory    = fs.Uint("argon2-memory-kib", envUint(getenv, "USHER_ARGON2_MEMORY_KIB", uint(d.Argon2MemoryKiB)), "the server's argon2id memory in KiB (USHER_ARGON2_MEMORY_KIB)")
		iters     = fs.Uint("argon2-time", envUint(getenv, "USHER_ARGON2_TIME", uint(d.Argon2Time)), "the server's argon2id passes (USHER_ARGON2_TIME)")
		cores     = fs.Int("cores", runtime.NumCPU(), "cores of the server machine, for the hashing floors")
		rate      = fs.Float64("rate", 0, "offer every scenario this rate instead of the budget's (smoke test; no floor or latency verdicts)")
		capacity  = fs.String("capacity", "", "known capacities for overload mode, e.g. login=60,register=55")
		samples   = fs.Int("hash-samples", d.HashSamples, "hashes timed for the hash time")
		trials    = fs.Int("enum-trials", d.EnumTrials, "trials of each side of the enumeration checks")
		noEnum    = fs.Bool("no-enumeration", false, "skip the enumeration checks")
		probes    = fs.Int("capacity-probes", d.CapacityProbes, "steps one capacity search may take")
		timeout   = fs.Duration("timeout", d.Timeout, "per-request timeout, from its intended start")
		inflight  = fs.Int("max-in-flight", d.MaxInFlight, "concurrent requests (and connections) per step")
		pause     = fs.Duration("pause", d.Pause, "idle time between steps")
		sink      = fs.String("smtp-sink", "", "receive the server's email on this address (point USHER_SMTP_URL at it) instead of an SMTP server on the same machine")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := benchmarks.Options{
		Base: *base, Admin: list(*admin), Database: *database, EventKey: *eventKey, Usher: *usher,
		Scenarios: list(*scenarios), Modes: list(*mode), Budget: *budget,
		Duration: *duration, Warmup: *warmup, Runs: *runs, Pause: *pause, Rate: *rate,
		Cores: *cores, Argon2MemoryKiB: uint32(*memory), Argon2Time: uint32(*iters),
		HashSamples: *samples, EnumTrials: *trials, SkipEnumeration: *noEnum, CapacityProbes: *probes,
		Timeout: *timeout, MaxInFlight: *inflight, SMTPSink: *sink, Out: *out, Log: stderr,
	}
	// An explicit zero means none; in Options a zero takes the default.
	if *warmup == 0 {
		o.Warmup = -1
	}
	if *pause == 0 {
		o.Pause = -1
	}
	if o.Database == "" {
		o.Database = getenv("USHER_DATABASE_URL")
	}
	if o.EventKey == "" {
		o.EventKey = getenv("USHER_EVENT_KEY")
	}
	if o.EventKey == "" {
		o.EventKey = devEventKey(getenv)
	}
	if *capacity != "" {
		o.Capacity = map[string]float64{}
		for _, kv := range list(*capacity) {
			k, v, ok := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(v, 64)
			if !ok || err != nil {
				return fmt.Errorf("--capacity %q: want name=rate", kv)
			}
			o.Capacity[k] = f
		}
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.Progress = stderr
	}
	res, err := benchmarks.Run(ctx, o)
	if len(res.Scenarios) > 0 {
		benchmarks.PrintTable(stdout, &res)
		fmt.Fprintf(stdout, "results: %s, %s\n", filepath.Join(*out, "results.json"), filepath.Join(*out, "report.html"))
	}
	if err != nil {
		return err
	}
	if !res.Passed {
		return errFailed
	}
	return nil
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envUint(getenv func(string) string, name string, def uint) uint {
	if v, err := strconv.ParseUint(getenv(name), 10, 32); err == nil {
		return uint(v)
	}
	return def
}

// defaultUsher prefers the repository's bin/usher (make build) when run
// from the repository, else usher on PATH.
func defaultUsher() string {
	if _, err := os.Stat(filepath.Join("bin", "usher")); err == nil {
		return filepath.Join("bin", "usher")
	}
	return "usher"
}

// devEventKey reads the development key `usher serve` generates when
// USHER_EVENT_KEY is unset.
func devEventKey(getenv func(string) string) string {
	dir := getenv("USHER_DATA_DIR")
	if dir == "" {
		dir = ".usher-data"
	}
	raw, err := os.ReadFile(filepath.Join(dir, "dev-keys.json"))
	if err != nil {
		return ""
	}
	var keys struct {
		EventKey string `json:"event_key"`
	}
	if json.Unmarshal(raw, &keys) != nil {
		return ""
	}
	return keys.EventKey
}
