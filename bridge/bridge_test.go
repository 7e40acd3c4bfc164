package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/mailer"
)

// natsServer gives a test its NATS: a connection with every right (the
// node's side: it creates the stream and publishes) and one for the bridge.
type natsServer struct {
	name string
	dial func(t *testing.T, ns string) (node, bridge *nats.Conn)
}

var natsServers = []natsServer{
	{"nats-server 2.9", sharedNATS},
	{"embedded", embeddedNATS},
}

// sharedNATS is the machine's nats-server 2.9, without authentication.
func sharedNATS(t *testing.T, ns string) (node, bridge *nats.Conn) {
	t.Helper()
	testenv.Require(t, "NATS")
	return connectNATS(t, testenv.NATSURL), connectNATS(t, testenv.NATSURL)
}

// embeddedNATS is a newer nats-server in this process, where the bridge
// has exactly the rights nats.conf gives it: binding the stream by name,
// its consumer, pulls and acks; no stream lookup by subject.
func embeddedNATS(t *testing.T, ns string) (node, bridge *nats.Conn) {
	t.Helper()
	stream := StreamName(ns)
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
		Users: []*server.User{
			{Username: "node", Password: "node"},
			{Username: "bridge", Password: "bridge", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{
					"$JS.API.INFO",
					"$JS.API.STREAM.INFO." + stream,
					"$JS.API.CONSUMER.CREATE." + stream + ".>",
					"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".>",
					"$JS.API.CONSUMER.INFO." + stream + ".>",
					"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
					"$JS.ACK." + stream + ".>",
				}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("embedded nats-server did not start")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return connectNATS(t, srv.ClientURL(), nats.UserInfo("node", "node")),
		connectNATS(t, srv.ClientURL(), nats.UserInfo("bridge", "bridge"))
}

func connectNATS(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))...)
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// rig is one test's bridge with its NATS, its namespace and RabbitMQ.
type rig struct {
	t    *testing.T
	ns   string
	node jetstream.JetStream
	topo mailer.Topology
	amqp *amqp.Connection // the test's own, straight to RabbitMQ
	reg  *prometheus.Registry

	mu    sync.Mutex
	taken map[string][]amqp.Delivery // per queue, taken so far
}

func newRig(t *testing.T, srv natsServer) (*rig, *nats.Conn) {
	t.Helper()
	testenv.Require(t, "RabbitMQ")
	ns := testenv.Namespace(t)
	nodeConn, bridgeConn := srv.dial(t, ns)
	js, err := jetstream.New(nodeConn)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ns: ns, node: js, topo: mailer.NewTopology(ns), reg: prometheus.NewRegistry(), taken: map[string][]amqp.Delivery{}}
	r.amqp, err = amqp.Dial(testenv.AMQPURL)
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		if err := r.topo.Delete(r.amqp); err != nil {
			t.Errorf("delete RabbitMQ topology: %v", err)
		}
		r.amqp.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, StreamName(ns)); err != nil && err != jetstream.ErrStreamNotFound {
			t.Errorf("delete stream %s: %v", StreamName(ns), err)
		}
	})
	return r, bridgeConn
}

// createStream does what the node's outbox relay does.
func (r *rig) createStream() {
	r.t.Helper()
	if _, err := r.node.CreateOrUpdateStream(r.t.Context(), StreamConfig(r.ns)); err != nil {
		r.t.Fatalf("create stream: %v", err)
	}
}

// start runs the bridge until the test ends.
func (r *rig) start(nc *nats.Conn, amqpURL string) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			NATS:      nc,
			AMQPURL:   amqpURL,
			Namespace: r.ns,
			Log:       slog.New(slog.NewTextHandler(r.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
			Metrics:   r.reg,
		})
	}()
	r.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("bridge.Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			r.t.Error("bridge.Run did not return within 20s of the end of its context")
		}
	})
}

// publish publishes an event as the relay does: on its subject, with its id
// as the message id. It returns the event and its stream sequence.
func (r *rig) publish(typ string) (event.Envelope, uint64) {
	r.t.Helper()
	env := event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC()}
	body, err := json.Marshal(env)
	if err != nil {
		r.t.Fatal(err)
	}
	ack, err := r.node.Publish(r.t.Context(), Subject(r.ns, typ), body, jetstream.WithMsgID(env.ID))
	if err != nil {
		r.t.Fatalf("publish %s: %v", typ, err)
	}
	return env, ack.Sequence
}

// take moves what waits in queue into the rig and returns all of it.
func (r *rig) take(queue string) []amqp.Delivery {
	r.t.Helper()
	ch, err := r.amqp.Channel()
	if err != nil {
		r.t.Fatal(err)
	}
	defer ch.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			// Not declared yet: the bridge has not connected.
			return append([]amqp.Delivery(nil), r.taken[queue]...)
		}
		if !ok {
			return append([]amqp.Delivery(nil), r.taken[queue]...)
		}
		r.taken[queue] = append(r.taken[queue], d)
	}
}

// waitIDs waits until queue received every id (duplicates allowed) and
// returns the deliveries by id, the last of each.
func (r *rig) waitIDs(queue string, ids []string, within time.Duration) map[string]amqp.Delivery {
	r.t.Helper()
	got := map[string]amqp.Delivery{}
	testenv.Eventually(r.t, within, func() string {
		for _, d := range r.take(queue) {
			got[d.MessageId] = d
		}
		missing := 0
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Sprintf("%s: %d of %d events missing", queue, missing, len(ids))
		}
		return ""
	})
	return got
}

func (r *rig) consumerInfo() *jetstream.ConsumerInfo {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.node.Consumer(ctx, StreamName(r.ns), ConsumerName(r.ns))
	if err != nil {
		r.t.Fatalf("consumer %s: %v", ConsumerName(r.ns), err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		r.t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitAcked waits until the consumer acked everything up to seq.
func (r *rig) waitAcked(seq uint64, within time.Duration) {
	r.t.Helper()
	testenv.Eventually(r.t, within, func() string {
		info := r.consumerInfo()
		if info.AckFloor.Stream < seq || info.NumAckPending != 0 {
			return fmt.Sprintf("ack floor %d, %d unacked; want floor %d, none unacked", info.AckFloor.Stream, info.NumAckPending, seq)
		}
		return ""
	})
}

func (r *rig) metric(name string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// proxied is testenv.AMQPURL through a proxy the test can cut and stall.
func proxied(t *testing.T) (string, *testenv.Proxy) {
	u, err := url.Parse(testenv.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewProxy(t, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}

func TestBridge(t *testing.T) {
	for _, srv := range natsServers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			t.Run("forwards events", func(t *testing.T) { t.Parallel(); testForwards(t, srv) })
			t.Run("survives a RabbitMQ cut", func(t *testing.T) { t.Parallel(); testCut(t, srv) })
			t.Run("acks only after the confirm", func(t *testing.T) { t.Parallel(); testAckAfterConfirm(t, srv) })
		})
	}
}

func testForwards(t *testing.T, srv natsServer) {
	r, nc := newRig(t, srv)
	// The bridge may start before the relay created the stream: it waits.
	r.start(nc, testenv.AMQPURL)
	time.Sleep(300 * time.Millisecond)
	r.createStream()

	registered, _ := r.publish(event.UserRegistered)
	reset, _ := r.publish(event.ResetRequested)
	deleted, _ := r.publish(event.UserDeleted) // nothing binds it
	if _, err := r.node.Publish(t.Context(), Subject(r.ns, "junk"), []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	last, lastSeq := r.publish(event.PasswordChanged)

	got := r.waitIDs(r.topo.Queue(), []string{registered.ID, reset.ID, last.ID}, 10*time.Second)
	for _, env := range []event.Envelope{registered, reset, last} {
		d := got[env.ID]
		if d.RoutingKey != env.Type {
			t.Errorf("%s: routing key %q, want %q", env.Type, d.RoutingKey, env.Type)
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("%s: delivery mode %d, want persistent", env.Type, d.DeliveryMode)
		}
		if d.ContentType != "application/json" {
			t.Errorf("%s: content type %q", env.Type, d.ContentType)
		}
		var back event.Envelope
		if err := json.Unmarshal(d.Body, &back); err != nil || back.ID != env.ID || back.Type != env.Type {
			t.Errorf("%s: body %s, want the event", env.Type, d.Body)
		}
	}
	unrouted := r.waitIDs(r.topo.Unrouted(), []string{deleted.ID}, 10*time.Second)
	if d := unrouted[deleted.ID]; d.RoutingKey != event.UserDeleted {
		t.Errorf("unrouted: routing key %q, want %q", d.RoutingKey, event.UserDeleted)
	}
	if n := len(r.take(r.topo.Queue())); n != 3 {
		t.Errorf("%d messages in the mailer queue, want 3", n)
	}

	r.waitAcked(lastSeq, 5*time.Second)
	for name, want := range map[string]float64{"usher_bridge_forwarded_total": 4, "usher_bridge_terminated_total": 1} {
		if got := r.metric(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if ts := r.metric("usher_bridge_last_forward_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("usher_bridge_last_forward_timestamp_seconds = %v, want about now", ts)
	}
}

func testCut(t *testing.T, srv natsServer) {
	r, nc := newRig(t, srv)
	r.createStream()
	amqpURL, proxy := proxied(t)
	r.start(nc, amqpURL)

	const total = 60
	var ids []string
	var lastSeq uint64
	for i := range total {
		switch i {
		case 20:
			proxy.Cut()
		case 35:
			proxy.Restore()
		}
		env, seq := r.publish(event.PasswordChanged)
		ids = append(ids, env.ID)
		lastSeq = seq
		time.Sleep(20 * time.Millisecond)
	}
	got := r.waitIDs(r.topo.Queue(), ids, 20*time.Second)
	if len(got) != total {
		t.Errorf("%d distinct events, want %d", len(got), total)
	}
	r.waitAcked(lastSeq, 10*time.Second)
}

func testAckAfterConfirm(t *testing.T, srv natsServer) {
	r, nc := newRig(t, srv)
	r.createStream()
	amqpURL, proxy := proxied(t)
	r.start(nc, amqpURL)

	warm, warmSeq := r.publish(event.PasswordChanged)
	r.waitIDs(r.topo.Queue(), []string{warm.ID}, 10*time.Second)
	r.waitAcked(warmSeq, 5*time.Second)

	proxy.Stall()
	held, heldSeq := r.publish(event.ResetRequested)
	testenv.Eventually(t, 5*time.Second, func() string {
		if info := r.consumerInfo(); info.NumAckPending != 1 {
			return fmt.Sprintf("%d unacked, want 1 (the bridge pulled it)", info.NumAckPending)
		}
		return ""
	})
	time.Sleep(500 * time.Millisecond)
	info := r.consumerInfo()
	if info.NumAckPending != 1 || info.AckFloor.Stream != warmSeq {
		t.Fatalf("while RabbitMQ stalls: %d unacked, ack floor %d; want 1 unacked, floor %d", info.NumAckPending, info.AckFloor.Stream, warmSeq)
	}
	for _, d := range r.take(r.topo.Queue()) {
		if d.MessageId == held.ID {
			t.Fatal("the event reached RabbitMQ through a stalled connection")
		}
	}

	proxy.Restore()
	r.waitIDs(r.topo.Queue(), []string{held.ID}, 15*time.Second)
	r.waitAcked(heldSeq, 15*time.Second)
}

func TestStreamConfig(t *testing.T) {
	c := StreamConfig("abc_1")
	if c.Name != "ABC_1_EVENTS" || len(c.Subjects) != 1 || c.Subjects[0] != "abc_1.events.>" {
		t.Errorf("stream %s on %v, want ABC_1_EVENTS on [abc_1.events.>]", c.Name, c.Subjects)
	}
	if c.Storage != jetstream.FileStorage || c.MaxAge != 7*24*time.Hour || c.Duplicates != time.Hour {
		t.Errorf("storage %v, max age %v, duplicate window %v; want file, 168h, 1h", c.Storage, c.MaxAge, c.Duplicates)
	}
	cc := ConsumerConfig("abc_1")
	if cc.Durable != "abc_1-bridge" || cc.FilterSubject != "abc_1.events.>" || len(cc.FilterSubjects) != 0 {
		t.Errorf("consumer %s filtering %q %v, want abc_1-bridge on one subject abc_1.events.>", cc.Durable, cc.FilterSubject, cc.FilterSubjects)
	}
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxAckPending <= 0 || cc.AckWait <= confirmTimeout {
		t.Errorf("ack policy %v, max ack pending %d, ack wait %v", cc.AckPolicy, cc.MaxAckPending, cc.AckWait)
	}
}
