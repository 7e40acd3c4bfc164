package mailer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/store"
)

func TestParseSMTPURL(t *testing.T) {
	cases := []struct {
		url     string
		addr    string
		policy  string
		wantErr string
	}{
		{url: "smtp://127.0.0.1:1025", addr: "127.0.0.1:1025", policy: "TLSOpportunistic"},
		{url: "smtp://mail.example.com", addr: "mail.example.com:25", policy: "TLSOpportunistic"},
		{url: "smtp://mail.example.com:587?starttls=required", addr: "mail.example.com:587", policy: "TLSMandatory"},
		{url: "smtp://localhost:1025?starttls=none", addr: "localhost:1025", policy: "NoTLS"},
		{url: "smtp://u:p@mail.example.com:587?starttls=required&auth=login", addr: "mail.example.com:587", policy: "TLSMandatory"},
		{url: "smtps://u:p@mail.example.com", addr: "mail.example.com:465"},
		{url: "smtp://mail.example.com?starttls=maybe", wantErr: "starttls"},
		{url: "smtps://mail.example.com?starttls=required", wantErr: "starttls"},
		{url: "smtp://u:p@mail.example.com?auth=telepathy", wantErr: "auth"},
		{url: "smtp://mail.example.com?auth=plain", wantErr: "without a user"},
		{url: "smtp://mail.example.com?tls=yes", wantErr: "unknown parameter"},
		{url: "http://mail.example.com", wantErr: "scheme"},
		{url: "smtp://:25", wantErr: "no host"},
	}
	for _, c := range cases {
		srv, err := parseSMTPURL(c.url, time.Second)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want one about %s", c.url, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		client, err := mail.NewClient(srv.host, srv.opts...)
		if err != nil {
			t.Errorf("%s: client: %v", c.url, err)
			continue
		}
		if got := client.ServerAddr(); got != c.addr {
			t.Errorf("%s: server %s, want %s", c.url, got, c.addr)
		}
		if c.policy != "" && client.TLSPolicy() != c.policy {
			t.Errorf("%s: TLS policy %s, want %s", c.url, client.TLSPolicy(), c.policy)
		}
	}
}

func TestPermanent(t *testing.T) {
	if permanent(errors.New("dial tcp: connection refused")) {
		t.Error("a refused connection is no permanent failure")
	}
}

func TestConfigIsChecked(t *testing.T) {
	sealer, _ := event.NewSealer(make([]byte, 32))
	valid := func() Config {
		return Config{
			Namespace: "ns", DB: &store.DB{}, Sealer: sealer, SMTPURL: "smtp://127.0.0.1:1025",
			From: testFrom, VerifyURL: testVerifyURL, ResetURL: testResetURL, SMTPTimeout: time.Second,
		}
	}
	if _, err := newMailer(valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := map[string]func(*Config){
		"no sealer":                   func(c *Config) { c.Sealer = nil },
		"no database":                 func(c *Config) { c.DB = nil },
		"no from":                     func(c *Config) { c.From = "" },
		"bad from":                    func(c *Config) { c.From = "not an address" },
		"verify URL without token":    func(c *Config) { c.VerifyURL = "https://usher.test/verify" },
		"reset URL without token":     func(c *Config) { c.ResetURL = "https://usher.test/reset" },
		"lease within 3×SMTP timeout": func(c *Config) { c.Lease = 3 * time.Second },
		"lease wait within the lease": func(c *Config) { c.Lease = 5 * time.Second; c.LeaseWait = 5 * time.Second },
		"zero retry delay":            func(c *Config) { c.RetryDelays = []time.Duration{time.Second, 0} },
		"bad SMTP URL":                func(c *Config) { c.SMTPURL = "smtp://x?starttls=maybe" },
	}
	for name, change := range cases {
		cfg := valid()
		change(&cfg)
		if _, err := newMailer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run with an empty config: no error")
	}
}

func TestTopologyMismatchStopsRun(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	topo := e.topo
	topo.RetryDelays = []time.Duration{time.Minute}
	if err := topo.Declare(e.pub); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("smtp://127.0.0.1:1")
	cfg.RetryDelays = []time.Duration{time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, cfg); !errors.Is(err, ErrTopologyMismatch) {
		t.Fatalf("Run: %v, want ErrTopologyMismatch", err)
	}
}
