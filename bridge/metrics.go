package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-auth/usher/internal/prom"
)

type metrics struct {
	forwarded   prometheus.Counter
	redelivered prometheus.Counter
	failed      prometheus.Counter
	terminated  prometheus.Counter
	lastForward prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_bridge_forwarded_total",
			Help: "Events RabbitMQ confirmed and the bridge then acked on JetStream.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_bridge_redelivered_total",
			Help: "Events JetStream delivered to the bridge more than once.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_bridge_failed_total",
			Help: "Forwarding attempts that RabbitMQ did not confirm; JetStream redelivers those events.",
		}),
		terminated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usher_bridge_terminated_total",
			Help: "Messages on the event stream that are not events, terminated without forwarding.",
		}),
		lastForward: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usher_bridge_last_forward_timestamp_seconds",
			Help: "When the bridge last forwarded an event (Unix time).",
		}),
	}
	m.forwarded = prom.Register(r, m.forwarded)
	m.redelivered = prom.Register(r, m.redelivered)
	m.failed = prom.Register(r, m.failed)
	m.terminated = prom.Register(r, m.terminated)
	m.lastForward = prom.Register(r, m.lastForward)
	return m
}
