package main

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usher-auth/usher/internal/testenv"
)

// A key rotated in after a gateway started: the gateway meets its kid on
// the first token it signs, reloads, and accepts it; the JWKS lists both.
func TestRotatedKeyIsAcceptedByARunningGateway(t *testing.T) {
	env, gw := splitStack(t)
	a := api{t, gw.base}
	old := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "k@example.com", "password": "rotate the keys"}).want(t, "register", 201).pair()
	// The node made its first key after the gateway loaded; the first token
	// with that kid makes the gateway reload.
	a.do("GET", "/v1/users/me", old.access, nil).want(t, "token of the first key", 200)
	if keys := jwksKids(t, a); len(keys) != 1 {
		t.Fatalf("JWKS before rotation: got %v, want one key", keys)
	}

	out := usher(t, env, "", "keys", "rotate", "--after", "0s")
	if !strings.Contains(out, "added signing key") {
		t.Fatalf("keys rotate: got %q", out)
	}
	// A new node signs with the new key from its start.
	start(t, "node", env...)
	var fresh pair
	// The queue group spreads logins over both nodes: retry until the new
	// one, once subscribed, signs one.
	testenv.Eventually(t, 15*time.Second, func() string {
		fresh = a.do("POST", "/v1/auth/login", "", map[string]string{"email": "k@example.com", "password": "rotate the keys"}).want(t, "login", 200).pair()
		if kid(fresh.access) == kid(old.access) {
			return "no token signed with the rotated key"
		}
		return ""
	})
	a.do("GET", "/v1/users/me", fresh.access, nil).want(t, "token of the rotated key", 200)
	a.do("GET", "/v1/users/me", old.access, nil).want(t, "token of the old key", 200)
	if keys := jwksKids(t, a); len(keys) != 2 {
		t.Fatalf("JWKS after rotation: got %v, want both keys", keys)
	}
}

func TestKeyFilePinRefusesRotation(t *testing.T) {
	env := stack(t, "USHER_JWT_KEY_FILE=/nonexistent.pem")
	var out, errOut strings.Builder
	err := run(t.Context(), []string{"usher", "keys", "rotate"}, testenv.Env(env...), strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "USHER_JWT_KEY_FILE") {
		t.Fatalf("rotate with a pinned key: got %v, want a refusal naming USHER_JWT_KEY_FILE", err)
	}
}

func jwksKids(t *testing.T, a api) []string {
	t.Helper()
	r := a.do("GET", "/.well-known/jwks.json", "", nil).want(t, "jwks", 200)
	var kids []string
	keys, _ := r.body["keys"].([]any)
	for _, k := range keys {
		kids = append(kids, k.(map[string]any)["kid"].(string))
	}
	return kids
}

// kid reads the key id from a JWT's header.
func kid(jwt string) string {
	header, _, _ := strings.Cut(jwt, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(header)
	_, rest, _ := strings.Cut(string(raw), `"kid":"`)
	id, _, _ := strings.Cut(rest, `"`)
	return id
}

func TestCORSAllowsOnlyConfiguredOrigins(t *testing.T) {
	a, _ := serveAPI(t, "USHER_CORS_ORIGINS=https://app.example.com")
	preflight := func(origin string) http.Header {
		req, _ := http.NewRequest(http.MethodOptions, a.base+"/v1/users/me", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	if got := preflight("https://app.example.com").Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("allowed origin: got Access-Control-Allow-Origin %q", got)
	}
	if got := preflight("https://evil.example").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin: got Access-Control-Allow-Origin %q, want none", got)
	}
}
