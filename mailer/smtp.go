package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
)

// smtpServer is a parsed USHER_SMTP_URL.
type smtpServer struct {
	host string
	opts []mail.Option
}

// authTypes are the values of the URL's auth parameter.
var authTypes = map[string]mail.SMTPAuthType{
	"auto":               mail.SMTPAuthAutoDiscover,
	"plain":              mail.SMTPAuthPlain,
	"login":              mail.SMTPAuthLogin,
	"cram-md5":           mail.SMTPAuthCramMD5,
	"scram-sha-1":        mail.SMTPAuthSCRAMSHA1,
	"scram-sha-256":      mail.SMTPAuthSCRAMSHA256,
	"scram-sha-1-plus":   mail.SMTPAuthSCRAMSHA1PLUS,
	"scram-sha-256-plus": mail.SMTPAuthSCRAMSHA256PLUS,
	"xoauth2":            mail.SMTPAuthXOAUTH2,
}

// parseSMTPURL reads smtp://[user:pass@]host[:port][?starttls=required|opportunistic|none][&auth=…]
// or smtps://… for implicit TLS. Without a port, smtp uses 25 and smtps 465.
// STARTTLS is opportunistic unless the URL says otherwise: say
// starttls=required for any server that is not on this machine. With a user
// in the URL, the client authenticates (auth=auto picks the strongest
// mechanism the server offers; PLAIN and LOGIN only over TLS or to
// localhost).
func parseSMTPURL(raw string, timeout time.Duration) (smtpServer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return smtpServer{}, fmt.Errorf("SMTP URL: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return smtpServer{}, errors.New("SMTP URL: no host")
	}
	opts := []mail.Option{
		mail.WithTimeout(timeout),
		mail.WithTLSConfig(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}),
	}
	port := 25
	q := u.Query()
	switch u.Scheme {
	case "smtp":
		policy := mail.TLSOpportunistic
		switch v := q.Get("starttls"); v {
		case "", "opportunistic":
		case "required":
			policy = mail.TLSMandatory
		case "none":
			policy = mail.NoTLS
		default:
			return smtpServer{}, fmt.Errorf("SMTP URL: starttls=%q: want required, opportunistic or none", v)
		}
		opts = append(opts, mail.WithTLSPolicy(policy))
	case "smtps":
		if q.Has("starttls") {
			return smtpServer{}, errors.New("SMTP URL: smtps:// is TLS from the start; starttls does not apply")
		}
		port = 465
		opts = append(opts, mail.WithSSL())
	default:
		return smtpServer{}, fmt.Errorf("SMTP URL: scheme %q: want smtp or smtps", u.Scheme)
	}
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil {
			return smtpServer{}, fmt.Errorf("SMTP URL: port %q", p)
		}
	}
	opts = append(opts, mail.WithPort(port))
	if u.User != nil {
		pass, _ := u.User.Password()
		name := q.Get("auth")
		if name == "" {
			name = "auto"
		}
		typ, ok := authTypes[strings.ToLower(name)]
		if !ok {
			return smtpServer{}, fmt.Errorf("SMTP URL: auth=%q: unknown mechanism", name)
		}
		opts = append(opts, mail.WithSMTPAuth(typ), mail.WithUsername(u.User.Username()), mail.WithPassword(pass))
	} else if q.Has("auth") {
		return smtpServer{}, errors.New("SMTP URL: auth without a user")
	}
	for k := range q {
		if k != "starttls" && k != "auth" {
			return smtpServer{}, fmt.Errorf("SMTP URL: unknown parameter %q", k)
		}
	}
	return smtpServer{host: host, opts: opts}, nil
}

// smtpConn is one worker's connection to the SMTP server, kept open
// from one email to the next: a connection per email costs the TCP
// handshake, the greeting, EHLO and, with STARTTLS, a TLS handshake, on
// both ends, for every email.
type smtpConn struct {
	server smtpServer
	client *mail.Client // nil until the first email, and after an error
}

// send delivers msg. It reports delivered when the server accepted the
// message, even if something after that (RSET) failed: such an email must
// be recorded as sent, not retried. go-mail checks a kept connection with
// NOOP before each email; a server that closed it while idle got nothing,
// so the email goes once more on a new connection.
func (s *smtpConn) send(ctx context.Context, msg *mail.Msg) (delivered bool, err error) {
	kept := s.client != nil
	if !kept {
		if err := s.dial(ctx); err != nil {
			return false, err
		}
	}
	err = s.client.Send(msg)
	var sendErr *mail.SendError
	if kept && errors.As(err, &sendErr) && sendErr.Reason == mail.ErrConnCheck {
		s.close()
		if err := s.dial(ctx); err != nil {
			return false, err
		}
		err = s.client.Send(msg)
	}
	if err != nil {
		// What state the session is in after an error is unknown: the next
		// email starts on a new connection.
		s.close()
	}
	return msg.IsDelivered(), err
}

func (s *smtpConn) dial(ctx context.Context) error {
	c, err := mail.NewClient(s.server.host, s.server.opts...)
	if err != nil {
		return err
	}
	if err := c.DialWithContext(ctx); err != nil {
		return fmt.Errorf("dial failed: %w", err)
	}
	s.client = c
	return nil
}

// close ends the session with QUIT, if there is one.
func (s *smtpConn) close() {
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
}

// permanent reports whether err is the SMTP server's final refusal of this
// email (a 5xx reply to MAIL, RCPT or DATA): retrying would not help.
// Everything else (no connection, a timeout, 4xx, a failed login) is worth
// a retry. So is 530 "authentication required": that is the mailer's
// configuration, not the email, and fixing it should not cost the emails
// sent meanwhile.
func permanent(err error) bool {
	var se *mail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo, mail.ErrSMTPData, mail.ErrSMTPDataClose:
		code := se.ErrorCode()
		return code >= 500 && code < 600 && code != 530
	}
	return false
}
