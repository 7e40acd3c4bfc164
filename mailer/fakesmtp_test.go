package mailer

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowSMTP is a minimal SMTP server that holds each message for delay
// before it accepts it, and records how many it held at once: Mailpit
// answers too fast to show that workers overlap.
type slowSMTP struct {
	ln    net.Listener
	delay time.Duration

	mu                     sync.Mutex
	active, most, accepted int
	conns                  []net.Conn // every connection accepted
}

func startSlowSMTP(t *testing.T, delay time.Duration) *slowSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowSMTP{ln: ln, delay: delay}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *slowSMTP) url() string { return "smtp://" + s.ln.Addr().String() }

func (s *slowSMTP) counts() (accepted, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.most
}

// connections is how many connections the server has accepted.
func (s *slowSMTP) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// hangUp closes every connection, as a server does with idle ones.
func (s *slowSMTP) hangUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *slowSMTP) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { c.Write([]byte(line + "\r\n")) }
	say("220 slow ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO", "HELO":
			say("250 slow")
		case "MAIL", "RCPT", "RSET", "NOOP":
			say("250 ok")
		case "DATA":
			say("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.active++
			s.most = max(s.most, s.active)
			s.mu.Unlock()
			time.Sleep(s.delay)
			s.mu.Lock()
			s.active--
			s.accepted++
			s.mu.Unlock()
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}
