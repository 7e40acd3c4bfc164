package mailer

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/mailer/mailpittest"
	"github.com/usher-auth/usher/store"
)

// withAuth adds a login to an smtp:// URL; Mailpit accepts any.
func withAuth(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("usher", "secret")
	u.RawQuery = "auth=plain"
	return u.String()
}

func TestSendsEachPurpose(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mp := mailpittest.Start(t)
	e.start(e.config(withAuth(t, mp.SMTPURL())))

	// A token that needs escaping in a URL.
	const token = "tok/en+1=="
	escaped := url.QueryEscape(token)
	cases := []struct {
		typ     string
		mail    event.Mail
		subject string
		text    []string // in the text part
		html    []string // in the HTML part
	}{
		{event.UserRegistered, event.Mail{To: "new@example.com", Token: token},
			"Welcome to usher: please confirm your email address",
			[]string{"https://usher.test/verify?token=" + escaped + "&from=mail", "new@example.com"},
			[]string{`href="https://usher.test/verify?token=` + escaped + `&amp;from=mail"`}},
		{event.VerificationRequested, event.Mail{To: "again@example.com", Token: token},
			"Confirm your email address",
			[]string{"https://usher.test/verify?token=" + escaped + "&from=mail"},
			[]string{`href="https://usher.test/verify?token=` + escaped + `&amp;from=mail"`}},
		{event.ResetRequested, event.Mail{To: "forgot@example.com", Token: token},
			"Reset your password",
			[]string{"https://usher.test/reset?token=" + escaped},
			[]string{`href="https://usher.test/reset?token=` + escaped + `"`}},
		{event.PasswordChanged, event.Mail{To: "changed@example.com"},
			"Your password was changed",
			[]string{"Your password was changed"},
			[]string{"Your password was changed"}},
		{event.EmailRequested, event.Mail{To: "admin-says@example.com", Subject: "Planned\r\nBcc: evil@example.com maintenance", Text: "We stop <b>at</b> 22:00."},
			"Planned Bcc: evil@example.com maintenance",
			[]string{"We stop <b>at</b> 22:00."},
			[]string{"We stop &lt;b&gt;at&lt;/b&gt; 22:00."}},
	}
	ids := map[string]int{}
	var registered event.Envelope
	for i, c := range cases {
		env := e.event(c.typ, c.mail)
		if c.typ == event.UserRegistered {
			registered = env
		}
		ids[env.ID+"@usher"] = i
		e.publish(env)
	}
	// Events that send no mail are acknowledged and dropped.
	e.publishRaw("", e.topo.Queue(), "", mustJSON(t, event.Envelope{ID: "8f0c0a8e-7d6f-4d0e-9d3c-2f1b6f9e0a11", Type: event.UserDeleted}))

	got := mp.WaitFor(t, len(cases), 10*time.Second)
	if len(got) != len(cases) {
		t.Fatalf("%d emails, want %d", len(got), len(cases))
	}
	for _, msg := range got {
		i, ok := ids[msg.MessageID]
		if !ok {
			t.Errorf("email with Message-ID %q, want one derived from an event id", msg.MessageID)
			continue
		}
		delete(ids, msg.MessageID)
		c := cases[i]
		t.Run(c.typ, func(t *testing.T) {
			if len(msg.To) != 1 || msg.To[0] != c.mail.To {
				t.Errorf("to %v, want [%s]", msg.To, c.mail.To)
			}
			if msg.From != "no-reply@usher.test" {
				t.Errorf("from %q, want no-reply@usher.test", msg.From)
			}
			if msg.Subject != c.subject {
				t.Errorf("subject %q, want %q", msg.Subject, c.subject)
			}
			for _, want := range c.text {
				if !strings.Contains(msg.Text, want) {
					t.Errorf("text part lacks %q:\n%s", want, msg.Text)
				}
			}
			for _, want := range c.html {
				if !strings.Contains(msg.HTML, want) {
					t.Errorf("HTML part lacks %q:\n%s", want, msg.HTML)
				}
			}
		})
	}

	// Redelivered after it was sent: acked, not sent again. The event
	// after it shows the mailer got past it (one worker, in order).
	e.publish(registered)
	last := e.event(event.PasswordChanged, event.Mail{To: "last@example.com"})
	e.publish(last)
	got = mp.WaitFor(t, len(cases)+1, 10*time.Second)
	if got[len(got)-1].MessageID != last.ID+"@usher" || len(got) != len(cases)+1 {
		t.Fatalf("after the redelivery: %d emails, the last %q; want %d, the last %s@usher", len(got), got[len(got)-1].MessageID, len(cases)+1, last.ID)
	}
	if n := e.metric("usher_mail_skipped_total", "reason", "already_sent"); n != 1 {
		t.Errorf("usher_mail_skipped_total{already_sent} = %v, want 1", n)
	}
	e.waitMetric(5*time.Second, float64(len(cases)+1), "usher_mail_sent_total")
	if n := e.metric("usher_mail_last_success_timestamp_seconds"); time.Since(time.Unix(int64(n), 0)) > time.Minute {
		t.Errorf("usher_mail_last_success_timestamp_seconds = %v, want about now", n)
	}
	if n := e.queueLen(e.topo.Queue()); n != 0 {
		t.Errorf("%d messages left in %s", n, e.topo.Queue())
	}
}

// brokenTemplates are the embedded templates with password.changed broken:
// it names a field the view does not have.
func brokenTemplates(t *testing.T) *templates {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(templateFiles, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templateFiles, path)
		fsys[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys["templates/password.changed.txt"] = &fstest.MapFile{Data: []byte(`{{define "subject"}}Changed{{end}}{{.NoSuchField}}`)}
	ts, err := parseTemplates(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestDeadLettersWhatItCannotSend(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mp := mailpittest.Start(t)
	cfg := e.config(mp.SMTPURL())
	cfg.templates = brokenTemplates(t)
	e.start(cfg)

	key := make([]byte, 32)
	rand.Read(key)
	other, err := event.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	reset := event.Mail{To: "victim@example.com", Token: "t0ken"}
	cases := []struct {
		name   string
		reason string
		body   func() (id string, body []byte)
		key    string // routing key; empty: straight to the mailer's queue
	}{
		{"no seal", reasonSeal, func() (string, []byte) {
			env := e.event(event.ResetRequested, reset)
			env.Data.Sealed = nil
			return env.ID, mustJSON(t, env)
		}, event.ResetRequested},
		{"altered seal", reasonSeal, func() (string, []byte) {
			env := e.event(event.ResetRequested, reset)
			env.Data.Sealed.Box[3] ^= 0x40
			return env.ID, mustJSON(t, env)
		}, event.ResetRequested},
		{"sealed with another key", reasonSeal, func() (string, []byte) {
			env := e.event(event.ResetRequested, reset)
			if err := other.Seal(&env, event.Mail{To: "attacker@example.com", Purpose: event.ResetRequested, Token: "x"}); err != nil {
				t.Fatal(err)
			}
			return env.ID, mustJSON(t, env)
		}, event.ResetRequested},
		{"seal moved to another event", reasonSeal, func() (string, []byte) {
			env := e.event(event.ResetRequested, reset)
			moved := e.event(event.ResetRequested, reset)
			moved.Data = env.Data
			return moved.ID, mustJSON(t, moved)
		}, event.ResetRequested},
		{"unknown purpose, sealed", reasonTemplate, func() (string, []byte) {
			env := e.event("user.promoted", event.Mail{To: "someone@example.com"})
			return env.ID, mustJSON(t, env)
		}, ""},
		{"broken template", reasonTemplate, func() (string, []byte) {
			env := e.event(event.PasswordChanged, event.Mail{To: "changed@example.com"})
			return env.ID, mustJSON(t, env)
		}, event.PasswordChanged},
		{"reset link without a token", reasonTemplate, func() (string, []byte) {
			env := e.event(event.ResetRequested, event.Mail{To: "victim@example.com"})
			return env.ID, mustJSON(t, env)
		}, event.ResetRequested},
		{"sealed recipient is no address", reasonAddress, func() (string, []byte) {
			env := e.event(event.EmailRequested, event.Mail{To: "not an address", Subject: "s", Text: "t"})
			return env.ID, mustJSON(t, env)
		}, event.EmailRequested},
		{"not JSON", reasonEnvelope, func() (string, []byte) {
			return "not-json", []byte("hello")
		}, event.ResetRequested},
		{"id is no uuid", reasonEnvelope, func() (string, []byte) {
			env := e.event(event.ResetRequested, reset)
			env.ID = "42"
			return "42", mustJSON(t, env)
		}, event.ResetRequested},
	}
	want := map[string]string{} // message id → reason
	for _, c := range cases {
		id, body := c.body()
		want[id] = c.reason
		if c.key == "" {
			e.publishRaw("", e.topo.Queue(), id, body)
		} else {
			e.publishRaw(e.topo.Exchange(), c.key, id, body)
		}
	}
	ok := e.event(event.VerificationRequested, event.Mail{To: "fine@example.com", Token: "t"})
	e.publish(ok)

	dead := e.waitDead(len(cases), 10*time.Second)
	if len(dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
	}
	for _, d := range dead {
		reason, _ := d.Headers[headerDeadReason].(string)
		if want[d.MessageId] != reason {
			t.Errorf("dead letter %s: reason %q, want %q (%v)", d.MessageId, reason, want[d.MessageId], d.Headers[headerError])
		}
		if _, retried := d.Headers["x-death"]; retried {
			t.Errorf("dead letter %s went through a retry queue: %v", d.MessageId, d.Headers["x-death"])
		}
	}
	got := mp.WaitFor(t, 1, 10*time.Second)
	if len(got) != 1 || got[0].MessageID != ok.ID+"@usher" {
		t.Fatalf("emails: %+v; want only the one for %s", got, ok.ID)
	}
	for reason, n := range map[string]float64{reasonSeal: 4, reasonTemplate: 3, reasonAddress: 1, reasonEnvelope: 2} {
		e.waitMetric(5*time.Second, n, "usher_mail_dead_lettered_total", "reason", reason)
	}
	if n := e.metric("usher_mail_retried_total"); n != 0 {
		t.Errorf("usher_mail_retried_total = %v, want 0", n)
	}
}

func TestPermanentSMTPFailureDeadLetters(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mp := mailpittest.Start(t, mailpittest.WithChaos())
	mp.SetChaos(t, mailpittest.Recipient, 550, 100)
	e.start(e.config(mp.SMTPURL()))

	env := e.event(event.ResetRequested, event.Mail{To: "gone@example.com", Token: "t"})
	e.publish(env)
	dead := e.waitDead(1, 10*time.Second)
	if reason := dead[0].Headers[headerDeadReason]; dead[0].MessageId != env.ID || reason != reasonPermanent {
		t.Fatalf("dead letter %s, reason %v; want %s, %s", dead[0].MessageId, reason, env.ID, reasonPermanent)
	}
	if errText, _ := dead[0].Headers[headerError].(string); !strings.Contains(errText, "550") {
		t.Errorf("dead letter's error %q does not name the 550", errText)
	}
	if _, retried := dead[0].Headers["x-death"]; retried {
		t.Errorf("went through a retry queue: %v", dead[0].Headers["x-death"])
	}
	for name, want := range map[string]float64{"usher_mail_failed_total": 1, "usher_mail_retried_total": 0, "usher_mail_sent_total": 0} {
		if got := e.metric(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	e.waitMetric(5*time.Second, 1, "usher_mail_dead_lettered_total", "reason", reasonPermanent)
	// The claim was released: sending it by hand later is possible.
	if res, err := e.db.ClaimEmail(t.Context(), env.ID, time.Minute); err != nil || res != store.Claimed {
		t.Errorf("claim after the failure: %v, %v; want claimed", res, err)
	}
	if n := len(mp.Messages(t)); n != 0 {
		t.Errorf("%d emails, want 0", n)
	}
}

func TestSMTPDownRetriesThenSends(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	addr := testenv.FreeAddr(t) // nothing listens there yet
	cfg := e.config("smtp://" + addr)
	cfg.SMTPTimeout = time.Second
	cfg.RetryDelays = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	e.start(cfg)

	env := e.event(event.UserRegistered, event.Mail{To: "patient@example.com", Token: "t"})
	e.publish(env)
	testenv.Eventually(t, 10*time.Second, func() string {
		if n := e.metric("usher_mail_retried_total"); n < 3 {
			return fmt.Sprintf("usher_mail_retried_total = %v, want 3 or more", n)
		}
		return ""
	})
	mp := mailpittest.Start(t, mailpittest.SMTPAddr(addr))
	got := mp.WaitFor(t, 1, 10*time.Second)
	if got[0].MessageID != env.ID+"@usher" {
		t.Fatalf("email %q, want %s@usher", got[0].MessageID, env.ID)
	}
	e.waitMetric(5*time.Second, 1, "usher_mail_sent_total")
	if n := len(e.takeDead()); n != 0 {
		t.Errorf("%d dead letters, want 0", n)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(mp.Messages(t)); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
}

func TestRetriesExhaustedDeadLetters(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	cfg := e.config("smtp://" + testenv.FreeAddr(t)) // never up
	cfg.SMTPTimeout = time.Second
	cfg.RetryDelays = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond}
	e.start(cfg)

	env := e.event(event.PasswordChanged, event.Mail{To: "nobody@example.com"})
	e.publish(env)
	dead := e.waitDead(1, 10*time.Second)
	if reason := dead[0].Headers[headerDeadReason]; reason != reasonExhausted {
		t.Fatalf("reason %v, want %s", reason, reasonExhausted)
	}
	// x-death counts one pass through each retry queue.
	if n := attempts(dead[0].Headers, e.topo); n != 3 {
		t.Errorf("x-death counts %d retries, want 3: %v", n, dead[0].Headers["x-death"])
	}
	for name, want := range map[string]float64{"usher_mail_failed_total": 4, "usher_mail_retried_total": 3} {
		if got := e.metric(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestLiveClaimWaitsForItsLease(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mp := mailpittest.Start(t)
	cfg := e.config(mp.SMTPURL())
	cfg.SMTPTimeout = 300 * time.Millisecond
	cfg.Lease = time.Second
	cfg.LeaseWait = 1500 * time.Millisecond
	e.start(cfg)

	env := e.event(event.ResetRequested, event.Mail{To: "held@example.com", Token: "t"})
	// Another sender claimed it and died.
	if res, err := e.db.ClaimEmail(t.Context(), env.ID, time.Second); err != nil || res != store.Claimed {
		t.Fatalf("claim: %v, %v", res, err)
	}
	start := time.Now()
	e.publish(env)
	testenv.Eventually(t, 5*time.Second, func() string {
		if n := e.metric("usher_mail_lease_waits_total"); n < 1 {
			return "no lease wait yet"
		}
		return ""
	})
	got := mp.WaitFor(t, 1, 10*time.Second)
	if took := time.Since(start); took < time.Second {
		t.Errorf("sent after %v, before the other claim's lease ended", took)
	}
	if got[0].MessageID != env.ID+"@usher" {
		t.Fatalf("email %q, want %s@usher", got[0].MessageID, env.ID)
	}
	if n := e.metric("usher_mail_retried_total"); n != 0 {
		t.Errorf("usher_mail_retried_total = %v, want 0: a lease wait is no retry", n)
	}
	if n := e.metric("usher_mail_failed_total"); n != 0 {
		t.Errorf("usher_mail_failed_total = %v, want 0", n)
	}
}

func TestWorkersSendConcurrently(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	smtp := startSlowSMTP(t, 500*time.Millisecond)
	cfg := e.config(smtp.url())
	cfg.Workers = 2
	e.start(cfg)

	for i := range 4 {
		e.publish(e.event(event.PasswordChanged, event.Mail{To: fmt.Sprintf("user%d@example.com", i)}))
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if n, _ := smtp.counts(); n < 4 {
			return fmt.Sprintf("%d emails accepted, want 4", n)
		}
		return ""
	})
	if _, most := smtp.counts(); most != 2 {
		t.Errorf("at most %d emails in flight at once, want 2 (one per worker)", most)
	}
}

// A worker keeps its SMTP connection from one email to the next, and when
// the server has hung up meanwhile, sends the next email on a new one
// without losing or retrying it.
func TestWorkerKeepsItsSMTPConnection(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	smtp := startSlowSMTP(t, 0)
	cfg := e.config(smtp.url())
	cfg.Workers = 1
	e.start(cfg)
	sendAndWait := func(first, n int) {
		t.Helper()
		for i := range n {
			e.publish(e.event(event.PasswordChanged, event.Mail{To: fmt.Sprintf("user%d@example.com", first+i)}))
		}
		// Sent is counted after the exchange ended (RSET included): the
		// connection is idle then.
		testenv.Eventually(t, 10*time.Second, func() string {
			if got := e.metric("usher_mail_sent_total"); got < float64(first+n) {
				return fmt.Sprintf("%v emails sent, want %d", got, first+n)
			}
			return ""
		})
	}
	sendAndWait(0, 3)
	if n := smtp.connections(); n != 1 {
		t.Fatalf("3 emails from one worker took %d connections, want 1", n)
	}
	smtp.hangUp()
	sendAndWait(3, 2)
	if n := smtp.connections(); n != 2 {
		t.Fatalf("after the server hung up: %d connections in all, want 2", n)
	}
	if n := e.metric("usher_mail_retried_total"); n != 0 {
		t.Errorf("usher_mail_retried_total = %v, want 0: a closed idle connection costs no retry", n)
	}
	if got, _ := smtp.counts(); got != 5 {
		t.Errorf("the server accepted %d emails, want 5", got)
	}
}

func TestReconnectsToRabbitMQ(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mp := mailpittest.Start(t)
	u, _ := url.Parse(testenv.AMQPURL)
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	cfg := e.config(mp.SMTPURL())
	cfg.AMQPURL = u.String()
	e.start(cfg)

	first := e.event(event.PasswordChanged, event.Mail{To: "first@example.com"})
	e.publish(first)
	mp.WaitFor(t, 1, 10*time.Second)

	proxy.Cut()
	second := e.event(event.PasswordChanged, event.Mail{To: "second@example.com"})
	e.publish(second) // waits in the queue
	time.Sleep(300 * time.Millisecond)
	proxy.Restore()
	got := mp.WaitFor(t, 2, 15*time.Second)
	if got[1].MessageID != second.ID+"@usher" {
		t.Fatalf("second email %q, want %s@usher", got[1].MessageID, second.ID)
	}
}

func TestAttempts(t *testing.T) {
	topo := NewTopology("ns")
	death := func(queue, reason string, count int64) amqp.Table {
		return amqp.Table{"queue": queue, "reason": reason, "count": count, "exchange": ""}
	}
	cases := []struct {
		name    string
		headers amqp.Table
		want    int
	}{
		{"none", nil, 0},
		{"one step", amqp.Table{"x-death": []any{death("ns.mailer.retry.1", "expired", 1)}}, 1},
		{"two steps", amqp.Table{"x-death": []any{death("ns.mailer.retry.2", "expired", 1), death("ns.mailer.retry.1", "expired", 1)}}, 2},
		{"a step twice", amqp.Table{"x-death": []any{death("ns.mailer.retry.1", "expired", 2)}}, 2},
		{"lease wait is no retry", amqp.Table{"x-death": []any{death("ns.mailer.lease-wait", "expired", 3), death("ns.mailer.retry.1", "expired", 1)}}, 1},
		{"another namespace", amqp.Table{"x-death": []any{death("other.mailer.retry.1", "expired", 1)}}, 0},
		{"rejected is no retry", amqp.Table{"x-death": []any{death("ns.mailer.retry.1", "rejected", 1)}}, 0},
		{"x-death dropped on republish", amqp.Table{headerRetries: int64(3), "x-death": []any{death("ns.mailer.retry.3", "expired", 1)}}, 3},
	}
	for _, c := range cases {
		if got := attempts(c.headers, topo); got != c.want {
			t.Errorf("%s: %d attempts, want %d", c.name, got, c.want)
		}
	}
}
