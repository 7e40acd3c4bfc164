package token_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/usher-auth/usher/internal/token"
)

func TestParseSecret(t *testing.T) {
	// 33 bytes whose base64 forms use both alphabet-specific characters and
	// need padding, so each encoding is told apart.
	raw := append(bytes.Repeat([]byte{0xfb, 0xff}, 16), 0xfe)
	tests := []struct {
		name string
		in   string
		want []byte // nil: error
	}{
		{"std padded", base64.StdEncoding.EncodeToString(raw), raw},
		{"std unpadded", base64.RawStdEncoding.EncodeToString(raw), raw},
		{"url padded", base64.URLEncoding.EncodeToString(raw), raw},
		{"url unpadded", base64.RawURLEncoding.EncodeToString(raw), raw},
		{"hex lower", hex.EncodeToString(raw), raw},
		{"hex upper", strings.ToUpper(hex.EncodeToString(raw)), raw},
		{"trailing newline", base64.StdEncoding.EncodeToString(raw) + "\n", raw},
		{"surrounding spaces", "  " + hex.EncodeToString(raw) + " ", raw},
		{"exactly 32 bytes", hex.EncodeToString(raw[:32]), raw[:32]},
		{"31 bytes base64", base64.StdEncoding.EncodeToString(raw[:31]), nil},
		{"31 bytes hex", hex.EncodeToString(raw[:31]), nil},
		{"odd-length hex", hex.EncodeToString(raw)[1:], nil},
		{"empty", "", nil},
		{"blank", " \n", nil},
		{"not base64", strings.Repeat("*", 48), nil},
		{"mixed alphabets", "+" + base64.RawURLEncoding.EncodeToString(raw)[1:] + "-", nil},
		{"passphrase", "correct horse battery staple and some more words", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := token.ParseSecret(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseSecret accepted %q as %x", tt.in, got)
				}
				if s := strings.TrimSpace(tt.in); s != "" && strings.Contains(err.Error(), s) {
					t.Fatalf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSecret(%q): %v", tt.in, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("ParseSecret(%q) = %x, want %x", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, b := token.NewSecret(), token.NewSecret()
	if a == b {
		t.Fatal("NewSecret returned the same secret twice")
	}
	got, err := token.ParseSecret(a)
	if err != nil {
		t.Fatalf("ParseSecret(NewSecret()): %v", err)
	}
	if len(got) != 32 {
		t.Fatalf("NewSecret decodes to %d bytes, want 32", len(got))
	}
	if _, err := token.Derive(got); err != nil {
		t.Fatalf("Derive(NewSecret()): %v", err)
	}
}

func TestDerive(t *testing.T) {
	if _, err := token.Derive(make([]byte, 31)); err == nil {
		t.Error("Derive accepted a 31-byte secret")
	}
	if _, err := token.Derive(nil); err == nil {
		t.Error("Derive accepted no secret")
	}
	// Same secret, same keys: every node must mint the same refresh tokens.
	a, b := derive(t, testSecret(1)), derive(t, testSecret(1))
	if a.Refresh(testSID, 1) != b.Refresh(testSID, 1) {
		t.Error("Derive is not deterministic")
	}
	if a.Refresh(testSID, 1) == derive(t, testSecret(2)).Refresh(testSID, 1) {
		t.Error("different secrets gave the same refresh key")
	}
}

func TestKeysDoNotPrint(t *testing.T) {
	k := derive(t, testSecret(1))
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{k, struct{ K token.Keys }{k}} {
			if s := fmt.Sprintf(format, v); !strings.Contains(s, "redacted") {
				t.Errorf("Sprintf(%q) = %s, want key material redacted", format, s)
			}
		}
	}
}
