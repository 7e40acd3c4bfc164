package actors

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/usher-auth/usher/internal/testhooks"
	"github.com/usher-auth/usher/store"
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
	case Refresh:
		r.routeToken(c, m.Call, m.Token, func(sid string, n int64) any { return refreshAt{m, sid, n} })
	case Logout:
		r.routeToken(c, m.Call, m.Token, func(sid string, n int64) any { return logoutAt{m, sid} })
	case LogoutAll:
		r.route(c, m.Claims.SessionID, m)
	case ListSessions:
		r.route(c, m.Claims.SessionID, m)
	case EndSession:
		r.route(c, m.Claims.SessionID, m)
	case EndUserSessions:
		r.route(c, "user:"+m.UserID, m)
	case childIdle:
		r.passivate(c, m)
	case childFailed:
		r.retire(c, m.key, m.pid)
	}
}

// routeToken checks a refresh token's MAC (no I/O) and sends the request
// to the child of the session it names.
func (r *sessionRouter) routeToken(c *actor.Context, call Call, tok string, msg func(sid string, counter int64) any) {
	sid, counter, err := r.mint.Keys.ParseRefresh(tok)
	if err != nil {
		call.fail(CodeTokenInvalid, "refresh token is not valid")
		return
	}
	r.route(c, sid, msg(sid, counter))
}

// refreshAt and logoutAt carry a verified refresh token's parts to the
// session's child.
type (
	refreshAt struct {
		Refresh
		sid     string
		counter int64
	}
	logoutAt struct {
		Logout
		sid string
	}
)

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
	ctx, cancel := context.WithDeadline(context.Background(), m.call().Deadline)
	defer cancel()
	switch m := m.(type) {
	case Ping:
		testhooks.Panic(m.Testhook, "session.child")
		m.ok(StateUp)
	case refreshAt:
		s.refresh(ctx, m)
	case logoutAt:
		s.done(m.Call, m.sid, s.db.EndSession(ctx, m.sid, ""), CodeTokenInvalid)
	case LogoutAll:
		s.endAll(ctx, m.Call, m.Claims.UserID)
	case ListSessions:
		s.list(ctx, m)
	case EndSession:
		s.done(m.Call, m.SessionID, s.db.EndSession(ctx, m.SessionID, m.Claims.UserID), CodeNotFound)
	case EndUserSessions:
		s.endAll(ctx, m.Call, m.UserID)
	}
}

func (s *sessionChild) refresh(ctx context.Context, m refreshAt) {
	r, err := s.db.Refresh(ctx, m.sid, m.counter, s.life.Grace, s.life.Idle)
	switch {
	case errors.Is(err, store.ErrReuse):
		s.revoked([]string{m.sid})
		m.fail(CodeTokenInvalid, "refresh token was already used; the session has ended")
	case errors.Is(err, store.ErrSessionExpired):
		m.fail(CodeTokenExpired, "the session has expired; sign in again")
	case errors.Is(err, store.ErrSessionEnded):
		m.fail(CodeTokenInvalid, "the session has ended; sign in again")
	case err != nil:
		s.fail(m.Call, err)
	default:
		pair, err := s.mint.pair(r.User, r.Session, r.Now)
		if err != nil {
			s.fail(m.Call, err)
			return
		}
		m.ok(pair)
	}
}

// done answers a session-ending request: success, or notFound when there
// was no such live session. The ended session is published.
func (s *sessionChild) done(call Call, sid string, err error, notFound string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		call.fail(notFound, "no such session")
	case err != nil:
		s.fail(call, err)
	default:
		s.revoked([]string{sid})
		call.answer(Reply{})
	}
}

func (s *sessionChild) endAll(ctx context.Context, call Call, userID string) {
	ended, err := s.db.EndSessionsOf(ctx, userID)
	if err != nil {
		s.fail(call, err)
		return
	}
	s.revoked(ended)
	call.answer(Reply{})
}

func (s *sessionChild) list(ctx context.Context, m ListSessions) {
	sessions, err := s.db.SessionsOf(ctx, m.Claims.UserID)
	if err != nil {
		s.fail(m.Call, err)
		return
	}
	items := make([]SessionView, 0, len(sessions))
	for _, x := range sessions {
		items = append(items, SessionView{
			ID: x.ID, CreatedAt: x.CreatedAt.UTC(), LastUsedAt: x.LastUsedAt.UTC(),
			UserAgent: x.UserAgent, IP: x.IP, Current: x.ID == m.Claims.SessionID,
		})
	}
	m.ok(map[string]any{"items": items})
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
