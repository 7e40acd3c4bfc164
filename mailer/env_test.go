package mailer

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/store"
)

// testEnv is one test's slice of the shared servers: a database, a
// namespace with its RabbitMQ topology, an event key and a registry.
type testEnv struct {
	t      *testing.T
	ns     string
	topo   Topology
	db     *store.DB
	sealer *event.Sealer
	reg    *prometheus.Registry
	conn   *amqp.Connection // the test's own, not the mailer's
	pub    *amqp.Channel    // in confirm mode

	mu   sync.Mutex
	dead []amqp.Delivery // taken from the dead-letter queue so far
}

const (
	testFrom      = "usher <no-reply@usher.test>"
	testVerifyURL = "https://usher.test/verify?token={token}&from=mail"
	testResetURL  = "https://usher.test/reset?token={token}"
)

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	testenv.Require(t, "PostgreSQL", "RabbitMQ")
	url := testdb.New(t)
	db, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := event.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}

	ns := testenv.Namespace(t)
	e := &testEnv{t: t, ns: ns, topo: NewTopology(ns), db: db, sealer: sealer, reg: prometheus.NewRegistry()}
	e.conn, err = amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		if err := e.topo.Delete(e.conn); err != nil {
			t.Errorf("delete RabbitMQ topology of %s: %v", ns, err)
		}
		e.conn.Close()
	})
	ch, err := e.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// As the bridge would: events published before the mailer starts wait
	// in its queue.
	if err := e.topo.Declare(ch); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	e.pub = ch
	return e
}

// config is a mailer configuration for this environment; tests change what
// they test.
func (e *testEnv) config(smtpURL string) Config {
	return Config{
		AMQPURL:     testenv.AMQPURL,
		Namespace:   e.ns,
		Workers:     1,
		Prefetch:    1,
		DB:          e.db,
		Sealer:      e.sealer,
		SMTPURL:     smtpURL,
		From:        testFrom,
		VerifyURL:   testVerifyURL,
		ResetURL:    testResetURL,
		SMTPTimeout: 2 * time.Second,
		RetryDelays: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond},
		Log:         slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:     e.reg,
	}
}

// start runs the mailer until the test ends and checks that it stops
// cleanly.
func (e *testEnv) start(cfg Config) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("mailer.Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			e.t.Error("mailer.Run did not return within 15s of the end of its context")
		}
	})
}

// event builds an event of type typ whose email m decides, sealed with the
// environment's key.
func (e *testEnv) event(typ string, m event.Mail) event.Envelope {
	e.t.Helper()
	env := event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC(), UserID: uuid.NewString()}
	if m.Purpose == "" {
		m.Purpose = typ
	}
	m.UserID = env.UserID
	if err := e.sealer.Seal(&env, m); err != nil {
		e.t.Fatal(err)
	}
	return env
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publish sends an event through the exchange, routed by its type, as the
// bridge does.
func (e *testEnv) publish(env event.Envelope) {
	e.t.Helper()
	e.publishRaw(e.topo.Exchange(), env.Type, env.ID, mustJSON(e.t, env))
}

// publishRaw publishes body and waits for RabbitMQ's confirm.
func (e *testEnv) publishRaw(exchange, key, id string, body []byte) {
	e.t.Helper()
	conf, err := e.pub.PublishWithDeferredConfirmWithContext(e.t.Context(), exchange, key, true, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body,
	})
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	if ok, err := conf.WaitContext(e.t.Context()); err != nil || !ok {
		e.t.Fatalf("publish: not confirmed (%v)", err)
	}
}

// takeDead moves what is in the dead-letter queue into e.dead and returns
// all of it.
func (e *testEnv) takeDead() []amqp.Delivery {
	e.t.Helper()
	ch, err := e.conn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		d, ok, err := ch.Get(e.topo.DeadQueue(), true)
		if err != nil {
			e.t.Fatalf("get from %s: %v", e.topo.DeadQueue(), err)
		}
		if !ok {
			return append([]amqp.Delivery(nil), e.dead...)
		}
		e.dead = append(e.dead, d)
	}
}

// waitDead waits until n dead letters arrived and returns them.
func (e *testEnv) waitDead(n int, within time.Duration) []amqp.Delivery {
	e.t.Helper()
	var got []amqp.Delivery
	testenv.Eventually(e.t, within, func() string {
		got = e.takeDead()
		if len(got) < n {
			return fmt.Sprintf("%d dead letters, want %d", len(got), n)
		}
		return ""
	})
	return got
}

// queueLen is how many messages wait in queue now.
func (e *testEnv) queueLen(queue string) int {
	e.t.Helper()
	ch, err := e.conn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		e.t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// metric reads a counter or gauge of the environment's registry; labels
// are name, value pairs.
func (e *testEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitMetric waits until a counter or gauge reaches want: the metric of an
// email moves just after the SMTP server has it.
func (e *testEnv) waitMetric(within time.Duration, want float64, name string, labels ...string) {
	e.t.Helper()
	testenv.Eventually(e.t, within, func() string {
		if got := e.metric(name, labels...); got != want {
			return fmt.Sprintf("%s%v = %v, want %v", name, labels, got, want)
		}
		return ""
	})
}
