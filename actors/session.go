package actors

import (
	"strconv"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/usher-auth/usher/internal/testhooks"
)

// sessionIdleAfter is how long a per-session child lives without messages.
var sessionIdleAfter = 30 * time.Second

// sessionRouter routes each message to a child keyed by session id, so two
// refreshes of one session on one node run one after the other. It never
// blocks: it looks up and forwards.
type sessionRouter struct {
	deps
	children map[string]*childRef
	spawned  uint64
}

// childRef is the router's view of one child: how many messages it was sent,
// so an idle child's request to stop can be checked against it.
type childRef struct {
	pid       *actor.PID
	forwarded uint64
}

// childIdle is a child asking to stop after it received `received` messages.
type childIdle struct {
	key      string
	pid      *actor.PID
	received uint64
}

// childFailed is a child reporting a panic: it must be replaced.
type childFailed struct {
	key string
	pid *actor.PID
}

func newSessionRouter(d deps) actor.Producer {
	return func() actor.Receiver {
		return &sessionRouter{deps: d, children: map[string]*childRef{}}
	}
}

func (r *sessionRouter) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		r.route(c, "ping", m)
	case childIdle:
		r.passivate(c, m)
	case childFailed:
		r.retire(c, m.key, m.pid)
	}
}

func (r *sessionRouter) route(c *actor.Context, key string, msg any) {
	ref, ok := r.children[key]
	if !ok {
		// A fresh id per spawn: hollywood drops a spawn whose id is still
		// registered, and a retired child may not have finished stopping.
		r.spawned++
		id := key + "." + strconv.FormatUint(r.spawned, 10)
		pid := c.SpawnChild(newSessionChild(r.deps, key), "s",
			r.sup.opts("session", actor.WithID(id))...)
		ref = &childRef{pid: pid}
		r.children[key] = ref
	}
	ref.forwarded++
	c.Send(ref.pid, msg)
}

// passivate stops an idle child only if nothing was forwarded to it since
// it counted, so two children never exist for one key.
func (r *sessionRouter) passivate(c *actor.Context, m childIdle) {
	ref, ok := r.children[m.key]
	if !ok || ref.pid.ID != m.pid.ID || ref.forwarded != m.received {
		return
	}
	r.retire(c, m.key, m.pid)
}

// retire forgets the child and stops it after it has answered what is
// already in its inbox.
func (r *sessionRouter) retire(c *actor.Context, key string, pid *actor.PID) {
	if ref, ok := r.children[key]; ok && ref.pid.ID == pid.ID {
		delete(r.children, key)
	}
	c.Engine().Poison(pid)
}

// sessionChild serializes the work of one session. It may block on its own
// session's I/O.
type sessionChild struct {
	deps
	key      string
	received uint64
	lastSeen time.Time
	broken   bool
	ticker   actor.SendRepeater
}

// idleCheck is the child's own timer tick.
type idleCheck struct{}

func newSessionChild(d deps, key string) actor.Producer {
	return func() actor.Receiver { return &sessionChild{deps: d, key: key} }
}

func (s *sessionChild) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started:
		s.lastSeen = time.Now()
		s.ticker = c.SendRepeat(c.PID(), idleCheck{}, sessionIdleAfter/2)
	case actor.Stopped:
		s.ticker.Stop()
	case idleCheck:
		s.checkIdle(c)
	case caller:
		s.received++
		s.lastSeen = time.Now()
		if s.broken {
			m.call().fail(CodeUnavailable, "session worker restarting; retry")
			return
		}
		s.serve(m)
	}
}

func (s *sessionChild) serve(m caller) {
	switch m := m.(type) {
	case Ping:
		testhooks.Panic(m.Testhook, "session.child")
		m.ok(StateUp)
	}
}

func (s *sessionChild) checkIdle(c *actor.Context) {
	if time.Since(s.lastSeen) >= sessionIdleAfter {
		c.Send(c.Parent(), childIdle{key: s.key, pid: c.PID(), received: s.received})
	}
}

// failed is called by the recover middleware: state after a panic cannot be
// trusted, so the child answers what is queued with a retry and asks its
// router to replace it.
func (s *sessionChild) failed(c *actor.Context) {
	if s.broken {
		return
	}
	s.broken = true
	c.Send(c.Parent(), childFailed{key: s.key, pid: c.PID()})
}
