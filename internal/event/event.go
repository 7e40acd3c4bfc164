// Package event defines usher's domain events as they travel from the outbox
// through NATS JetStream and RabbitMQ to the mailer, and seals what decides
// an email so that only usher can cause one.
package event

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Event types (API.md).
const (
	UserRegistered        = "user.registered"
	VerificationRequested = "user.verification_requested"
	EmailVerified         = "user.email_verified"
	ResetRequested        = "password.reset_requested"
	PasswordChanged       = "password.changed"
	UserDeleted           = "user.deleted"
	EmailRequested        = "email.requested"
)

// Types lists every event type usher emits.
var Types = []string{UserRegistered, VerificationRequested, EmailVerified, ResetRequested, PasswordChanged, UserDeleted, EmailRequested}

// Envelope is one event on the wire.
type Envelope struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	UserID     string    `json:"user_id,omitempty"`
	Data       Data      `json:"data"`
}

// Data is an event's payload. Events that send email carry only a seal:
// the recipient and whatever decides the body are inside it.
type Data struct {
	Sealed *Sealed `json:"sealed,omitempty"`
}

// Sealed is an AEAD box with the id of the key that closed it.
type Sealed struct {
	KeyID string `json:"kid"`
	Nonce []byte `json:"nonce"`
	Box   []byte `json:"box"`
}

// Mail is what a sealed event decides: who gets which email.
type Mail struct {
	To      string `json:"to"`
	Purpose string `json:"purpose"` // the event type that caused it
	UserID  string `json:"user_id,omitempty"`
	// Token is the one-time token of a verification or reset link.
	Token string `json:"token,omitempty"`
	// Subject and Text are an admin's message.
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
}

// Errors the mailer branches on: such an event is dead-lettered.
var (
	ErrNoSeal     = errors.New("event: not sealed")
	ErrUnknownKey = errors.New("event: sealed with an unknown key")
	ErrForged     = errors.New("event: seal does not verify")
)

// Sealer seals and opens mail with USHER_EVENT_KEY.
type Sealer struct {
	keyID string
	aead  cipher.AEAD
}

// NewSealer builds a Sealer from a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("event key: want %d bytes, got %d", chacha20poly1305.KeySize, len(key))
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	return &Sealer{keyID: hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// associated binds a seal to its event: moved to another event id or type,
// it no longer opens.
func associated(e *Envelope) []byte {
	return []byte(e.ID + "\x00" + e.Type)
}

// Seal puts m into e.
func (s *Sealer) Seal(e *Envelope, m Mail) error {
	plain, err := json.Marshal(m)
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	e.Data.Sealed = &Sealed{KeyID: s.keyID, Nonce: nonce, Box: s.aead.Seal(nil, nonce, plain, associated(e))}
	return nil
}

// Open returns the mail sealed in e, if it verifies.
func (s *Sealer) Open(e *Envelope) (Mail, error) {
	var m Mail
	seal := e.Data.Sealed
	switch {
	case seal == nil:
		return m, ErrNoSeal
	case seal.KeyID != s.keyID:
		return m, ErrUnknownKey
	case len(seal.Nonce) != s.aead.NonceSize():
		return m, ErrForged
	}
	plain, err := s.aead.Open(nil, seal.Nonce, seal.Box, associated(e))
	if err != nil {
		return m, ErrForged
	}
	if err := json.Unmarshal(plain, &m); err != nil || m.Purpose != e.Type || m.To == "" {
		return m, ErrForged
	}
	return m, nil
}

// SendsMail reports whether events of type t produce an email.
func SendsMail(t string) bool {
	switch t {
	case UserRegistered, VerificationRequested, ResetRequested, PasswordChanged, EmailRequested:
		return true
	}
	return false
}
