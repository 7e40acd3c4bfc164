package token_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usher-auth/usher/internal/token"
)

const (
	testIss = "https://usher.test"
	testAud = "usher"
)

// now is a fixed instant so expiry cases do not depend on the test's clock.
var now = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

var testIssuer = token.Issuer{Issuer: testIss, Audience: testAud}

func newKey(t testing.TB) token.SigningKey {
	t.Helper()
	k, err := token.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newVerifier(t testing.TB, keys ...token.SigningKey) *token.Verifier {
	t.Helper()
	m := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		m[k.ID] = k.Public()
	}
	v, err := token.NewVerifier(testIss, testAud, m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testClaims() token.Claims {
	return token.Claims{
		Subject:   "0b6f8f2e-3c44-4d0e-9a53-5b1f0c2d7e11",
		SessionID: "7d1c4a9e-8f02-4b6a-b3c5-2e9f1a0d4c88",
		Role:      "admin",
		Email:     "ada@example.com",
		ID:        "jti-1",
		IssuedAt:  now,
		Expires:   now.Add(15 * time.Minute),
	}
}

// craft signs arbitrary header and claims, so each rejection case differs
// from a valid token in exactly one way and is otherwise properly signed.
func craft(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	for h, v := range header {
		if v == nil {
			delete(tok.Header, h)
		} else {
			tok.Header[h] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validHeader(k token.SigningKey) map[string]any {
	return map[string]any{"typ": "at+jwt", "kid": k.ID}
}

func validClaims() map[string]any {
	c := testClaims()
	return map[string]any{
		"iss": testIss, "aud": testAud, "sub": c.Subject, "sid": c.SessionID,
		"role": c.Role, "email": c.Email, "jti": c.ID,
		"iat": c.IssuedAt.Unix(), "nbf": c.IssuedAt.Unix(), "exp": c.Expires.Unix(),
	}
}

// with returns m with the given changes; a nil value deletes the key.
func with(m map[string]any, kv ...any) map[string]any {
	m = maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

func segments(t testing.TB, raw string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := newKey(t)
	v := newVerifier(t, k)
	want := testClaims()
	// Sub-second parts are dropped, not rounded.
	in := want
	in.IssuedAt = want.IssuedAt.Add(900 * time.Millisecond)
	in.Expires = want.Expires.Add(900 * time.Millisecond)

	raw, err := testIssuer.Sign(k, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(raw, now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != want {
		t.Errorf("claims:\n got %+v\nwant %+v", got, want)
	}

	header, payload := segments(t, raw)
	wantHeader := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": k.ID}
	if !maps.Equal(header, wantHeader) {
		t.Errorf("header = %v, want %v", header, wantHeader)
	}
	wantPayload := map[string]any{
		"iss": testIss, "aud": testAud, // aud a single string, not an array
		"sub": want.Subject, "sid": want.SessionID, "role": want.Role,
		"email": want.Email, "jti": want.ID,
		"iat": float64(now.Unix()), "nbf": float64(now.Unix()),
		"exp": float64(want.Expires.Unix()),
	}
	if !maps.Equal(payload, wantPayload) {
		t.Errorf("payload = %v, want %v", payload, wantPayload)
	}
}

func TestSignFillsJTI(t *testing.T) {
	k := newKey(t)
	v := newVerifier(t, k)
	c := testClaims()
	c.ID = ""
	seen := map[string]bool{}
	for range 3 {
		raw, err := testIssuer.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(raw, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.ID) < 20 || seen[got.ID] {
			t.Fatalf("jti %q: want a fresh random id", got.ID)
		}
		seen[got.ID] = true
	}
}

func TestSignRejects(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name   string
		issuer token.Issuer
		key    token.SigningKey
		change func(*token.Claims)
	}{
		{"no issuer", token.Issuer{Audience: testAud}, k, nil},
		{"no audience", token.Issuer{Issuer: testIss}, k, nil},
		{"no kid", testIssuer, token.SigningKey{Private: k.Private}, nil},
		{"short key", testIssuer, token.SigningKey{ID: k.ID, Private: k.Private[:32]}, nil},
		{"no subject", testIssuer, k, func(c *token.Claims) { c.Subject = "" }},
		{"no session", testIssuer, k, func(c *token.Claims) { c.SessionID = "" }},
		{"no role", testIssuer, k, func(c *token.Claims) { c.Role = "" }},
		{"no email", testIssuer, k, func(c *token.Claims) { c.Email = "" }},
		{"too large to verify", testIssuer, k, func(c *token.Claims) { c.Role = strings.Repeat("r", 4096) }},
		{"no issued at", testIssuer, k, func(c *token.Claims) { c.IssuedAt = time.Time{} }},
		{"expires at issue", testIssuer, k, func(c *token.Claims) { c.Expires = c.IssuedAt }},
		{"expires before issue", testIssuer, k, func(c *token.Claims) { c.Expires = c.IssuedAt.Add(-time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClaims()
			if tt.change != nil {
				tt.change(&c)
			}
			if raw, err := tt.issuer.Sign(tt.key, c); err == nil {
				t.Fatalf("Sign succeeded: %s", raw)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	k := newKey(t)
	other := newKey(t) // not known to the verifier
	v := newVerifier(t, k)
	hdr, cl := validHeader(k), validClaims()
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, cl)
	parts := strings.Split(valid, ".")
	alteredPayload := craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "role", "user"))

	tests := []struct {
		name string
		raw  string
		want error // nil: accepted
	}{
		{"valid", valid, nil},
		{"alg none", craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, cl), token.ErrInvalid},
		{"alg none with a copied signature", craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, cl) + parts[2], token.ErrInvalid},
		{"HS256 keyed with the public key", craft(t, jwt.SigningMethodHS256, []byte(k.Public()), hdr, cl), token.ErrInvalid},
		{"RS256", craft(t, jwt.SigningMethodRS256, rsaKey, hdr, cl), token.ErrInvalid},
		{"signed by another key under a known kid", craft(t, jwt.SigningMethodEdDSA, other.Private, hdr, cl), token.ErrInvalid},
		{"unknown kid", craft(t, jwt.SigningMethodEdDSA, other.Private, validHeader(other), cl), token.ErrUnknownKey},
		{"no kid", craft(t, jwt.SigningMethodEdDSA, k.Private, with(hdr, "kid", nil), cl), token.ErrInvalid},
		{"numeric kid", craft(t, jwt.SigningMethodEdDSA, k.Private, with(hdr, "kid", 7), cl), token.ErrInvalid},
		{"typ JWT", craft(t, jwt.SigningMethodEdDSA, k.Private, with(hdr, "typ", "JWT"), cl), token.ErrInvalid},
		{"no typ", craft(t, jwt.SigningMethodEdDSA, k.Private, with(hdr, "typ", nil), cl), token.ErrInvalid},
		{"crit header", craft(t, jwt.SigningMethodEdDSA, k.Private, with(hdr, "crit", []string{"exp"}), cl), token.ErrInvalid},
		{"wrong aud", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "aud", "other")), token.ErrInvalid},
		{"aud as array", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "aud", []string{testAud})), token.ErrInvalid},
		{"no aud", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "aud", nil)), token.ErrInvalid},
		{"wrong iss", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iss", testIss+"/")), token.ErrInvalid},
		{"no iss", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iss", nil)), token.ErrInvalid},
		{"expired beyond leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", sec(-time.Hour), "nbf", sec(-time.Hour), "exp", sec(-31*time.Second))), token.ErrInvalid},
		{"expired at leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", sec(-time.Hour), "nbf", sec(-time.Hour), "exp", sec(-30*time.Second))), token.ErrInvalid},
		{"expired within leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", sec(-time.Hour), "nbf", sec(-time.Hour), "exp", sec(-29*time.Second))), nil},
		{"nbf beyond leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "nbf", sec(31*time.Second))), token.ErrInvalid},
		{"nbf within leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "nbf", sec(30*time.Second))), nil},
		{"iat beyond leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", sec(31*time.Second))), token.ErrInvalid},
		{"iat within leeway", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", sec(30*time.Second))), nil},
		{"no exp", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "exp", nil)), token.ErrInvalid},
		{"no nbf", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "nbf", nil)), token.ErrInvalid},
		{"no iat", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "iat", nil)), token.ErrInvalid},
		{"exp as string", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "exp", "2000000000")), token.ErrInvalid},
		{"exp fractional", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "exp", float64(sec(time.Minute))+0.5)), token.ErrInvalid},
		{"exp beyond 2^53", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "exp", json.Number("9223372036854775807"))), token.ErrInvalid},
		{"nbf negative", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "nbf", -1)), token.ErrInvalid},
		{"no sub", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "sub", nil)), token.ErrInvalid},
		{"empty sub", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "sub", "")), token.ErrInvalid},
		{"numeric sub", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "sub", 42)), token.ErrInvalid},
		{"no sid", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "sid", nil)), token.ErrInvalid},
		{"null sid", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "sid", json.RawMessage("null"))), token.ErrInvalid},
		{"no jti", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "jti", nil)), token.ErrInvalid},
		{"no role", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "role", nil)), token.ErrInvalid},
		{"role as array", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "role", []string{"admin"})), token.ErrInvalid},
		{"no email", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "email", nil)), token.ErrInvalid},
		// The first character carries the signature's first six bits.
		{"altered signature", parts[0] + "." + parts[1] + "." + flipFirst(parts[2]), token.ErrInvalid},
		{"signature re-spelled", parts[0] + "." + parts[1] + "." + respell(parts[2]), token.ErrInvalid},
		{"truncated signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2], token.ErrInvalid},
		{"no signature", parts[0] + "." + parts[1] + ".", token.ErrInvalid},
		{"altered payload", parts[0] + "." + strings.Split(alteredPayload, ".")[1] + "." + parts[2], token.ErrInvalid},
		{"padded segments", parts[0] + "==." + parts[1] + "." + parts[2], token.ErrInvalid},
		{"four segments", valid + ".x", token.ErrInvalid},
		{"oversized", craft(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "pad", strings.Repeat("x", 4096))), token.ErrInvalid},
		{"empty", "", token.ErrInvalid},
		{"garbage", "not a token", token.ErrInvalid},
		{"dots", "..", token.ErrInvalid},
		{"bad base64", "!!!.???.***", token.ErrInvalid},
		{"header not JSON", "bm90IGpzb24." + parts[1] + "." + parts[2], token.ErrInvalid},
		{"header JSON array", "W10." + parts[1] + "." + parts[2], token.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(tt.raw, now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want accepted", err)
				}
				if got.SessionID != testClaims().SessionID {
					t.Fatalf("sid = %q, want %q", got.SessionID, testClaims().SessionID)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify: err = %v, want %v", err, tt.want)
			}
			t.Log(err)
			if tt.want == token.ErrInvalid && errors.Is(err, token.ErrUnknownKey) {
				t.Fatalf("Verify: err = %v, must not be ErrUnknownKey", err)
			}
			if got != (token.Claims{}) {
				t.Fatalf("Verify returned claims %+v with an error", got)
			}
		})
	}
}

// respell changes the unused low bits of the last base64 character, giving a
// different string for the same bytes (a 64-byte signature leaves 4 spare
// bits in 86 characters).
func respell(sig string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	return sig[:len(sig)-1] + string(alphabet[last^1])
}

func TestVerifierSetKeys(t *testing.T) {
	old, next := newKey(t), newKey(t)
	v := newVerifier(t, old)
	rawOld, err := testIssuer.Sign(old, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	rawNext, err := testIssuer.Sign(next, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(rawNext, now); !errors.Is(err, token.ErrUnknownKey) {
		t.Fatalf("before SetKeys: err = %v, want ErrUnknownKey", err)
	}

	keys := map[string]ed25519.PublicKey{old.ID: old.Public(), next.ID: next.Public()}
	v.SetKeys(keys)
	delete(keys, old.ID) // the Verifier holds its own copy
	for _, raw := range []string{rawOld, rawNext} {
		if _, err := v.Verify(raw, now); err != nil {
			t.Fatalf("after SetKeys: %v", err)
		}
	}

	v.SetKeys(map[string]ed25519.PublicKey{next.ID: next.Public()})
	if _, err := v.Verify(rawOld, now); !errors.Is(err, token.ErrUnknownKey) {
		t.Fatalf("after retiring a key: err = %v, want ErrUnknownKey", err)
	}
}

func TestVerifierConcurrentSetKeys(t *testing.T) {
	k := newKey(t)
	v := newVerifier(t, k)
	raw, err := testIssuer.Sign(k, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{k.ID: k.Public()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			v.SetKeys(keys)
		}
	}()
	for range 200 {
		if _, err := v.Verify(raw, now); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

func TestNewVerifierRejectsEmpty(t *testing.T) {
	if _, err := token.NewVerifier("", testAud, nil); err == nil {
		t.Error("empty issuer accepted")
	}
	if _, err := token.NewVerifier(testIss, "", nil); err == nil {
		t.Error("empty audience accepted")
	}
	var zero token.Verifier
	if _, err := zero.Verify("a.b.c", now); err == nil {
		t.Error("zero Verifier accepted a token")
	}
}

// FuzzVerify checks that Verify never panics and accepts nothing but the
// tokens it was seeded with as valid.
func FuzzVerify(f *testing.F) {
	k := newKey(f)
	v := newVerifier(f, k)
	hdr, cl := validHeader(k), validClaims()
	accepted := map[string]bool{}
	for _, c := range []token.Claims{testClaims(), func() token.Claims { c := testClaims(); c.Email = "ü@例え.jp"; return c }()} {
		raw, err := testIssuer.Sign(k, c)
		if err != nil {
			f.Fatal(err)
		}
		accepted[raw] = true
		f.Add(raw)
	}
	for _, raw := range []string{
		craft(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, cl),
		craft(f, jwt.SigningMethodHS256, []byte(k.Public()), hdr, cl),
		craft(f, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "exp", "soon")),
		craft(f, jwt.SigningMethodEdDSA, k.Private, with(hdr, "kid", "nope"), cl),
		craft(f, jwt.SigningMethodEdDSA, k.Private, hdr, with(cl, "aud", []any{testAud, 1})),
		"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
	} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw, now)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) && !errors.Is(err, token.ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrInvalid or ErrUnknownKey", err)
			}
			return
		}
		if !accepted[raw] {
			t.Fatalf("accepted a token it never signed: %q → %+v", raw, c)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	k := newKey(b)
	c := testClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := testIssuer.Sign(k, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := newKey(b)
	v := newVerifier(b, k)
	raw, err := testIssuer.Sign(k, testClaims())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}
