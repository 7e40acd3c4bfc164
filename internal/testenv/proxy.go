package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a local port to target; tests cut,
// stall and restore it to inject faults between usher and a shared server
// without touching the server itself.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	mode   proxyMode
	resume chan struct{} // while stalled: closed when forwarding may go on
	pipes  map[*pipe]struct{}
	closed bool
}

type proxyMode int

const (
	forwarding proxyMode = iota
	cut
	stalled
)

// NewProxy listens on 127.0.0.1:0 and forwards each connection to target
// until the test ends, when it closes the listener and every connection and
// waits for its goroutines.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy to %s: listen: %v", target, err)
	}
	p := &Proxy{target: target, ln: ln, pipes: map[*pipe]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection and closes new ones as soon as they are
// accepted, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMode(cut)
	p.closePipes()
}

// Stall keeps connections open but forwards no byte either way, until
// Restore; new connections are accepted and stalled too.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMode(stalled)
}

// Restore forwards normally again. Bytes held back by Stall are delivered.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMode(forwarding)
}

// setMode must be called with p.mu held.
func (p *Proxy) setMode(m proxyMode) {
	if p.mode == stalled && m != stalled {
		close(p.resume)
		p.resume = nil
	}
	if m == stalled && p.mode != stalled {
		p.resume = make(chan struct{})
	}
	p.mode = m
}

// closePipes must be called with p.mu held; each pipe's own goroutine
// removes it from the map.
func (p *Proxy) closePipes() {
	for pp := range p.pipes {
		pp.close()
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.setMode(forwarding) // wakes stalled pumps, which then see their pipe closed
	p.closePipes()
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed at cleanup
		}
		p.mu.Lock()
		refuse := p.mode == cut || p.closed
		if !refuse {
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go p.serve(c)
	}
}

// serve dials the target for one accepted connection and pumps bytes both
// ways until either side ends or the proxy cuts it.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	pp := &pipe{client: client, upstream: upstream, done: make(chan struct{})}
	p.mu.Lock()
	if p.mode == cut || p.closed {
		p.mu.Unlock()
		pp.close()
		return
	}
	p.pipes[pp] = struct{}{}
	p.mu.Unlock()

	var both sync.WaitGroup
	both.Add(1)
	go func() {
		defer both.Done()
		p.pump(pp, upstream, client)
	}()
	p.pump(pp, client, upstream)
	both.Wait()
	pp.close()

	p.mu.Lock()
	delete(p.pipes, pp)
	p.mu.Unlock()
}

// pump copies src to dst, holding each chunk while the proxy is stalled. An
// end of file is passed on as a half close so that a request-then-close
// client still gets its answer; any other error ends the whole pipe.
func (p *Proxy) pump(pp *pipe, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.mayForward(pp) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pp.close()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if hc, ok := dst.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			}
			return
		}
		if err != nil {
			pp.close()
			return
		}
	}
}

// mayForward blocks while the proxy is stalled and reports whether the pipe
// is still open.
func (p *Proxy) mayForward(pp *pipe) bool {
	for {
		p.mu.Lock()
		resume := p.resume
		p.mu.Unlock()
		if resume == nil {
			select {
			case <-pp.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-resume:
		case <-pp.done:
			return false
		}
	}
}

// pipe is one proxied connection: the accepted client side and the dialled
// upstream side.
type pipe struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

func (pp *pipe) close() {
	pp.once.Do(func() {
		close(pp.done)
		pp.client.Close()
		pp.upstream.Close()
	})
}
