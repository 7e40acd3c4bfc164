package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/usher-auth/usher/actors"
)

// readyTimeout bounds each readiness check, so a load balancer's probe
// never hangs on a stalled dependency.
const readyTimeout = time.Second

func (s *server) healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// readyz is 200 when PostgreSQL, NATS and a node with every concern answer.
// Redis down only degrades the cache, so it shows but does not fail.
func (s *server) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{}
		ready := true
		fail := func(name, state string) {
			checks[name] = state
			ready = false
		}

		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.db.Ping(ctx); err != nil {
			fail("postgres", actors.StateDown)
		} else {
			checks["postgres"] = actors.StateUp
		}
		if s.nc.IsConnected() {
			checks["nats"] = actors.StateUp
		} else {
			fail("nats", actors.StateDown)
		}
		s.checkNode(r, checks, fail)
		if s.revoked.ready() {
			checks["revocations"] = actors.StateUp
		} else {
			fail("revocations", "loading")
		}

		status, state := http.StatusOK, "ready"
		if !ready {
			status, state = http.StatusServiceUnavailable, "not_ready"
			setRetryAfter(w.Header(), status, 0)
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, status, map[string]any{"status": state, "checks": checks})
	})
}

// checkNode pings a node: every concern must be up, but the cache may be
// degraded, which is how a Redis outage shows.
func (s *server) checkNode(r *http.Request, checks map[string]string, fail func(name, state string)) {
	reply, err := s.nodes.call(r, "system.ping", nil, nil)
	if err != nil || reply.Code != "" {
		fail("node", actors.StateDown)
		return
	}
	var ping actors.PingResult
	if err := json.Unmarshal(reply.Body, &ping); err != nil {
		fail("node", actors.StateDown)
		return
	}
	checks["node"] = actors.StateUp
	for _, concern := range actors.Concerns {
		state := ping.Concerns[concern]
		switch {
		case concern == "cache":
			checks["redis"] = state
			if state != actors.StateUp && state != actors.StateDegraded {
				fail("redis", state)
			}
		case state != actors.StateUp:
			fail("node", concern+" "+state)
		}
	}
}
