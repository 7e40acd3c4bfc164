// Package bridge forwards usher's domain events from the NATS JetStream
// stream to the RabbitMQ topic exchange, at least once: a JetStream message
// is acked only after RabbitMQ confirmed its copy (DESIGN.md, "Messaging").
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/retry"
	"github.com/usher-auth/usher/mailer"
)

// Config configures Run.
type Config struct {
	// NATS is a connection that reconnects by itself; Run does not close it.
	NATS      *nats.Conn
	AMQPURL   string
	Namespace string
	Log       *slog.Logger
	Metrics   prometheus.Registerer
}

const (
	// maxAckPending bounds the events pulled and not yet acked: what may
	// be in flight to RabbitMQ at once.
	maxAckPending = 256
	// fetchBatch and fetchWait shape each pull: up to fetchBatch messages,
	// waiting at most fetchWait for them. fetchWait also bounds how long a
	// shutdown waits for the pull under way.
	fetchBatch = 64
	fetchWait  = time.Second
	// ackWait is how long JetStream waits for an ack before it redelivers;
	// it must exceed confirmTimeout.
	ackWait = 30 * time.Second
	// confirmTimeout bounds the wait for RabbitMQ's confirm; past it, the
	// connection is taken for dead and replaced.
	confirmTimeout = 10 * time.Second
	// redeliverDelay is how long JetStream holds an event that could not be
	// forwarded before it delivers it again.
	redeliverDelay = time.Second
)

// StreamName is the event stream of namespace ns: <NS>_EVENTS.
func StreamName(ns string) string { return strings.ToUpper(ns) + "_EVENTS" }

// Subject is the subject of events of type typ: <ns>.events.<type>.
func Subject(ns, typ string) string { return ns + ".events." + typ }

// ConsumerName is the bridge's durable consumer: <ns>-bridge.
func ConsumerName(ns string) string { return ns + "-bridge" }

// StreamConfig is the event stream of namespace ns, as the outbox relay
// creates it and the bridge expects it: every <ns>.events.> subject, on
// file, kept 7 days, duplicates (same Nats-Msg-Id, the event id) dropped
// within an hour.
func StreamConfig(ns string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName(ns),
		Description: "usher domain events",
		Subjects:    []string{ns + ".events.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  time.Hour,
	}
}

// ConsumerConfig is the bridge's durable pull consumer on the stream of
// namespace ns. One filter subject: nats-server 2.9 knows no more.
func ConsumerConfig(ns string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(ns),
		Description:   "usher bridge: events to RabbitMQ",
		FilterSubject: ns + ".events.>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: maxAckPending,
	}
}

// Run forwards events until ctx ends, then returns nil. It waits for the
// stream (which the outbox relay creates), rides out NATS reconnects and
// reconnects to RabbitMQ with backoff. It returns an error for a bad
// configuration, or when RabbitMQ's topology exists with other arguments
// (mailer.ErrTopologyMismatch).
func Run(ctx context.Context, cfg Config) error {
	switch {
	case cfg.NATS == nil:
		return errors.New("bridge: no NATS connection")
	case cfg.AMQPURL == "":
		return errors.New("bridge: no RabbitMQ URL")
	case cfg.Namespace == "":
		return errors.New("bridge: no namespace")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bridge")
	js, err := jetstream.New(cfg.NATS)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	b := &bridge{
		ns:   cfg.Namespace,
		js:   js,
		log:  log,
		met:  newMetrics(cfg.Metrics),
		topo: mailer.NewTopology(cfg.Namespace),
	}
	b.link = &link{url: cfg.AMQPURL, topo: b.topo, log: log}
	return b.run(ctx)
}

type bridge struct {
	ns   string
	js   jetstream.JetStream
	log  *slog.Logger
	met  *metrics
	topo mailer.Topology
	link *link
}

// inflight is an event published to RabbitMQ whose confirm is awaited.
type inflight struct {
	msg  jetstream.Msg
	conf *amqp.DeferredConfirmation
	ch   *amqp.Channel
	id   string
}

func (b *bridge) run(ctx context.Context) error {
	cons, err := b.consumer(ctx)
	if err != nil {
		return nil // ctx ended
	}
	// The fetch loop publishes; the acker waits for each confirm in turn
	// and only then acks on NATS.
	pending := make(chan inflight, maxAckPending+fetchBatch)
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		b.acker(pending)
	}()
	defer func() {
		close(pending)
		<-ackerDone
		b.link.close()
	}()

	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		ch, err := b.link.channel(ctx)
		if errors.Is(err, mailer.ErrTopologyMismatch) {
			return fmt.Errorf("bridge: %w", err)
		}
		if err != nil {
			return nil // ctx ended
		}
		err = b.fetch(cons, ch, pending)
		if err == nil {
			bo.Reset()
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
			b.log.Warn("the consumer is gone; setting it up again", "err", err)
			if cons, err = b.consumer(ctx); err != nil {
				return nil
			}
			continue
		}
		wait := bo.Next()
		b.log.Warn("pull from JetStream failed", "err", err, "retry_in", wait)
		retry.Sleep(ctx, wait)
	}
	return nil
}

// consumer waits for the stream, bound by name (the bridge may not look
// streams up by subject), and creates or updates the durable consumer. It
// fails only when ctx ends.
func (b *bridge) consumer(ctx context.Context) (jetstream.Consumer, error) {
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	name := StreamName(b.ns)
	for attempt := 0; ; attempt++ {
		cons, err := b.bind(ctx, name)
		if err == nil {
			b.log.Info("consuming events", "stream", name, "consumer", ConsumerName(b.ns))
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := bo.Next()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// The node's outbox relay creates it: a bridge may start first.
			if attempt%20 == 0 {
				b.log.Info("waiting for the event stream (the node's outbox relay creates it)", "stream", name)
			}
		} else {
			b.log.Warn("cannot set up the JetStream consumer", "stream", name, "err", err, "retry_in", wait)
		}
		if !retry.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (b *bridge) bind(ctx context.Context, name string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return stream.CreateOrUpdateConsumer(ctx, ConsumerConfig(b.ns))
}

// fetch pulls one batch and publishes each event of it.
func (b *bridge) fetch(cons jetstream.Consumer, ch *amqp.Channel, pending chan<- inflight) error {
	batch, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		if p, ok := b.publish(msg, ch); ok {
			pending <- p
		}
	}
	return batch.Error()
}

// envelope is what the bridge reads of an event: enough to route it. The
// rest, the seal included, travels untouched.
type envelope struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// route reads an event's id and type: from the envelope, else from the
// Nats-Msg-Id header and the subject.
func (b *bridge) route(msg jetstream.Msg) (id, typ string, err error) {
	var env envelope
	if err := json.Unmarshal(msg.Data(), &env); err != nil {
		return "", "", fmt.Errorf("not an event envelope: %w", err)
	}
	id, typ = env.ID, env.Type
	if id == "" {
		id = msg.Headers().Get(nats.MsgIdHdr)
	}
	if typ == "" {
		typ = strings.TrimPrefix(msg.Subject(), b.ns+".events.")
	}
	if id == "" || typ == "" || typ == msg.Subject() {
		return "", "", errors.New("not an event envelope: no id or no type")
	}
	return id, typ, nil
}

// publish sends one event to the exchange and reports whether its confirm
// is to be awaited. An event it cannot route is terminated; one it could
// not publish is handed back to JetStream for redelivery.
func (b *bridge) publish(msg jetstream.Msg, ch *amqp.Channel) (inflight, bool) {
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 1 {
		b.met.redelivered.Inc()
	}
	id, typ, err := b.route(msg)
	if err != nil {
		// Redelivering it would fail the same way forever.
		b.log.Error("terminating a message that is not an event", "subject", msg.Subject(), "err", err)
		b.met.terminated.Inc()
		if err := msg.Term(); err != nil {
			b.log.Warn("term", "err", err)
		}
		return inflight{}, false
	}
	if !b.link.alive(ch) {
		// The rest of a batch pulled before the link broke: the link's own
		// warning said why.
		b.retryLater(msg, id, slog.LevelDebug, errors.New("RabbitMQ connection lost"))
		return inflight{}, false
	}
	conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), b.topo.Exchange(), typ, false, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         typ,
		Timestamp:    time.Now(),
		AppId:        "usher-bridge",
		Body:         msg.Data(),
	})
	if err != nil {
		b.link.broken(ch, err)
		b.retryLater(msg, id, slog.LevelWarn, err)
		return inflight{}, false
	}
	return inflight{msg: msg, conf: conf, ch: ch, id: id}, true
}

func (b *bridge) retryLater(msg jetstream.Msg, id string, level slog.Level, cause error) {
	b.met.failed.Inc()
	b.log.Log(context.Background(), level, "event not forwarded; JetStream redelivers it", "event", id, "err", cause)
	if err := msg.NakWithDelay(redeliverDelay); err != nil {
		// Without the nak, the ack wait brings it back later.
		b.log.Warn("nak", "event", id, "err", err)
	}
}

// acker acks each event on NATS once RabbitMQ confirmed it, in publish
// order, and hands back the others for redelivery.
func (b *bridge) acker(pending <-chan inflight) {
	for p := range pending {
		if !b.confirmed(p) {
			b.retryLater(p.msg, p.id, slog.LevelWarn, errors.New("RabbitMQ did not confirm it"))
			continue
		}
		if err := p.msg.Ack(); err != nil {
			// Redelivered after the ack wait: a duplicate downstream, which
			// the mailer's claim absorbs.
			b.log.Warn("ack on NATS failed", "event", p.id, "err", err)
			continue
		}
		b.met.forwarded.Inc()
		b.met.lastForward.SetToCurrentTime()
	}
}

// confirmed waits for p's confirm. Past confirmTimeout the connection is
// stalled or dead: it is dropped, which nacks every confirm it still owes.
func (b *bridge) confirmed(p inflight) bool {
	t := time.NewTimer(confirmTimeout)
	defer t.Stop()
	select {
	case <-p.conf.Done():
		return p.conf.Acked()
	case <-t.C:
	}
	b.link.broken(p.ch, fmt.Errorf("no confirm within %v", confirmTimeout))
	return false
}
