package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/bridge"
	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/mailer"
)

// usherBin is the usher binary the process tests start, built once with
// -tags testhooks so they can inject faults through the real gateway.
var usherBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usher-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	usherBin = filepath.Join(dir, "usher")
	build := exec.Command("go", "build", "-tags", "testhooks", "-o", usherBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build usher:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// child is an usher process started by a test.
type child struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	base   string // http://<USHER_HTTP_ADDR>
	admin  string // http://<USHER_ADMIN_ADDR>
	exited chan struct{}
	err    error // set when exited is closed
}

// stack is the environment every process of one test shares: database,
// namespace and data folder.
func stack(t *testing.T, extra ...string) []string {
	t.Helper()
	testenv.Require(t, "PostgreSQL", "Redis", "RabbitMQ")
	ns := testenv.Namespace(t)
	// Registered before any process starts, so it runs after they stopped.
	t.Cleanup(func() { deleteNamespace(t, ns) })
	return append([]string{
		"USHER_DATABASE_URL=" + testenv.Database(t),
		"USHER_NAMESPACE=" + ns,
		"USHER_DATA_DIR=" + t.TempDir(),
		"USHER_REDIS_URL=" + testenv.RedisURL,
		"USHER_AMQP_URL=" + testenv.AMQPURL,
		"USHER_RATE_LIMITS=off",
		"USHER_SECRET_KEY=" + token.NewSecret(),
		"USHER_EVENT_KEY=" + token.NewSecret(),
	}, extra...)
}

// deleteNamespace removes what usher made under ns on the shared servers:
// its RabbitMQ exchanges and queues, its JetStream stream, its Redis keys.
func deleteNamespace(t *testing.T, ns string) {
	if conn, err := amqp.Dial(testenv.AMQPURL); err == nil {
		if err := mailer.NewTopology(ns).Delete(conn); err != nil {
			t.Logf("delete RabbitMQ topology of %s: %v", ns, err)
		}
		conn.Close()
	}
	if nc, err := nats.Connect(testenv.NATSURL); err == nil {
		if js, err := jetstream.New(nc); err == nil {
			js.DeleteStream(context.Background(), bridge.StreamName(ns)) // absent unless split processes ran
		}
		nc.Close()
	}
	if opts, err := redis.ParseURL(testenv.RedisURL); err == nil {
		rdb := redis.NewClient(opts)
		ctx := context.Background()
		if keys, err := rdb.Keys(ctx, ns+":*").Result(); err == nil && len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	}
}

// start runs `usher <role>` with env plus fresh listen addresses, stops it
// at cleanup, and fails the test with its logs if it exits early.
func start(t *testing.T, role string, env ...string) *child {
	t.Helper()
	return startWithArgs(t, []string{role}, env...)
}

// startWithArgs is start for `usher <args...>`: a role with flags, e.g.
// mailer --workers 1.
func startWithArgs(t *testing.T, args []string, env ...string) *child {
	t.Helper()
	httpAddr, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	c := &child{
		logs:   &syncBuffer{},
		base:   "http://" + httpAddr,
		admin:  "http://" + adminAddr,
		exited: make(chan struct{}),
	}
	c.cmd = exec.Command(usherBin, args...)
	c.cmd.Env = append(append(os.Environ(), "USHER_HTTP_ADDR="+httpAddr, "USHER_ADMIN_ADDR="+adminAddr), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start usher %v: %v", args, err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("usher %v logs:\n%s", args, c.logs)
		}
	})
	return c
}

// waitReady polls /readyz until it answers 200.
func (c *child) waitReady(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() string {
		select {
		case <-c.exited:
			t.Fatalf("usher exited early (%v):\n%s", c.err, c.logs)
		default:
		}
		status, body := get(c.base+"/readyz", nil)
		if status != http.StatusOK {
			return fmt.Sprintf("readyz: got %d %s", status, body)
		}
		return ""
	})
}

// stop sends SIGTERM and returns the exit error.
func (c *child) stop(t *testing.T) error {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return c.err
	case <-time.After(30 * time.Second):
		t.Fatalf("usher did not exit within 30 s of SIGTERM:\n%s", c.logs)
		return nil
	}
}

func get(url string, header http.Header) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeBecomesReadyAndExitsCleanly(t *testing.T) {
	c := start(t, "serve", stack(t)...)
	c.waitReady(t)

	status, body := get(c.base+"/readyz", nil)
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || status != 200 {
		t.Fatalf("readyz: got %d %s", status, body)
	}
	for _, check := range []string{"postgres", "nats", "node", "redis"} {
		if ready.Checks[check] != "up" {
			t.Errorf("readyz check %s: got %q, want up (%s)", check, ready.Checks[check], body)
		}
	}
	status, body = get(c.admin+"/metrics", nil)
	if status != 200 || !strings.Contains(body, `usher_http_request_duration_seconds_count{method="GET",route="/readyz",status="200"}`) {
		t.Errorf("metrics: got %d, want the readyz request counted by route and status:\n%.2000s", status, body)
	}
	if err := c.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: got %v, want status 0\n%s", err, c.logs)
	}
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	c := start(t, "serve", stack(t)...)
	c.waitReady(t)

	// user.slow holds the ping in the user actor for a second.
	done := make(chan int)
	go func() {
		status, _ := get(c.base+"/v1/system/ping", http.Header{"X-Usher-Testhook": {"user.slow"}})
		done <- status
	}()
	time.Sleep(200 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGTERM)
	if status := <-done; status != http.StatusOK {
		t.Fatalf("in-flight request during shutdown: got %d, want 200", status)
	}
	<-c.exited
	if c.err != nil {
		t.Fatalf("exit: got %v, want 0", c.err)
	}
}

// A panic anywhere in a request's path costs that request a 500, never the
// process, and never makes its caller wait for the deadline.
func TestPanicsAnswer500AndProcessStaysUp(t *testing.T) {
	c := start(t, "serve", stack(t, "USHER_REQUEST_TIMEOUT=30s")...)
	c.waitReady(t)
	for _, hook := range []string{"user.receive", "user.goroutine", "session.child", "gateway.handler"} {
		t.Run(hook, func(t *testing.T) {
			for i := range 100 {
				req, _ := http.NewRequest(http.MethodGet, c.base+"/v1/system/ping", nil)
				req.Header.Set("X-Usher-Testhook", hook)
				client := http.Client{Timeout: 5 * time.Second}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("panic %d: %v", i, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), `"code":"internal"`) {
					t.Fatalf("panic %d: got %d %s %s, want 500 problem+json code internal", i, resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
			}
			if status, body := get(c.base+"/v1/system/ping", nil); status != 200 {
				t.Fatalf("after 100 panics: got %d %s, want 200", status, body)
			}
		})
	}
}

func TestSplitGatewayAndTwoNodesShareLoadAndFailOver(t *testing.T) {
	testenv.Require(t, "NATS")
	env := stack(t, "USHER_NATS_URL="+testenv.NATSURL, "USHER_REQUEST_TIMEOUT=500ms")
	usher(t, env, "", "migrate", "up")
	n1 := start(t, "node", append(env, "USHER_NODE_ID=n1")...)
	start(t, "node", append(env, "USHER_NODE_ID=n2")...)
	gw := start(t, "gateway", env...)
	gw.waitReady(t)

	ping := func() (int, string) {
		status, body := get(gw.base+"/v1/system/ping", nil)
		var p struct {
			NodeID string `json:"node_id"`
		}
		json.Unmarshal([]byte(body), &p)
		return status, p.NodeID
	}
	seen := map[string]int{}
	for range 200 {
		status, id := ping()
		if status != 200 {
			t.Fatalf("ping: got %d, want 200", status)
		}
		seen[id]++
	}
	if seen["n1"] == 0 || seen["n2"] == 0 {
		t.Fatalf("got answers from %v, want both n1 and n2", seen)
	}

	n1.cmd.Process.Kill()
	<-n1.exited
	killed := time.Now()
	testenv.Eventually(t, 2*time.Second, func() string {
		// Five answers in a row from n2: the survivor has the whole load.
		for range 5 {
			if status, id := ping(); status != 200 || id != "n2" {
				return fmt.Sprintf("got %d from %q", status, id)
			}
		}
		return ""
	})
	t.Logf("n2 answered alone %v after n1 was killed", time.Since(killed))
}

func TestStartFailsClearlyWhenADependencyIsDown(t *testing.T) {
	closed := "127.0.0.1:1" // nothing listens on port 1
	cases := []struct {
		role, env, want string
	}{
		{"gateway", "USHER_DATABASE_URL=postgres://u@" + closed + "/db", "PostgreSQL is not reachable at " + closed},
		{"node", "USHER_REDIS_URL=redis://" + closed + "/0", "Redis is not reachable at " + closed},
		{"bridge", "USHER_AMQP_URL=amqp://guest:guest@" + closed + "/", "RabbitMQ is not reachable at " + closed},
		{"gateway", "USHER_NATS_URL=nats://" + closed, "NATS is not reachable at " + closed},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			env := stack(t, c.env, "USHER_NATS_URL="+testenv.NATSURL, c.env)
			p := start(t, c.role, env...)
			select {
			case <-p.exited:
			case <-time.After(20 * time.Second):
				t.Fatalf("usher %s still running with %s", c.role, c.env)
			}
			if p.err == nil {
				t.Fatalf("got exit status 0, want non-zero")
			}
			logs := p.logs.String()
			lines := strings.Split(strings.TrimSpace(logs), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, c.want) || !strings.Contains(last, "start it") {
				t.Fatalf("got last line %q, want it to say %q and how to start it", last, c.want)
			}
		})
	}
}
