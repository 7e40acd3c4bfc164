package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/store"
)

// connectTimeout bounds each start-up connection: a dependency that does
// not answer by then is reported as down.
const connectTimeout = 5 * time.Second

// unreachable is the one line an operator sees when a dependency is down:
// which, where, and how to start it.
func unreachable(what, rawURL, service string, err error) error {
	// Drivers may report over several lines; the operator gets one.
	cause := strings.Join(strings.Fields(err.Error()), " ")
	return fmt.Errorf("%s is not reachable at %s: %s; start it (`make services` here, `docker compose up -d %s` with Docker) or set the right URL",
		what, where(rawURL), cause, service)
}

// where is a URL's host without credentials, for messages and logs.
func where(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Host
}

func connectPostgres(ctx context.Context, cfg config) (*store.DB, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, unreachable("PostgreSQL", cfg.DatabaseURL, "postgres", err)
	}
	return db, nil
}

func connectRedis(ctx context.Context, cfg config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("USHER_REDIS_URL: %w", err)
	}
	// Deadlines on contexts must hold for reads too: a stalled Redis may
	// only degrade the cache, never hold a request.
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, unreachable("Redis", cfg.RedisURL, "redis", err)
	}
	return rdb, nil
}

func connectAMQP(cfg config) (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(cfg.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(connectTimeout)})
	if err != nil {
		return nil, unreachable("RabbitMQ", cfg.AMQPURL, "rabbitmq", err)
	}
	return conn, nil
}

// connectNATS connects to USHER_NATS_URL, reconnecting forever once
// connected: a node or gateway outlives any NATS restart.
func connectNATS(cfg config, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(connectTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	auth, err := natsAuth(cfg)
	if err != nil {
		return nil, err
	}
	if auth == nil {
		log.Warn("NATS without credentials: anyone who reaches the server can publish requests; set USHER_NATS_USER/USHER_NATS_PASSWORD, USHER_NATS_TOKEN or USHER_NATS_NKEY_SEED_FILE")
	} else {
		opts = append(opts, auth)
	}
	if cfg.NATSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCAFile))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, unreachable("NATS", cfg.NATSURL, "nats", err)
	}
	return nc, nil
}

func natsAuth(cfg config) (nats.Option, error) {
	switch {
	case cfg.NATSNKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKeyFile)
		if err != nil {
			return nil, fmt.Errorf("USHER_NATS_NKEY_SEED_FILE: %w", err)
		}
		return opt, nil
	case cfg.NATSToken != "":
		return nats.Token(cfg.NATSToken), nil
	case cfg.NATSUser != "":
		return nats.UserInfo(cfg.NATSUser, cfg.NATSPass), nil
	}
	return nil, nil
}

// embeddedNATS runs a nats-server inside this process with no TCP port:
// only this process can reach it. Its JetStream store lives in a folder per
// namespace, so several dev instances do not share streams.
func embeddedNATS(cfg config) (*natsserver.Server, *nats.Conn, error) {
	dir := filepath.Join(cfg.DataDir, "nats", cfg.Namespace)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("embedded NATS store: %w", err)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "usher-" + cfg.Namespace,
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(connectTimeout) {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("embedded NATS did not start within %v", connectTimeout)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("usher-serve"), nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return srv, nc, nil
}
