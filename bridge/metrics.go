package bridge

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	if r != nil {
		m.forwarded = register(r, m.forwarded)
		m.redelivered = register(r, m.redelivered)
		m.failed = register(r, m.failed)
		m.terminated = register(r, m.terminated)
		m.lastForward = register(r, m.lastForward)
	}
	return m
}

// register registers c, or returns the collector registered before under
// the same name: Run may be called again with the same registry.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
