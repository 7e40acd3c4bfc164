package token_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usher-auth/usher/internal/token"
)

func TestNewSigningKey(t *testing.T) {
	a, b := newKey(t), newKey(t)
	if a.ID == b.ID || bytes.Equal(a.Private, b.Private) {
		t.Fatal("two new keys are the same")
	}
	if len(a.ID) != 22 {
		t.Errorf("kid %q is %d characters, want 22", a.ID, len(a.ID))
	}
	if len(a.Public()) != ed25519.PublicKeySize {
		t.Errorf("Public() is %d bytes", len(a.Public()))
	}
	if s := fmt.Sprintf("%v %+v %#v", a, a, a); strings.Contains(s, fmt.Sprint([]byte(a.Private[:4]))) || !strings.Contains(s, a.ID) {
		t.Errorf("printed SigningKey = %s, want only its ID", s)
	}
}

func TestSealOpen(t *testing.T) {
	keys := derive(t, testSecret(1))
	sk := newKey(t)
	sealed, err := keys.SealPrivate(sk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, sk.Private.Seed()) {
		t.Fatal("sealed key contains the seed in the clear")
	}
	again, err := keys.SealPrivate(sk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealed, again) {
		t.Fatal("sealing twice gave the same bytes: nonce reused")
	}

	got, err := keys.OpenPrivate(sk.ID, sealed)
	if err != nil {
		t.Fatalf("OpenPrivate: %v", err)
	}
	if !got.Equal(sk.Private) {
		t.Fatal("OpenPrivate returned a different key")
	}

	tampered := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name   string
		keys   token.Keys
		kid    string
		sealed []byte
	}{
		{"wrong kid", keys, newKey(t).ID, sealed},
		{"empty kid", keys, "", sealed},
		{"wrong secret", derive(t, testSecret(2)), sk.ID, sealed},
		{"version byte", keys, sk.ID, tampered(0)},
		{"nonce", keys, sk.ID, tampered(1)},
		{"ciphertext", keys, sk.ID, tampered(20)},
		{"tag", keys, sk.ID, tampered(len(sealed) - 1)},
		{"truncated", keys, sk.ID, sealed[:len(sealed)-1]},
		{"empty", keys, sk.ID, nil},
		{"only version", keys, sk.ID, sealed[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.keys.OpenPrivate(tt.kid, tt.sealed); !errors.Is(err, token.ErrDecrypt) {
				t.Fatalf("OpenPrivate: err = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestSealRejectsBadKey(t *testing.T) {
	keys := derive(t, testSecret(1))
	sk := newKey(t)
	for _, bad := range []token.SigningKey{{Private: sk.Private}, {ID: sk.ID}, {ID: sk.ID, Private: sk.Private[:32]}} {
		if _, err := keys.SealPrivate(bad); err == nil {
			t.Errorf("SealPrivate(%v) succeeded", bad)
		}
	}
}

// opensslKey was made by `openssl genpkey -algorithm ed25519`; its public key
// (from `openssl pkey -pubout`) is opensslPub, base64url.
const (
	opensslKey = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGjxSY0FageaN0t0QWUMwtfQY/pIHJbQlPLZFlbiShG8
-----END PRIVATE KEY-----
`
	opensslPub = "1fTnNzNiRGQqufFnjLua1Q4KoBw-wFatsMir_8G4keI"
)

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(path, []byte(opensslKey), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := token.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(k.Public()); got != opensslPub {
		t.Fatalf("public key = %s, want %s", got, opensslPub)
	}
	again, err := token.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != k.ID {
		t.Fatalf("kid changed between loads: %s then %s", k.ID, again.ID)
	}

	// The loaded key signs tokens that verify.
	raw, err := testIssuer.Sign(k, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newVerifier(t, k).Verify(raw, now); err != nil {
		t.Fatal(err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwt.pem")
	k := newKey(t)
	if err := token.WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}
	got, err := token.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || !got.Private.Equal(k.Private) {
		t.Fatalf("loaded %v, want %v", got, k)
	}
	if err := token.WriteKeyFile(path, newKey(t)); err == nil {
		t.Fatal("WriteKeyFile replaced an existing key file")
	}
	if again, _ := token.LoadKeyFile(path); again.ID != k.ID {
		t.Fatal("existing key file was changed")
	}
}

func TestParsePEMRejects(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(opensslKey))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"ECDSA key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})},
		{"public key block", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes})},
		{"corrupt DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes[:20]})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := token.ParsePEM(tt.data); err == nil {
				t.Fatalf("ParsePEM accepted it as %v", k)
			}
		})
	}
	if _, err := token.LoadKeyFile(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}

func TestJWKS(t *testing.T) {
	a, b := newKey(t), newKey(t)
	keys := map[string]ed25519.PublicKey{a.ID: a.Public(), b.ID: b.Public()}
	doc, err := token.JWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := token.JWKS(keys)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, doc) {
			t.Fatalf("JWKS not stable:\n%s\n%s", doc, again)
		}
	}

	first, second := a, b
	if b.ID < a.ID {
		first, second = b, a
	}
	want := fmt.Sprintf(`{"keys":[`+
		`{"kty":"OKP","crv":"Ed25519","x":%q,"kid":%q,"alg":"EdDSA","use":"sig"},`+
		`{"kty":"OKP","crv":"Ed25519","x":%q,"kid":%q,"alg":"EdDSA","use":"sig"}]}`,
		base64.RawURLEncoding.EncodeToString(first.Public()), first.ID,
		base64.RawURLEncoding.EncodeToString(second.Public()), second.ID)
	if string(doc) != want {
		t.Fatalf("JWKS =\n%s\nwant\n%s", doc, want)
	}

	// A verifier built from the published document accepts our tokens.
	var set struct {
		Keys []struct{ Kid, X string }
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	published := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			t.Fatal(err)
		}
		published[k.Kid] = x
	}
	v, err := token.NewVerifier(testIss, testAud, published)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := testIssuer.Sign(b, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw, now); err != nil {
		t.Fatalf("verify with published keys: %v", err)
	}

	empty, err := token.JWKS(nil)
	if err != nil || string(empty) != `{"keys":[]}` {
		t.Errorf("JWKS(nil) = %s, %v; want {\"keys\":[]}", empty, err)
	}
	if _, err := token.JWKS(map[string]ed25519.PublicKey{"short": a.Public()[:31]}); err == nil {
		t.Error("JWKS accepted a 31-byte key")
	}
}
