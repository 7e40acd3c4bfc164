package actors

import (
	"encoding/json"
	"time"
)

// The wire protocol between gateways and nodes. A gateway publishes a Request
// on <ns>.v1.<concern>.<op> and waits for exactly one Reply.

// Request is what a gateway sends to a node.
type Request struct {
	ID string `json:"id"`
	// BudgetMS is the time left for the request when the gateway sent it.
	// A duration, not a deadline: node and gateway clocks may disagree.
	BudgetMS int64           `json:"budget_ms"`
	Claims   *Claims         `json:"claims,omitempty"`
	Client   Client          `json:"client"`
	Body     json.RawMessage `json:"body,omitempty"`
	// Testhook names a fault to inject; read only in -tags testhooks builds.
	Testhook string `json:"testhook,omitempty"`
}

// Claims are what the gateway verified in the caller's access token. Nodes
// act on them without checking again: only gateways may publish requests.
type Claims struct {
	UserID    string `json:"sub"`
	SessionID string `json:"sid"`
	Role      string `json:"role"`
	Email     string `json:"email"`
}

// Client describes the HTTP client behind a request.
type Client struct {
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Reply is a node's answer: a problem Code, or a success Body.
type Reply struct {
	// ID echoes the request id, set by the actor that answered.
	ID     string            `json:"id"`
	Code   string            `json:"code,omitempty"`
	Detail string            `json:"detail,omitempty"`
	Errors map[string]string `json:"errors,omitempty"`
	// RetryAfter, in seconds, tells a rate-limited client when to come back.
	RetryAfter int             `json:"retry_after,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// Problem codes a node may answer with (API.md lists the whole set).
const (
	CodeInvalidRequest = "invalid_request"
	CodeNotFound       = "not_found"
	CodeOverloaded     = "overloaded"
	CodeUnavailable    = "unavailable"
	CodeInternal       = "internal"
)

// Call is what every request message carries: who asked, until when, and
// the channel for its one reply. hollywood's Request is not used: its reply
// inboxes can collide (DESIGN.md), and a mixed-up reply could hand one
// user's tokens to another.
type Call struct {
	ID       string
	Deadline time.Time
	Claims   *Claims
	Client   Client
	Testhook string
	reply    chan Reply
}

func newCall(req Request, deadline time.Time) Call {
	return Call{
		ID:       req.ID,
		Deadline: deadline,
		Claims:   req.Claims,
		Client:   req.Client,
		Testhook: req.Testhook,
		reply:    make(chan Reply, 1),
	}
}

// answer sends the call's one reply. Later answers are dropped, so a
// recover that answers after a partial success cannot block an actor.
func (c Call) answer(r Reply) {
	r.ID = c.ID
	select {
	case c.reply <- r:
	default:
	}
}

// fail answers with a problem code.
func (c Call) fail(code, detail string) {
	c.answer(Reply{Code: code, Detail: detail})
}

// ok answers with v encoded as the success body.
func (c Call) ok(v any) { c.answer(okReply(v)) }

// call lets supervision find the Call inside any request message.
func (c Call) call() Call { return c }

// Ping asks a concern whether it can serve; the answer body is its state.
type Ping struct{ Call }

// Concern states reported by Ping.
const (
	StateUp       = "up"
	StateDegraded = "degraded"
	StateDown     = "down"
)

// PingResult is the body of GET /v1/system/ping.
type PingResult struct {
	NodeID   string            `json:"node_id"`
	Concerns map[string]string `json:"concerns"`
}

// setCall lets the node put the Call into a decoded request message.
func (c *Call) setCall(x Call) { *c = x }

// Account requests. The JSON fields are the body a gateway sends; the
// gateway has validated them.
type (
	Register struct {
		Call     `json:"-"`
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	Login struct {
		Call     `json:"-"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	GetMe    struct{ Call }
	UpdateMe struct {
		Call `json:"-"`
		Name string `json:"name"`
	}
	ChangePassword struct {
		Call    `json:"-"`
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	DeleteMe struct {
		Call     `json:"-"`
		Password string `json:"password"`
	}
	ListUsers struct {
		Call        `json:"-"`
		Limit       int    `json:"limit"`
		Cursor      string `json:"cursor"`
		EmailPrefix string `json:"email_prefix"`
	}
	GetUser struct {
		Call   `json:"-"`
		UserID string `json:"id"`
	}
	UpdateUser struct {
		Call     `json:"-"`
		UserID   string  `json:"id"`
		Role     *string `json:"role"`
		Disabled *bool   `json:"disabled"`
	}
	DeleteUser struct {
		Call   `json:"-"`
		UserID string `json:"id"`
	}
	SendEmail struct {
		Call    `json:"-"`
		To      string `json:"to"`
		Subject string `json:"subject"`
		Text    string `json:"text"`
	}
)

// One-time token requests.
type (
	RequestVerification struct{ Call }
	ConfirmVerification struct {
		Call  `json:"-"`
		Token string `json:"token"`
	}
	RequestReset struct {
		Call  `json:"-"`
		Email string `json:"email"`
	}
	ConfirmReset struct {
		Call        `json:"-"`
		Token       string `json:"token"`
		NewPassword string `json:"new_password"`
	}
)

// Session requests.
type (
	Refresh struct {
		Call  `json:"-"`
		Token string `json:"refresh_token"`
	}
	Logout struct {
		Call  `json:"-"`
		Token string `json:"refresh_token"`
	}
	LogoutAll    struct{ Call }
	ListSessions struct{ Call }
	EndSession   struct {
		Call      `json:"-"`
		SessionID string `json:"id"`
	}
	EndUserSessions struct {
		Call   `json:"-"`
		UserID string `json:"id"`
	}
)

// SessionView is one entry of GET /v1/users/me/sessions.
type SessionView struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	UserAgent  string    `json:"user_agent"`
	IP         string    `json:"ip"`
	Current    bool      `json:"current"`
}

// UserPage is the body of the admin user list.
type UserPage struct {
	Items      []UserView `json:"items"`
	NextCursor string     `json:"next_cursor"`
}

// More problem codes.
const (
	CodeValidation         = "validation_failed"
	CodeEmailTaken         = "email_taken"
	CodeInvalidCredentials = "invalid_credentials"
	CodeAccountDisabled    = "account_disabled"
	CodeTokenInvalid       = "token_invalid"
	CodeTokenExpired       = "token_expired"
	CodeRateLimited        = "rate_limited"
)
