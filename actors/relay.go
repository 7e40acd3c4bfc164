package actors

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-auth/usher/bridge"
	"github.com/usher-auth/usher/store"
)

// Relay timing: how often an idle relay looks at the outbox, and how many
// events one pass publishes.
const (
	relayPoll  = 100 * time.Millisecond
	relayBatch = 100
)

// Relay publishes outbox events to JetStream, each with its event id as the
// message id, so a pass repeated after a crash is deduplicated by the
// stream. Several relays are safe: rows are claimed with SKIP LOCKED.
type Relay struct {
	db        *store.DB
	js        jetstream.JetStream
	namespace string
	log       *slog.Logger
	depth     prometheus.Gauge
	oldest    prometheus.Gauge
	published prometheus.Counter
}

// StartRelay creates the event stream if needed and relays until ctx ends.
func StartRelay(ctx context.Context, nc *nats.Conn, db *store.DB, namespace string, log *slog.Logger, reg prometheus.Registerer) (*Relay, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, bridge.StreamConfig(namespace)); err != nil {
		return nil, fmt.Errorf("relay: create stream: %w", err)
	}
	r := &Relay{
		db: db, js: js, namespace: namespace, log: log,
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usher_outbox_depth", Help: "Events in the outbox not yet published.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usher_outbox_oldest_unpublished_seconds", Help: "Age of the oldest unpublished outbox event.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_outbox_published_total", Help: "Events this relay published to JetStream.",
		}),
	}
	reg.MustRegister(r.depth, r.oldest, r.published)
	go r.loop(ctx)
	return r, nil
}

func (r *Relay) loop(ctx context.Context) {
	t := time.NewTicker(relayPoll)
	defer t.Stop()
	var measured time.Time
	for {
		n, err := r.db.PublishEvents(ctx, relayBatch, r.publish)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("relay outbox", "err", err)
		}
		r.published.Add(float64(n))
		if time.Since(measured) > time.Second {
			measured = time.Now()
			if depth, oldest, err := r.db.OutboxStats(ctx); err == nil {
				r.depth.Set(float64(depth))
				r.oldest.Set(oldest.Seconds())
			}
		}
		if n == relayBatch {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publish sends a batch and waits for every acknowledgement: the rows are
// marked published only when the stream has them all.
func (r *Relay) publish(events []store.OutboxEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, e := range events {
		f, err := r.js.PublishAsync(r.namespace+".events."+e.Type, e.Payload, jetstream.WithMsgID(e.ID))
		if err != nil {
			return fmt.Errorf("publish event %s: %w", e.ID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish event %s: %w", events[i].ID, err)
		case <-ctx.Done():
			return fmt.Errorf("publish event %s: %w", events[i].ID, ctx.Err())
		}
	}
	return nil
}
