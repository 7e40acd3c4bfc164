package actors

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-auth/usher/internal/password"
)

// Hasher errors: the caller answers overloaded or unavailable at once.
var (
	ErrOverloaded   = errors.New("hasher: overloaded")
	errBudgetSpent  = errors.New("hasher: request budget spent in the queue")
	errHashPanicked = errors.New("hasher: job panicked")
)

// The hasher's admission rule. A job is refused at once when the wait it
// can expect (the jobs queued ahead of it at the recent pace, shared by the
// workers) exceeds maxWait: a burst or a stall of the machine is ridden out
// up to there, slower but without errors.
// When, over each of the last two intervals, jobs were offered at over
// overloadRatio times the rate the workers finished them, the offered load
// is beyond capacity and no burst will drain: then only jobs expecting at
// most overloadWait are admitted, so that the admitted ones keep short
// waits. A stall does not look like that: the interval after it finishes
// more than is offered, to catch up.
const (
	maxWait       = 300 * time.Millisecond
	overloadWait  = 50 * time.Millisecond
	overloadRatio = 1.25
	interval      = time.Second
	// The queue's capacity, in jobs per worker: a backstop for jobs so fast
	// (tiny parameters) that maxWait would admit thousands.
	queuePerWorker = 64
)

// hasher runs password hashing on a fixed number of workers (one per core)
// behind a queue with the admission rule above, so hashing never takes
// more than the machine's cores and load beyond them is shed rather than
// queued.
type hasher struct {
	jobs    chan func()
	workers int

	mu          sync.Mutex
	queued      int           // admitted jobs not yet started
	pace        time.Duration // moving average of a job's run time
	windowStart time.Time
	offered     int // jobs offered in the current interval
	finished    int // jobs finished in it
	over        int // intervals in a row offered over overloadRatio × finished

	sup      *supervisor
	params   password.Params
	duration *prometheus.HistogramVec
	wait     prometheus.Histogram
}

func newHasher(sup *supervisor, workers int, params password.Params, reg prometheus.Registerer) *hasher {
	h := &hasher{
		jobs:        make(chan func(), queuePerWorker*workers),
		workers:     workers,
		windowStart: time.Now(),
		sup:         sup,
		params:      params,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "usher_hash_duration_seconds",
			Help:    "Time of one password hash or verification, by algorithm and operation.",
			Buckets: prometheus.ExponentialBuckets(0.005, 1.5, 16),
		}, []string{"algorithm", "op"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "usher_hash_queue_wait_seconds",
			Help:    "Time a hashing job waited in the hasher queue.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	reg.MustRegister(h.duration, h.wait)
	// One hash timed now gives the pace before the first burst, which
	// would otherwise be admitted whole.
	start := time.Now()
	if _, err := password.Hash("pace", params); err == nil {
		h.pace = time.Since(start)
	}
	for range workers {
		go h.work()
	}
	return h
}

func (h *hasher) work() {
	for job := range h.jobs {
		h.run(job)
	}
}

// run keeps a panicking job from killing its worker, and keeps the pace.
func (h *hasher) run(job func()) {
	defer h.ran(time.Now())
	defer func() {
		if v := recover(); v != nil {
			h.sup.report("hasher", v)
		}
	}()
	job()
}

// ran counts a job started at start as finished and moves the pace
// towards its run time: an average over about the last eight jobs, which
// follows a machine that slows down under load within a fraction of a
// second.
func (h *hasher) ran(start time.Time) {
	d := time.Since(start)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finished++
	h.pace += (d - h.pace) / 8
}

// admit applies the admission rule to a job offered now, and counts it
// queued if it is admitted.
func (h *hasher) admit() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.windowStart) >= interval {
		// An idle queue is never overloaded, however the counts fell.
		if h.queued > 0 && float64(h.offered) > overloadRatio*float64(h.finished) {
			h.over++
		} else {
			h.over = 0
		}
		h.windowStart, h.offered, h.finished = time.Now(), 0, 0
	}
	h.offered++
	limit := maxWait
	if h.over >= 2 {
		limit = overloadWait
	}
	if time.Duration(h.queued)*h.pace/time.Duration(h.workers) > limit {
		return false
	}
	h.queued++
	return true
}

// dequeued counts a job as no longer queued: started, or refused by a full
// queue.
func (h *hasher) dequeued() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queued--
}

// do runs f on a worker and waits for it; it refuses at once a job the
// admission rule refuses, and skips f if the request's budget ran out in
// the queue.
func (h *hasher) do(call Call, f func()) error {
	if !h.admit() {
		return ErrOverloaded
	}
	queued := time.Now()
	done := make(chan error, 1)
	job := func() {
		h.wait.Observe(time.Since(queued).Seconds())
		h.dequeued()
		err := errHashPanicked // stays so only if f panics
		defer func() { done <- err }()
		if time.Now().After(call.Deadline) {
			err = errBudgetSpent
			return
		}
		f()
		err = nil
	}
	select {
	case h.jobs <- job:
	default:
		h.dequeued()
		return ErrOverloaded
	}
	return <-done
}

// hash makes a new argon2id hash of pw with the configured parameters.
func (h *hasher) hash(call Call, pw string) (string, error) {
	var (
		encoded string
		err     error
	)
	if qerr := h.do(call, func() {
		defer h.observe("argon2id", "hash", time.Now())
		encoded, err = password.Hash(pw, h.params)
	}); qerr != nil {
		return "", qerr
	}
	return encoded, err
}

// verify checks pw against encoded. An empty encoded (no such user) is
// checked against a dummy hash, so it costs exactly one hash like a wrong
// password. rehash asks for a new hash with current parameters.
func (h *hasher) verify(call Call, pw, encoded string) (ok, rehash bool, err error) {
	real := encoded != ""
	if !real {
		encoded = password.Dummy(h.params)
	}
	if qerr := h.do(call, func() {
		defer h.observe(password.Algorithm(encoded), "verify", time.Now())
		ok, rehash, err = password.Verify(pw, encoded, h.params)
	}); qerr != nil {
		return false, false, qerr
	}
	return ok && real, rehash, err
}

func (h *hasher) observe(algorithm, op string, start time.Time) {
	h.duration.WithLabelValues(algorithm, op).Observe(time.Since(start).Seconds())
}

func (h *hasher) stop() { close(h.jobs) }
