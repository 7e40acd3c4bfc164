// Package gateway is usher's REST front: it checks each HTTP request, turns
// it into a node request over NATS and the reply back into HTTP.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gorilla/mux"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"

	"github.com/usher-auth/usher/internal/testhooks"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// Config is what a gateway needs. Every field is required.
type Config struct {
	NATS      *nats.Conn
	DB        *store.DB
	Namespace string
	// Timeout is the budget of one request to a node.
	Timeout time.Duration
	// Issuer and Audience are the iss and aud every access token must carry.
	Issuer, Audience string
	// AccessTTL is the access token lifetime: how long a revocation is kept.
	AccessTTL time.Duration
	// TrustedProxies may set X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// CORSOrigins may call the API from a browser.
	CORSOrigins []string
	Log         *slog.Logger
	Metrics     prometheus.Registerer
}

type server struct {
	log     *slog.Logger
	db      *store.DB
	nc      *nats.Conn
	nodes   *nodes
	keys    *keyring
	revoked *revocations
	trusted []netip.Prefix
}

// New builds the HTTP handler of the whole API. Its revocation feed and key
// reloads run until ctx ends.
func New(ctx context.Context, cfg Config) (http.Handler, error) {
	keys, err := newKeyring(ctx, cfg.DB, cfg.Issuer, cfg.Audience)
	if err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	revoked, err := startRevocations(ctx, cfg.NATS, cfg.DB, cfg.Namespace, cfg.AccessTTL+token.Leeway, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("subscribe to revocations: %w", err)
	}
	go keys.reloadEvery(ctx, cfg.Log)
	s := &server{
		log:     cfg.Log,
		db:      cfg.DB,
		nc:      cfg.NATS,
		keys:    keys,
		revoked: revoked,
		trusted: cfg.TrustedProxies,
	}
	s.nodes = &nodes{nc: cfg.NATS, namespace: cfg.Namespace, timeout: cfg.Timeout, client: s.client}
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "usher_http_request_duration_seconds",
		Help:    "HTTP request duration by route template, method and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method", "status"})
	cfg.Metrics.MustRegister(durations)

	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, "not_found", "no route "+r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	})
	r.Use(rememberRoute)
	addRoutes(r, s)

	var h http.Handler = r
	h = checkBody(h)
	if len(cfg.CORSOrigins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete},
			AllowedHeaders: []string{"Authorization", "Content-Type", "X-Request-Id"},
			ExposedHeaders: []string{"X-Request-Id", "Retry-After", "WWW-Authenticate"},
			MaxAge:         600,
		}).Handler(h)
	}
	h = recoverPanics(cfg.Log)(h)
	h = observe(cfg.Log, durations)(h)
	h = withRequestID(h)
	return h, nil
}

// decode reads one JSON value from the body into v, refusing unknown
// fields and trailing data. On failure it has written the problem.
func decode[T any](w http.ResponseWriter, r *http.Request, v *T) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, next := dec.Token(); next != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeProblem(w, "payload_too_large", "request body is over 64 KiB")
	case errors.Is(err, io.EOF):
		writeProblem(w, "invalid_request", "request body is empty")
	default:
		writeProblem(w, "invalid_request", "malformed JSON: "+err.Error())
	}
	return false
}

func (s *server) jwks() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Write(s.keys.jwksJSON())
	})
}

func (s *server) ping() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		testhooks.Panic(r.Header.Get("X-Usher-Testhook"), "gateway.handler")
		s.forward(w, r, "system.ping", nil, nil, http.StatusOK)
	})
}
