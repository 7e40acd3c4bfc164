package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/usher-auth/usher/internal/retry"
	"github.com/usher-auth/usher/mailer"
)

// link is the bridge's RabbitMQ connection: one channel in confirm mode,
// replaced with backoff whenever it breaks.
type link struct {
	url  string
	topo mailer.Topology
	log  *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

// channel returns the open channel, connecting (and declaring the
// topology) with backoff until it succeeds or ctx ends. A topology that
// exists with other arguments is returned at once as an error.
func (l *link) channel(ctx context.Context) (*amqp.Channel, error) {
	l.mu.Lock()
	ch := l.ch
	l.mu.Unlock()
	if ch != nil {
		if !ch.IsClosed() {
			return ch, nil
		}
		l.log.Warn("RabbitMQ connection lost; reconnecting")
	}
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		conn, ch, err := l.connect()
		if err == nil {
			l.mu.Lock()
			old := l.conn
			l.conn, l.ch = conn, ch
			l.mu.Unlock()
			if old != nil {
				old.Close()
			}
			l.log.Info("connected to RabbitMQ", "exchange", l.topo.Exchange())
			return ch, nil
		}
		if errors.Is(err, mailer.ErrTopologyMismatch) {
			return nil, err
		}
		wait := bo.Next()
		l.log.Warn("cannot reach RabbitMQ; events wait in the stream", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (l *link) connect() (*amqp.Connection, *amqp.Channel, error) {
	conn, err := l.topo.Dial(l.url, "usher-bridge")
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = l.topo.Declare(ch)
	}
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

// alive reports whether ch is still the link's open channel.
func (l *link) alive(ch *amqp.Channel) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ch != nil && ch == l.ch && !ch.IsClosed()
}

// broken drops the connection of ch, unless it was replaced already. Its
// unconfirmed publishes are nacked, so their events go back to JetStream.
func (l *link) broken(ch *amqp.Channel, cause error) {
	l.mu.Lock()
	if ch != l.ch || l.conn == nil {
		l.mu.Unlock()
		return
	}
	conn := l.conn
	l.conn, l.ch = nil, nil
	l.mu.Unlock()
	l.log.Warn("dropping the RabbitMQ connection", "err", cause)
	// A stalled peer never answers the close: do not wait long for it.
	go conn.CloseDeadline(time.Now().Add(time.Second))
}

func (l *link) close() {
	l.mu.Lock()
	conn := l.conn
	l.conn, l.ch = nil, nil
	l.mu.Unlock()
	if conn != nil {
		conn.CloseDeadline(time.Now().Add(time.Second))
	}
}
