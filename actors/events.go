package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/google/uuid"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/store"
)

// TokenTTLs are the lifetimes of one-time tokens (API.md).
type TokenTTLs struct {
	Verify time.Duration
	Reset  time.Duration
}

// newEvent starts an event about userID.
func newEvent(typ, userID string) event.Envelope {
	return event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC(), UserID: userID}
}

// mailEvent is an event that sends m: the recipient and what decides the
// body travel sealed, so whoever can publish to NATS or RabbitMQ still
// cannot make usher send mail.
func (d deps) mailEvent(typ, userID string, m event.Mail) (event.Envelope, error) {
	e := newEvent(typ, userID)
	m.Purpose, m.UserID = typ, userID
	return e, d.sealer.Seal(&e, m)
}

// newOneTimeToken makes a 256-bit token: the plaintext for the email, the
// hash for the database.
func newOneTimeToken(purpose string, ttl time.Duration) (string, store.OneTimeToken) {
	b := make([]byte, 32)
	rand.Read(b)
	plain := base64.RawURLEncoding.EncodeToString(b)
	return plain, store.OneTimeToken{Hash: hashToken(plain), Purpose: purpose, TTL: ttl}
}

func hashToken(plain string) []byte {
	sum := sha256.Sum256([]byte(plain))
	return sum[:]
}
