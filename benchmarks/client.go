package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// client speaks usher's JSON API. One client is made per step, so that each
// step starts from a clean connection pool (the warm-up opens it).
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string, maxConns int) *client {
	t := &http.Transport{
		Proxy:               nil, // a benchmark never goes through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: t}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// call sends one request and reads the whole answer, so the connection is
// reused. A 2xx body is decoded into out when out is not nil; an error
// body's problem code is returned in the Outcome.
func (c *client) call(ctx context.Context, method, path string, body []byte, bearer string, out any) Outcome {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return Outcome{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Outcome{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Outcome{Status: resp.StatusCode, Err: err}
	}
	o := Outcome{Status: resp.StatusCode}
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
	return o
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
