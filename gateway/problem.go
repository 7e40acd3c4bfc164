package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem detail with usher's stable code.
type problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Code   string            `json:"code"`
	Errors map[string]string `json:"errors,omitempty"`
}

// statusOf is the HTTP status of each problem code (API.md). A route may
// answer a code with another status where the contract says so.
var statusOf = map[string]int{
	"invalid_request":        http.StatusBadRequest,
	"validation_failed":      http.StatusUnprocessableEntity,
	"email_taken":            http.StatusConflict,
	"invalid_credentials":    http.StatusUnauthorized,
	"account_disabled":       http.StatusForbidden,
	"token_invalid":          http.StatusUnauthorized,
	"token_expired":          http.StatusUnauthorized,
	"unauthorized":           http.StatusUnauthorized,
	"forbidden":              http.StatusForbidden,
	"not_found":              http.StatusNotFound,
	"method_not_allowed":     http.StatusMethodNotAllowed,
	"payload_too_large":      http.StatusRequestEntityTooLarge,
	"unsupported_media_type": http.StatusUnsupportedMediaType,
	"rate_limited":           http.StatusTooManyRequests,
	"overloaded":             http.StatusServiceUnavailable,
	"unavailable":            http.StatusServiceUnavailable,
	"not_implemented":        http.StatusNotImplemented,
	"internal":               http.StatusInternalServerError,
}

// writeProblem writes the problem for code with the code's usual status.
func writeProblem(w http.ResponseWriter, code, detail string) {
	writeProblemStatus(w, statusOf[code], code, detail, nil)
}

// setRetryAfter tells a client refused with 429 or 503 when to come back:
// after seconds when the node said, else after one, unless already set.
func setRetryAfter(h http.Header, status, seconds int) {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable || h.Get("Retry-After") != "" {
		return
	}
	h.Set("Retry-After", strconv.Itoa(max(seconds, 1)))
}

// writeProblemStatus writes a problem+json response. Statuses that ask the
// client to come back say when.
func writeProblemStatus(w http.ResponseWriter, status int, code, detail string, errs map[string]string) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	setRetryAfter(h, status, 0)
	if status == http.StatusUnauthorized && code == "unauthorized" {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{
		Type:   "/docs#problem-" + code,
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Code:   code,
		Errors: errs,
	})
}

// writeJSON writes v as the JSON body of a success response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
