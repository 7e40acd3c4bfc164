package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Outcome is how one request went: an HTTP status (0 when no response
// came), the problem code of an error response, or a transport error.
type Outcome struct {
	Status int
	Code   string
	Err    error
}

// Fire sends request i of a step and reports its outcome. It must return
// when ctx ends.
type Fire func(ctx context.Context, i int) Outcome

// Load is one open-loop step: requests at a fixed rate for Warmup plus
// Duration, whatever the server does.
type Load struct {
	Rate     float64       // requests per second offered
	Warmup   time.Duration // sent but not measured
	Duration time.Duration // measured
	// Timeout bounds one request from its intended start; past it the
	// request counts as an error with its full latency. Default 10 s.
	Timeout time.Duration
	// MaxInFlight bounds concurrent requests (and so connections). When it
	// is reached the scheduler waits, and the wait is charged to the
	// latency of the requests it delays. Default 2048.
	MaxInFlight int
	// Success tells which statuses are the route's success; default 2xx.
	Success func(status int) bool
	// Progress, when set, is called about twice a second while the step runs.
	Progress func(Progress)
}

// Progress is a snapshot of a running step.
type Progress struct {
	Elapsed, Total time.Duration
	Sent, Done     int64
	Errors         int64
	InFlight       int64
}

// Count is the number of requests a step sends.
func (l Load) Count() int {
	return int(math.Ceil(l.Rate * (l.Warmup + l.Duration).Seconds()))
}

// Latencies are recorded in microseconds from 1 µs to one hour.
const (
	histMin     = 1
	histMax     = int64(time.Hour / time.Microsecond)
	histDigits  = 3
	sliceDigits = 2
)

// errOutOfTokens is a step that needed more single-use tokens than were
// prepared for it (a bug of the bench, counted apart).
var errOutOfTokens = errors.New("bench ran out of prepared tokens")

// hdrV2 is the HdrHistogram encoding results.json carries.
const hdrV2 = hdrhistogram.V2CompressedEncodingCookieBase

func newHist(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, digits)
}

// Recording is what one step measured. Only requests whose intended start
// falls after the warm-up are counted in the histograms and counts.
type Recording struct {
	Load     Load
	Start    time.Time // intended start of request 0
	Measured time.Time // end of the warm-up
	End      time.Time // end of the measured window

	Sent       int64 // every request sent, warm-up included
	Count      int64 // measured requests
	OK         int64
	Errors     int64
	Shed       int64            // 503 overloaded among Errors
	ByStatus   map[string]int64 // error counts by "503 overloaded", "timeout", …
	Samples    map[string]string
	Throughput int64 // successes that completed inside the measured window

	All      *hdrhistogram.Histogram // every measured request
	Admitted *hdrhistogram.Histogram // successes only
	ShedHist *hdrhistogram.Histogram // 503 overloaded only
	Slices   []*Slice

	CPU time.Duration // the generator's own user+system CPU during the step
	// MachineBusy is the share of all the machine's CPU time that was busy
	// during the step (Linux; 0 elsewhere), MachineCPU that CPU time: what
	// every process on the machine took.
	MachineBusy float64
	MachineCPU  time.Duration
}

// Slice is a stretch of the measured window, by intended start.
type Slice struct {
	Sent      int64
	OK        int64
	Errors    int64
	Completed int64 // successes completing in it, whatever their start
	Hist      *hdrhistogram.Histogram
}

// SliceWidth is the width of a step's time-series intervals: about a
// hundred of them, never under 250 ms.
func SliceWidth(d time.Duration) time.Duration {
	w := d / 100
	if w < 250*time.Millisecond {
		w = 250 * time.Millisecond
	}
	return w.Round(50 * time.Millisecond)
}

type recorder struct {
	mu  sync.Mutex
	rec *Recording
	w   time.Duration
}

func (r *recorder) slice(t time.Time) *Slice {
	i := int(t.Sub(r.rec.Measured) / r.w)
	if i < 0 || i >= len(r.rec.Slices) {
		return nil
	}
	return r.rec.Slices[i]
}

func (r *recorder) record(intended, done time.Time, out Outcome, success bool) {
	us := done.Sub(intended).Microseconds()
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	if success && !done.Before(rec.Measured) && !done.After(rec.End) {
		rec.Throughput++
		if s := r.slice(done); s != nil {
			s.Completed++
		}
	}
	if intended.Before(rec.Measured) {
		return
	}
	rec.Count++
	rec.All.RecordValue(us)
	s := r.slice(intended)
	if s != nil {
		s.Sent++
		s.Hist.RecordValue(us)
	}
	if success {
		rec.OK++
		rec.Admitted.RecordValue(us)
		if s != nil {
			s.OK++
		}
		return
	}
	rec.Errors++
	if s != nil {
		s.Errors++
	}
	key := errorKey(out)
	rec.ByStatus[key]++
	if _, seen := rec.Samples[key]; !seen && out.Err != nil {
		rec.Samples[key] = out.Err.Error()
	}
	if out.Status == 503 && out.Code == "overloaded" {
		rec.Shed++
		rec.ShedHist.RecordValue(us)
	}
}

// errorKey names an unsuccessful outcome for the error table.
func errorKey(out Outcome) string {
	switch {
	case out.Err != nil && errors.Is(out.Err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(out.Err, errOutOfTokens):
		return "bench ran out of tokens"
	case out.Err != nil && out.Status != 0:
		return fmt.Sprintf("%d unreadable answer", out.Status)
	case out.Err != nil:
		var ne net.Error
		if errors.As(out.Err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "transport error"
	case out.Code != "":
		return fmt.Sprintf("%d %s", out.Status, out.Code)
	}
	return fmt.Sprintf("%d", out.Status)
}

// Generate runs one open-loop step: request i is due at Start + i/Rate and
// is sent then, by an idle worker or a new one, however many earlier
// requests are still waiting for an answer. Its latency is measured from that intended
// time, so a server that stalls is charged for every request that should
// have started during the stall (no coordinated omission).
func Generate(ctx context.Context, l Load, fire Fire) *Recording {
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	if l.MaxInFlight <= 0 {
		l.MaxInFlight = 2048
	}
	success := l.Success
	if success == nil {
		success = func(s int) bool { return s >= 200 && s < 300 }
	}
	n := l.Count()
	w := SliceWidth(l.Duration)
	slices := int((l.Duration + w - 1) / w)
	start := time.Now().Add(2 * time.Millisecond)
	rec := &Recording{
		Load:     l,
		Start:    start,
		Measured: start.Add(l.Warmup),
		End:      start.Add(l.Warmup + l.Duration),
		ByStatus: map[string]int64{},
		Samples:  map[string]string{},
		All:      newHist(histDigits),
		Admitted: newHist(histDigits),
		ShedHist: newHist(histDigits),
	}
	for range slices {
		rec.Slices = append(rec.Slices, &Slice{Hist: newHist(sliceDigits)})
	}
	r := &recorder{rec: rec, w: w}

	var sent, done, failed, inflight atomic.Int64
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if l.Progress == nil {
			return
		}
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				l.Progress(Progress{
					Elapsed: time.Since(start), Total: l.Warmup + l.Duration,
					Sent: sent.Load(), Done: done.Load(), Errors: failed.Load(), InFlight: inflight.Load(),
				})
			}
		}
	}()

	cpu0 := cpuTime()
	machine0 := readCPU()
	// Requests run on a pool of workers that grows whenever none is idle,
	// up to MaxInFlight: reusing goroutines keeps their grown stacks, which
	// a goroutine per request would build again each time.
	type job struct {
		i        int
		intended time.Time
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	serve := func(j job) {
		rctx, cancel := context.WithDeadline(ctx, j.intended.Add(l.Timeout))
		out := fire(rctx, j.i)
		cancel()
		now := time.Now()
		inflight.Add(-1)
		done.Add(1)
		ok := out.Err == nil && success(out.Status)
		if !ok {
			failed.Add(1)
		}
		r.record(j.intended, now, out, ok)
	}
	worker := func(first job) {
		defer wg.Done()
		serve(first)
		for j := range jobs {
			serve(j)
		}
	}
	workers := 0
	interval := float64(time.Second) / l.Rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
schedule:
	for i := range n {
		intended := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(intended); d > 0 {
			// Requests that became due while we slept go out at once, one
			// after the other: they carry their own intended times.
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break schedule
			}
		}
		j := job{i: i, intended: intended}
		sent.Add(1)
		inflight.Add(1)
		select {
		case jobs <- j: // an idle worker took it
			continue
		default:
		}
		if workers < l.MaxInFlight {
			workers++
			wg.Add(1)
			go worker(j)
			continue
		}
		// Every worker is busy: wait for one. The wait is charged to this
		// request and those behind it, since latency counts from intended.
		select {
		case jobs <- j:
		case <-ctx.Done():
			sent.Add(-1)
			inflight.Add(-1)
			break schedule
		}
	}
	close(jobs)
	wg.Wait()
	rec.CPU = cpuTime() - cpu0
	if share, busy, ok := readCPU().busySince(machine0); ok {
		rec.MachineBusy, rec.MachineCPU = share, busy
	}
	close(stopProgress)
	<-progressDone
	rec.Sent = sent.Load()
	return rec
}

// LatencySummary is the distribution of one set of latencies, in
// milliseconds. P999 is reported only above 10,000 samples, where it means
// something; it is null otherwise.
type LatencySummary struct {
	Count int64    `json:"count"`
	P50   float64  `json:"p50_ms"`
	P90   float64  `json:"p90_ms"`
	P95   float64  `json:"p95_ms"`
	P99   float64  `json:"p99_ms"`
	P999  *float64 `json:"p99_9_ms"`
	Max   float64  `json:"max_ms"`
	Mean  float64  `json:"mean_ms"`
}

// P999MinSamples is how many samples a P99.9 needs to be reported.
const P999MinSamples = 10000

func ms(us int64) float64 { return float64(us) / 1000 }

// Summarize reads the percentiles of h (values in µs).
func Summarize(h *hdrhistogram.Histogram) LatencySummary {
	s := LatencySummary{Count: h.TotalCount()}
	if s.Count == 0 {
		return s
	}
	s.P50 = ms(h.ValueAtQuantile(50))
	s.P90 = ms(h.ValueAtQuantile(90))
	s.P95 = ms(h.ValueAtQuantile(95))
	s.P99 = ms(h.ValueAtQuantile(99))
	if s.Count > P999MinSamples {
		v := ms(h.ValueAtQuantile(99.9))
		s.P999 = &v
	}
	s.Max = ms(h.Max())
	s.Mean = h.Mean() / 1000
	return s
}

// CurvePoint is one point of a percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// Curve samples h at percentiles evenly spaced on the log(1/(1-p)) axis
// of HdrHistogram's plots, ten per decade, up to what the sample count
// supports (at most 99.99%), then the maximum.
func Curve(h *hdrhistogram.Histogram) []CurvePoint {
	n := h.TotalCount()
	if n == 0 {
		return []CurvePoint{}
	}
	limit := math.Min(4, math.Log10(float64(n)))
	var pts []CurvePoint
	for k := 0; ; k++ {
		x := float64(k) / 10
		if x > limit+1e-9 {
			break
		}
		p := 100 * (1 - math.Pow(10, -x))
		pts = append(pts, CurvePoint{Percentile: round(p, 4), Ms: ms(h.ValueAtQuantile(p))})
	}
	pts = append(pts, CurvePoint{Percentile: 100, Ms: ms(h.Max())})
	return pts
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
