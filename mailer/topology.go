package mailer

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/event"
)

// Topology is usher's RabbitMQ layout for one namespace (DESIGN.md,
// "Messaging"). The bridge and the mailer both declare it through Declare,
// so the arguments of a queue never disagree between them.
//
//	<ns>.events            topic exchange, alternate exchange <ns>.events.unrouted;
//	                       the bridge publishes every event here, routing key = type
//	<ns>.events.unrouted   fanout exchange and queue: events no binding matches
//	<ns>.mailer            the mailer's work queue, bound to each type that sends mail
//	<ns>.events.dlx        fanout exchange feeding <ns>.mailer.dead
//	<ns>.mailer.dead       what the mailer refused or gave up on
//	<ns>.mailer.retry.<n>  step n of the retries: its TTL, then back to <ns>.mailer
//	<ns>.mailer.lease-wait events whose email another sender holds: back after the lease
type Topology struct {
	Namespace string
	// RetryDelays are the TTLs of the retry queues, one queue per step.
	// Left empty (as the bridge does), Declare declares no retry queue: their
	// TTLs are the mailer's configuration, and a queue declared again with
	// another TTL is refused by RabbitMQ.
	RetryDelays []time.Duration
	// LeaseWait is the TTL of the lease-wait queue; zero declares none.
	LeaseWait time.Duration
}

// unroutedTTL bounds how long an event nobody consumes is kept for
// inspection: as long as the stream keeps it.
const unroutedTTL = 7 * 24 * time.Hour

// unroutedMax bounds the unrouted queue: the oldest events go first.
const unroutedMax = 100_000

// Dial connects to RabbitMQ as role (usher-bridge, usher-mailer), named
// with the namespace in RabbitMQ's connection list. Heartbeats let either
// side notice a dead peer within seconds.
func (t Topology) Dial(url, role string) (*amqp.Connection, error) {
	return amqp.DialConfig(url, amqp.Config{
		Dial:       amqp.DefaultDial(5 * time.Second),
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": role + " " + t.Namespace},
	})
}

// NewTopology is the topology of namespace ns without delay queues.
func NewTopology(ns string) Topology { return Topology{Namespace: ns} }

// Exchange is the topic exchange the bridge publishes events to.
func (t Topology) Exchange() string { return t.Namespace + ".events" }

// Unrouted is both the alternate exchange of Exchange and the queue behind it.
func (t Topology) Unrouted() string { return t.Namespace + ".events.unrouted" }

// DeadExchange is where the mailer's dead letters go.
func (t Topology) DeadExchange() string { return t.Namespace + ".events.dlx" }

// Queue is the mailer's work queue.
func (t Topology) Queue() string { return t.Namespace + ".mailer" }

// DeadQueue holds the dead letters.
func (t Topology) DeadQueue() string { return t.Namespace + ".mailer.dead" }

// RetryQueue is the queue of retry step n, from 1.
func (t Topology) RetryQueue(n int) string { return t.Namespace + ".mailer.retry." + strconv.Itoa(n) }

// LeaseWaitQueue holds events whose email someone else has claimed.
func (t Topology) LeaseWaitQueue() string { return t.Namespace + ".mailer.lease-wait" }

// MailTypes are the routing keys bound to the mailer's queue: the event
// types that send an email. Every other event goes to the unrouted queue.
func MailTypes() []string {
	var types []string
	for _, typ := range event.Types {
		if event.SendsMail(typ) {
			types = append(types, typ)
		}
	}
	return types
}

// ErrTopologyMismatch means a queue or exchange exists with other arguments
// than this process would declare: typically a mailer with other retry
// delays, or a namespace left over from an older usher.
var ErrTopologyMismatch = errors.New("RabbitMQ topology exists with other arguments")

// Declare declares the topology idempotently on ch. A conflict with what
// exists closes ch and returns an error wrapping ErrTopologyMismatch.
func (t Topology) Declare(ch *amqp.Channel) error {
	exchanges := []struct {
		name, kind string
		args       amqp.Table
	}{
		{t.Unrouted(), amqp.ExchangeFanout, nil},
		{t.DeadExchange(), amqp.ExchangeFanout, nil},
		{t.Exchange(), amqp.ExchangeTopic, amqp.Table{"alternate-exchange": t.Unrouted()}},
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDeclare(x.name, x.kind, true, false, false, false, x.args); err != nil {
			return t.declareErr("exchange", x.name, err)
		}
	}
	backToWork := func(ttl time.Duration) amqp.Table {
		return amqp.Table{
			"x-message-ttl":             ttl.Milliseconds(),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": t.Queue(),
		}
	}
	type queue struct {
		name string
		args amqp.Table
		// bound to exchange with these routing keys
		exchange string
		keys     []string
	}
	queues := []queue{
		{t.Unrouted(), amqp.Table{"x-message-ttl": unroutedTTL.Milliseconds(), "x-max-length": int64(unroutedMax)}, t.Unrouted(), []string{""}},
		{t.DeadQueue(), nil, t.DeadExchange(), []string{""}},
		{t.Queue(), amqp.Table{"x-dead-letter-exchange": t.DeadExchange()}, t.Exchange(), MailTypes()},
	}
	for i, d := range t.RetryDelays {
		queues = append(queues, queue{name: t.RetryQueue(i + 1), args: backToWork(d)})
	}
	if t.LeaseWait > 0 {
		queues = append(queues, queue{name: t.LeaseWaitQueue(), args: backToWork(t.LeaseWait)})
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return t.declareErr("queue", q.name, err)
		}
		for _, key := range q.keys {
			if err := ch.QueueBind(q.name, key, q.exchange, false, nil); err != nil {
				return fmt.Errorf("bind queue %s to %s (%q): %w", q.name, q.exchange, key, err)
			}
		}
	}
	return nil
}

func (t Topology) declareErr(kind, name string, err error) error {
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
		return fmt.Errorf("%w: %s %s: %s", ErrTopologyMismatch, kind, name, aerr.Reason)
	}
	return fmt.Errorf("declare %s %s: %w", kind, name, err)
}

// Delete removes every exchange and queue of the topology, with the
// messages in them: for tests and for tearing a namespace down. It deletes
// retry queues up to len(RetryDelays), or 10 when RetryDelays is empty.
// Each deletion runs on a fresh channel, so one that fails does not stop
// the others; the first error is returned.
func (t Topology) Delete(conn *amqp.Connection) error {
	retries := len(t.RetryDelays)
	if retries == 0 {
		retries = 10
	}
	queues := []string{t.Queue(), t.DeadQueue(), t.Unrouted(), t.LeaseWaitQueue()}
	for n := 1; n <= retries; n++ {
		queues = append(queues, t.RetryQueue(n))
	}
	var first error
	do := func(f func(ch *amqp.Channel) error) {
		ch, err := conn.Channel()
		if err == nil {
			err = f(ch)
			ch.Close()
		}
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
			err = nil
		}
		if err != nil && first == nil {
			first = err
		}
	}
	for _, q := range queues {
		do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range []string{t.Exchange(), t.Unrouted(), t.DeadExchange()} {
		do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
	return first
}
