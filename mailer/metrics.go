package mailer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-auth/usher/internal/prom"
)

// Reasons of usher_mail_dead_lettered_total.
const (
	reasonEnvelope  = "envelope"          // not an event envelope
	reasonSeal      = "seal"              // no seal, an unknown key, or forged
	reasonTemplate  = "template"          // no template for the purpose, or it failed
	reasonAddress   = "address"           // the sealed recipient is no email address
	reasonPermanent = "smtp_permanent"    // the SMTP server refused it for good (5xx)
	reasonExhausted = "retries_exhausted" // every retry step failed
	reasonPanic     = "panic"             // handling it panicked: a bug
)

type metrics struct {
	sent        prometheus.Counter
	failed      prometheus.Counter
	retried     prometheus.Counter
	dead        *prometheus.CounterVec
	leaseWaits  prometheus.Counter
	skipped     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_mail_sent_total",
			Help: "Emails the SMTP server accepted.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_mail_failed_total",
			Help: "SMTP deliveries that failed (each attempt counts).",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_mail_retried_total",
			Help: "Emails put on a retry queue after a transient SMTP failure.",
		}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_mail_dead_lettered_total",
			Help: "Events sent to the dead-letter queue, by reason.",
		}, []string{"reason"}),
		leaseWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_mail_lease_waits_total",
			Help: "Events put on the lease-wait queue because another sender held their email's claim.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usher_mail_skipped_total",
			Help: "Events acknowledged without sending: already sent, or an event that sends no mail.",
		}, []string{"reason"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usher_mail_last_success_timestamp_seconds",
			Help: "When the SMTP server last accepted an email (Unix time).",
		}),
	}
	for _, reason := range []string{reasonEnvelope, reasonSeal, reasonTemplate, reasonAddress, reasonPermanent, reasonExhausted, reasonPanic} {
		m.dead.WithLabelValues(reason)
	}
	m.sent = prom.Register(r, m.sent)
	m.failed = prom.Register(r, m.failed)
	m.retried = prom.Register(r, m.retried)
	m.dead = prom.Register(r, m.dead)
	m.leaseWaits = prom.Register(r, m.leaseWaits)
	m.skipped = prom.Register(r, m.skipped)
	m.lastSuccess = prom.Register(r, m.lastSuccess)
	return m
}
