// Package testenv gives each test its own slice of the shared servers: a fresh
// PostgreSQL database and a namespace for NATS subjects, streams, RabbitMQ
// names and Redis keys. Tests never stop or restart the shared servers.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Addresses of the shared servers, overridable for a machine that runs them
// elsewhere.
var (
	PostgresURL = env("USHER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	RedisURL    = env("USHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
	AMQPURL     = env("USHER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	NATSURL     = env("USHER_TEST_NATS_URL", "nats://127.0.0.1:4222")
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// howToStart names the command that starts each shared server on this
// machine kind, so a failing test says what to do instead of skipping.
var howToStart = map[string]string{
	"PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
	"Redis":      "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no",
	"RabbitMQ":   "rabbitmq-server -detached",
	"NATS":       "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server",
}

// Require fails the test unless every named server accepts TCP connections.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		var raw string
		switch name {
		case "PostgreSQL":
			raw = PostgresURL
		case "Redis":
			raw = RedisURL
		case "RabbitMQ":
			raw = AMQPURL
		case "NATS":
			raw = NATSURL
		default:
			t.Fatalf("testenv: unknown server %q", name)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("testenv: %s URL %q: %v", name, raw, err)
		}
		c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err != nil {
			t.Fatalf("%s is not reachable at %s (%v); start it with: %s", name, u.Host, err, howToStart[name])
		}
		c.Close()
	}
}

// Name returns a short random lower-case name with the given prefix, valid
// as a namespace, a database name and a queue name.
func Name(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// Namespace returns a fresh USHER_NAMESPACE for one test.
func Namespace(t testing.TB) string {
	t.Helper()
	return Name("t")
}

// Database creates an empty database for the test, drops it when the test
// ends, and returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	Require(t, "PostgreSQL")
	name := Name("usher_test")
	admin := connect(t, PostgresURL)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		c := connect(t, PostgresURL)
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return DatabaseURL(name)
}

// DatabaseURL is the URL of the named database on the shared server.
func DatabaseURL(name string) string {
	u, _ := url.Parse(PostgresURL)
	u.Path = "/" + name
	return u.String()
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to PostgreSQL %s: %v; start it with: %s", url, err, howToStart["PostgreSQL"])
	}
	return c
}

// Eventually polls cond every 20 ms until it returns "" or the deadline
// passes, then fails with the last reason cond gave.
func Eventually(t testing.TB, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port nothing listens on now,
// below Linux's ephemeral range (32768 and up): a port the kernel picked
// for a listener on :0 is one it may give the next outgoing connection of
// any test before the process meant to listen on it binds it. A port is
// handed out once per test binary: until its process binds it, it is free
// again, and a second caller (the admin address picked right after the
// HTTP one) could be given it too.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		port := 20000 + mathrand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			handedOut.ports[port] = true
			return l.Addr().String()
		}
	}
	t.Fatal("no free port between 20000 and 32000 in 100 tries")
	return ""
}

// handedOut holds the ports FreeAddr has returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Env builds a getenv func from KEY=VALUE pairs; later pairs win.
func Env(pairs ...string) func(string) string {
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			panic(fmt.Sprintf("testenv.Env: %q is not KEY=VALUE", p))
		}
		m[k] = v
	}
	return func(k string) string { return m[k] }
}
