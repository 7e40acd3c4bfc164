// Package mailpittest runs a private Mailpit for one test: an SMTP server
// on a free port that keeps every message (no limit, duplicates kept) and
// an HTTP API to read them. The test fails, never skips, when mailpit is
// not installed.
package mailpittest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usher-auth/usher/internal/testenv"
)

// Mailpit is a running mailpit process.
type Mailpit struct {
	smtpAddr, httpAddr string
	cmd                *exec.Cmd
	exited             chan struct{}
	log                *bytes.Buffer
}

// Message is one email as Mailpit received it.
type Message struct {
	ID        string // Mailpit's id
	MessageID string // the Message-ID header, without its angle brackets
	From      string
	To        []string
	Subject   string
	Text      string
	HTML      string
}

// Option changes how Start runs mailpit.
type Option func(*options)

type options struct {
	smtpAddr string
	chaos    bool
}

// SMTPAddr makes mailpit listen for SMTP on addr ("127.0.0.1:port"), e.g.
// a port a test pointed a client at before the server was up.
func SMTPAddr(addr string) Option { return func(o *options) { o.smtpAddr = addr } }

// WithChaos enables Mailpit's chaos feature (see SetChaos).
func WithChaos() Option { return func(o *options) { o.chaos = true } }

// Binary is the mailpit executable: $USHER_TEST_MAILPIT, mailpit on the
// PATH, or $GOPATH/bin/mailpit.
func Binary() (string, error) {
	if p := os.Getenv("USHER_TEST_MAILPIT"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "mailpit")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("mailpit is not installed (not on PATH, not at %s); run make services", p)
	}
	return p, nil
}

// Start runs mailpit until the test ends. SMTP accepts any login, also
// without TLS.
func Start(t testing.TB, opts ...Option) *Mailpit {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	// A free port may be taken between our look and mailpit's listen: try
	// a few times, unless the SMTP address was chosen by the test.
	var last error
	for range 3 {
		smtpAddr := o.smtpAddr
		if smtpAddr == "" {
			smtpAddr = testenv.FreeAddr(t)
		}
		m, err := start(t, bin, smtpAddr, testenv.FreeAddr(t), o)
		if err == nil {
			return m
		}
		last = err
	}
	t.Fatalf("mailpit: %v", last)
	return nil
}

func start(t testing.TB, bin, smtpAddr, httpAddr string, o options) (*Mailpit, error) {
	args := []string{
		"--smtp", smtpAddr,
		"--listen", httpAddr,
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--max", "0",
		"--disable-version-check",
		"--smtp-auth-accept-any",
		"--smtp-auth-allow-insecure",
		"--smtp-disable-rdns",
		"--quiet",
	}
	if o.chaos {
		args = append(args, "--enable-chaos")
	}
	m := &Mailpit{smtpAddr: smtpAddr, httpAddr: httpAddr, exited: make(chan struct{}), log: &bytes.Buffer{}}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		m.cmd.Wait()
		close(m.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("exited at start: %s", strings.TrimSpace(m.log.String()))
		default:
		}
		if m.ready() {
			break
		}
		if time.Now().After(deadline) {
			m.stop() // after it, the log is no longer written
			return nil, fmt.Errorf("not ready within 10s: %s", strings.TrimSpace(m.log.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(m.stop)
	return m, nil
}

func (m *Mailpit) ready() bool {
	resp, err := http.Get("http://" + m.httpAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", m.smtpAddr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (m *Mailpit) stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(3 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
}

// SMTPURL is smtp://127.0.0.1:port (no TLS offered; any login accepted).
func (m *Mailpit) SMTPURL() string { return "smtp://" + m.smtpAddr }

// APIURL is the base of the HTTP API, e.g. APIURL()+"/api/v1/messages".
func (m *Mailpit) APIURL() string { return "http://" + m.httpAddr }

// Messages returns every message received so far, oldest first.
func (m *Mailpit) Messages(t testing.TB) []Message {
	t.Helper()
	msgs, err := m.messages()
	if err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	return msgs
}

// WaitFor polls until at least n messages arrived and returns them, oldest
// first; it fails the test if they did not arrive within the given time.
func (m *Mailpit) WaitFor(t testing.TB, n int, within time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msgs, err := m.messages()
		if err != nil {
			t.Fatalf("mailpit: %v", err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit: %d messages within %v, want %d: %s", len(msgs), within, n, summary(msgs))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func summary(msgs []Message) string {
	var parts []string
	for _, msg := range msgs {
		parts = append(parts, fmt.Sprintf("%q to %v", msg.Subject, msg.To))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

type address struct {
	Name, Address string
}

func (m *Mailpit) messages() ([]Message, error) {
	var list struct {
		Total    int
		Messages []struct{ ID string }
	}
	if err := m.get("/api/v1/messages?limit=100000", &list); err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(list.Messages))
	// The list is newest first.
	for i := len(list.Messages) - 1; i >= 0; i-- {
		var full struct {
			ID, MessageID, Subject, Text, HTML string
			From                               address
			To                                 []address
		}
		if err := m.get("/api/v1/message/"+url.PathEscape(list.Messages[i].ID), &full); err != nil {
			return nil, err
		}
		msg := Message{ID: full.ID, MessageID: full.MessageID, From: full.From.Address, Subject: full.Subject, Text: full.Text, HTML: full.HTML}
		for _, to := range full.To {
			msg.To = append(msg.To, to.Address)
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

func (m *Mailpit) get(path string, into any) error {
	return m.do(http.MethodGet, path, nil, into)
}

func (m *Mailpit) do(method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, m.APIURL()+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// Chaos stages of SetChaos.
const (
	Sender         = "Sender"         // the reply to MAIL FROM
	Recipient      = "Recipient"      // the reply to RCPT TO
	Authentication = "Authentication" // the reply to AUTH
)

// SetChaos makes mailpit answer stage with the SMTP error code (4xx or
// 5xx) at the given probability in percent; 0 turns it off. Needs
// WithChaos.
func (m *Mailpit) SetChaos(t testing.TB, stage string, code, probability int) {
	t.Helper()
	body := map[string]any{stage: map[string]int{"ErrorCode": code, "Probability": probability}}
	if err := m.do(http.MethodPut, "/api/v1/chaos", body, nil); err != nil {
		t.Fatalf("mailpit chaos: %v", err)
	}
}
