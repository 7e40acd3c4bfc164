package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
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

	reloading sync.Mutex // one reload at a time; waiters reuse its result
	mu        sync.Mutex
	jwks      []byte
	loaded    time.Time
	verified  verifiedTokens
}

// verifiedTokensMax bounds the memory of the verified-token cache: about
// 10 MB of tokens at the most.
const verifiedTokensMax = 20000

// verifiedTokens remembers tokens whose signature and claims checked out,
// until their expiry (with the verifier's leeway). Revocation is not cached:
// callers check the session on every request.
type verifiedTokens struct {
	mu     sync.RWMutex
	claims map[string]token.Claims
}

func (v *verifiedTokens) get(raw string, now time.Time) (token.Claims, bool) {
	v.mu.RLock()
	c, ok := v.claims[raw]
	v.mu.RUnlock()
	if !ok || now.After(c.Expires.Add(token.Leeway)) {
		return token.Claims{}, false
	}
	return c, true
}

func (v *verifiedTokens) put(raw string, c token.Claims) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.claims == nil || len(v.claims) >= verifiedTokensMax {
		// Full: start again rather than track recency; the cost is one
		// signature check per live token.
		v.claims = make(map[string]token.Claims, 1024)
	}
	v.claims[raw] = c
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

// reloadEvery reloads the keys every keyReloadEvery until ctx ends, unless
// an unknown kid made a request reload them within the last half of it, so
// the JWKS follows rotations and a retired key stops verifying new tokens
// without a request waiting for the database. (A token verified before
// stays remembered until it expires.)
func (k *keyring) reloadEvery(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(keyReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.reloadSince(ctx, time.Now().Add(-keyReloadEvery/2)); err != nil && ctx.Err() == nil {
			log.Warn("reload signing keys", "err", err)
		}
	}
}

func (k *keyring) lastLoad() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loaded
}

// reloadSince makes sure the keys were loaded after since: it reloads, at
// most once per keyReloadOnMiss (waiting for the next slot), unless another
// caller already did.
func (k *keyring) reloadSince(ctx context.Context, since time.Time) error {
	k.reloading.Lock()
	defer k.reloading.Unlock()
	last := k.lastLoad()
	if last.After(since) {
		return nil
	}
	if wait := time.Until(last.Add(keyReloadOnMiss)); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return k.reload(ctx)
}

func (k *keyring) jwksJSON() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jwks
}

// verify checks an access token. An unknown kid, a key rotated in since the
// last load, waits for one shared, rate-limited reload: anyone can send a
// made-up kid, so the database sees at most one reload a second.
// Verified tokens are remembered until they expire: an Ed25519 check costs
// more than the rest of an authenticated read (DESIGN.md, the hot path).
func (k *keyring) verify(ctx context.Context, raw string) (token.Claims, error) {
	now := time.Now()
	if c, ok := k.verified.get(raw, now); ok {
		return c, nil
	}
	c, err := k.verifySlow(ctx, raw, now)
	if err == nil {
		k.verified.put(raw, c)
	}
	return c, err
}

func (k *keyring) verifySlow(ctx context.Context, raw string, now time.Time) (token.Claims, error) {
	c, err := k.verifier.Verify(raw, now)
	if errors.Is(err, token.ErrUnknownKey) {
		k.reloadSince(ctx, now)
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
