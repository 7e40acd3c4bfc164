package actors

import (
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"

	"github.com/anthdm/hollywood/actor"
	"github.com/prometheus/client_golang/prometheus"
)

// supervisor keeps hollywood v1.0.5's defects away from the process
// (DESIGN.md): a panic must cost one reply, never the node.
type supervisor struct {
	log    *slog.Logger
	panics *prometheus.CounterVec
}

func newSupervisor(log *slog.Logger, reg prometheus.Registerer) *supervisor {
	s := &supervisor{
		log: log,
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_actor_panics_total",
			Help: "Panics recovered in actors and the goroutines they start, by concern.",
		}, []string{"concern"}),
	}
	reg.MustRegister(s.panics)
	return s
}

// caller is any request message: it carries a Call.
type caller interface{ call() Call }

// opts are the spawn options of every actor. The restart limit is out of
// reach because exceeding it crashes the whole process in v1.0.5; the
// recover middleware means a restart never happens anyway.
func (s *supervisor) opts(concern string, extra ...actor.OptFunc) []actor.OptFunc {
	return append([]actor.OptFunc{
		actor.WithMaxRestarts(math.MaxInt32),
		actor.WithMiddleware(s.recoverer(concern)),
	}, extra...)
}

// recoverer turns a panic in Receive into an internal-error reply to the
// message's caller. A receiver that implements failer is told, so a per-key
// child can retire itself: a middleware cannot swap the receiver.
func (s *supervisor) recoverer(concern string) actor.MiddlewareFunc {
	return func(next actor.ReceiveFunc) actor.ReceiveFunc {
		return func(c *actor.Context) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				s.report(concern, v)
				// Retire first: the caller may send its next request as soon
				// as it has the answer, and that one must find a fresh child.
				if f, ok := c.Receiver().(failer); ok {
					f.failed(c)
				}
				if m, ok := c.Message().(caller); ok {
					m.call().fail(CodeInternal, "internal error")
				}
			}()
			next(c)
		}
	}
}

// failer is a receiver that must not go on after a panic.
type failer interface{ failed(*actor.Context) }

// spawn runs fn in a goroutine that answers call with an internal error if
// fn panics. Actors start their I/O this way; the middleware does not cover
// goroutines.
func (s *supervisor) spawn(concern string, call Call, fn func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				s.report(concern, v)
				call.fail(CodeInternal, "internal error")
			}
		}()
		fn()
	}()
}

func (s *supervisor) report(concern string, v any) {
	s.panics.WithLabelValues(concern).Inc()
	s.log.Error("actor panic", "concern", concern, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}
