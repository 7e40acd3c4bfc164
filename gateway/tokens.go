package gateway

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/usher-auth/usher/actors"
)

// Handlers of the verification, reset and admin email routes.

func (s *server) requestReset() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.RequestReset
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		in.Email = p.email("email", in.Email)
		if p.report(w) {
			return
		}
		s.forward(w, r, "token.reset_request", nil, in, http.StatusAccepted)
	})
}

// isForm reports whether the body is an HTML form post (the pages' buttons).
func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// readForm parses a form post within the body limit; on failure it has
// answered with a page.
func readForm(w http.ResponseWriter, r *http.Request, title string) bool {
	err := r.ParseForm()
	if err == nil {
		return true
	}
	status := http.StatusBadRequest
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		status = http.StatusRequestEntityTooLarge
	}
	writePage(w, status, "result.html", page{Title: title, Message: "That form could not be read.", Error: "x"})
	return false
}

func (s *server) confirmVerification() http.Handler {
	const title = "Verify your email"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.ConfirmVerification
		if !isForm(r) {
			if !decode(w, r, &in) {
				return
			}
			if in.Token == "" || len(in.Token) > 128 {
				writeProblemStatus(w, http.StatusBadRequest, "token_invalid", "token is missing or malformed", nil)
				return
			}
			s.forward(w, r, "token.verify_confirm", nil, in, http.StatusOK)
			return
		}
		if !readForm(w, r, title) {
			return
		}
		in.Token = r.PostForm.Get("token")
		if _, ok := s.pageCall(w, r, title, "token.verify_confirm", in); ok {
			writePage(w, http.StatusOK, "result.html", page{Title: title, Message: "Thank you: your email address is verified."})
		}
	})
}

func (s *server) confirmReset() http.Handler {
	const title = "Choose a new password"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in actors.ConfirmReset
		form := isForm(r)
		if form {
			if !readForm(w, r, title) {
				return
			}
			in.Token, in.NewPassword = r.PostForm.Get("token"), r.PostForm.Get("new_password")
		} else if !decode(w, r, &in) {
			return
		}
		p := problems{}
		if in.Token == "" || len(in.Token) > 128 {
			p.add("token", "is missing or malformed")
		}
		p.newPassword("new_password", in.NewPassword, "")
		switch {
		case form && p["new_password"] != "":
			writePage(w, http.StatusUnprocessableEntity, "reset.html", page{Title: title, Token: in.Token, Error: "The new password " + p["new_password"] + "."})
			return
		case form && len(p) > 0:
			writePage(w, http.StatusBadRequest, "result.html", page{Title: title, Message: "This link is not valid. Ask for a new one.", Error: "x"})
			return
		case p["token"] != "":
			writeProblemStatus(w, http.StatusBadRequest, "token_invalid", "token is missing or malformed", nil)
			return
		case p.report(w):
			return
		case !form:
			s.forward(w, r, "token.reset_confirm", nil, in, http.StatusNoContent)
			return
		}
		if _, ok := s.pageCall(w, r, title, "token.reset_confirm", in); ok {
			writePage(w, http.StatusOK, "result.html", page{Title: title, Message: "Your password was changed. Every session was signed out; sign in with the new password."})
		}
	})
}

// pageCall calls a node for a form post and answers failures with a page.
func (s *server) pageCall(w http.ResponseWriter, r *http.Request, title, op string, body any) (actors.Reply, bool) {
	reply, err := s.nodes.call(r, op, nil, body)
	switch {
	case err != nil:
		s.log.Warn("node call", "request_id", requestID(r), "err", err)
		setRetryAfter(w.Header(), http.StatusServiceUnavailable, 0)
		writePage(w, http.StatusServiceUnavailable, "result.html", page{Title: title, Message: "The service is busy. Please try again in a moment.", Error: "x"})
	case reply.Code == "token_expired":
		writePage(w, http.StatusBadRequest, "result.html", page{Title: title, Message: "This link has expired. Ask for a new one.", Error: "x"})
	case reply.Code == "token_invalid":
		writePage(w, http.StatusBadRequest, "result.html", page{Title: title, Message: "This link is not valid or was already used.", Error: "x"})
	case reply.Code != "":
		status := statusOf[reply.Code]
		setRetryAfter(w.Header(), status, reply.RetryAfter)
		writePage(w, status, "result.html", page{Title: title, Message: "Something went wrong: " + reply.Detail, Error: "x"})
	default:
		return reply, true
	}
	return reply, false
}

func (s *server) sendEmail() http.Handler {
	return s.authed(true, func(w http.ResponseWriter, r *http.Request, c *actors.Claims) {
		var in actors.SendEmail
		if !decode(w, r, &in) {
			return
		}
		p := problems{}
		in.To = p.email("to", in.To)
		switch {
		case strings.TrimSpace(in.Subject) == "":
			p.add("subject", "is required")
		case strings.ContainsAny(in.Subject, "\r\n"):
			p.add("subject", "must not contain line breaks")
		case utf8.RuneCountInString(in.Subject) > 200:
			p.add("subject", "must be at most 200 characters")
		}
		switch {
		case strings.TrimSpace(in.Text) == "":
			p.add("text", "is required")
		case utf8.RuneCountInString(in.Text) > 10000:
			p.add("text", "must be at most 10000 characters")
		}
		if p.report(w) {
			return
		}
		s.forward(w, r, "user.send_email", c, in, http.StatusAccepted)
	})
}
