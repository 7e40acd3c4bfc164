package main

import (
	"os"
	"strings"
	"testing"

	"github.com/usher-auth/usher/internal/testenv"
)

func TestDefaultsLoad(t *testing.T) {
	cfg, err := loadConfig(testenv.Env())
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.Namespace != "usher" || cfg.HTTPAddr != "127.0.0.1:8080" || !cfg.RateLimits || cfg.Argon2MemoryKiB != 19456 {
		t.Fatalf("defaults: got %+v", cfg)
	}
	if cfg.VerifyURL != "http://127.0.0.1:8080/v1/auth/verify-email?token={token}" {
		t.Fatalf("verify URL default: got %q", cfg.VerifyURL)
	}
}

func TestBadValuesAreAllReported(t *testing.T) {
	_, err := loadConfig(testenv.Env(
		"USHER_NAMESPACE=Bad-NS",
		"USHER_RATE_LIMITS=maybe",
		"USHER_REQUEST_TIMEOUT=-1s",
		"USHER_ARGON2_TIME=0",
		"USHER_PUBLIC_URL=not a url",
	))
	if err == nil {
		t.Fatal("got no error for five bad values")
	}
	for _, name := range []string{"USHER_NAMESPACE", "USHER_RATE_LIMITS", "USHER_REQUEST_TIMEOUT", "USHER_ARGON2_TIME", "USHER_PUBLIC_URL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// The README's table and .env.example are the operator's manual: every
// setting must be in both.
func TestEverySettingIsDocumented(t *testing.T) {
	for _, file := range []string{"../../README.md", "../../.env.example"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range settings {
			if !strings.Contains(string(raw), s.name) {
				t.Errorf("%s does not document %s", file, s.name)
			}
		}
	}
}
