package actors

import (
	"errors"
	"runtime"
)

// ErrOverloaded means the hasher queue is full: the caller answers 503
// overloaded at once instead of waiting behind work it cannot finish.
var ErrOverloaded = errors.New("hasher: queue full")

// hasher runs password hashing on GOMAXPROCS workers behind a bounded queue,
// so hashing never takes more than the machine's cores and a burst is shed
// rather than queued without end.
type hasher struct {
	jobs chan func()
	sup  *supervisor
}

func newHasher(sup *supervisor, queue int) *hasher {
	h := &hasher{jobs: make(chan func(), queue), sup: sup}
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

// run keeps a panicking job from killing its worker; the job's own Call is
// answered by the job's defer (see submit).
func (h *hasher) run(job func()) {
	defer func() {
		if v := recover(); v != nil {
			h.sup.report("hasher", v)
		}
	}()
	job()
}

// submit queues job for call, or answers overloaded at once when full. If
// job panics, call gets an internal-error reply.
func (h *hasher) submit(call Call, job func()) error {
	wrapped := func() {
		defer func() {
			if v := recover(); v != nil {
				call.fail(CodeInternal, "internal error")
				panic(v)
			}
		}()
		job()
	}
	select {
	case h.jobs <- wrapped:
		return nil
	default:
		return ErrOverloaded
	}
}

func (h *hasher) stop() { close(h.jobs) }
