// Package token mints and checks usher's credentials: EdDSA access JWTs,
// MAC'd refresh tokens, and the keys both derive from USHER_SECRET_KEY.
//
// It does no I/O beyond reading and writing a PEM key file: the store keeps
// signing keys in PostgreSQL, sealed with SealPrivate, and hands them back
// through OpenPrivate.
package token

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Errors callers branch on.
var (
	// ErrInvalid means a presented token is not acceptable: malformed, forged,
	// expired or meant for someone else. The wrapped text gives the reason
	// for logs; clients should see only "invalid token".
	ErrInvalid = errors.New("token: invalid")
	// ErrUnknownKey means an access token names a kid the Verifier does not
	// hold. Unlike ErrInvalid it may heal: the gateway reloads keys (at a
	// limited rate, since anyone can send an arbitrary kid) and verifies again.
	ErrUnknownKey = errors.New("token: unknown signing key")
	// ErrDecrypt means a sealed signing key does not open: USHER_SECRET_KEY
	// differs from the one that sealed it, or the row was altered or moved to
	// another kid.
	ErrDecrypt = errors.New("token: signing key does not decrypt (wrong USHER_SECRET_KEY, or altered row)")
)

// MinSecretSize is the least number of bytes USHER_SECRET_KEY must decode to.
const MinSecretSize = 32

// HKDF info strings. Distinct strings give independent keys from one secret,
// so a refresh MAC can never be replayed as anything sealed, and the other way
// round. Changing one invalidates everything derived from it.
const (
	infoRefresh = "usher v1 refresh-token mac"
	infoSeal    = "usher v1 signing-key encryption"
)

// Keys are the symmetric keys derived from USHER_SECRET_KEY. The zero value
// holds no keys: use Derive.
type Keys struct {
	refresh []byte // HMAC-SHA256 key for refresh tokens
	seal    []byte // AES-256-GCM key for signing keys at rest
}

// Derive derives Keys from the decoded USHER_SECRET_KEY (see ParseSecret)
// with HKDF-SHA256. No salt: the secret is already uniformly random, which is
// the case RFC 5869 allows it for.
func Derive(secret []byte) (Keys, error) {
	if len(secret) < MinSecretSize {
		return Keys{}, fmt.Errorf("token: secret is %d bytes, want at least %d", len(secret), MinSecretSize)
	}
	refresh, err := hkdf.Key(sha256.New, secret, nil, infoRefresh, 32)
	if err != nil {
		return Keys{}, fmt.Errorf("token: derive refresh key: %w", err)
	}
	seal, err := hkdf.Key(sha256.New, secret, nil, infoSeal, 32)
	if err != nil {
		return Keys{}, fmt.Errorf("token: derive sealing key: %w", err)
	}
	return Keys{refresh: refresh, seal: seal}, nil
}

// String keeps key bytes out of logs when Keys sits in a printed struct.
func (k Keys) String() string { return "token.Keys{redacted}" }

// GoString does the same for %#v.
func (k Keys) GoString() string { return k.String() }

func (k Keys) derived() bool { return len(k.refresh) != 0 && len(k.seal) != 0 }

// ParseSecret decodes USHER_SECRET_KEY. Surrounding white space is ignored
// (the value often comes from a file with a trailing newline). A value made
// only of hex digits is read as hex, as `openssl rand -hex 32` prints;
// anything else as base64, standard or URL alphabet, padded or not. It must
// decode to at least MinSecretSize bytes. Errors never quote the value.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("token: secret is empty")
	}
	var b []byte
	if isHex(s) {
		var err error
		if b, err = hex.DecodeString(s); err != nil {
			return nil, errors.New("token: secret looks like hex but does not decode (odd length?)")
		}
	} else {
		var ok bool
		if b, ok = decodeBase64(s); !ok {
			return nil, errors.New("token: secret is neither hex nor base64")
		}
	}
	if len(b) < MinSecretSize {
		return nil, fmt.Errorf("token: secret decodes to %d bytes, want at least %d", len(b), MinSecretSize)
	}
	return b, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeBase64 tries each alphabet and padding in turn. At most one can
// succeed with a different result: the alphabets differ only in characters
// the other rejects, and padding is either present or not.
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// NewSecret returns a fresh random 32-byte secret in standard base64, for
// the development key file `usher serve` writes when USHER_SECRET_KEY is
// empty.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return base64.StdEncoding.EncodeToString(b)
}
