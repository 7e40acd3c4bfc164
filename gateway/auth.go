package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/usher-auth/usher/actors"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// Key reloads: on a timer, and on an unknown kid at most this often, since
// anyone can send a token with a made-up kid.
const (
	keyReloadEvery   = time.Minute
	keyReloadOnMiss  = time.Second
	keyReloadTimeout = 2 * time.Second
)

// keyring holds the public signing keys every node may sign with, loaded
// from PostgreSQL, for verification and the JWKS.
type keyring struct {
	db       *store.DB
	verifier *token.Verifier

	mu     sync.Mutex
	jwks   []byte
	loaded time.Time
}

func newKeyring(ctx context.Context, db *store.DB, issuer, audience string) (*keyring, error) {
	v, err := token.NewVerifier(issuer, audience, nil)
	if err != nil {
		return nil, err
	}
	k := &keyring{db: db, verifier: v}
	return k, k.reload(ctx)
}

func (k *keyring) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, keyReloadTimeout)
	defer cancel()
	rows, _, err := k.db.SigningKeys(ctx)
	if err != nil {
		return err
	}
	keys := make(map[string]ed25519.PublicKey, len(rows))
	for _, r := range rows {
		keys[r.ID] = ed25519.PublicKey(r.Public)
	}
	jwks, err := token.JWKS(keys)
	if err != nil {
		return err
	}
	k.verifier.SetKeys(keys)
	k.mu.Lock()
	k.jwks, k.loaded = jwks, time.Now()
	k.mu.Unlock()
	return nil
}

// reloadIfStale reloads when the last load is older than age; it reports
// whether it did.
func (k *keyring) reloadIfStale(ctx context.Context, age time.Duration) bool {
	k.mu.Lock()
	stale := time.Since(k.loaded) > age
	if stale {
		k.loaded = time.Now() // one reload at a time
	}
	k.mu.Unlock()
	return stale && k.reload(ctx) == nil
}

func (k *keyring) jwksJSON() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jwks
}

// verify checks an access token; an unknown kid triggers one rate-limited
// reload, for a key rotated since the last one.
func (k *keyring) verify(ctx context.Context, raw string) (token.Claims, error) {
	k.reloadIfStale(ctx, keyReloadEvery)
	c, err := k.verifier.Verify(raw, time.Now())
	if errors.Is(err, token.ErrUnknownKey) && k.reloadIfStale(ctx, keyReloadOnMiss) {
		c, err = k.verifier.Verify(raw, time.Now())
	}
	return c, err
}

// authenticate returns the caller's verified claims, or writes 401 and
// returns nil. A token whose session has ended is refused like a bad one.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) *actors.Claims {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		writeProblem(w, "unauthorized", "send an access token: Authorization: Bearer <token>")
		return nil
	}
	c, err := s.keys.verify(r.Context(), strings.TrimSpace(raw))
	if err != nil || s.revoked.revoked(c.SessionID) {
		writeProblem(w, "unauthorized", "the access token is not valid")
		return nil
	}
	return &actors.Claims{UserID: c.Subject, SessionID: c.SessionID, Role: c.Role, Email: c.Email}
}

// authed wraps a handler that needs a caller; admin-only when admin is set.
func (s *server) authed(admin bool, h func(http.ResponseWriter, *http.Request, *actors.Claims)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := s.authenticate(w, r)
		if c == nil {
			return
		}
		if admin && c.Role != "admin" {
			writeProblem(w, "forbidden", "this route is for admins")
			return
		}
		h(w, r, c)
	})
}
