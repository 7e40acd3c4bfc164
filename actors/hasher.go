package actors

import (
	"errors"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-auth/usher/internal/password"
)

// Hasher errors: the caller answers overloaded or unavailable at once.
var (
	ErrOverloaded   = errors.New("hasher: queue full")
	errBudgetSpent  = errors.New("hasher: request budget spent in the queue")
	errHashPanicked = errors.New("hasher: job panicked")
)

// hasher runs password hashing on GOMAXPROCS workers behind a bounded queue,
// so hashing never takes more than the machine's cores and a burst is shed
// rather than queued without end.
type hasher struct {
	jobs     chan func()
	sup      *supervisor
	params   password.Params
	duration *prometheus.HistogramVec
	wait     prometheus.Histogram
}

func newHasher(sup *supervisor, queue int, params password.Params, reg prometheus.Registerer) *hasher {
	h := &hasher{
		jobs:   make(chan func(), queue),
		sup:    sup,
		params: params,
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
	for range runtime.GOMAXPROCS(0) {
		go h.work()
	}
	return h
}

func (h *hasher) work() {
	for job := range h.jobs {
		h.run(job)
	}
}

// run keeps a panicking job from killing its worker.
func (h *hasher) run(job func()) {
	defer func() {
		if v := recover(); v != nil {
			h.sup.report("hasher", v)
		}
	}()
	job()
}

// do runs f on a worker and waits for it; it refuses at once when the queue
// is full, and skips f if the request's budget ran out in the queue.
func (h *hasher) do(call Call, f func()) error {
	queued := time.Now()
	done := make(chan error, 1)
	job := func() {
		err := errHashPanicked // stays so only if f panics
		defer func() { done <- err }()
		h.wait.Observe(time.Since(queued).Seconds())
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
