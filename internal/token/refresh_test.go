package token_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/usher-auth/usher/internal/token"
)

const testSID = "7d1c4a9e-8f02-4b6a-b3c5-2e9f1a0d4c88"

func derive(t testing.TB, secret []byte) token.Keys {
	t.Helper()
	k, err := token.Derive(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testSecret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestRefreshRoundTrip(t *testing.T) {
	k := derive(t, testSecret(1))
	for _, counter := range []int64{0, 1, 9, 10, 12345, 1 << 53} {
		tok := k.Refresh(testSID, counter)
		if again := k.Refresh(testSID, counter); again != tok {
			t.Fatalf("Refresh not deterministic: %q then %q", tok, again)
		}
		sid, got, err := k.ParseRefresh(tok)
		if err != nil {
			t.Fatalf("ParseRefresh(%q): %v", tok, err)
		}
		if sid != testSID || got != counter {
			t.Fatalf("ParseRefresh(%q) = %q, %d; want %q, %d", tok, sid, got, testSID, counter)
		}
	}
}

// TestRefreshMACEncoding pins the documented byte layout, so a refactor
// that changes it (and logs every user out) fails here.
func TestRefreshMACEncoding(t *testing.T) {
	secret := testSecret(1)
	// The refresh key is HKDF-SHA256(secret, no salt, info).
	prk := hmac.New(sha256.New, make([]byte, sha256.Size))
	prk.Write(secret)
	okm := hmac.New(sha256.New, prk.Sum(nil))
	okm.Write([]byte("usher v1 refresh-token mac"))
	okm.Write([]byte{1})
	mac := hmac.New(sha256.New, okm.Sum(nil))
	mac.Write([]byte(testSID + "\x0042"))
	want := testSID + ".42." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	if got := derive(t, secret).Refresh(testSID, 42); got != want {
		t.Fatalf("Refresh = %q, want %q", got, want)
	}
}

func TestParseRefreshRejects(t *testing.T) {
	k := derive(t, testSecret(1))
	valid := k.Refresh(testSID, 7)
	_, _, mac := split3(valid)
	// A token whose MAC was made for other values.
	macFor := func(sid string, counter int64) string { _, _, m := split3(k.Refresh(sid, counter)); return m }
	otherSID := "00000000-0000-0000-0000-000000000000"
	upper := strings.ToUpper(testSID)

	tests := []struct{ name, tok string }{
		{"counter altered", testSID + ".8." + mac},
		{"sid altered", otherSID + ".7." + mac},
		{"mac altered", testSID + ".7." + flipFirst(mac)},
		{"mac re-spelled", testSID + ".7." + respell(mac)},
		{"mac of another counter", testSID + ".7." + macFor(testSID, 8)},
		{"mac truncated", testSID + ".7." + mac[:len(mac)-1]},
		{"mac padded", testSID + ".7." + mac + "="},
		{"leading zero", testSID + ".07." + mac},
		{"plus sign", testSID + ".+7." + mac},
		{"minus sign", testSID + ".-7." + mac},
		{"negative zero", testSID + ".-0." + macFor(testSID, 0)},
		{"counter over 2^53", testSID + ".9007199254740993." + mac},
		{"counter overflows int64", testSID + ".99999999999999999999." + mac},
		{"counter with space", testSID + ". 7." + mac},
		{"upper-case uuid", upper + ".7." + mac},
		{"uuid without dashes", strings.ReplaceAll(testSID, "-", "") + ".7." + mac},
		{"uuid in braces", "{" + testSID + "}.7." + mac},
		{"uuid misplaced dash", testSID[:7] + "-" + testSID[7:8] + testSID[9:] + ".7." + mac},
		{"extra dot", valid + "."},
		{"extra part", valid + ".x"},
		{"empty sid", ".7." + mac},
		{"empty counter", testSID + ".." + mac},
		{"empty mac", testSID + ".7."},
		{"two parts", testSID + ".7"},
		{"empty", ""},
		{"dots", ".."},
		{"oversized", valid + strings.Repeat("A", 100)},
		{"different secret", derive(t, testSecret(2)).Refresh(testSID, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid, counter, err := k.ParseRefresh(tt.tok)
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("ParseRefresh(%q) = %q, %d, %v; want ErrInvalid", tt.tok, sid, counter, err)
			}
		})
	}
}

// Refresh refuses what ParseRefresh would reject, so it never mints a token
// that fails only later, at the client's next refresh.
func TestRefreshPanicsOnBadInput(t *testing.T) {
	k := derive(t, testSecret(1))
	for _, tt := range []struct {
		name    string
		sid     string
		counter int64
	}{
		{"upper-case sid", strings.ToUpper(testSID), 1},
		{"not a uuid", "session-1", 1},
		{"negative counter", testSID, -1},
		{"counter over 2^53", testSID, 1<<53 + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Refresh did not panic")
				}
			}()
			k.Refresh(tt.sid, tt.counter)
		})
	}
}

func TestZeroKeys(t *testing.T) {
	var zero token.Keys
	if _, _, err := zero.ParseRefresh(derive(t, testSecret(1)).Refresh(testSID, 1)); err == nil || errors.Is(err, token.ErrInvalid) {
		t.Errorf("ParseRefresh with zero Keys: err = %v, want a configuration error", err)
	}
	if _, err := zero.SealPrivate(newKey(t)); err == nil {
		t.Error("SealPrivate with zero Keys succeeded")
	}
	if _, err := zero.OpenPrivate("kid", []byte{1, 2, 3}); err == nil {
		t.Error("OpenPrivate with zero Keys succeeded")
	}
}

func split3(tok string) (a, b, c string) {
	p := strings.Split(tok, ".")
	return p[0], p[1], p[2]
}

func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// FuzzParseRefresh checks that ParseRefresh never panics and accepts only
// the one canonical spelling Refresh produces.
func FuzzParseRefresh(f *testing.F) {
	k := derive(f, testSecret(1))
	for _, tok := range []string{
		k.Refresh(testSID, 0), k.Refresh(testSID, 7), k.Refresh(testSID, 1<<53),
		derive(f, testSecret(2)).Refresh(testSID, 7),
		testSID + ".07.x", strings.ToUpper(testSID) + ".7.x", "", "..", "a.b.c",
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		sid, counter, err := k.ParseRefresh(tok)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			return
		}
		if again := k.Refresh(sid, counter); again != tok {
			t.Fatalf("accepted %q, but Refresh(%q, %d) = %q", tok, sid, counter, again)
		}
	})
}

func BenchmarkParseRefresh(b *testing.B) {
	k := derive(b, testSecret(1))
	tok := k.Refresh(testSID, 12345)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k.ParseRefresh(tok); err != nil {
			b.Fatal(err)
		}
	}
}
