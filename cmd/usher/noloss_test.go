package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/bridge"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/mailer"
	"github.com/usher-auth/usher/mailer/mailpittest"
)

// welcomeSubject is the subject of the user.registered email.
const welcomeSubject = "Welcome to usher: please confirm your email address"

// pipelineEnv is what the email pipeline tests add to stack: fast hashing,
// the machine's NATS, a private Mailpit, and a short SMTP timeout so that
// the claim of a killed mailer (3 × timeout + 5 s) ends soon.
func pipelineEnv(t *testing.T, mp *mailpittest.Mailpit, extra ...string) []string {
	t.Helper()
	testenv.Require(t, "NATS")
	env := stack(t, append(append(fastHashing,
		"USHER_NATS_URL="+testenv.NATSURL,
		"USHER_SMTP_URL="+mp.SMTPURL(),
		"USHER_SMTP_TIMEOUT=3s",
	), extra...)...)
	usher(t, env, "", "migrate", "up")
	return env
}

// startMailer runs `usher mailer --workers n`.
func startMailer(t *testing.T, workers int, env ...string) *child {
	t.Helper()
	return startWithArgs(t, []string{"mailer", "--workers", fmt.Sprint(workers)}, env...)
}

// kill SIGKILLs a child the test started and waits for it to be gone.
func kill(t *testing.T, c *child) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	<-c.exited
}

// waitAdmin polls a process's /metrics until it answers: it has started
// (the bridge and the mailer serve no /readyz).
func waitAdmin(t *testing.T, c *child) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() string {
		select {
		case <-c.exited:
			t.Fatalf("usher exited early (%v):\n%s", c.err, c.logs)
		default:
		}
		if status, body := get(c.admin+"/metrics", nil); status != http.StatusOK {
			return fmt.Sprintf("metrics: got %d %.200s", status, body)
		}
		return ""
	})
}

// metricTotal sums every sample of the metric name, whatever its labels.
func metricTotal(t *testing.T, c *child, name string) float64 {
	t.Helper()
	_, body := get(c.admin+"/metrics", nil)
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// envValue is the last value of key in env.
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// startPipeline starts node, gateway, bridge and a one-worker mailer
// (mailerEnv added to its environment) and waits until they serve.
func startPipeline(t *testing.T, env []string, mailerEnv ...string) (gw, ml *child) {
	t.Helper()
	start(t, "node", env...)
	gw = start(t, "gateway", env...)
	start(t, "bridge", env...)
	ml = startMailer(t, 1, append(env, mailerEnv...)...)
	gw.waitReady(t)
	waitAdmin(t, ml)
	return gw, ml
}

// waitMailQueuesEmpty waits until the mailer's work and lease-wait queues
// hold nothing: every email has been sent or parked for good.
func waitMailQueuesEmpty(t *testing.T, env []string) {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v", err)
	}
	defer conn.Close()
	topo := mailer.NewTopology(envValue(env, "USHER_NAMESPACE"))
	testenv.Eventually(t, 10*time.Second, func() string {
		for _, q := range []string{topo.Queue(), topo.LeaseWaitQueue()} {
			if d := queueDepth(t, conn, q); d != 0 {
				return fmt.Sprintf("%d messages in %s", d, q)
			}
		}
		return ""
	})
}

// hostOf is the host:port of a server URL.
func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	return u.Host
}

// amqpVia is the shared RabbitMQ's URL with the host replaced by proxy's.
func amqpVia(t *testing.T, p *testenv.Proxy) string {
	t.Helper()
	u, err := url.Parse(testenv.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

// troubleLines are the log lines that report a lost or failing
// connection.
func troubleLines(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		l := strings.ToLower(line)
		for _, word := range []string{"disconnect", "lost", "closed", "ended", "cannot reach", "reconnect"} {
			if strings.Contains(l, word) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// mailSummary is one email of Mailpit's message list.
type mailSummary struct {
	ID, MessageID, Subject string
	To                     []string
}

// mailList reads Mailpit's list of messages: one request, however many
// there are (mailpittest.Messages fetches each message on its own).
func mailList(t *testing.T, mp *mailpittest.Mailpit) []mailSummary {
	t.Helper()
	resp, err := http.Get(mp.APIURL() + "/api/v1/messages?limit=100000")
	if err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	defer resp.Body.Close()
	var list struct {
		Messages []struct {
			ID, MessageID, Subject string
			To                     []struct{ Address string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("mailpit list: %v", err)
	}
	out := make([]mailSummary, 0, len(list.Messages))
	for _, m := range list.Messages {
		s := mailSummary{ID: m.ID, MessageID: m.MessageID, Subject: m.Subject}
		for _, to := range m.To {
			s.To = append(s.To, strings.ToLower(to.Address))
		}
		out = append(out, s)
	}
	return out
}

// mailsTo are the emails in list addressed to addr.
func mailsTo(list []mailSummary, addr string) []mailSummary {
	var out []mailSummary
	for _, m := range list {
		for _, to := range m.To {
			if to == addr {
				out = append(out, m)
			}
		}
	}
	return out
}

// waitMails polls Mailpit until addr has n emails and returns them.
func waitMails(t *testing.T, mp *mailpittest.Mailpit, addr string, n int, within time.Duration) []mailSummary {
	t.Helper()
	var got []mailSummary
	testenv.Eventually(t, within, func() string {
		got = mailsTo(mailList(t, mp), addr)
		if len(got) < n {
			time.Sleep(100 * time.Millisecond)
			return fmt.Sprintf("%d emails to %s, want %d", len(got), addr, n)
		}
		return ""
	})
	return got
}

// register posts a registration without the test helpers that call
// t.Fatal, so that goroutines may use it; it still checks the contract.
func register(base, email, password string) (int, string) {
	r, err := send(http.MethodPost, base+"/v1/auth/register", "", map[string]string{"email": email, "password": password}, nil)
	if err != nil {
		return r.status, err.Error()
	}
	return r.status, r.raw
}

// queueDepth is the number of ready messages in a queue, -1 if it does
// not exist.
func queueDepth(t *testing.T, conn *amqp.Connection, name string) int {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("RabbitMQ channel: %v", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return q.Messages
}

// pipelineIdle says what is still moving between the outbox and the
// mailer's queues ("" when nothing is): unpublished outbox rows, events
// the bridge has not had confirmed, messages waiting in the mailer's work,
// retry or lease-wait queues. A delivery in the mailer's hands is not
// seen: callers check twice.
func pipelineIdle(t *testing.T, env []string, conn *amqp.Connection, js jetstream.JetStream) string {
	t.Helper()
	ns := envValue(env, "USHER_NAMESPACE")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, envValue(env, "USHER_DATABASE_URL"))
	if err != nil {
		return "database: " + err.Error()
	}
	defer db.Close(ctx)
	var unpublished int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&unpublished); err != nil {
		return "outbox: " + err.Error()
	}
	if unpublished > 0 {
		return fmt.Sprintf("%d outbox rows unpublished", unpublished)
	}
	cons, err := js.Consumer(ctx, bridge.StreamName(ns), bridge.ConsumerName(ns))
	if err != nil {
		return "bridge consumer: " + err.Error()
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return "bridge consumer: " + err.Error()
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Sprintf("bridge: %d events not delivered, %d not acked", info.NumPending, info.NumAckPending)
	}
	topo := mailer.NewTopology(ns)
	queues := []string{topo.Queue(), topo.LeaseWaitQueue()}
	for n := range mailer.DefaultRetryDelays {
		queues = append(queues, topo.RetryQueue(n+1))
	}
	for _, q := range queues {
		if d := queueDepth(t, conn, q); d > 0 {
			return fmt.Sprintf("%d messages in %s", d, q)
		}
	}
	return ""
}

// No loss: 300 registrations while RabbitMQ and NATS connections are cut
// and the bridge and the mailer are SIGKILLed, in turn. Every address gets
// its verification email; the only duplicates are those of a mailer killed
// between the SMTP server's acceptance and its record, at most one per
// kill with one worker and prefetch 1.
func TestNoEmailIsLost(t *testing.T) {
	const users = 300
	mp := mailpittest.Start(t)
	env := pipelineEnv(t, mp)

	natsHost, amqpHost := hostOf(t, testenv.NATSURL), hostOf(t, testenv.AMQPURL)
	bridgeNATS := testenv.NewProxy(t, natsHost)
	bridgeAMQP := testenv.NewProxy(t, amqpHost)
	mailerAMQP := testenv.NewProxy(t, amqpHost)
	bridgeEnv := append(append([]string{}, env...), "USHER_NATS_URL=nats://"+bridgeNATS.Addr(), "USHER_AMQP_URL="+amqpVia(t, bridgeAMQP))
	mailerEnv := append(append([]string{}, env...), "USHER_AMQP_URL="+amqpVia(t, mailerAMQP))

	start(t, "node", env...)
	gw := start(t, "gateway", env...)
	br := start(t, "bridge", bridgeEnv...)
	ml := startMailer(t, 1, mailerEnv...)
	gw.waitReady(t)
	waitAdmin(t, br)
	waitAdmin(t, ml)

	// Registrations at a steady pace from a few goroutines.
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		failures []string
		created  int
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				addr := fmt.Sprintf("noloss%03d@example.com", i)
				status, body := register(gw.base, addr, "never lose an email")
				mu.Lock()
				if status == http.StatusCreated {
					created++
				} else {
					failures = append(failures, fmt.Sprintf("%s: %d %.300s", addr, status, body))
				}
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	go func() {
		defer close(jobs)
		tick := time.NewTicker(45 * time.Millisecond)
		defer tick.Stop()
		for i := range users {
			<-tick.C
			jobs <- i
		}
	}()

	// The faults, in turn, while the registrations go on.
	mailerKills := 0
	pause := func(d time.Duration) { time.Sleep(d) }
	pause(1500 * time.Millisecond)
	t.Logf("%v: cutting RabbitMQ (bridge and mailer)", time.Since(began).Round(time.Millisecond))
	bridgeAMQP.Cut()
	mailerAMQP.Cut()
	pause(time.Second)
	bridgeAMQP.Restore()
	mailerAMQP.Restore()
	pause(2 * time.Second)
	t.Logf("%v: cutting the bridge's NATS", time.Since(began).Round(time.Millisecond))
	bridgeNATS.Cut()
	pause(time.Second)
	bridgeNATS.Restore()
	pause(2 * time.Second)
	t.Logf("%v: killing the bridge", time.Since(began).Round(time.Millisecond))
	bridgeFailed := metricTotal(t, br, "usher_bridge_failed_total")
	kill(t, br)
	firstBridge := br
	br = start(t, "bridge", bridgeEnv...)
	pause(2 * time.Second)
	t.Logf("%v: killing the mailer", time.Since(began).Round(time.Millisecond))
	kill(t, ml)
	mailerKills++
	firstMailer := ml
	ml = startMailer(t, 1, mailerEnv...)
	waitAdmin(t, br)
	waitAdmin(t, ml)

	wg.Wait()
	sent := time.Since(began)
	if len(failures) > 0 {
		t.Fatalf("%d of %d registrations did not answer 201, first: %s", len(failures), users, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	if created != users {
		t.Fatalf("got %d registrations created, want %d", created, users)
	}
	t.Logf("%d registrations answered 201 in %v", created, sent.Round(time.Millisecond))

	// The cuts reached the processes: each saw its connections drop.
	t.Logf("bridge before its kill: %v events not forwarded at once", bridgeFailed)
	for _, p := range []struct {
		what string
		c    *child
		want []string
	}{
		{"the first bridge", firstBridge, []string{"NATS", "RabbitMQ"}},
		{"the first mailer", firstMailer, []string{"RabbitMQ"}},
	} {
		lines := troubleLines(p.c.logs.String())
		t.Logf("%s logged %d lines of connection trouble:\n%s", p.what, len(lines), strings.Join(lines[:min(6, len(lines))], "\n"))
		for _, server := range p.want {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, server) }) {
				t.Errorf("%s logged no trouble with %s: the cut did not reach it", p.what, server)
			}
		}
	}

	// Every address gets its email; then, once nothing moves any more,
	// count the duplicates.
	var list []mailSummary
	testenv.Eventually(t, 60*time.Second, func() string {
		time.Sleep(250 * time.Millisecond)
		list = mailList(t, mp)
		missing := 0
		for i := range users {
			if len(mailsTo(list, fmt.Sprintf("noloss%03d@example.com", i))) == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Sprintf("%d of %d addresses have no email yet (%d emails)", missing, users, len(list))
		}
		return ""
	})
	allArrived := time.Since(began)

	conn, err := amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v", err)
	}
	defer conn.Close()
	nc, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A redelivery the bridge's ack wait or the killed mailer's lease
	// holds back may still be on its way: wait until the pipeline is
	// empty and the count of emails holds still.
	last := -1
	testenv.Eventually(t, 60*time.Second, func() string {
		time.Sleep(time.Second)
		if why := pipelineIdle(t, env, conn, js); why != "" {
			last = -1
			return why
		}
		list = mailList(t, mp)
		if len(list) != last {
			last = len(list)
			return fmt.Sprintf("%d emails, still changing", len(list))
		}
		return ""
	})

	byMessageID := map[string]int{}
	for _, m := range list {
		if m.Subject != welcomeSubject {
			t.Errorf("unexpected email %q to %v", m.Subject, m.To)
		}
		byMessageID[m.MessageID]++
	}
	var repeated []string
	for id, n := range byMessageID {
		if n > 1 {
			repeated = append(repeated, fmt.Sprintf("%s×%d", id, n))
		}
	}
	sort.Strings(repeated)
	duplicates := len(list) - users
	t.Logf("emails: %d for %d addresses (all had one after %v; idle after %v); duplicates: %d %v; mailer kills: %d; distinct Message-IDs: %d",
		len(list), users, allArrived.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), duplicates, repeated, mailerKills, len(byMessageID))
	t.Logf("mailer after restart: sent %v, skipped %v, lease waits %v, retried %v, failed %v, dead-lettered %v",
		metricTotal(t, ml, "usher_mail_sent_total"), metricTotal(t, ml, "usher_mail_skipped_total"),
		metricTotal(t, ml, "usher_mail_lease_waits_total"), metricTotal(t, ml, "usher_mail_retried_total"),
		metricTotal(t, ml, "usher_mail_failed_total"), metricTotal(t, ml, "usher_mail_dead_lettered_total"))
	if duplicates > mailerKills {
		t.Fatalf("got %d duplicates (%v), want at most %d, one per mailer kill", duplicates, repeated, mailerKills)
	}
	if len(byMessageID) != users {
		t.Fatalf("got %d distinct Message-IDs, want %d: a duplicate must be the same email", len(byMessageID), users)
	}

	// Each is a verification email with a link; the full messages are
	// read once, now that the count is final.
	for _, m := range mp.Messages(t) {
		if !linkToken.MatchString(m.Text) {
			t.Errorf("email to %v has no verification link:\n%s", m.To, m.Text)
		}
	}
}

// A mailer killed after the SMTP server accepted an email and before it
// recorded that sends the email again, once: the one duplicate the design
// admits, recognisable by its Message-ID.
func TestMailerKilledAfterSMTPResendsAtMostOnce(t *testing.T) {
	mp := mailpittest.Start(t)
	env := pipelineEnv(t, mp)
	gw, hooked := startPipeline(t, env, "USHER_TESTHOOK=mailer.after_smtp")

	const addr = "after-smtp@example.com"
	api{t, gw.base}.do("POST", "/v1/auth/register", "", map[string]string{"email": addr, "password": "killed after smtp"}).want(t, "register", 201)
	first := waitMails(t, mp, addr, 1, 30*time.Second)
	// The mailer now sleeps 10 s before it records the send.
	if n := metricTotal(t, hooked, "usher_mail_sent_total"); n != 0 {
		t.Fatalf("the hooked mailer recorded %v sends before the kill, want 0: the hook did not hold it", n)
	}
	kill(t, hooked)
	killed := time.Now()

	ml := startMailer(t, 1, append(env, "USHER_TESTHOOK=")...)
	waitAdmin(t, ml)
	// The claim of the killed mailer holds for its lease (3 × 3 s + 5 s);
	// the redelivery waits in the lease-wait queue, then is sent again.
	mails := waitMails(t, mp, addr, 2, 60*time.Second)
	t.Logf("second copy %v after the kill", time.Since(killed).Round(time.Millisecond))
	testenv.Eventually(t, 30*time.Second, func() string {
		if n := metricTotal(t, ml, "usher_mail_sent_total"); n < 1 {
			return "the new mailer has not recorded its send"
		}
		return ""
	})

	waitMailQueuesEmpty(t, env)
	time.Sleep(2 * time.Second) // a third copy, if there were one, would come now
	mails = mailsTo(mailList(t, mp), addr)
	if len(mails) != 2 {
		t.Fatalf("got %d copies, want exactly 2 (the original and one resend)", len(mails))
	}
	if mails[0].MessageID != first[0].MessageID || mails[1].MessageID != first[0].MessageID {
		t.Fatalf("Message-IDs %q and %q, want both %q", mails[0].MessageID, mails[1].MessageID, first[0].MessageID)
	}
	t.Logf("lease waits %v, skipped %v on the new mailer",
		metricTotal(t, ml, "usher_mail_lease_waits_total"), metricTotal(t, ml, "usher_mail_skipped_total"))
	if n := metricTotal(t, ml, "usher_mail_dead_lettered_total"); n != 0 {
		t.Fatalf("dead-lettered %v, want 0", n)
	}
}

// A mailer killed after it recorded an email never sends it again.
func TestMailerKilledElsewhereNeverDuplicates(t *testing.T) {
	mp := mailpittest.Start(t)
	env := pipelineEnv(t, mp)
	gw, ml := startPipeline(t, env)
	a := api{t, gw.base}

	a.do("POST", "/v1/auth/register", "", map[string]string{"email": "first@example.com", "password": "killed elsewhere"}).want(t, "register first", 201)
	waitMails(t, mp, "first@example.com", 1, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() string {
		if n := metricTotal(t, ml, "usher_mail_sent_total"); n < 1 {
			return "the mailer has not recorded the send"
		}
		return ""
	})
	kill(t, ml)
	ml = startMailer(t, 1, env...)
	waitAdmin(t, ml)

	a.do("POST", "/v1/auth/register", "", map[string]string{"email": "second@example.com", "password": "killed elsewhere"}).want(t, "register second", 201)
	waitMails(t, mp, "second@example.com", 1, 30*time.Second)

	waitMailQueuesEmpty(t, env)
	list := mailList(t, mp)
	if got := mailsTo(list, "first@example.com"); len(got) != 1 {
		t.Fatalf("got %d emails to first@example.com, want exactly 1", len(got))
	}
	if len(list) != 2 {
		t.Fatalf("got %d emails in all, want 2", len(list))
	}
	t.Logf("new mailer: sent %v, skipped %v, lease waits %v",
		metricTotal(t, ml, "usher_mail_sent_total"), metricTotal(t, ml, "usher_mail_skipped_total"), metricTotal(t, ml, "usher_mail_lease_waits_total"))
}
