package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew Verify tolerates on exp, nbf and iat. Whatever
// keeps state for as long as an access token lives (the revocation set)
// must add it to the token lifetime.
const Leeway = 30 * time.Second

// accessType is the JWT typ of access tokens (RFC 9068). Requiring it keeps
// any other JWT signed by the same key from passing as an access token.
const accessType = "at+jwt"

// maxAccessToken bounds what Verify will parse. usher's tokens are about
// 500 bytes; the bound keeps JSON decoding of hostile input cheap.
const maxAccessToken = 4 << 10

// maxSeconds bounds time claims: whole seconds up to 2^53 (what a JSON
// number holds exactly) keep time arithmetic far from int64 overflow.
const maxSeconds = 1 << 53

// Claims are what an access token asserts.
type Claims struct {
	Subject   string // sub: user id
	SessionID string // sid
	Role      string
	Email     string
	ID        string // jti
	IssuedAt  time.Time
	Expires   time.Time
}

// Issuer signs access tokens for one deployment.
type Issuer struct {
	Issuer   string // iss: USHER_PUBLIC_URL
	Audience string // aud: USHER_JWT_AUDIENCE
}

// Sign returns c as a compact JWS signed with k: header alg EdDSA, typ
// at+jwt, kid; claims iss, aud (a single string), sub, sid, role, email, iat,
// nbf (= iat), exp and jti. Times are truncated to whole seconds. An empty
// c.ID gets a random 128-bit jti. Sign refuses what Verify would reject, so a
// minted token never fails for its shape.
//
// IssuedAt and Expires come from the caller (the minting transaction's
// now()), never from this machine's clock.
func (i Issuer) Sign(k SigningKey, c Claims) (string, error) {
	if i.Issuer == "" || i.Audience == "" {
		return "", errors.New("token: issuer and audience must be set")
	}
	if err := k.valid(); err != nil {
		return "", err
	}
	if c.ID == "" {
		c.ID = newJTI()
	}
	iat, exp := c.IssuedAt.Unix(), c.Expires.Unix()
	switch {
	case iat < 0 || exp > maxSeconds: // includes a zero IssuedAt
		return "", fmt.Errorf("token: sign: times out of range (iat %d, exp %d)", iat, exp)
	case exp <= iat:
		return "", fmt.Errorf("token: sign: expires (%d) not after issued at (%d)", exp, iat)
	}
	ac := &accessClaims{
		Issuer:    i.Issuer,
		Audience:  i.Audience,
		Subject:   c.Subject,
		SessionID: c.SessionID,
		Role:      c.Role,
		Email:     c.Email,
		IssuedAt:  (*unixTime)(&iat),
		NotBefore: (*unixTime)(&iat),
		Expires:   (*unixTime)(&exp),
		ID:        c.ID,
	}
	if err := ac.Validate(); err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, ac)
	t.Header["typ"] = accessType
	t.Header["kid"] = k.ID
	s, err := t.SignedString(k.Private)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if len(s) > maxAccessToken {
		return "", fmt.Errorf("token: sign: token is %d bytes, Verify takes at most %d", len(s), maxAccessToken)
	}
	return s, nil
}

func newJTI() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b)
}

// Verifier checks access tokens against a set of public keys. It is safe for
// concurrent use; SetKeys replaces the set atomically, so a reload never
// blocks or tears a Verify in progress.
type Verifier struct {
	issuer, audience string
	keys             atomic.Pointer[map[string]ed25519.PublicKey]
}

// NewVerifier returns a Verifier for tokens with exactly this iss and aud,
// signed by one of keys (by kid).
func NewVerifier(issuer, audience string, keys map[string]ed25519.PublicKey) (*Verifier, error) {
	// Empty would mean "do not check" to the JWT library: refuse it here.
	if issuer == "" || audience == "" {
		return nil, errors.New("token: verifier needs an issuer and an audience")
	}
	v := &Verifier{issuer: issuer, audience: audience}
	v.SetKeys(keys)
	return v, nil
}

// SetKeys replaces the verification keys. It copies keys, so the caller may
// reuse the map.
func (v *Verifier) SetKeys(keys map[string]ed25519.PublicKey) {
	m := make(map[string]ed25519.PublicKey, len(keys))
	for kid, pub := range keys {
		m[kid] = slices.Clone(pub)
	}
	v.keys.Store(&m)
}

// Verify checks raw as of now and returns its claims. It accepts only
// alg EdDSA with typ at+jwt, a known kid, exactly the Verifier's iss and aud
// (aud as a single string, as Sign writes it), exp, nbf and iat within
// Leeway of now, and non-empty sub, sid, role, email and jti. Time claims
// must be whole seconds.
//
// An unknown kid is ErrUnknownKey; every other failure is ErrInvalid with a
// reason. Verify does not know about revocation: the caller checks the sid.
func (v *Verifier) Verify(raw string, now time.Time) (Claims, error) {
	if len(raw) > maxAccessToken {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrInvalid, maxAccessToken)
	}
	keys := v.keys.Load()
	if keys == nil || v.issuer == "" || v.audience == "" {
		return Claims{}, errors.New("token: verifier not built by NewVerifier")
	}
	// A parser per call because the time is per call; building one is cheap
	// next to an Ed25519 verification.
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		// Strict base64 gives each signature one encoding, so a token
		// cannot be altered into a second string that still verifies.
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	var (
		ac  accessClaims
		kid string
	)
	_, err := p.ParseWithClaims(raw, &ac, func(t *jwt.Token) (any, error) {
		// Called after the alg check and before the signature check.
		if typ, _ := t.Header["typ"].(string); typ != accessType {
			return nil, fmt.Errorf("typ is not %q", accessType)
		}
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515: extensions we do not understand must fail.
			return nil, errors.New("crit header present")
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		pub, ok := (*keys)[kid]
		if !ok {
			return nil, ErrUnknownKey
		}
		return pub, nil
	})
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			// The kid is the sender's choice: quoted and cut short for logs.
			return Claims{}, fmt.Errorf("%w %.40q", ErrUnknownKey, kid)
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return Claims{
		Subject:   ac.Subject,
		SessionID: ac.SessionID,
		Role:      ac.Role,
		Email:     ac.Email,
		ID:        ac.ID,
		IssuedAt:  ac.IssuedAt.time(),
		Expires:   ac.Expires.time(),
	}, nil
}

// accessClaims is the JSON payload. Its own type rather than
// jwt.RegisteredClaims because aud is a single string here, and time claims
// are whole seconds (see unixTime).
type accessClaims struct {
	Issuer    string    `json:"iss"`
	Audience  string    `json:"aud"`
	Subject   string    `json:"sub"`
	SessionID string    `json:"sid"`
	Role      string    `json:"role"`
	Email     string    `json:"email"`
	IssuedAt  *unixTime `json:"iat"`
	NotBefore *unixTime `json:"nbf"`
	Expires   *unixTime `json:"exp"`
	ID        string    `json:"jti"`
}

// Validate is called by the JWT library after the signature and the standard
// claims check out; it checks what the library does not know is required.
func (c *accessClaims) Validate() error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"sub", c.Subject}, {"sid", c.SessionID}, {"role", c.Role},
		{"email", c.Email}, {"jti", c.ID},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if c.IssuedAt == nil {
		missing = append(missing, "iat")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing or empty claims %v", missing)
	}
	return nil
}

func (c *accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Expires.numeric(), nil }
func (c *accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.numeric(), nil }
func (c *accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.numeric(), nil }
func (c *accessClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *accessClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// unixTime is a JWT NumericDate limited to whole, non-negative seconds up to
// maxSeconds. The library's own type accepts floats, quoted numbers and
// values that overflow time.Time; Sign writes none of those, so Verify need
// not accept them.
type unixTime int64

func (t *unixTime) UnmarshalJSON(b []byte) error {
	// encoding/json has already checked b is one JSON value; ParseInt then
	// rejects strings, fractions and exponents.
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 || n > maxSeconds {
		return fmt.Errorf("time claim %.20s is not whole seconds in [0, 2^53]", b)
	}
	*t = unixTime(n)
	return nil
}

// numeric returns nil for a missing claim, which the library reads as absent.
func (t *unixTime) numeric() *jwt.NumericDate {
	if t == nil {
		return nil
	}
	return &jwt.NumericDate{Time: t.time()}
}

func (t *unixTime) time() time.Time {
	if t == nil {
		return time.Time{}
	}
	return time.Unix(int64(*t), 0).UTC()
}
