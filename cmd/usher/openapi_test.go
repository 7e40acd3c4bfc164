package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/usher-auth/usher/gateway"
)

// contractSpec is gateway/openapi.yaml, ready to check exchanges against.
type contractSpec struct {
	router  routers.Router
	problem *openapi3.Schema
}

// loadContract loads and validates the document once. Its servers become
// [{url: "/"}], so requests to any test address match.
var loadContract = sync.OnceValues(func() (*contractSpec, error) {
	doc, err := openapi3.NewLoader().LoadFromData(gateway.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("load gateway/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("gateway/openapi.yaml is not valid: %w", err)
	}
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route gateway/openapi.yaml: %w", err)
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil || problem.Value == nil {
		return nil, errors.New("gateway/openapi.yaml has no Problem schema")
	}
	// Pages are HTML; their bodies are checked only as strings.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	return &contractSpec{router: router, problem: problem.Value}, nil
})

var contractOptions = &openapi3filter.Options{
	AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	IncludeResponseStatus: true,
	MultiError:            false,
	// The failure message shows the body; the schema dump would bury it.
	SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
}

// checkContract validates one request and its response against
// gateway/openapi.yaml with kin-openapi's openapi3filter and its gorilla/mux
// router (routers/gorillamux); it fails the test with a clear message naming
// the route, status and the violation.
//
// A request the document refuses (a test sending bad input on purpose) must
// get an error status; its response is then checked like any other. A path
// the document lacks must be a 404 problem, a method it lacks a 405 problem.
func checkContract(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	if err := contractViolation(req, reqBody, status, header, respBody); err != nil {
		t.Fatalf("contract: %s %s → %d: %v\nresponse body: %s", req.Method, req.URL.Path, status, err, clip(respBody))
	}
}

// contractViolation is checkContract's verdict: nil when the exchange keeps
// the contract.
func contractViolation(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	spec, err := loadContract()
	if err != nil {
		return err
	}
	ctx := context.Background()
	// A copy with a fresh body: the caller's has been sent.
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	if len(reqBody) == 0 {
		r.Body = http.NoBody
	}

	route, params, err := spec.router.FindRoute(r)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return spec.unrouted("no such path in the document", http.StatusNotFound, status, header, respBody)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return spec.unrouted("the document has no such method on this path", http.StatusMethodNotAllowed, status, header, respBody)
	case err != nil:
		return fmt.Errorf("find route: %w", err)
	}
	where := "route " + route.Method + " " + route.Path

	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: contractOptions}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && status < 400 {
		return fmt.Errorf("%s: the document refuses the request, yet the server answered %d: %v", where, status, err)
	}

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                contractOptions,
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	return nil
}

// unrouted checks the answer to a request no operation of the document
// matches: the router's own problem with the status want.
func (c *contractSpec) unrouted(why string, want, status int, header http.Header, body []byte) error {
	if status != want {
		return fmt.Errorf("%s, so want %d, got %d", why, want, status)
	}
	if header.Get("X-Request-Id") == "" {
		return errors.New("response lacks X-Request-Id")
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/problem+json" {
		return fmt.Errorf("%d: Content-Type is %q, want application/problem+json", status, header.Get("Content-Type"))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%d: problem body is not JSON: %v", status, err)
	}
	if err := c.problem.VisitJSON(v, openapi3.DisableSchemaErrorDetails()); err != nil {
		return fmt.Errorf("%d: body is not a Problem: %v", status, err)
	}
	return nil
}

func clip(b []byte) string {
	const max = 2048
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// failRecorder stands in for a test so the self-test can see checkContract
// fail without failing itself.
type failRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *failRecorder) Helper() {}

func (f *failRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
}

func (f *failRecorder) Errorf(format string, args ...any) { f.Fatalf(format, args...) }

func TestContractCheckerCatchesViolations(t *testing.T) {
	const base = "http://127.0.0.1:41234" // any address: servers are stripped
	jsonHeader := func(ct string) http.Header {
		return http.Header{"Content-Type": {ct}, "X-Request-Id": {"abc123"}}
	}
	user := `{"id":"u1","email":"a@example.com","name":"A","role":"user","email_verified":false,"disabled":false,` +
		`"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05.123456Z"}`
	login := `{"email":"a@example.com","password":"correct horse battery"}`
	problem := func(status int, code string) string {
		return fmt.Sprintf(`{"type":"/docs#problem-%s","title":%q,"status":%d,"detail":"x","code":%q}`, code, http.StatusText(status), status, code)
	}
	cases := []struct {
		name                string
		method, path, reqCT string
		reqBody             string
		status              int
		header              http.Header
		respBody            string
		wantOK              bool
		wantInMessage       string
	}{
		{name: "healthz ok", method: "GET", path: "/healthz",
			status: 200, header: jsonHeader("application/json"), respBody: `{"status":"ok"}`, wantOK: true},
		{name: "healthz wrong body", method: "GET", path: "/healthz",
			status: 200, header: jsonHeader("application/json"), respBody: `{"status":"fine"}`, wantInMessage: `"/status"`},
		{name: "no X-Request-Id", method: "GET", path: "/healthz",
			status: 200, header: http.Header{"Content-Type": {"application/json"}}, respBody: `{"status":"ok"}`, wantInMessage: "X-Request-Id"},
		{name: "login pair", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 200, header: jsonHeader("application/json"),
			respBody: `{"access_token":"a.b.c","refresh_token":"s.1.m","token_type":"Bearer","expires_in":900,"user":` + user + `}`, wantOK: true},
		{name: "login pair without access_token", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 200, header: jsonHeader("application/json"),
			respBody: `{"refresh_token":"s.1.m","token_type":"Bearer","expires_in":900,"user":` + user + `}`, wantInMessage: "access_token"},
		{name: "login pair with an undocumented field", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 200, header: jsonHeader("application/json"),
			respBody: `{"access_token":"a.b.c","refresh_token":"s.1.m","token_type":"Bearer","expires_in":900,"scope":"x","user":` + user + `}`, wantInMessage: `"scope" is unsupported`},
		{name: "undocumented status", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 404, header: jsonHeader("application/problem+json"), respBody: problem(404, "not_found"), wantInMessage: "status is not supported"},
		{name: "problem with charset", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 401, header: jsonHeader("application/problem+json; charset=utf-8"), respBody: problem(401, "invalid_credentials"), wantOK: true},
		{name: "problem with an unknown code", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 401, header: jsonHeader("application/problem+json"), respBody: problem(401, "nope"), wantInMessage: `"/code"`},
		{name: "429 without Retry-After", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: login,
			status: 429, header: jsonHeader("application/problem+json"), respBody: problem(429, "rate_limited"), wantInMessage: "Retry-After"},
		{name: "bad request refused", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: `{"email":"a@example.com"}`,
			status: 422, header: jsonHeader("application/problem+json"), respBody: problem(422, "validation_failed"), wantOK: true},
		{name: "bad request accepted", method: "POST", path: "/v1/auth/login", reqCT: "application/json", reqBody: `{"email":"a@example.com","password":"x","extra":1}`,
			status: 200, header: jsonHeader("application/json"),
			respBody: `{"access_token":"a.b.c","refresh_token":"s.1.m","token_type":"Bearer","expires_in":900,"user":` + user + `}`, wantInMessage: "refuses the request"},
		{name: "bearer 401 without WWW-Authenticate", method: "GET", path: "/v1/users/me",
			status: 401, header: jsonHeader("application/problem+json"), respBody: problem(401, "unauthorized"), wantInMessage: "WWW-Authenticate"},
		{name: "path param route", method: "DELETE", path: "/v1/admin/users/0b7e5d3c/sessions",
			status: 204, header: http.Header{"X-Request-Id": {"r1"}}, wantOK: true},
		{name: "unknown path is a 404 problem", method: "GET", path: "/v1/nope",
			status: 404, header: jsonHeader("application/problem+json"), respBody: problem(404, "not_found"), wantOK: true},
		{name: "unknown path answered 200", method: "GET", path: "/v1/nope",
			status: 200, header: jsonHeader("application/json"), respBody: `{}`, wantInMessage: "want 404"},
		{name: "wrong method is a 405 problem", method: "PUT", path: "/v1/users/me",
			status: 405, header: jsonHeader("application/problem+json"), respBody: problem(405, "method_not_allowed"), wantOK: true},
		{name: "docs page", method: "GET", path: "/docs",
			status: 200, header: http.Header{"Content-Type": {"text/html; charset=utf-8"}, "X-Request-Id": {"r"}, "Referrer-Policy": {"no-referrer"},
				"Cache-Control": {"no-store"}, "Content-Security-Policy": {"default-src 'none'; frame-ancestors 'none'"}},
			respBody: "<!doctype html><title>x</title>", wantOK: true},
		{name: "page without CSP", method: "GET", path: "/docs",
			status: 200, header: http.Header{"Content-Type": {"text/html; charset=utf-8"}, "X-Request-Id": {"r"}, "Referrer-Policy": {"no-referrer"},
				"Cache-Control": {"no-store"}},
			respBody: "<!doctype html><title>x</title>", wantInMessage: "Content-Security-Policy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, base+c.path, strings.NewReader(c.reqBody))
			if c.reqCT != "" {
				req.Header.Set("Content-Type", c.reqCT)
			}
			f := &failRecorder{TB: t}
			checkContract(f, req, []byte(c.reqBody), c.status, c.header, []byte(c.respBody))
			switch {
			case c.wantOK && f.failed:
				t.Fatalf("good exchange refused: %s", f.msg)
			case !c.wantOK && !f.failed:
				t.Fatalf("bad exchange passed; want a failure mentioning %q", c.wantInMessage)
			case !c.wantOK && !strings.Contains(f.msg, c.wantInMessage):
				t.Fatalf("failure does not mention %q: %s", c.wantInMessage, f.msg)
			case !c.wantOK && !strings.Contains(f.msg, c.method+" "+c.path):
				t.Fatalf("failure does not name the request: %s", f.msg)
			}
		})
	}
}

// TestContractServedSpec checks the served document against itself: the
// docs routes answer as the document says.
func TestContractServedSpec(t *testing.T) {
	req := httptest.NewRequest("GET", "http://usher.test/docs/openapi.yaml", nil)
	checkContract(t, req, nil, 200, http.Header{"Content-Type": {"application/yaml"}, "X-Request-Id": {"r"}}, gateway.OpenAPI())
}
