// Package mailer turns the domain events that send email into emails: it
// consumes the mailer's RabbitMQ queue, opens each event's seal, renders
// the purpose's templates and sends with go-mail, at least once and, unless
// it dies between the SMTP server's acceptance and its own record of it,
// exactly once (DESIGN.md, "Messaging").
package mailer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/wneessen/go-mail"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/retry"
	"github.com/usher-auth/usher/internal/testhooks"
	"github.com/usher-auth/usher/store"
)

// Config configures Run.
type Config struct {
	AMQPURL   string
	Namespace string
	// Workers is how many deliveries are handled at once, each on its own
	// channel (default 1).
	Workers int
	// Prefetch is each worker's RabbitMQ prefetch (default 1).
	Prefetch int
	DB       *store.DB
	Sealer   *event.Sealer
	// SMTPURL is smtp://[user:pass@]host:port[?starttls=required|opportunistic|none][&auth=…],
	// or smtps:// for implicit TLS (see parseSMTPURL).
	SMTPURL string
	From    string
	// VerifyURL and ResetURL are link templates: {token} is replaced by the
	// URL-escaped token.
	VerifyURL, ResetURL string
	// SMTPTimeout bounds each step of one SMTP delivery (default 10s); a
	// whole delivery takes at most about 3×SMTPTimeout.
	SMTPTimeout time.Duration
	// Lease is how long a claim on an email holds (default 3×SMTPTimeout +
	// 5s); it must exceed 3×SMTPTimeout, so that a claim never ends while
	// its sender may still be talking to the SMTP server.
	Lease time.Duration
	// RetryDelays are the waits of the retry steps after transient SMTP
	// failures (default DefaultRetryDelays); after the last, an email is
	// dead-lettered.
	RetryDelays []time.Duration
	// LeaseWait is how long an event whose email another sender holds
	// waits before it is tried again (default Lease + 5s); it must exceed
	// Lease.
	LeaseWait time.Duration
	Log       *slog.Logger
	Metrics   prometheus.Registerer

	// templates replaces the embedded templates; for tests.
	templates *templates
}

// DefaultRetryDelays are the retry steps when Config.RetryDelays is empty.
var DefaultRetryDelays = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

const (
	// confirmTimeout bounds the wait for RabbitMQ to confirm a publish.
	confirmTimeout = 10 * time.Second
	// hookAfterSMTP is the test hook between the SMTP server's acceptance
	// and the record of it: a process killed there sends a duplicate.
	hookAfterSMTP = "mailer.after_smtp"
)

// Headers the mailer adds to what it republishes. RabbitMQ reserves x-
// headers for itself, hence plain names.
const (
	headerDeadReason = "usher-dead-reason"
	headerError      = "usher-error"
	// headerRetries is the retry step a message was sent to: the count
	// where x-death is not kept across a republish (RabbitMQ 4 ignores an
	// x-death header that a client publishes).
	headerRetries = "usher-retries"
)

// Run consumes the mailer's queue until ctx ends, reconnecting to RabbitMQ
// with backoff, and returns nil then. It returns an error at once for a
// bad configuration, or when the RabbitMQ topology exists with other
// arguments (ErrTopologyMismatch).
func Run(ctx context.Context, cfg Config) error {
	m, err := newMailer(cfg)
	if err != nil {
		return err
	}
	return m.run(ctx)
}

type mailer struct {
	cfg   Config
	topo  Topology
	smtp  smtpServer
	tpl   *templates
	links map[string]string // link template per purpose
	lease time.Duration
	hook  string
	log   *slog.Logger
	met   *metrics
}

func newMailer(cfg Config) (*mailer, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("mailer: no database")
	case cfg.Sealer == nil:
		return nil, errors.New("mailer: no event key (USHER_EVENT_KEY)")
	case cfg.Namespace == "":
		return nil, errors.New("mailer: no namespace")
	case cfg.From == "":
		return nil, errors.New("mailer: no sender address (USHER_MAIL_FROM)")
	}
	if err := mail.NewMsg().From(cfg.From); err != nil {
		return nil, fmt.Errorf("mailer: sender address %q: %w", cfg.From, err)
	}
	for name, link := range map[string]string{"verify": cfg.VerifyURL, "reset": cfg.ResetURL} {
		if !strings.Contains(link, "{token}") {
			return nil, fmt.Errorf("mailer: %s URL %q has no {token}", name, link)
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 1
	}
	if cfg.SMTPTimeout <= 0 {
		cfg.SMTPTimeout = 10 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3*cfg.SMTPTimeout + 5*time.Second
	}
	if cfg.Lease <= 3*cfg.SMTPTimeout {
		return nil, fmt.Errorf("mailer: lease %v must exceed 3 × SMTP timeout %v", cfg.Lease, cfg.SMTPTimeout)
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = cfg.Lease + 5*time.Second
	}
	if cfg.LeaseWait <= cfg.Lease {
		return nil, fmt.Errorf("mailer: lease wait %v must exceed the lease %v", cfg.LeaseWait, cfg.Lease)
	}
	if len(cfg.RetryDelays) == 0 {
		cfg.RetryDelays = DefaultRetryDelays
	}
	for _, d := range cfg.RetryDelays {
		if d < time.Millisecond {
			return nil, fmt.Errorf("mailer: retry delay %v: want at least 1ms", d)
		}
	}
	srv, err := parseSMTPURL(cfg.SMTPURL, cfg.SMTPTimeout)
	if err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	tpl := cfg.templates
	if tpl == nil {
		if tpl, err = parseTemplates(templateFiles); err != nil {
			return nil, err
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	topo := NewTopology(cfg.Namespace)
	topo.RetryDelays = cfg.RetryDelays
	topo.LeaseWait = cfg.LeaseWait
	return &mailer{
		cfg:  cfg,
		topo: topo,
		smtp: srv,
		tpl:  tpl,
		links: map[string]string{
			event.UserRegistered:        cfg.VerifyURL,
			event.VerificationRequested: cfg.VerifyURL,
			event.ResetRequested:        cfg.ResetURL,
		},
		lease: cfg.Lease,
		// Read once: only a binary built with -tags testhooks acts on it.
		hook: os.Getenv("USHER_TESTHOOK"),
		log:  log.With("component", "mailer"),
		met:  newMetrics(cfg.Metrics),
	}, nil
}

func (m *mailer) run(ctx context.Context) error {
	bo := retry.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := m.session(ctx, &bo)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrTopologyMismatch) {
			return fmt.Errorf("mailer: %w", err)
		}
		wait := bo.Next()
		m.log.Warn("RabbitMQ session ended; reconnecting", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil
		}
	}
}

// session connects, declares the topology and runs the workers until ctx
// ends (nil) or the connection or a worker fails (its error).
func (m *mailer) session(ctx context.Context, bo *retry.Backoff) error {
	conn, err := m.topo.Dial(m.cfg.AMQPURL, "usher-mailer")
	if err != nil {
		return fmt.Errorf("connect to RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := m.topo.Declare(ch); err != nil {
		return err
	}
	ch.Close()
	bo.Reset()
	m.log.Info("consuming", "queue", m.topo.Queue(), "workers", m.cfg.Workers, "prefetch", m.cfg.Prefetch)

	// stop ends the workers; closed when ctx ends or one of them fails.
	stop := make(chan struct{})
	var once sync.Once
	var first error
	end := func(err error) {
		once.Do(func() { first = err; close(stop) })
	}
	var wg sync.WaitGroup
	for i := range m.cfg.Workers {
		wg.Go(func() {
			if err := m.work(ctx, stop, conn, i); err != nil {
				end(err)
			}
		})
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	select {
	case <-ctx.Done():
		end(nil)
	case <-stop:
	case err := <-closed:
		end(fmt.Errorf("RabbitMQ connection closed: %v", err))
	}
	wg.Wait()
	return first
}

// worker is one consumer on its own channel, in confirm mode: a delivery is
// acked only after what it became (a dead letter, a retry, a lease wait) is
// confirmed, or after its email was sent.
type worker struct {
	*mailer
	ch      *amqp.Channel
	returns chan amqp.Return
	stop    <-chan struct{}
	dbWait  retry.Backoff
	conn    *smtpConn
}

func (m *mailer) work(ctx context.Context, stop <-chan struct{}, conn *amqp.Connection, n int) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("worker %d: open channel: %w", n, err)
	}
	defer ch.Close()
	if err := ch.Qos(m.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("worker %d: prefetch: %w", n, err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("worker %d: confirm mode: %w", n, err)
	}
	w := &worker{
		mailer:  m,
		ch:      ch,
		returns: ch.NotifyReturn(make(chan amqp.Return, 4)),
		stop:    stop,
		dbWait:  retry.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second},
		conn:    &smtpConn{server: m.smtp},
	}
	defer w.conn.close()
	tag := fmt.Sprintf("usher-mailer-%d-%s", n, randomHex(4))
	deliveries, err := ch.Consume(m.topo.Queue(), tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("worker %d: consume %s: %w", n, m.topo.Queue(), err)
	}
	for {
		select {
		case <-stop:
			// What this channel prefetched and did not ack goes back to
			// the queue when it closes.
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("worker %d: deliveries ended (channel closed)", n)
			}
			// A delivery in hand is finished even while shutting down: it
			// may be halfway through an SMTP exchange.
			if err := w.handleSafely(context.WithoutCancel(ctx), d); err != nil {
				return fmt.Errorf("worker %d: %w", n, err)
			}
		}
	}
}

// handleSafely is handle that survives a panic: the delivery is rejected,
// which dead-letters it through the work queue's dead-letter exchange
// (x-death reason "rejected") rather than letting it crash every worker
// that receives it.
func (w *worker) handleSafely(ctx context.Context, d amqp.Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic while handling an event; dead-lettering it", "message_id", d.MessageId, "panic", p, "stack", string(debug.Stack()))
			w.met.dead.WithLabelValues(reasonPanic).Inc()
			err = d.Nack(false, false)
		}
	}()
	return w.handle(ctx, d)
}

// handle decides what becomes of one delivery. It returns an error only
// when RabbitMQ failed, and then has not acked the delivery.
func (w *worker) handle(ctx context.Context, d amqp.Delivery) error {
	var env event.Envelope
	if err := json.Unmarshal(d.Body, &env); err != nil {
		return w.deadLetter(ctx, d, "", reasonEnvelope, fmt.Errorf("not an event envelope: %w", err))
	}
	if _, err := uuid.Parse(env.ID); err != nil || env.Type == "" {
		return w.deadLetter(ctx, d, env.Type, reasonEnvelope, fmt.Errorf("event without a uuid id or a type (id %q, type %q)", env.ID, env.Type))
	}
	log := w.log.With("event", env.ID, "type", env.Type)
	if env.Data.Sealed == nil && !event.SendsMail(env.Type) {
		w.met.skipped.WithLabelValues("no_mail").Inc()
		return d.Ack(false)
	}
	// Only what verifies is sent, only to whom it was sealed for.
	sealed, err := w.cfg.Sealer.Open(&env)
	if err != nil {
		return w.deadLetter(ctx, d, env.Type, reasonSeal, err)
	}
	e, err := w.tpl.render(&env, sealed, w.links)
	if err != nil {
		return w.deadLetter(ctx, d, env.Type, reasonTemplate, err)
	}
	msg, err := w.message(&env, e)
	if err != nil {
		return w.deadLetter(ctx, d, env.Type, reasonAddress, err)
	}

	claim, err := w.cfg.DB.ClaimEmail(ctx, env.ID, w.lease)
	if err != nil {
		return w.later(d, log, err)
	}
	w.dbWait.Reset()
	switch claim {
	case store.AlreadySent:
		log.Info("email already sent; not sending it again")
		w.met.skipped.WithLabelValues("already_sent").Inc()
		return d.Ack(false)
	case store.ClaimHeld:
		log.Info("another sender holds this email; waiting for its lease", "wait", w.cfg.LeaseWait)
		if err := w.republish(ctx, d, "", w.topo.LeaseWaitQueue(), nil); err != nil {
			return err
		}
		w.met.leaseWaits.Inc()
		return d.Ack(false)
	}

	sendCtx, cancel := context.WithTimeout(ctx, w.cfg.SMTPTimeout)
	delivered, err := w.conn.send(sendCtx, msg)
	cancel()
	if delivered {
		// Killed here, the email goes out twice: the one duplicate the
		// design admits.
		testhooks.Delay(w.hook, hookAfterSMTP, 10*time.Second)
		if err != nil {
			log.Warn("SMTP server accepted the email, then the session failed", "err", err)
		}
		w.markSent(ctx, log, env.ID)
		w.met.sent.Inc()
		w.met.lastSuccess.SetToCurrentTime()
		log.Info("email sent", "subject", e.Subject)
		return d.Ack(false)
	}
	w.met.failed.Inc()
	// Not sent: let a retry claim it at once (or the lease end, if even
	// this fails).
	if rerr := w.cfg.DB.ReleaseEmail(ctx, env.ID); rerr != nil {
		log.Warn("release claim", "err", rerr)
	}
	if permanent(err) {
		return w.deadLetter(ctx, d, env.Type, reasonPermanent, err)
	}
	return w.retry(ctx, d, env.Type, log, err)
}

// message builds the email for go-mail: to the sealed recipient only, with
// a Message-ID derived from the event id, so that any copy of one event's
// email is recognisably the same email.
func (w *worker) message(env *event.Envelope, e email) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(w.cfg.From); err != nil {
		return nil, fmt.Errorf("sender %q: %w", w.cfg.From, err)
	}
	if err := msg.To(e.To); err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(e.Subject)
	msg.SetMessageIDWithValue(env.ID + "@usher")
	msg.SetDate()
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyString(mail.TypeTextPlain, e.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, e.HTML)
	return msg, nil
}

// markSent records the email as sent, trying a few times: once the SMTP
// server accepted it, the delivery is acked whatever happens here, since a
// redelivery would find no mark and send it again once the lease ends.
func (w *worker) markSent(ctx context.Context, log *slog.Logger, id string) {
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	deadline := time.Now().Add(w.lease)
	for {
		err := w.cfg.DB.MarkEmailSent(ctx, id)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log.Error("email sent but not recorded: a redelivery of this event would send it again", "err", err)
			return
		}
		time.Sleep(bo.Next())
	}
}

// later puts a delivery back on the queue after a pause, when PostgreSQL
// cannot say whether its email was sent: the email is not at fault, so
// this is no retry step.
func (w *worker) later(d amqp.Delivery, log *slog.Logger, err error) error {
	wait := w.dbWait.Next()
	log.Warn("cannot claim the email; putting the event back", "err", err, "retry_in", wait)
	select {
	case <-time.After(wait):
	case <-w.stop:
	}
	return d.Nack(false, true)
}

// retry sends the delivery to the next retry step, or to the dead letters
// after the last.
func (w *worker) retry(ctx context.Context, d amqp.Delivery, typ string, log *slog.Logger, cause error) error {
	n := attempts(d.Headers, w.topo)
	if n >= len(w.topo.RetryDelays) {
		return w.deadLetter(ctx, d, typ, reasonExhausted, fmt.Errorf("after %d retries: %w", n, cause))
	}
	step := n + 1
	log.Warn("SMTP delivery failed; retrying", "err", cause, "step", step, "retry_in", w.topo.RetryDelays[n])
	if err := w.republish(ctx, d, "", w.topo.RetryQueue(step), amqp.Table{headerError: errText(cause), headerRetries: int64(step)}); err != nil {
		return err
	}
	w.met.retried.Inc()
	return d.Ack(false)
}

// deadLetter publishes the delivery to the dead-letter exchange with the
// reason, then acks it.
func (w *worker) deadLetter(ctx context.Context, d amqp.Delivery, typ, reason string, cause error) error {
	w.log.Warn("dead-lettering event", "message_id", d.MessageId, "type", typ, "reason", reason, "err", cause)
	key := typ
	if key == "" {
		key = d.RoutingKey
	}
	if err := w.republish(ctx, d, w.topo.DeadExchange(), key, amqp.Table{headerDeadReason: reason, headerError: errText(cause)}); err != nil {
		return err
	}
	w.met.dead.WithLabelValues(reason).Inc()
	return d.Ack(false)
}

// republish publishes a copy of d, its headers (x-death included, which
// counts the retries) plus extra, and waits for RabbitMQ to confirm it. It
// is mandatory: a missing queue is an error, not a silent loss.
func (w *worker) republish(ctx context.Context, d amqp.Delivery, exchange, key string, extra amqp.Table) error {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	for k, v := range extra {
		headers[k] = v
	}
	conf, err := w.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		CorrelationId:   d.CorrelationId,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	})
	if err != nil {
		return fmt.Errorf("publish to %q/%s: %w", exchange, key, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	ok, err := conf.WaitContext(waitCtx)
	if err != nil {
		return fmt.Errorf("publish to %q/%s: no confirm: %w", exchange, key, err)
	}
	if !ok {
		return fmt.Errorf("publish to %q/%s: RabbitMQ refused it", exchange, key)
	}
	// A return arrives before the confirm of the same message.
	select {
	case r := <-w.returns:
		return fmt.Errorf("publish to %q/%s: unroutable (%d %s)", exchange, key, r.ReplyCode, r.ReplyText)
	default:
	}
	return nil
}

// attempts counts the retry steps a message went through, from the x-death
// entries RabbitMQ adds each time a retry queue's TTL sends it back. The
// lease-wait queue does not count. Brokers that drop the x-death a client
// republishes (RabbitMQ 4) count only the last step there: the mailer's own
// usher-retries header makes up for it.
func attempts(h amqp.Table, t Topology) int {
	deaths, _ := h["x-death"].([]any)
	prefix := t.Namespace + ".mailer.retry."
	n := 0
	for _, d := range deaths {
		entry, ok := d.(amqp.Table)
		if !ok {
			continue
		}
		queue, _ := entry["queue"].(string)
		reason, _ := entry["reason"].(string)
		if strings.HasPrefix(queue, prefix) && reason == "expired" {
			n += toInt(entry["count"])
		}
	}
	return max(n, toInt(h[headerRetries]))
}

func toInt(v any) int {
	switch v := v.(type) {
	case int64:
		return int(v)
	case int32:
		return int(v)
	case int16:
		return int(v)
	case int8:
		return int(v)
	case int:
		return v
	}
	return 0
}

func errText(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
