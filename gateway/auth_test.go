package gateway

import (
	"testing"
	"time"

	"github.com/usher-auth/usher/internal/token"
)

func TestVerifiedTokensExpireWithTheirToken(t *testing.T) {
	var v verifiedTokens
	now := time.Now()
	v.put("live", token.Claims{Subject: "a", Expires: now.Add(time.Minute)})
	v.put("expired", token.Claims{Subject: "b", Expires: now.Add(-time.Minute)})
	if c, ok := v.get("live", now); !ok || c.Subject != "a" {
		t.Fatalf("live token: got %+v, %v", c, ok)
	}
	if _, ok := v.get("expired", now); ok {
		t.Fatal("a token past its expiry and leeway was served from the cache")
	}
	if _, ok := v.get("never-seen", now); ok {
		t.Fatal("an unknown token was found")
	}
	for i := range verifiedTokensMax + 1 {
		v.put(string(rune(i)), token.Claims{Expires: now.Add(time.Minute)})
	}
	if n := len(v.claims); n > verifiedTokensMax {
		t.Fatalf("cache holds %d tokens, want at most %d", n, verifiedTokensMax)
	}
}
