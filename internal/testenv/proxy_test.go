package testenv_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/usher-auth/usher/internal/testenv"
)

// redisOptions are the shared Redis's options, pointed at addr when it is
// not empty.
func redisOptions(t *testing.T, addr string) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL)
	if err != nil {
		t.Fatalf("parse %s: %v", testenv.RedisURL, err)
	}
	if addr != "" {
		opt.Addr = addr
	}
	return opt
}

func TestProxyCutStallRestore(t *testing.T) {
	testenv.Require(t, "Redis")
	p := testenv.NewProxy(t, redisOptions(t, "").Addr)
	opt := redisOptions(t, p.Addr())
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })

	key := testenv.Namespace(t) + ":proxy"
	t.Cleanup(func() {
		direct := redis.NewClient(redisOptions(t, ""))
		defer direct.Close()
		direct.Del(context.Background(), key)
	})

	ctx := context.Background()
	if err := rdb.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	if got, err := rdb.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("GET through the proxy: got %q, %v; want \"v\"", got, err)
	}

	t.Run("cut", func(t *testing.T) {
		p.Cut()
		start := time.Now()
		if err := rdb.Ping(ctx).Err(); err == nil {
			t.Fatal("PING through a cut proxy succeeded, want an error")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("PING through a cut proxy took %v, want an error at once", d)
		}
		// A new connection is accepted and closed at once.
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatalf("dial a cut proxy: %v", err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("read from a new connection through a cut proxy: %d bytes, %v; want it closed", n, err)
		}
	})

	t.Run("restore after cut", func(t *testing.T) {
		p.Restore()
		testenv.Eventually(t, 2*time.Second, func() string {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return "PING after Restore: " + err.Error()
			}
			return ""
		})
	})

	t.Run("stall", func(t *testing.T) {
		p.Stall()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := rdb.Ping(short).Err()
		if err == nil {
			t.Fatal("PING with a 200 ms timeout through a stalled proxy succeeded, want a timeout")
		}
		if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
			t.Errorf("PING through a stalled proxy: %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("PING with a 200 ms timeout took %v", d)
		}

		// A command sent while stalled is held, not lost: it completes on
		// Restore.
		done := make(chan error, 1)
		go func() { done <- rdb.Get(ctx, key).Err() }()
		select {
		case err := <-done:
			t.Fatalf("GET through a stalled proxy returned %v, want it held", err)
		case <-time.After(300 * time.Millisecond):
		}
		p.Restore()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("held GET after Restore: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("held GET did not complete within 2 s of Restore")
		}
	})
}

// TestProxyCleanupLeavesNoGoroutine runs a proxy with open, stalled and
// half-set-up connections through the end of a subtest, then checks that
// every goroutine it started has ended.
func TestProxyCleanupLeavesNoGoroutine(t *testing.T) {
	testenv.Require(t, "Redis")
	target := redisOptions(t, "").Addr
	before := runtime.NumGoroutine()

	t.Run("proxy", func(t *testing.T) {
		// The clients stay open until after the proxy's cleanup (cleanups
		// run last first), so that cleanup alone must end every goroutine.
		var conns []net.Conn
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		p := testenv.NewProxy(t, target)
		for range 3 {
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatalf("dial the proxy: %v", err)
			}
			conns = append(conns, c)
			ping(t, c)
		}
		p.Stall()
		if _, err := conns[0].Write([]byte("PING\r\n")); err != nil {
			t.Fatalf("write through a stalled proxy: %v", err)
		}
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatalf("dial a stalled proxy: %v", err)
		}
		conns = append(conns, c)
		p.Cut()
		p.Stall() // the proxy ends stalled, with a connection accepted while stalled
		c, err = net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatalf("dial a stalled proxy: %v", err)
		}
		conns = append(conns, c)
	})

	testenv.Eventually(t, 2*time.Second, func() string {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Sprintf("%d goroutines after the proxy's cleanup, %d before:\n%s", n, before, stacks())
		}
		return ""
	})
}

func ping(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatalf("write PING: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING through the proxy: got %q, %v; want +PONG", line, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func stacks() string {
	buf := make([]byte, 1<<16)
	return string(buf[:runtime.Stack(buf, true)])
}
