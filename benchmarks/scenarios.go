package benchmarks

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
)

// Scenario names, one per row of BUDGETS.md, in the order they run.
var ScenarioNames = []string{"login", "register", "reset-request", "reset-confirm", "refresh", "me", "admin-list", "patch-me"}

// scenario is one budgeted route and how to drive it.
type scenario struct {
	name    string
	title   string
	method  string
	path    string
	success int
	budget  Budget
	// probe, when set, sends one harmless request first, so that a route
	// that is not built yet is reported before any setup is spent on it.
	probe func(ctx context.Context) error
	// prepare readies a step of n requests at rate: users, sessions or
	// tokens that step consumes. The Fire it returns uses c.
	prepare func(ctx context.Context, c *client, rate float64, n int) (Fire, error)
}

// Pool sizes. Logins and reset requests cycle through a pool; the
// authenticated scenarios share a few sessions; refresh needs enough
// sessions that each is refreshed only every quarter second or so, since a
// session's refreshes are sequential.
const (
	cyclePool      = 256
	bearerSessions = 32
	adminSessions  = 4
	minRefreshers  = 16
	maxRefreshers  = 512
)

// catalogue builds the scenarios over f. Each closes over its own users and
// sessions, so one scenario's side effects never reach another's.
func catalogue(f *fixture) []*scenario {
	post := func(c *client, ctx context.Context, path string, body []byte) Outcome {
		return c.call(ctx, http.MethodPost, path, body, "", nil)
	}

	var loginBodies [][]byte
	login := &scenario{
		name: "login", title: "login", method: http.MethodPost, path: "/v1/auth/login", success: http.StatusOK,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			if loginBodies == nil {
				users, err := f.importUsers(ctx, "login", cyclePool)
				if err != nil {
					return nil, err
				}
				for _, u := range users {
					loginBodies = append(loginBodies, jsonBody(map[string]string{"email": u, "password": benchPassword}))
				}
			}
			return func(ctx context.Context, i int) Outcome {
				return post(c, ctx, "/v1/auth/login", loginBodies[i%len(loginBodies)])
			}, nil
		},
	}

	register := &scenario{
		name: "register", title: "register", method: http.MethodPost, path: "/v1/auth/register", success: http.StatusCreated,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			return func(ctx context.Context, i int) Outcome {
				body := jsonBody(map[string]string{"email": f.email("register"), "password": benchPassword, "name": "bench register"})
				return post(c, ctx, "/v1/auth/register", body)
			}, nil
		},
	}

	var resetBodies [][]byte
	resetRequest := &scenario{
		name: "reset-request", title: "password reset request", method: http.MethodPost,
		path: "/v1/auth/password-reset/request", success: http.StatusAccepted,
		probe: func(ctx context.Context) error {
			o := f.api.call(ctx, http.MethodPost, "/v1/auth/password-reset/request", jsonBody(map[string]string{"email": f.email("probe")}), "", nil)
			return expect(o, http.StatusAccepted, "POST /v1/auth/password-reset/request")
		},
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			if resetBodies == nil {
				users, err := f.importUsers(ctx, "resetreq", cyclePool)
				if err != nil {
					return nil, err
				}
				for _, u := range users {
					resetBodies = append(resetBodies, jsonBody(map[string]string{"email": u}))
				}
			}
			return func(ctx context.Context, i int) Outcome {
				return post(c, ctx, "/v1/auth/password-reset/request", resetBodies[i%len(resetBodies)])
			}, nil
		},
	}

	resetConfirm := &scenario{
		name: "reset-confirm", title: "password reset confirm", method: http.MethodPost,
		path: "/v1/auth/password-reset/confirm", success: http.StatusNoContent,
		probe: func(ctx context.Context) error {
			// An unknown token: anything but 501 shows the route exists.
			o := f.api.call(ctx, http.MethodPost, "/v1/auth/password-reset/confirm", jsonBody(map[string]string{"token": "bench-probe", "new_password": resetPassword}), "", nil)
			if o.Status == http.StatusNotImplemented {
				return &NotImplementedError{Route: "POST /v1/auth/password-reset/confirm"}
			}
			return o.Err
		},
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			// Each request spends one token of a user of its own: a reset ends
			// every session of its user, and a newer token voids older ones.
			users, err := f.importUsers(ctx, "resetconf", n)
			if err != nil {
				return nil, err
			}
			tokens, err := f.resetTokens(ctx, users)
			if err != nil {
				return nil, err
			}
			bodies := make([][]byte, len(tokens))
			for i, t := range tokens {
				bodies[i] = jsonBody(map[string]string{"token": t, "new_password": resetPassword})
			}
			return func(ctx context.Context, i int) Outcome {
				if i >= len(bodies) {
					return Outcome{Err: fmt.Errorf("request %d: %w", i, errOutOfTokens)}
				}
				return post(c, ctx, "/v1/auth/password-reset/confirm", bodies[i])
			}, nil
		},
	}

	var refreshers []*session
	refresh := &scenario{
		name: "refresh", title: "token refresh", method: http.MethodPost, path: "/v1/auth/refresh", success: http.StatusOK,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			want := min(max(int(math.Ceil(rate/4)), minRefreshers), maxRefreshers)
			kept := refreshers[:0]
			for _, s := range refreshers {
				if !s.lost {
					kept = append(kept, s)
				}
			}
			refreshers = kept
			if more := want - len(refreshers); more > 0 {
				users, err := f.importUsers(ctx, "refresh", more)
				if err != nil {
					return nil, err
				}
				s, err := f.login(ctx, users)
				if err != nil {
					return nil, err
				}
				refreshers = append(refreshers, s...)
			}
			pool := refreshers
			return func(ctx context.Context, i int) Outcome {
				s := pool[i%len(pool)]
				// A session's refreshes are sequential: each presents the token
				// the previous one returned. Waiting here is charged to this
				// request's latency, since it is measured from its intended start.
				select {
				case s.lock <- struct{}{}:
				case <-ctx.Done():
					return Outcome{Err: ctx.Err()}
				}
				defer func() { <-s.lock }()
				var p tokenPair
				o := c.call(ctx, http.MethodPost, "/v1/auth/refresh", jsonBody(map[string]string{"refresh_token": s.refresh}), "", &p)
				if o.Err == nil && o.Status == http.StatusOK {
					s.access, s.refresh = p.Access, p.Refresh
				} else {
					s.lost = true
				}
				return o
			}, nil
		},
	}

	// bearerPool logs in the accounts emails names, once, and renews their
	// sessions before each step.
	bearerPool := func(emails func(context.Context) ([]string, error)) func(ctx context.Context) ([]*session, error) {
		var (
			mu       sync.Mutex
			sessions []*session
		)
		return func(ctx context.Context) ([]*session, error) {
			mu.Lock()
			defer mu.Unlock()
			if sessions == nil {
				users, err := emails(ctx)
				if err != nil {
					return nil, err
				}
				if sessions, err = f.login(ctx, users); err != nil {
					sessions = nil
					return nil, err
				}
			}
			return sessions, f.renew(ctx, sessions)
		}
	}
	imported := func(tag string) func(context.Context) ([]string, error) {
		return func(ctx context.Context) ([]string, error) { return f.importUsers(ctx, tag, bearerSessions) }
	}

	meSessions := bearerPool(imported("me"))
	me := &scenario{
		name: "me", title: "authenticated GET", method: http.MethodGet, path: "/v1/users/me", success: http.StatusOK,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			pool, err := meSessions(ctx)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, i int) Outcome {
				return c.call(ctx, http.MethodGet, "/v1/users/me", nil, pool[i%len(pool)].access, nil)
			}, nil
		},
	}

	adminPool := bearerPool(func(ctx context.Context) ([]string, error) {
		email, err := f.admin(ctx)
		return slices.Repeat([]string{email}, adminSessions), err
	})
	adminList := &scenario{
		name: "admin-list", title: "list (small pages)", method: http.MethodGet, path: "/v1/admin/users?limit=20", success: http.StatusOK,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			pool, err := adminPool(ctx)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, i int) Outcome {
				return c.call(ctx, http.MethodGet, "/v1/admin/users?limit=20", nil, pool[i%len(pool)].access, nil)
			}, nil
		},
	}

	patchSessions := bearerPool(imported("patch"))
	var names [][]byte
	for i := range 16 {
		names = append(names, jsonBody(map[string]string{"name": fmt.Sprintf("bench patch %d", i)}))
	}
	patchMe := &scenario{
		name: "patch-me", title: "write", method: http.MethodPatch, path: "/v1/users/me", success: http.StatusOK,
		prepare: func(ctx context.Context, c *client, rate float64, n int) (Fire, error) {
			pool, err := patchSessions(ctx)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, i int) Outcome {
				return c.call(ctx, http.MethodPatch, "/v1/users/me", names[i%len(names)], pool[i%len(pool)].access, nil)
			}, nil
		},
	}

	all := []*scenario{login, register, resetRequest, resetConfirm, refresh, me, adminList, patchMe}
	for _, s := range all {
		s.budget = Budgets[s.name]
	}
	return all
}
