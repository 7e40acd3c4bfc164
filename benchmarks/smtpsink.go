package benchmarks

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpSink is an SMTP server that accepts every email and keeps nothing
// but the count. BUDGETS.md's floors are for a machine running usher,
// its data services and the load generator; in production the SMTP server
// is elsewhere. A full SMTP server on the same two cores (Mailpit parses,
// indexes and stores every message in SQLite: 1.8 ms of CPU per email)
// would take CPU the budget never gave it, so the benchmark receives the
// email itself, as cheaply as SMTP allows.
type smtpSink struct {
	server   *smtp.Server
	received atomic.Int64
}

// startSMTPSink listens on addr and serves until close.
func startSMTPSink(addr string) (*smtpSink, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &smtpSink{}
	s.server = smtp.NewServer(s)
	s.server.Domain = "usher-bench"
	s.server.ReadTimeout = 30 * time.Second
	s.server.WriteTimeout = 30 * time.Second
	s.server.MaxMessageBytes = 1 << 20
	go s.server.Serve(l)
	return s, nil
}

func (s *smtpSink) close() { s.server.Close() }

// NewSession implements smtp.Backend.
func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }

// sinkSession accepts any sender and recipient and counts each message
// once its data has been read in full.
type sinkSession struct{ sink *smtpSink }

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }

func (ss sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.sink.received.Add(1)
	return nil
}
