package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// Tokens configures what a node mints.
type Tokens struct {
	Keys      token.Keys // from USHER_SECRET_KEY
	Issuer    token.Issuer
	AccessTTL time.Duration
	// Pinned, when set, is the only signing key (USHER_JWT_KEY_FILE).
	Pinned *token.SigningKey
}

// minter signs access tokens with the current key and mints refresh
// tokens. The key is reloaded from PostgreSQL so `usher keys rotate` on any
// machine reaches every node.
type minter struct {
	Tokens
	db      *store.DB
	signing atomic.Pointer[token.SigningKey]
}

// keyReload is how often nodes look for a newly rotated key.
const keyReload = 30 * time.Second

func newMinter(ctx context.Context, db *store.DB, t Tokens) (*minter, error) {
	m := &minter{Tokens: t, db: db}
	if t.Pinned != nil {
		// Publish the pinned key, so gateways find it with the others.
		if err := m.store(ctx, *t.Pinned, 0); err != nil {
			return nil, err
		}
		m.signing.Store(t.Pinned)
		return m, nil
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	if m.signing.Load() == nil {
		k, err := token.NewSigningKey()
		if err != nil {
			return nil, err
		}
		if err := m.store(ctx, k, 0); err != nil {
			return nil, err
		}
		if err := m.load(ctx); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *minter) store(ctx context.Context, k token.SigningKey, delay time.Duration) error {
	sealed, err := m.Keys.SealPrivate(k)
	if err != nil {
		return fmt.Errorf("seal signing key: %w", err)
	}
	return m.db.AddSigningKey(ctx, store.SigningKeyRow{ID: k.ID, Public: k.Public(), Sealed: sealed}, delay)
}

// load picks the newest key whose signing time has come, by the database's
// clock.
func (m *minter) load(ctx context.Context) error {
	if m.Pinned != nil {
		return nil
	}
	rows, now, err := m.db.SigningKeys(ctx)
	if err != nil {
		return err
	}
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].SignsFrom.After(now) {
			continue
		}
		if cur := m.signing.Load(); cur != nil && cur.ID == rows[i].ID {
			return nil
		}
		priv, err := m.Keys.OpenPrivate(rows[i].ID, rows[i].Sealed)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", rows[i].ID, err)
		}
		m.signing.Store(&token.SigningKey{ID: rows[i].ID, Private: priv})
		return nil
	}
	return nil
}

// TokenPair is the body of register, login and refresh.
type TokenPair struct {
	AccessToken  string   `json:"access_token"`
	RefreshToken string   `json:"refresh_token"`
	TokenType    string   `json:"token_type"`
	ExpiresIn    int64    `json:"expires_in"`
	User         UserView `json:"user"`
}

// pair mints the tokens of a session at its current counter; iat comes from
// the minting transaction's clock, not the node's.
func (m *minter) pair(u store.User, s store.Session, now time.Time) (TokenPair, error) {
	key := m.signing.Load()
	if key == nil {
		return TokenPair{}, fmt.Errorf("no signing key")
	}
	now = now.Truncate(time.Second)
	access, err := m.Issuer.Sign(*key, token.Claims{
		Subject:   u.ID,
		SessionID: s.ID,
		Role:      u.Role,
		Email:     u.Email,
		IssuedAt:  now,
		Expires:   now.Add(m.AccessTTL),
	})
	if err != nil {
		return TokenPair{}, fmt.Errorf("sign access token: %w", err)
	}
	return TokenPair{
		AccessToken:  access,
		RefreshToken: m.Keys.Refresh(s.ID, s.RefreshCounter),
		TokenType:    "Bearer",
		ExpiresIn:    int64(m.AccessTTL / time.Second),
		User:         viewOf(u),
	}, nil
}

// UserView is the API's user object.
type UserView struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	Name          string    `json:"name"`
	Role          string    `json:"role"`
	EmailVerified bool      `json:"email_verified"`
	Disabled      bool      `json:"disabled"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func viewOf(u store.User) UserView {
	return UserView{
		ID:            u.ID,
		Email:         u.Email,
		Name:          u.Name,
		Role:          u.Role,
		EmailVerified: u.EmailVerifiedAt != nil,
		Disabled:      u.DisabledAt != nil,
		CreatedAt:     u.CreatedAt.UTC(),
		UpdatedAt:     u.UpdatedAt.UTC(),
	}
}
