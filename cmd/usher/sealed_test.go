package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/bridge"
	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/mailer"
	"github.com/usher-auth/usher/mailer/mailpittest"
)

// collected is what a test overheard on a bus, one string per message
// (subject or routing key, headers and body).
type collected struct {
	mu   sync.Mutex
	msgs []string
}

func (c *collected) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, s)
}

func (c *collected) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// overhearNATS subscribes (core NATS, not JetStream) to every event
// subject of ns on the machine's NATS.
func overhearNATS(t *testing.T, ns string) *collected {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	c := &collected{}
	if _, err := nc.Subscribe(ns+".events.>", func(m *nats.Msg) {
		c.add(fmt.Sprintf("%s %v %s", m.Subject, m.Header, m.Data))
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return c
}

// overhearRabbitMQ binds a private exclusive auto-delete queue to the
// events exchange of ns with #: a copy of every event the bridge publishes.
func overhearRabbitMQ(t *testing.T, ns string) *collected {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("RabbitMQ channel: %v", err)
	}
	// Declared as the bridge and the mailer declare it, so the exchange
	// exists whichever starts first.
	if err := mailer.NewTopology(ns).Declare(ch); err != nil {
		t.Fatalf("declare topology: %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", mailer.NewTopology(ns).Exchange(), false, nil); err != nil {
		t.Fatalf("bind: %v", err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	c := &collected{}
	go func() {
		for d := range deliveries {
			c.add(fmt.Sprintf("%s %s %s %s %v %s", d.RoutingKey, d.MessageId, d.Type, d.CorrelationId, d.Headers, d.Body))
		}
	}()
	return c
}

// outboxPayloads are the payloads of every outbox row.
func outboxPayloads(t *testing.T, env []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, envValue(env, "USHER_DATABASE_URL"))
	if err != nil {
		t.Fatalf("database: %v", err)
	}
	defer db.Close(ctx)
	rows, err := db.Query(ctx, `SELECT payload::text FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatalf("outbox: %v", err)
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("outbox: %v", err)
	}
	return payloads
}

// streamMessages are the messages the event stream of ns keeps.
func streamMessages(t *testing.T, ns string) []string {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL)
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, bridge.StreamName(ns))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, fmt.Sprintf("%s %v %s", m.Subject, m.Header, m.Data))
	}
	return out
}

// tokenForms are the ways a one-time token could be written down: as in
// the link, its 32 bytes as JSON encodes []byte (standard base64), and hex.
func tokenForms(t *testing.T, tok string) []string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	std := base64.StdEncoding.EncodeToString(raw)
	return []string{tok, std[:len(std)-2], hex.EncodeToString(raw)}
}

// No plaintext token or recipient in the outbox, on NATS or on RabbitMQ:
// what decides an email travels sealed.
func TestNoPlaintextTokenLeavesTheNode(t *testing.T) {
	mp := mailpittest.Start(t)
	env := pipelineEnv(t, mp)
	ns := envValue(env, "USHER_NAMESPACE")
	onNATS := overhearNATS(t, ns)
	onRabbit := overhearRabbitMQ(t, ns)
	gw, _ := startPipeline(t, env)
	a := api{t, gw.base}

	addrs := []string{"sealed1@example.com", "sealed2@example.com", "sealed3@example.com"}
	for _, addr := range addrs {
		a.do("POST", "/v1/auth/register", "", map[string]string{"email": addr, "password": "sealed all the way"}).want(t, "register "+addr, 201)
	}
	a.do("POST", "/v1/auth/password-reset/request", "", map[string]string{"email": addrs[1]}).want(t, "reset request", 202)
	mails := mp.WaitFor(t, 4, 30*time.Second)
	var tokens []string
	for _, m := range mails {
		tokens = append(tokens, tokenIn(t, m))
	}
	if len(tokens) != 4 {
		t.Fatalf("got %d tokens, want 4 (3 verifications, 1 reset)", len(tokens))
	}

	// Each bus carries the four events; wait until they were overheard.
	testenv.Eventually(t, 10*time.Second, func() string {
		if n, m := len(onNATS.all()), len(onRabbit.all()); n < 4 || m < 4 {
			return fmt.Sprintf("overheard %d NATS and %d RabbitMQ messages, want at least 4 each", n, m)
		}
		return ""
	})
	places := map[string][]string{
		"outbox row":       outboxPayloads(t, env),
		"NATS message":     onNATS.all(),
		"stream message":   streamMessages(t, ns),
		"RabbitMQ message": onRabbit.all(),
	}
	for place, msgs := range places {
		if len(msgs) < 4 {
			t.Errorf("%d %ss, want at least 4: nothing to check", len(msgs), place)
		}
		sealed := 0
		for _, msg := range msgs {
			if strings.Contains(msg, `"sealed"`) {
				sealed++
			}
			lower := strings.ToLower(msg)
			for _, tok := range tokens {
				for _, form := range tokenForms(t, tok) {
					if strings.Contains(msg, form) {
						t.Errorf("token %q (as %q) in a %s: %s", tok, form, place, msg)
					}
				}
			}
			for _, addr := range addrs {
				if strings.Contains(lower, addr) || strings.Contains(lower, strings.Split(addr, "@")[0]) {
					t.Errorf("recipient %s in a %s: %s", addr, place, msg)
				}
			}
		}
		if sealed < 4 {
			t.Errorf("%d sealed %ss, want at least 4", sealed, place)
		}
		t.Logf("%s: %d checked", place, len(msgs))
	}
}

// Events published straight to RabbitMQ without a seal, with a seal of
// another key, or with an altered seal send nothing and are dead-lettered.
func TestForgedEventsSendNothing(t *testing.T) {
	mp := mailpittest.Start(t)
	env := pipelineEnv(t, mp)
	ns := envValue(env, "USHER_NAMESPACE")
	topo := mailer.NewTopology(ns)
	gw, ml := startPipeline(t, env)
	a := api{t, gw.base}

	// A genuine event, sent, whose seal is then altered.
	a.do("POST", "/v1/auth/register", "", map[string]string{"email": "genuine@example.com", "password": "the real thing"}).want(t, "register", 201)
	waitMails(t, mp, "genuine@example.com", 1, 30*time.Second)
	var genuine event.Envelope
	for _, p := range outboxPayloads(t, env) {
		var e event.Envelope
		if err := json.Unmarshal([]byte(p), &e); err == nil && e.Type == event.UserRegistered && e.Data.Sealed != nil {
			genuine = e
		}
	}
	if genuine.ID == "" {
		t.Fatal("no sealed user.registered event in the outbox")
	}
	deadBefore := metricTotal(t, ml, "usher_mail_dead_lettered_total")

	forge := func(typ string) event.Envelope {
		return event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC(), UserID: genuine.UserID}
	}
	otherKey := make([]byte, 32)
	rand.Read(otherKey)
	other, err := event.NewSealer(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	var forged []event.Envelope

	unsealed := forge(event.UserRegistered)
	forged = append(forged, unsealed)

	foreign := forge(event.ResetRequested)
	if err := other.Seal(&foreign, event.Mail{To: "victim@example.com", Purpose: event.ResetRequested, UserID: genuine.UserID, Token: "attacker-chosen-token"}); err != nil {
		t.Fatal(err)
	}
	forged = append(forged, foreign)

	// Another key's box under the genuine key's id: the key id alone
	// proves nothing.
	spoofed := forge(event.UserRegistered)
	if err := other.Seal(&spoofed, event.Mail{To: "victim@example.com", Purpose: event.UserRegistered, UserID: genuine.UserID, Token: "attacker-chosen-token"}); err != nil {
		t.Fatal(err)
	}
	spoofed.Data.Sealed.KeyID = genuine.Data.Sealed.KeyID
	forged = append(forged, spoofed)

	altered := genuine
	box := append([]byte(nil), genuine.Data.Sealed.Box...)
	box[len(box)/2] ^= 0x01
	altered.Data.Sealed = &event.Sealed{KeyID: genuine.Data.Sealed.KeyID, Nonce: genuine.Data.Sealed.Nonce, Box: box}
	forged = append(forged, altered)

	conn, err := amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(forged)))
	for _, e := range forged {
		body, _ := json.Marshal(e)
		conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), topo.Exchange(), e.Type, true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.ID, Type: e.Type, Body: body,
		})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ok, err := conf.WaitContext(t.Context()); !ok || err != nil {
			t.Fatalf("publish %s: not confirmed (%v)", e.Type, err)
		}
	}
	select {
	case r := <-returns:
		t.Fatalf("forged event unroutable: %d %s", r.ReplyCode, r.ReplyText)
	default:
	}

	// Each ends in the dead letters, counted.
	testenv.Eventually(t, 30*time.Second, func() string {
		if d := queueDepth(t, conn, topo.DeadQueue()); d != len(forged) {
			return fmt.Sprintf("%d messages in %s, want %d", d, topo.DeadQueue(), len(forged))
		}
		if n := metricTotal(t, ml, "usher_mail_dead_lettered_total") - deadBefore; n != float64(len(forged)) {
			return fmt.Sprintf("usher_mail_dead_lettered_total grew by %v, want %d", n, len(forged))
		}
		return ""
	})
	_, body := get(ml.admin+"/metrics", nil)
	if !strings.Contains(body, fmt.Sprintf(`usher_mail_dead_lettered_total{reason="seal"} %d`, len(forged))) {
		t.Errorf("dead letters not counted under reason seal:\n%s", grepLines(body, "usher_mail_dead_lettered_total"))
	}

	// The mailer still works: a genuine registration's email arrives, and
	// nothing else came.
	time.Sleep(2 * time.Second)
	a.do("POST", "/v1/auth/register", "", map[string]string{"email": "after@example.com", "password": "the real thing"}).want(t, "register after", 201)
	waitMails(t, mp, "after@example.com", 1, 30*time.Second)
	list := mailList(t, mp)
	if len(list) != 2 || len(mailsTo(list, "genuine@example.com")) != 1 {
		var got []string
		for _, m := range list {
			got = append(got, fmt.Sprintf("%q to %v", m.Subject, m.To))
		}
		t.Fatalf("got emails %v, want one to genuine@example.com and one to after@example.com", got)
	}
	if d := queueDepth(t, conn, topo.DeadQueue()); d != len(forged) {
		t.Fatalf("%d messages in %s after the genuine registration, want %d", d, topo.DeadQueue(), len(forged))
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
