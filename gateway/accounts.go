package gateway

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/usher-auth/usher/actors"
)

// Handlers of the account, session and admin routes. Each decodes and
// validates its body here, then hands it to a node.

func (s *server) register() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.Register
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		in.Email = p.email("email", in.Email)
		p.newPassword("password", in.Password, in.Email)
		p.name("name", in.Name)
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.register", nil, in, http.StatusCreated)
	})
}

func (s *server) login() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.Login
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		in.Email = p.email("email", in.Email)
		p.present("password", in.Password)
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.login", nil, in, http.StatusOK)
	})
}

// withRefreshToken handles refresh and logout: a body with one refresh token.
func (s *server) withRefreshToken(op string, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.Refresh
		if !decode(w, r, &in) {
			return
		}
		if in.Token == "" || len(in.Token) > 256 {
			writeProblem(w, "token_invalid", "refresh_token is missing or malformed")
			return
		}
		s.forward(w, r, op, nil, in, status)
	})
}

// claimsOnly forwards an authenticated request that has no body.
func (s *server) claimsOnly(op string, status int, admin bool) http.Handler {
	return s.authed(admin, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		s.forward(w, r, op, c, nil, status)
	})
}

func (s *server) updateMe() http.Handler {
	return s.authed(false, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		var in struct {
			Name *string `json:"name"`
		}
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		if in.Name == nil {
			p.add("name", "is required")
		} else {
			p.name("name", *in.Name)
		}
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.update_me", c, actors.UpdateMe{Name: *in.Name}, http.StatusOK)
	})
}

func (s *server) changePassword() http.Handler {
	return s.authed(false, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		var in actors.ChangePassword
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		p.present("current_password", in.Current)
		p.newPassword("new_password", in.New, c.Email)
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.change_password", c, in, http.StatusNoContent)
	})
}

func (s *server) deleteMe() http.Handler {
	return s.authed(false, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		var in actors.DeleteMe
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		p.present("password", in.Password)
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.delete_me", c, in, http.StatusNoContent)
	})
}

// byID forwards an authenticated request about the {id} in the path.
func (s *server) byID(op string, status int, admin bool) http.Handler {
	return s.authed(admin, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		s.forward(w, r, op, c, actors.GetUser{UserID: mux.Vars(r)["id"]}, status)
	})
}

func (s *server) endMySession() http.Handler {
	return s.authed(false, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		s.forward(w, r, "session.end", c, actors.EndSession{SessionID: mux.Vars(r)["id"]}, http.StatusNoContent)
	})
}

func (s *server) listUsers() http.Handler {
	return s.authed(true, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		q := r.URL.Query()
		in := actors.ListUsers{Limit: 20, Cursor: q.Get("cursor"), EmailPrefix: q.Get("email_prefix")}
		p := problems{}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				p.add("limit", "must be an integer from 1 to 100")
			}
			in.Limit = n
		}
		if len(in.Cursor) > 200 {
			p.add("cursor", "is not one this API returned")
		}
		if len(in.EmailPrefix) > 254 {
			p.add("email_prefix", "must be at most 254 bytes")
		}
		if len(p) > 0 {
			writeProblemStatus(w, http.StatusBadRequest, "invalid_request", "bad query parameters", p)
			return
		}
		s.forward(w, r, "user.list", c, in, http.StatusOK)
	})
}

func (s *server) updateUser() http.Handler {
	return s.authed(true, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		var in actors.UpdateUser
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		if in.Role != nil && *in.Role != "user" && *in.Role != "admin" {
			p.add("role", `must be "user" or "admin"`)
		}
		if in.Role == nil && in.Disabled == nil {
			p.add("role", "send role, disabled or both")
		}
		if p.report(w) {
			return
		}
		in.UserID = mux.Vars(r)["id"]
		s.forward(w, r, "user.update", c, in, http.StatusOK)
	})
}

// report writes a 422 naming each bad field; it reports whether it did.
func (p problems) report(w http.ResponseWriter) bool {
	if len(p) == 0 {
		return false
	}
	writeProblemStatus(w, http.StatusUnprocessableEntity, "validation_failed", "some fields are not valid", p)
	return true
}
