package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// testIssuer is the iss of the test gateway's tokens.
const testIssuer = "http://usher.test"

// newTestGateway serves the gateway in-process on the shared NATS server
// under a fresh namespace where no node listens, and returns its URL, its
// log and an admin access token it accepts.
func newTestGateway(t *testing.T) (string, *bytes.Buffer, string) {
	t.Helper()
	testenv.Require(t, "NATS", "PostgreSQL")
	nc, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	url := testdb.New(t)
	db, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	// The gateway needs only the public half of a signing key.
	key, _ := token.NewSigningKey()
	if err := db.AddSigningKey(t.Context(), store.SigningKeyRow{ID: key.ID, Public: key.Public(), Sealed: []byte{0}}, 0); err != nil {
		t.Fatal(err)
	}
	admin, err := token.Issuer{Issuer: testIssuer, Audience: "usher"}.Sign(key, token.Claims{
		Subject: "0b7e5d3c-54f1-4b2e-9a4d-1c2b3a4d5e6f", SessionID: "1b7e5d3c-54f1-4b2e-9a4d-1c2b3a4d5e6f",
		Role: "admin", Email: "admin@example.com", IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	h, err := New(t.Context(), Config{
		NATS: nc, DB: db, Namespace: testenv.Namespace(t), Timeout: time.Second,
		Issuer: testIssuer, Audience: "usher", AccessTTL: 15 * time.Minute,
		Log:     slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, logs, admin
}

type route struct{ path, method string }

// routes lists every route the router has, with {id} filled in.
func routes(t *testing.T) []route {
	t.Helper()
	r := mux.NewRouter()
	addRoutes(r, &server{})
	var out []route
	r.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, _ := rt.GetPathTemplate()
		methods, _ := rt.GetMethods()
		for _, m := range methods {
			out = append(out, route{strings.ReplaceAll(tpl, "{id}", "0b7e5d3c-54f1-4b2e-9a4d-1c2b3a4d5e6f"), m})
		}
		return nil
	})
	if len(out) < 30 {
		t.Fatalf("walked %d routes, want the whole API", len(out))
	}
	return out
}

func send(t *testing.T, method, url, contentType string, body io.Reader, bearer ...string) (*http.Response, problem) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(bearer) > 0 {
		req.Header.Set("Authorization", "Bearer "+bearer[0])
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &p)
	return resp, p
}

func wantProblem(t *testing.T, what string, resp *http.Response, p problem, status int, code string) {
	t.Helper()
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode != status || p.Code != code || p.Status != status || !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: got %d %q code %q, want %d problem+json code %q", what, resp.StatusCode, ct, p.Code, status, code)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", what)
	}
}

func TestBadRequestsOnEveryRouteAreProblems(t *testing.T) {
	base, _, admin := newTestGateway(t)
	oversized := `{"name":"` + strings.Repeat("a", maxBody) + `"}`
	byPath := map[string][]string{}
	for _, rt := range routes(t) {
		byPath[rt.path] = append(byPath[rt.path], rt.method)
		if rt.method == http.MethodGet {
			continue
		}
		what := rt.method + " " + rt.path
		resp, p := send(t, rt.method, base+rt.path, "application/json", strings.NewReader(`{"email":`), admin)
		if takesBody(rt) {
			wantProblem(t, what+" malformed JSON", resp, p, 400, "invalid_request")
		}
		resp, p = send(t, rt.method, base+rt.path, "text/plain", strings.NewReader(`{}`), admin)
		wantProblem(t, what+" text/plain", resp, p, 415, "unsupported_media_type")
		resp, p = send(t, rt.method, base+rt.path, "application/json", strings.NewReader(oversized), admin)
		wantProblem(t, what+" oversized", resp, p, 413, "payload_too_large")
	}
	for path, methods := range byPath {
		wrong := http.MethodPut
		for _, m := range methods {
			if m == wrong {
				t.Fatalf("%s takes PUT; pick another wrong method", path)
			}
		}
		resp, p := send(t, wrong, base+path, "", nil)
		wantProblem(t, "PUT "+path, resp, p, 405, "method_not_allowed")
	}
	resp, p := send(t, http.MethodGet, base+"/v1/nope", "", nil)
	wantProblem(t, "unknown route", resp, p, 404, "not_found")
}

// takesBody reports whether a route reads a JSON body; the others ignore
// one after the content checks every body gets.
func takesBody(rt route) bool {
	switch rt.method + " " + rt.path {
	case "POST /v1/auth/logout-all", "POST /v1/auth/verify-email/request":
		return false
	}
	return !strings.Contains(rt.path, "/sessions") && !(rt.method == http.MethodDelete && strings.HasPrefix(rt.path, "/v1/admin/"))
}

func TestOversizedChunkedBodyIs413(t *testing.T) {
	base, _, _ := newTestGateway(t)
	// No Content-Length: the limit must hold while reading.
	body := io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("a", 2*maxBody)), strings.NewReader(`"}`))
	resp, p := send(t, http.MethodPost, base+"/v1/auth/register", "application/json", body)
	wantProblem(t, "chunked oversized", resp, p, 413, "payload_too_large")
}

func TestBodylessPostNeedsNoContentType(t *testing.T) {
	base, _, _ := newTestGateway(t)
	resp, p := send(t, http.MethodPost, base+"/v1/auth/logout-all", "", nil)
	if resp.StatusCode == http.StatusUnsupportedMediaType || p.Code == "invalid_request" {
		t.Fatalf("body-less POST: got %d %q, want it judged without a content type", resp.StatusCode, p.Code)
	}
}

func TestJSONWithCharsetIsAccepted(t *testing.T) {
	base, _, _ := newTestGateway(t)
	resp, p := send(t, http.MethodPost, base+"/v1/auth/login", "application/json; charset=utf-8", strings.NewReader(`{"email":`))
	wantProblem(t, "charset parameter", resp, p, 400, "invalid_request")
}

func TestNoNodeIs503WithRetryAfter(t *testing.T) {
	base, _, _ := newTestGateway(t)
	resp, p := send(t, http.MethodGet, base+"/v1/system/ping", "", nil)
	wantProblem(t, "no node", resp, p, 503, "unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	resp, _ = send(t, http.MethodGet, base+"/readyz", "", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("readyz with no node: got %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestRequestIDIsEchoedOnlyWhenSane(t *testing.T) {
	base, _, _ := newTestGateway(t)
	for _, c := range []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{"bad id with spaces", ""},
		{strings.Repeat("x", 65), ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
		req.Header.Set("X-Request-Id", c.sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if c.want != "" && got != c.want || c.want == "" && (got == "" || got == c.sent) {
			t.Errorf("sent %q: got X-Request-Id %q", c.sent, got)
		}
	}
}

func TestAccessLogRedactsQueryStrings(t *testing.T) {
	base, logs, _ := newTestGateway(t)
	secret := "s3cr3t-token-value"
	resp, err := http.Get(base + "/v1/auth/verify-email?token=" + secret)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(logs.String(), `"path":"/v1/auth/verify-email"`) {
		t.Fatalf("request not logged: %s", logs)
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("access log contains the token: %s", logs)
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{}`, `{"email":"a@b.c","password":"x"}`, `{"email":`, `[]`, `{} {}`, `null`, "\x00", `{"a":1e999}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			Email    string `json:"email"`
			Password string `json:"password"`
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if !decode(w, r, &v) && w.Code != 400 && w.Code != 413 {
			t.Fatalf("failed decode answered %d, want 400 or 413", w.Code)
		}
	})
}
