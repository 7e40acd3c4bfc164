package benchmarks

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client speaks usher's JSON API over HTTP/1.1 keep-alive connections.
//
// It does each exchange on the calling goroutine: it writes the request on
// an idle connection and parses the answer with net/http's ReadResponse.
// net/http's Transport hands every request to a write goroutine and every
// answer back from a read goroutine; on a 2-core machine that also runs the
// server, those switches and the scheduling around them cost the generator
// about a third of its CPU, which the server then lacks.
//
// One client is made per step, so each step starts from fresh connections
// (the warm-up opens them).
type client struct {
	addr    string // host:port to dial
	host    string // Host header
	prefix  string // path of the base URL
	tls     *tls.Config
	maxIdle int

	mu   sync.Mutex
	idle []*conn
}

type conn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// setupTimeout bounds a request made without a deadline (setup).
const setupTimeout = 30 * time.Second

func newClient(base string, maxIdle int) *client {
	c := &client{maxIdle: maxIdle}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		// Every call then fails with a dial error that names the address.
		c.addr, c.host = base, base
		return c
	}
	c.host, c.prefix = u.Host, u.Path
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	c.addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		c.tls = &tls.Config{ServerName: u.Hostname()}
	}
	return c
}

// close closes the idle connections.
func (c *client) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cn := range c.idle {
		cn.nc.Close()
	}
	c.idle = nil
}

func (c *client) get(ctx context.Context) (*conn, bool, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, true, nil
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, false, err
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, false, err
		}
		nc = tc
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, false, nil
}

func (c *client) put(cn *conn) {
	c.mu.Lock()
	if len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
}

// call sends one request and reads the whole answer. A 2xx body is decoded
// into out when out is not nil; an error body's problem code is returned
// in the Outcome. A request that fails on a reused connection before any
// answer arrived (the server closed it while idle) is sent once more on a
// new one.
func (c *client) call(ctx context.Context, method, path string, body []byte, bearer string, out any) Outcome {
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx)
		if err != nil {
			return Outcome{Err: err}
		}
		o, answered := c.exchange(ctx, cn, method, path, body, bearer, out)
		if o.Err != nil && reused && !answered && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return o
	}
}

func (c *client) exchange(ctx context.Context, cn *conn, method, path string, body []byte, bearer string, out any) (o Outcome, answered bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(setupTimeout)
	}
	cn.nc.SetDeadline(deadline)
	// A cancelled context (an interrupted run) ends the exchange at once.
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	keep := false
	defer func() {
		if keep {
			c.put(cn)
		} else {
			cn.nc.Close()
		}
	}()

	w := cn.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(c.prefix)
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.host)
	w.WriteString("\r\nUser-Agent: usher-bench\r\nAccept: application/json\r\n")
	if body != nil {
		w.WriteString("Content-Type: application/json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	if bearer != "" {
		w.WriteString("Authorization: Bearer ")
		w.WriteString(bearer)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return Outcome{Err: ctxErr(ctx, err)}, false
	}
	resp, err := http.ReadResponse(cn.br, nil)
	if err != nil {
		return Outcome{Err: ctxErr(ctx, err)}, cn.br.Buffered() > 0
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o = Outcome{Status: resp.StatusCode}
	if err != nil {
		o.Err = ctxErr(ctx, err)
		return o, true
	}
	// The connection is reused only when the whole body was read.
	keep = !resp.Close && (resp.ContentLength < 0 || resp.ContentLength == int64(len(raw))) && len(raw) < 1<<20
	switch {
	case resp.StatusCode >= 400:
		var p struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(raw, &p) == nil {
			o.Code = p.Code
		}
	case out != nil && resp.StatusCode < 300:
		if err := json.Unmarshal(raw, out); err != nil {
			o.Err = fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return o, true
}

// ctxErr reports a deadline or cancellation as the context's error, so
// errorKey counts it as a timeout.
func ctxErr(ctx context.Context, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		}
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return err
}

// expect turns an Outcome into an error unless it has the given status.
func expect(o Outcome, status int, what string) error {
	switch {
	case o.Err != nil:
		return fmt.Errorf("%s: %w", what, o.Err)
	case o.Status == http.StatusNotImplemented:
		return &NotImplementedError{Route: what}
	case o.Status != status:
		if o.Status == http.StatusTooManyRequests {
			return fmt.Errorf("%s: got 429 rate_limited, want %d: start the server with USHER_RATE_LIMITS=off", what, status)
		}
		return fmt.Errorf("%s: got %d %s, want %d", what, o.Status, o.Code, status)
	}
	return nil
}

// NotImplementedError means a route answered 501: the scenario cannot run
// until the server implements it.
type NotImplementedError struct{ Route string }

func (e *NotImplementedError) Error() string {
	return e.Route + " answered 501 not_implemented: the route is not built yet"
}
