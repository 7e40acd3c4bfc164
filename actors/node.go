// Package actors is the node side of usher: the NATS ingress, the concern
// actors (user, session, reset-token, cache), the hasher pool and their
// supervision.
package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/password"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/store"
)

// Config is what a node needs. Every field is required.
type Config struct {
	ID          string
	Namespace   string
	MaxInflight int
	DB          *store.DB
	Redis       *redis.Client
	Limits      *ratelimit.Limiter
	Tokens      Tokens
	Lifetimes   Lifetimes
	HashParams  password.Params
	HashWorkers int // hashing goroutines, one per core; 0 means GOMAXPROCS
	Sealer      *event.Sealer
	TokenTTLs   TokenTTLs
	Cache       CacheConfig
	Log         *slog.Logger
	Metrics     prometheus.Registerer
}

// Concerns a node hosts, in the order ping reports them.
var Concerns = []string{"user", "session", "token", "cache", "hasher"}

// Node receives requests from NATS and hands each to the actor of its
// concern.
type Node struct {
	cfg            Config
	engine         *actor.Engine
	sup            *supervisor
	hasher         *hasher
	pids           map[string]*actor.PID
	inflight       map[string]*atomic.Int64
	waits          sync.WaitGroup
	sub            *nats.Subscription
	stopBackground func()

	requests   *prometheus.CounterVec
	overloaded *prometheus.CounterVec
}

// Start spawns the concern actors and subscribes to <ns>.v1.> in the queue
// group <ns>-nodes, so every node started shares the load.
func Start(ctx context.Context, nc *nats.Conn, cfg Config) (*Node, error) {
	mint, err := newMinter(ctx, cfg.DB, cfg.Tokens)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		return nil, fmt.Errorf("start actor engine: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		engine:   engine,
		sup:      newSupervisor(cfg.Log, cfg.Metrics),
		pids:     map[string]*actor.PID{},
		inflight: map[string]*atomic.Int64{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_node_requests_total",
			Help: "Requests a node answered, by operation and problem code (empty on success).",
		}, []string{"op", "code"}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_node_overloaded_total",
			Help: "Requests refused because their concern had too many in flight.",
		}, []string{"concern"}),
	}
	cfg.Metrics.MustRegister(n.requests, n.overloaded)
	workers := cfg.HashWorkers
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	n.hasher = newHasher(n.sup, workers, cfg.HashParams, cfg.Metrics)
	cache := newCache(cfg.Cache, cfg.Redis, cfg.DB, cfg.Namespace, cfg.Metrics)
	n.spawn(deps{
		db: cfg.DB, redis: cfg.Redis, sup: n.sup, hasher: n.hasher, mint: mint,
		life: cfg.Lifetimes, limits: cfg.Limits, nc: nc, namespace: cfg.Namespace, log: cfg.Log,
		sealer: cfg.Sealer, ttl: cfg.TokenTTLs, cache: cache,
	})
	background, stop := context.WithCancel(context.Background())
	go cache.run(background)
	n.stopBackground = stop
	go n.reloadKeys(background, mint)
	for _, c := range append([]string{"system"}, Concerns...) {
		n.inflight[c] = new(atomic.Int64)
	}
	n.sub, err = nc.QueueSubscribe(cfg.Namespace+".v1.>", cfg.Namespace+"-nodes", n.handle)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s.v1.>: %w", cfg.Namespace, err)
	}
	// The subscription reaches the server in the background; a request sent
	// the moment Start returns would find no responders.
	if err := nc.Flush(); err != nil {
		n.sub.Unsubscribe() // a node that failed to start answers nothing
		return nil, fmt.Errorf("subscribe to %s.v1.>: %w", cfg.Namespace, err)
	}
	return n, nil
}

func (n *Node) spawn(d deps) {
	n.pids["user"] = n.engine.Spawn(newUserActor(d), "user", n.sup.opts("user")...)
	n.pids["session"] = n.engine.Spawn(newSessionRouter(d), "session", n.sup.opts("session")...)
	n.pids["token"] = n.engine.Spawn(newTokenActor(d), "token", n.sup.opts("token")...)
	n.pids["cache"] = n.engine.Spawn(newCacheActor(d), "cache", n.sup.opts("cache")...)
}

// reloadKeys picks up a rotated signing key when its time comes.
func (n *Node) reloadKeys(ctx context.Context, m *minter) {
	t := time.NewTicker(keyReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.load(ctx); err != nil && ctx.Err() == nil {
				n.cfg.Log.Warn("reload signing keys", "err", err)
			}
		}
	}
}

// Stop stops taking requests, lets the ones in flight finish, then stops
// the actors.
func (n *Node) Stop(ctx context.Context) error {
	err := n.sub.Drain()
	// Drain returns at once; the subscription is closed when its pending
	// callbacks have run.
	for n.sub.IsValid() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { n.waits.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	for _, pid := range n.pids {
		<-n.engine.Poison(pid).Done()
	}
	n.hasher.stop()
	n.stopBackground()
	return err
}

// handle runs in the NATS subscription's goroutine: it never waits for an
// actor, so one slow request cannot hold up the next.
func (n *Node) handle(msg *nats.Msg) {
	op := strings.TrimPrefix(msg.Subject, n.cfg.Namespace+".v1.")
	var req Request
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		n.respond(msg, op, Reply{Code: CodeInvalidRequest, Detail: "request is not JSON"})
		return
	}
	if req.BudgetMS <= 0 {
		// The gateway has given up already; starting the work would only
		// spend what the next request needs.
		n.respond(msg, op, Reply{ID: req.ID, Code: CodeUnavailable, Detail: "request budget spent"})
		return
	}
	concern, _, _ := strings.Cut(op, ".")
	inflight, ok := n.inflight[concern]
	if !ok {
		n.respond(msg, op, Reply{ID: req.ID, Code: CodeNotFound, Detail: "unknown operation " + op})
		return
	}
	if inflight.Add(1) > int64(n.cfg.MaxInflight) {
		inflight.Add(-1)
		n.overloaded.WithLabelValues(concern).Inc()
		n.respond(msg, op, Reply{ID: req.ID, Code: CodeOverloaded, Detail: concern + " is at capacity"})
		return
	}
	call := newCall(req, time.Now().Add(time.Duration(req.BudgetMS)*time.Millisecond))
	n.waits.Add(1)
	go func() {
		defer n.waits.Done()
		defer inflight.Add(-1)
		n.respond(msg, op, n.dispatch(op, call, req.Body))
	}()
}

// dispatch turns one request into its actor message and waits for the
// reply or the deadline.
func (n *Node) dispatch(op string, call Call, body json.RawMessage) Reply {
	if op == "system.ping" {
		return n.ping(call)
	}
	m, concern, err := message(op, call, body)
	if err != nil {
		return Reply{ID: call.ID, Code: CodeInvalidRequest, Detail: err.Error()}
	}
	n.engine.Send(n.pids[concern], m)
	return wait(call)
}

// ops maps each operation to its concern and its message.
var ops = map[string]opSpec{
	"user.register":        op[Register]("user"),
	"user.login":           op[Login]("user"),
	"user.me":              op[GetMe]("cache"),
	"user.update_me":       op[UpdateMe]("user"),
	"user.change_password": op[ChangePassword]("user"),
	"user.delete_me":       op[DeleteMe]("user"),
	"user.list":            op[ListUsers]("cache"),
	"user.get":             op[GetUser]("cache"),
	"user.update":          op[UpdateUser]("user"),
	"user.delete":          op[DeleteUser]("user"),
	"user.send_email":      op[SendEmail]("user"),
	"token.verify_request": op[RequestVerification]("token"),
	"token.verify_confirm": op[ConfirmVerification]("token"),
	"token.reset_request":  op[RequestReset]("token"),
	"token.reset_confirm":  op[ConfirmReset]("token"),
	"session.refresh":      op[Refresh]("session"),
	"session.logout":       op[Logout]("session"),
	"session.logout_all":   op[LogoutAll]("session"),
	"session.list":         op[ListSessions]("session"),
	"session.end":          op[EndSession]("session"),
	"session.end_user":     op[EndUserSessions]("session"),
}

type opSpec struct {
	concern string
	decode  func(Call, json.RawMessage) (any, error)
}

// op decodes a body into message type T and gives it its Call.
func op[T any, P interface {
	*T
	setCall(Call)
}](concern string) opSpec {
	return opSpec{concern, func(c Call, body json.RawMessage) (any, error) {
		var m T
		if len(body) > 0 {
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, fmt.Errorf("decode body: %w", err)
			}
		}
		P(&m).setCall(c)
		return m, nil
	}}
}

// message decodes body into the actor message for op.
func message(op string, call Call, body json.RawMessage) (any, string, error) {
	spec, ok := ops[op]
	if !ok {
		return nil, "", fmt.Errorf("unknown operation %s", op)
	}
	m, err := spec.decode(call, body)
	return m, spec.concern, err
}

func wait(call Call) Reply {
	t := time.NewTimer(time.Until(call.Deadline))
	defer t.Stop()
	select {
	case r := <-call.reply:
		return r
	case <-t.C:
		return Reply{ID: call.ID, Code: CodeUnavailable, Detail: "no answer within the request budget"}
	}
}

// ping asks every concern for its state, each on its own Call, so the
// answer shows that each actor can receive and reply.
func (n *Node) ping(call Call) Reply {
	result := PingResult{NodeID: n.cfg.ID, Concerns: map[string]string{"hasher": StateUp}}
	for _, concern := range Concerns {
		pid, ok := n.pids[concern]
		if !ok {
			continue
		}
		c := call
		c.reply = make(chan Reply, 1)
		n.engine.Send(pid, Ping{c})
		r := wait(c)
		switch {
		case r.Code != "":
			return r
		case r.ID != call.ID:
			return Reply{ID: call.ID, Code: CodeInternal, Detail: "a reply came back for another request"}
		}
		var state string
		if err := json.Unmarshal(r.Body, &state); err != nil {
			state = StateDown
		}
		result.Concerns[concern] = state
	}
	body, _ := json.Marshal(result)
	return Reply{ID: call.ID, Body: body}
}

func (n *Node) respond(msg *nats.Msg, op string, r Reply) {
	label := op
	if _, known := ops[op]; !known && op != "system.ping" {
		label = "unknown" // subjects are not ours to count
	}
	n.requests.WithLabelValues(label, r.Code).Inc()
	data, err := json.Marshal(r)
	if err != nil {
		n.cfg.Log.Error("encode reply", "op", op, "err", err)
		return
	}
	if err := msg.Respond(data); err != nil {
		n.cfg.Log.Warn("send reply", "op", op, "err", err)
	}
}
