package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServerBin is the nats-server 2.9 of the development machines, the
// version nats.conf is written for. USHER_TEST_NATS_SERVER names another.
func natsServerBin() string {
	if bin := os.Getenv("USHER_TEST_NATS_SERVER"); bin != "" {
		return bin
	}
	return "/usr/sbin/nats-server"
}

// privateNATS is a nats-server of the test's own, running the repository's
// nats.conf, with each role's password.
type privateNATS struct {
	url       string
	passwords map[string]string
}

// startPrivateNATS runs nats.conf on a private nats-server: loopback, ports
// the kernel picks, its JetStream store in a temporary folder. The shared
// server on 4222 is never touched.
func startPrivateNATS(t *testing.T) privateNATS {
	t.Helper()
	bin := natsServerBin()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing (%v): this test runs nats.conf on a private nats-server 2.9; install it with apt-get install nats-server", bin, err)
	}
	dir := t.TempDir()

	text, err := os.ReadFile(filepath.Join(repoRoot(t), "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// nats-server refuses -sd when the file names a store_dir too, so the
	// copy this test runs differs from nats.conf in that line only.
	const storeDir = "store_dir: /data"
	if n := strings.Count(string(text), storeDir); n != 1 {
		t.Fatalf("nats.conf: want exactly one %q line (the volume docker-compose.yml mounts), found %d", storeDir, n)
	}
	conf := filepath.Join(dir, "nats.conf")
	store := strings.Replace(string(text), storeDir, "store_dir: "+strconv.Quote(filepath.Join(dir, "store")), 1)
	if err := os.WriteFile(conf, []byte(store), 0o600); err != nil {
		t.Fatal(err)
	}

	s := privateNATS{passwords: map[string]string{}}
	env := os.Environ()
	for _, role := range []string{"gateway", "node", "bridge"} {
		// letters first: nats-server parses the value, and digits alone
		// would make it a number
		s.passwords[role] = "pw" + randomHex(t)
		env = append(env, "NATS_"+strings.ToUpper(role)+"_PASSWORD="+s.passwords[role])
	}

	logPath := filepath.Join(dir, "nats-server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-c", conf, "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", dir)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	serverLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}

	// nats-server writes the ports it listens on once it is ready.
	var ports struct {
		Nats       []string `json:"nats"`
		Monitoring []string `json:"monitoring"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nats-server with nats.conf exited at start:\n%s", serverLog())
		default:
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "*.ports")); len(files) == 1 {
			if b, err := os.ReadFile(files[0]); err == nil && json.Unmarshal(b, &ports) == nil &&
				len(ports.Nats) > 0 && len(ports.Monitoring) > 0 && healthy(ports.Monitoring[0]) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server with nats.conf not healthy within 10s:\n%s", serverLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.url = ports.Nats[0]
	return s
}

// healthy asks the monitoring port's /healthz, as docker-compose does.
func healthy(monitoring string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(monitoring + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// violation reads the subject out of the server's permission error:
// `Permissions Violation for Publish to "x"`, `... for Subscription to "x"`.
var violation = regexp.MustCompile(`(?i)for (publish|subscription) to "([^"]+)"`)

// natsRole is one connection as one nats.conf user. The server refuses
// without closing anything: it answers a forbidden publish or subscribe
// with an error that nats.go hands to the error handler, later.
type natsRole struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu       sync.Mutex
	refused  []string // "publish <subject>" or "subscribe <subject>"
	expected []string
}

func connectAs(t *testing.T, s privateNATS, name string) *natsRole {
	t.Helper()
	r := &natsRole{name: name}
	nc, err := nats.Connect(s.url,
		nats.Name("natsconf-test-"+name),
		nats.UserInfo(name, s.passwords[name]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !errors.Is(err, nats.ErrPermissionViolation) {
				return
			}
			m := violation.FindStringSubmatch(err.Error())
			if m == nil {
				t.Errorf("%s: unreadable permission error %q", name, err)
				return
			}
			op := "publish"
			if strings.EqualFold(m[1], "subscription") {
				op = "subscribe"
			}
			r.mu.Lock()
			r.refused = append(r.refused, op+" "+m[2])
			r.mu.Unlock()
		}),
	)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	r.nc = nc
	r.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// expect marks a refusal as asked for.
func (r *natsRole) expect(refusal string) {
	r.mu.Lock()
	r.expected = append(r.expected, refusal)
	r.mu.Unlock()
}

// wantRefused waits for the server to refuse op on subject.
func (r *natsRole) wantRefused(t *testing.T, op, subject string) {
	t.Helper()
	want := op + " " + subject
	r.expect(want)
	if err := r.nc.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", r.name, err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		ok := slices.Contains(r.refused, want)
		r.mu.Unlock()
		if ok {
			return
		}
	}
	t.Errorf("%s may %s: nats.conf should refuse it", r.name, want)
}

// wantNothingElseRefused fails for every refusal no test asked for: an
// operation a role needs that nats.conf forbids.
func (r *natsRole) wantNothingElseRefused(t *testing.T) {
	t.Helper()
	r.nc.Flush()
	time.Sleep(50 * time.Millisecond) // the error handler runs after the flush
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, got := range r.refused {
		if !slices.Contains(r.expected, got) {
			t.Errorf("%s may not %s: nats.conf should allow it", r.name, got)
		}
	}
}

// node answers requests in the queue group like `usher node`, and records
// every subject it receives.
type testNode struct {
	mu       sync.Mutex
	received []string
	replies  chan string // reply subjects of the requests it answered twice
}

func (n *testNode) serve(t *testing.T, r *natsRole) {
	t.Helper()
	_, err := r.nc.QueueSubscribe("usher.v1.>", "usher-nodes", func(m *nats.Msg) {
		n.mu.Lock()
		n.received = append(n.received, m.Subject)
		n.mu.Unlock()
		if m.Reply == "" {
			return
		}
		m.Respond([]byte("answer to " + string(m.Data)))
		if m.Subject == "usher.v1.test.twice" {
			m.Respond([]byte("second answer"))
			n.replies <- m.Reply
		}
	})
	if err != nil {
		t.Fatalf("node: queue subscribe usher.v1.>: %v", err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func (n *testNode) count(subject string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.received {
		if s == subject {
			c++
		}
	}
	return c
}

func TestNATSConfRoles(t *testing.T) {
	s := startPrivateNATS(t)

	t.Run("unknown credentials are refused", func(t *testing.T) {
		for name, opt := range map[string]nats.Option{
			"no user":        func(*nats.Options) error { return nil },
			"wrong password": nats.UserInfo("gateway", s.passwords["node"]),
			"mailer":         nats.UserInfo("mailer", s.passwords["node"]),
		} {
			nc, err := nats.Connect(s.url, opt, nats.NoReconnect())
			if err == nil {
				nc.Close()
				t.Errorf("%s: connected, want an authorization error", name)
			}
		}
	})

	gateway := connectAs(t, s, "gateway")
	node := connectAs(t, s, "node")
	node2 := connectAs(t, s, "node")
	bridge := connectAs(t, s, "bridge")
	nodes := &testNode{replies: make(chan string, 1)}
	nodes.serve(t, node)
	nodes.serve(t, node2)

	t.Run("gateway asks, one node of the queue group answers", func(t *testing.T) {
		const n = 20
		for i := range n {
			body := fmt.Sprintf("request %d", i)
			reply, err := gateway.nc.Request("usher.v1.users.get", []byte(body), 2*time.Second)
			if err != nil {
				t.Fatalf("gateway request usher.v1.users.get: %v", err)
			}
			if got, want := string(reply.Data), "answer to "+body; got != want {
				t.Fatalf("reply %q, want %q", got, want)
			}
		}
		if got := nodes.count("usher.v1.users.get"); got != n {
			t.Errorf("nodes received %d requests, want %d: each request goes to one node of usher-nodes", got, n)
		}
	})

	t.Run("a node answers each request once", func(t *testing.T) {
		if _, err := gateway.nc.Request("usher.v1.test.twice", []byte("x"), 2*time.Second); err != nil {
			t.Fatalf("gateway request usher.v1.test.twice: %v", err)
		}
		var reply string
		select {
		case reply = <-nodes.replies:
		case <-time.After(2 * time.Second):
			t.Fatal("no node answered usher.v1.test.twice")
		}
		// Whichever node answered: both connect as user node.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			node.mu.Lock()
			a := slices.Contains(node.refused, "publish "+reply)
			node.mu.Unlock()
			node2.mu.Lock()
			b := slices.Contains(node2.refused, "publish "+reply)
			node2.mu.Unlock()
			if a || b {
				node.expect("publish " + reply)
				node2.expect("publish " + reply)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a node may answer request %s twice: allow_responses should allow one reply", reply)
			}
		}
	})

	t.Run("node publishes revocations, gateway receives them", func(t *testing.T) {
		sub, err := gateway.nc.SubscribeSync("usher.revocations")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := gateway.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := node.nc.Publish("usher.revocations", []byte("sid-1")); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatalf("gateway receives usher.revocations: %v", err)
		}
		if string(m.Data) != "sid-1" {
			t.Errorf("got %q, want sid-1", m.Data)
		}
	})

	t.Run("node keeps the event stream, bridge consumes it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cfg := jetstream.StreamConfig{
			Name:       "USHER_EVENTS",
			Subjects:   []string{"usher.events.>"},
			Storage:    jetstream.FileStorage,
			MaxAge:     7 * 24 * time.Hour,
			Duplicates: time.Hour,
		}
		if _, err := node.js.AccountInfo(ctx); err != nil {
			t.Fatalf("node: account info: %v", err)
		}
		if _, err := node.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			t.Fatalf("node: create stream USHER_EVENTS: %v", err)
		}
		cfg.MaxAge = 8 * 24 * time.Hour
		if _, err := node.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			t.Fatalf("node: update stream USHER_EVENTS: %v", err)
		}
		if _, err := node.js.Stream(ctx, "USHER_EVENTS"); err != nil {
			t.Fatalf("node: stream info USHER_EVENTS: %v", err)
		}
		ack, err := node.js.Publish(ctx, "usher.events.user.registered", []byte(`{"id":"evt-1"}`), jetstream.WithMsgID("evt-1"))
		if err != nil {
			t.Fatalf("node: publish usher.events.user.registered: %v", err)
		}
		if ack.Stream != "USHER_EVENTS" {
			t.Fatalf("event stored in %q, want USHER_EVENTS", ack.Stream)
		}

		if _, err := bridge.js.AccountInfo(ctx); err != nil {
			t.Fatalf("bridge: account info: %v", err)
		}
		stream, err := bridge.js.Stream(ctx, "USHER_EVENTS")
		if err != nil {
			t.Fatalf("bridge: stream info USHER_EVENTS: %v", err)
		}
		cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       "usher-bridge",
			FilterSubject: "usher.events.>",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       30 * time.Second,
		})
		if err != nil {
			t.Fatalf("bridge: create durable consumer usher-bridge: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("bridge: fetch: %v", err)
		}
		var got []jetstream.Msg
		for m := range batch.Messages() {
			got = append(got, m)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("bridge: fetch: %v", err)
		}
		if len(got) != 1 || got[0].Subject() != "usher.events.user.registered" {
			t.Fatalf("bridge fetched %d messages, want the one on usher.events.user.registered", len(got))
		}
		if err := got[0].DoubleAck(ctx); err != nil {
			t.Fatalf("bridge: ack: %v", err)
		}
		if _, err := stream.Consumer(ctx, "usher-bridge"); err != nil {
			t.Fatalf("bridge: consumer info: %v", err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatalf("bridge: consumer info: %v", err)
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream != ack.Sequence {
			t.Errorf("after the ack: %d pending, ack floor %d, want 0 pending, floor %d", info.NumAckPending, info.AckFloor.Stream, ack.Sequence)
		}
	})

	t.Run("JetStream refusals", func(t *testing.T) {
		short := func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}
		if _, err := gateway.js.CreateStream(short(), jetstream.StreamConfig{Name: "USHER_GATEWAY", Subjects: []string{"usher.gateway.>"}}); err == nil {
			t.Errorf("gateway created a stream")
		}
		gateway.wantRefused(t, "publish", "$JS.API.STREAM.CREATE.USHER_GATEWAY")
		if _, err := bridge.js.CreateStream(short(), jetstream.StreamConfig{Name: "USHER_BRIDGE", Subjects: []string{"usher.bridge.>"}}); err == nil {
			t.Errorf("bridge created a stream")
		}
		bridge.wantRefused(t, "publish", "$JS.API.STREAM.CREATE.USHER_BRIDGE")
		for _, r := range []*natsRole{node, bridge} {
			if err := r.js.DeleteStream(short(), "USHER_EVENTS"); err == nil {
				t.Errorf("%s deleted stream USHER_EVENTS", r.name)
			}
			r.wantRefused(t, "publish", "$JS.API.STREAM.DELETE.USHER_EVENTS")
		}
	})

	t.Run("core refusals", func(t *testing.T) {
		for _, c := range []struct {
			role        *natsRole
			op, subject string
		}{
			// only nodes read requests
			{gateway, "subscribe", "usher.v1.>"},
			{bridge, "subscribe", "usher.v1.>"},
			// only gateways send them
			{node, "publish", "usher.v1.forged.by_node"},
			{bridge, "publish", "usher.v1.forged.by_bridge"},
			// only nodes publish events and revocations
			{gateway, "publish", "usher.events.user.registered"},
			{gateway, "publish", "usher.revocations"},
			{bridge, "publish", "usher.events.user.registered"},
			{bridge, "publish", "usher.revocations"},
			// events are read through the stream only
			{gateway, "subscribe", "usher.events.>"},
			{bridge, "subscribe", "usher.events.>"},
			// a node answers requests, it does not write into inboxes
			{node, "publish", "_INBOX.forged"},
		} {
			var err error
			switch c.op {
			case "publish":
				err = c.role.nc.Publish(c.subject, []byte("forged"))
			case "subscribe":
				_, err = c.role.nc.SubscribeSync(c.subject)
			}
			if err != nil {
				t.Fatalf("%s %s %s: %v", c.role.name, c.op, c.subject, err)
			}
			c.role.wantRefused(t, c.op, c.subject)
		}
		node.nc.Flush()
		node2.nc.Flush()
		for _, forged := range []string{"usher.v1.forged.by_node", "usher.v1.forged.by_bridge"} {
			if n := nodes.count(forged); n != 0 {
				t.Errorf("nodes received %d forged requests on %s", n, forged)
			}
		}
	})

	for _, r := range []*natsRole{gateway, node, node2, bridge} {
		r.wantNothingElseRefused(t)
	}
}
