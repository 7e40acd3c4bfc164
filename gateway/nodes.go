package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usher-auth/usher/actors"
	"github.com/usher-auth/usher/internal/testhooks"
)

// nodes sends requests to whichever node of the queue group takes them.
type nodes struct {
	nc        *nats.Conn
	namespace string
	timeout   time.Duration
	client    func(*http.Request) actors.Client
}

// errUnavailable means no node answered: none is subscribed, or none
// answered within the request's budget.
var errUnavailable = errors.New("no node answered")

// outgoing is a Request with its body encoded along with it, not first on
// its own and then again as raw JSON.
type outgoing struct {
	actors.Request
	Body any `json:"body,omitempty"`
}

// call sends op with body to a node and returns its reply. The request
// carries its remaining budget in milliseconds, not a deadline, so clocks
// need not agree.
func (n *nodes) call(r *http.Request, op string, claims *actors.Claims, body any) (actors.Reply, error) {
	if !n.nc.IsConnected() {
		// nats.go would buffer the request until reconnected; the client is
		// better told at once to retry.
		return actors.Reply{}, fmt.Errorf("%s: %w: NATS is disconnected", op, errUnavailable)
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.timeout)
	defer cancel()
	req := outgoing{Request: actors.Request{ID: requestID(r), Claims: claims, Client: n.client(r)}, Body: body}
	if testhooks.Enabled {
		req.Testhook = r.Header.Get("X-Usher-Testhook")
	}
	deadline, _ := ctx.Deadline()
	req.BudgetMS = time.Until(deadline).Milliseconds()
	data, err := json.Marshal(req)
	if err != nil {
		return actors.Reply{}, fmt.Errorf("encode %s request: %w", op, err)
	}
	msg, err := n.nc.RequestWithContext(ctx, n.namespace+".v1."+op, data)
	if err != nil {
		return actors.Reply{}, fmt.Errorf("%s: %w: %v", op, errUnavailable, err)
	}
	var reply actors.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return actors.Reply{}, fmt.Errorf("%s: decode reply: %w", op, err)
	}
	if reply.ID != req.ID {
		// Never pass on an answer meant for someone else.
		return actors.Reply{}, fmt.Errorf("%s: reply for request %q, want %q", op, reply.ID, req.ID)
	}
	return reply, nil
}

// forward answers r with a node's reply to op: status on success, the
// problem otherwise.
func (s *server) forward(w http.ResponseWriter, r *http.Request, op string, claims *actors.Claims, body any, status int) {
	reply, err := s.nodes.call(r, op, claims, body)
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	if reply.Code != "" {
		code := statusOf[reply.Code]
		if override, ok := statusOverride[op][reply.Code]; ok {
			code = override
		}
		setRetryAfter(w.Header(), code, reply.RetryAfter)
		writeProblemStatus(w, code, reply.Code, reply.Detail, reply.Errors)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(reply.Body)
}

// statusOverride is where API.md gives a code another status on one route:
// a wrong current password is 403, never 401, which clients read as
// "refresh your token".
var statusOverride = map[string]map[string]int{
	"user.change_password": {"invalid_credentials": http.StatusForbidden},
	"user.delete_me":       {"invalid_credentials": http.StatusForbidden},
	"token.verify_confirm": {"token_invalid": http.StatusBadRequest, "token_expired": http.StatusBadRequest},
	"token.reset_confirm":  {"token_invalid": http.StatusBadRequest, "token_expired": http.StatusBadRequest},
}

func (s *server) nodeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errUnavailable) {
		s.log.Warn("node call", "request_id", requestID(r), "err", err)
		writeProblem(w, "unavailable", "no node answered; retry shortly")
		return
	}
	s.log.Error("node call", "request_id", requestID(r), "err", err)
	writeProblem(w, "internal", "internal error")
}
