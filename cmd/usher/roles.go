package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/actors"
	"github.com/usher-auth/usher/bridge"
	"github.com/usher-auth/usher/gateway"
	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/password"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/mailer"
	"github.com/usher-auth/usher/migrations"
	"github.com/usher-auth/usher/store"
)

// shutdownTimeout is how long in-flight work gets after SIGTERM.
const shutdownTimeout = 20 * time.Second

// process holds what the roles of one process share, and how to stop it.
type process struct {
	cfg     config
	log     *slog.Logger
	metrics *prometheus.Registry
	db      *store.DB
	redis   *redis.Client
	nc      *nats.Conn
	sealer  *event.Sealer
	// cores is the number of hashing workers: GOMAXPROCS as the runtime
	// chose it, before a node takes one more P for itself.
	cores int
	// stops run in reverse order of start.
	stops []func(context.Context) error
}

func (p *process) onStop(f func(context.Context) error) { p.stops = append(p.stops, f) }

// needs says which dependencies each role connects to at start.
var needs = map[string][]string{
	"serve":   {"postgres", "redis", "nats", "amqp"},
	"gateway": {"postgres", "nats"},
	"node":    {"postgres", "redis", "nats"},
	"bridge":  {"nats", "amqp"},
	"mailer":  {"postgres", "amqp"},
}

// runRoles starts the role (serve: every role), waits for ctx to end, then
// shuts down: stop accepting, finish what is in flight, drain NATS.
func runRoles(ctx context.Context, cfg config, role string, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sendsMail := role == "mailer" || role == "serve"
	workers := 2
	if sendsMail {
		fs.IntVar(&workers, "workers", workers, "mail delivery workers")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || workers < 1 {
		usage := "usage: usher " + role
		if sendsMail {
			usage += " [--workers N]"
		}
		return errors.New(usage)
	}
	if (role == "serve" || role == "node") && os.Getenv("GOGC") == "" {
		// A heap allowed to grow to five times the live data collects a
		// quarter as often as at GOGC=100. The hashing routes no longer
		// need it (argon2id reuses its memory); the other routes' P99s at
		// 70% of their floors are about half what they are at GOGC=100
		// (BENCHMARKS.md, "GOGC=400"). GOGC set in the environment wins.
		debug.SetGCPercent(400)
	}
	cores := runtime.GOMAXPROCS(0)
	if (role == "serve" || role == "node") && os.Getenv("GOMAXPROCS") == "" {
		// The hasher keeps one worker per core busy under load. One more P
		// lets the rest of the node (the 503 that sheds a request, a cache
		// hit) run at once instead of after a hash ends; the kernel shares
		// the cores among them.
		runtime.GOMAXPROCS(cores + 1)
	}
	p := &process{cfg: cfg, log: newLogger(cfg, stderr, role), metrics: prometheus.NewRegistry(), cores: cores}
	p.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer p.stop()
	if role != "serve" && cfg.NATSURL == "" {
		p.cfg.NATSURL = nats.DefaultURL
	}
	if err := resolveSecrets(&p.cfg, role); err != nil {
		return err
	}
	if p.cfg.EventKey != "" {
		key, _ := token.ParseSecret(p.cfg.EventKey) // checked by resolveSecrets
		sealer, err := event.NewSealer(key)
		if err != nil {
			return fmt.Errorf("USHER_EVENT_KEY: %w", err)
		}
		p.sealer = sealer
	}
	if err := p.connect(ctx, role); err != nil {
		return err
	}
	if err := p.startAdmin(); err != nil {
		return err
	}
	if role == "serve" || role == "node" {
		if err := p.startNode(ctx); err != nil {
			return err
		}
	}
	if role == "serve" || role == "bridge" {
		p.startBridge()
	}
	if role == "serve" || role == "mailer" {
		p.startMailer(workers)
	}
	if role == "serve" || role == "gateway" {
		if err := p.startGateway(); err != nil {
			return err
		}
	}
	p.log.Info("started", "http", cfg.HTTPAddr, "admin", cfg.AdminAddr)
	<-ctx.Done()
	p.log.Info("shutting down")
	return p.stop()
}

func newLogger(cfg config, w io.Writer, role string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With("role", role)
}

// stop runs the stop functions once, newest first.
func (p *process) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for i := len(p.stops) - 1; i >= 0; i-- {
		errs = append(errs, p.stops[i](ctx))
	}
	p.stops = nil
	return errors.Join(errs...)
}

func (p *process) connect(ctx context.Context, role string) error {
	need := needs[role]
	if slices.Contains(need, "postgres") {
		db, err := connectPostgres(ctx, p.cfg)
		if err != nil {
			return err
		}
		p.db = db
		p.onStop(func(context.Context) error { db.Close(); return nil })
		if role == "serve" && p.cfg.AutoMigrate {
			if err := migrate(ctx, p.cfg.DatabaseURL); err != nil {
				return err
			}
		}
	}
	if slices.Contains(need, "redis") {
		rdb, err := connectRedis(ctx, p.cfg)
		if err != nil {
			return err
		}
		p.redis = rdb
		p.onStop(func(context.Context) error { return rdb.Close() })
	}
	if slices.Contains(need, "amqp") {
		// Checked here so a wrong URL fails the start; the bridge and the
		// mailer hold their own connections and reconnect by themselves.
		conn, err := connectAMQP(p.cfg)
		if err != nil {
			return err
		}
		conn.Close()
	}
	if slices.Contains(need, "nats") {
		var srv *natsserver.Server
		var nc *nats.Conn
		var err error
		if p.cfg.NATSURL == "" {
			srv, nc, err = embeddedNATS(p.cfg)
		} else {
			nc, err = connectNATS(p.cfg, "usher-"+role, p.log)
		}
		if err != nil {
			return err
		}
		p.nc = nc
		p.onStop(func(context.Context) error {
			nc.Close()
			if srv != nil {
				srv.Shutdown()
			}
			return nil
		})
	}
	return nil
}

func migrate(ctx context.Context, url string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer db.Close()
	return migrations.Up(ctx, db)
}

func runMigrate(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	return migrations.Command(ctx, cfg.DatabaseURL, args, stdout)
}

func (p *process) startNode(ctx context.Context) error {
	id := p.cfg.NodeID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	secret, _ := token.ParseSecret(p.cfg.SecretKey) // checked by resolveSecrets
	keys, err := token.Derive(secret)
	if err != nil {
		return fmt.Errorf("USHER_SECRET_KEY: %w", err)
	}
	tokens := actors.Tokens{
		Keys:      keys,
		Issuer:    token.Issuer{Issuer: p.cfg.PublicURL, Audience: p.cfg.JWTAudience},
		AccessTTL: p.cfg.AccessTTL,
	}
	if p.cfg.JWTKeyFile != "" {
		k, err := token.LoadKeyFile(p.cfg.JWTKeyFile)
		if err != nil {
			return fmt.Errorf("USHER_JWT_KEY_FILE: %w", err)
		}
		tokens.Pinned = &k
	}
	params := password.Params{MemoryKiB: p.cfg.Argon2MemoryKiB, Time: p.cfg.Argon2Time, Threads: 1}
	if err := params.Validate(); err != nil {
		return fmt.Errorf("USHER_ARGON2_*: %w", err)
	}
	node, err := actors.Start(ctx, p.nc, actors.Config{
		ID:          id,
		Namespace:   p.cfg.Namespace,
		MaxInflight: p.cfg.MaxInflight,
		DB:          p.db,
		Redis:       p.redis,
		Limits:      ratelimit.New(p.redis, p.cfg.Namespace, p.cfg.RateLimits, p.metrics),
		Tokens:      tokens,
		Lifetimes:   actors.Lifetimes{Session: p.cfg.SessionLifetime, Idle: p.cfg.SessionIdle, Grace: p.cfg.RefreshGrace},
		HashParams:  params,
		HashWorkers: p.cores,
		Sealer:      p.sealer,
		TokenTTLs:   actors.TokenTTLs{Verify: p.cfg.VerifyTTL, Reset: p.cfg.ResetTTL},
		Cache:       actors.CacheConfig{Enabled: p.cfg.Cache, UserTTL: p.cfg.CacheUserTTL, ListTTL: p.cfg.CacheListTTL},
		Log:         p.log,
		Metrics:     p.metrics,
	})
	if err != nil {
		return err
	}
	p.onStop(node.Stop)
	relayCtx, stopRelay := context.WithCancel(context.Background())
	p.onStop(func(context.Context) error { stopRelay(); return nil })
	if _, err := actors.StartRelay(relayCtx, p.nc, p.db, p.cfg.Namespace, p.log, p.metrics); err != nil {
		return err
	}
	p.startPrune()
	return nil
}

// background runs f until the process stops, and waits for it to return.
func (p *process) background(name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	p.onStop(func(stopCtx context.Context) error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		case <-stopCtx.Done():
			return fmt.Errorf("%s did not stop in time", name)
		}
	})
}

func (p *process) startBridge() {
	p.background("bridge", func(ctx context.Context) error {
		return bridge.Run(ctx, bridge.Config{
			NATS: p.nc, AMQPURL: p.cfg.AMQPURL, Namespace: p.cfg.Namespace, Log: p.log, Metrics: p.metrics,
		})
	})
}

func (p *process) startMailer(workers int) {
	p.background("mailer", func(ctx context.Context) error {
		return mailer.Run(ctx, mailer.Config{
			AMQPURL:     p.cfg.AMQPURL,
			Namespace:   p.cfg.Namespace,
			Workers:     workers,
			Prefetch:    1,
			DB:          p.db,
			Sealer:      p.sealer,
			SMTPURL:     p.cfg.SMTPURL,
			From:        p.cfg.MailFrom,
			VerifyURL:   p.cfg.VerifyURL,
			ResetURL:    p.cfg.ResetURL,
			SMTPTimeout: p.cfg.SMTPTimeout,
			Log:         p.log,
			Metrics:     p.metrics,
		})
	})
}

// startPrune removes what retention allows, on every node; an advisory lock
// lets one at a time do it.
func (p *process) startPrune() {
	deleted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usher_prune_deleted_total",
		Help: "Rows deleted by the periodic prune, by table.",
	}, []string{"table"})
	p.metrics.MustRegister(deleted)
	retention := store.Retention{
		Revocations: p.cfg.AccessTTL + token.Leeway,
		Ended:       p.cfg.Retention,
		Published:   p.cfg.Retention,
	}
	// background waits for a prune in progress before the database closes.
	p.background("prune", func(ctx context.Context) error {
		t := time.NewTicker(p.cfg.PruneInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			counts, err := p.db.Prune(ctx, retention)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Warn("prune", "err", err)
				}
				continue
			}
			for table, n := range counts {
				deleted.WithLabelValues(table).Add(float64(n))
			}
		}
	})
}

func (p *process) startGateway() error {
	// The gateway's feeds run until the process stops, not until the start
	// context ends.
	ctx, cancel := context.WithCancel(context.Background())
	p.onStop(func(context.Context) error { cancel(); return nil })
	h, err := gateway.New(ctx, gateway.Config{
		NATS:      p.nc,
		DB:        p.db,
		Namespace: p.cfg.Namespace,
		Timeout:   p.cfg.RequestTimeout,
		Issuer:    p.cfg.PublicURL,
		Audience:  p.cfg.JWTAudience,
		AccessTTL: p.cfg.AccessTTL,

		TrustedProxies: p.cfg.TrustedProxies,
		CORSOrigins:    p.cfg.CORSOrigins,
		Log:            p.log,
		Metrics:        p.metrics,
	})
	if err != nil {
		return err
	}
	return p.serveHTTP("HTTP", p.cfg.HTTPAddr, h)
}

// startAdmin serves /metrics, and pprof when asked, apart from the public
// listener so neither is exposed with the API.
func (p *process) startAdmin() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{}))
	if p.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return p.serveHTTP("admin", p.cfg.AdminAddr, mux)
}

// serveHTTP listens now, so a taken port fails the start, and serves until
// the process stops; Shutdown lets in-flight requests finish.
func (p *process) serveHTTP(name, addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener on %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error(name+" server", "err", err)
		}
	}()
	p.onStop(srv.Shutdown)
	return nil
}
