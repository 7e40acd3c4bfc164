package event

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func newSealer(t *testing.T) *Sealer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newSealer(t)
	e := &Envelope{ID: "0b7e5d3c-54f1-4b2e-9a4d-1c2b3a4d5e6f", Type: ResetRequested, OccurredAt: time.Now(), UserID: "u1"}
	m := Mail{To: "a@example.com", Purpose: ResetRequested, UserID: "u1", Token: "secret-token"}
	if err := s.Seal(e, m); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(e)
	if bytes.Contains(raw, []byte("secret-token")) || bytes.Contains(raw, []byte("a@example.com")) {
		t.Fatalf("sealed event shows its content: %s", raw)
	}
	var back Envelope
	json.Unmarshal(raw, &back)
	got, err := s.Open(&back)
	if err != nil || got != m {
		t.Fatalf("open: got %+v, %v; want %+v", got, err, m)
	}
}

func TestOpenRefusesWhatUsherDidNotSeal(t *testing.T) {
	s := newSealer(t)
	sealed := func() *Envelope {
		e := &Envelope{ID: "e1", Type: ResetRequested}
		s.Seal(e, Mail{To: "a@example.com", Purpose: ResetRequested, Token: "t"})
		return e
	}
	cases := map[string]struct {
		alter func(*Envelope)
		want  error
	}{
		"no seal": {func(e *Envelope) { e.Data.Sealed = nil }, ErrNoSeal},
		"other key": {func(e *Envelope) {
			*e = *func() *Envelope {
				x := &Envelope{ID: "e1", Type: ResetRequested}
				newSealer(t).Seal(x, Mail{To: "b@x", Purpose: ResetRequested})
				return x
			}()
		}, ErrUnknownKey},
		"altered box":     {func(e *Envelope) { e.Data.Sealed.Box[0] ^= 1 }, ErrForged},
		"moved to new id": {func(e *Envelope) { e.ID = "e2" }, ErrForged},
		"retyped":         {func(e *Envelope) { e.Type = EmailRequested }, ErrForged},
		"short nonce":     {func(e *Envelope) { e.Data.Sealed.Nonce = e.Data.Sealed.Nonce[:3] }, ErrForged},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := sealed()
			c.alter(e)
			if _, err := s.Open(e); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestSealedPurposeMustMatchType(t *testing.T) {
	s := newSealer(t)
	e := &Envelope{ID: "e1", Type: EmailRequested}
	s.Seal(e, Mail{To: "a@example.com", Purpose: ResetRequested, Token: "t"})
	if _, err := s.Open(e); !errors.Is(err, ErrForged) {
		t.Fatalf("got %v, want ErrForged for a reset mail inside an email.requested event", err)
	}
}
