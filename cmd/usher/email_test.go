package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usher-auth/usher/mailer/mailpittest"
)

var linkToken = regexp.MustCompile(`token=([A-Za-z0-9_-]{43})`)

// tokenIn returns the one-time token of the link in an email.
func tokenIn(t *testing.T, m mailpittest.Message) string {
	t.Helper()
	match := linkToken.FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("no token link in email %q:\n%s", m.Subject, m.Text)
	}
	return match[1]
}

// mailFor returns the emails to addr, waiting until there are n in all.
func mailFor(t *testing.T, mp *mailpittest.Mailpit, n int, addr string) []mailpittest.Message {
	t.Helper()
	var out []mailpittest.Message
	for _, m := range mp.WaitFor(t, n, 10*time.Second) {
		for _, to := range m.To {
			if to == addr {
				out = append(out, m)
			}
		}
	}
	return out
}

func postForm(t *testing.T, a api, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(a.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestVerificationEmail(t *testing.T) {
	mp := mailpittest.Start(t)
	a, _ := serveAPI(t, "USHER_SMTP_URL="+mp.SMTPURL())
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "v@example.com", "password": "verify my address"}).want(t, "register", 201).pair()

	mails := mailFor(t, mp, 1, "v@example.com")
	if len(mails) != 1 {
		t.Fatalf("got %d emails to v@example.com, want the welcome email", len(mails))
	}
	tok := tokenIn(t, mails[0])
	if !strings.Contains(mails[0].Text, "http://127.0.0.1:8080/v1/auth/verify-email?token=") {
		t.Fatalf("link not built from USHER_VERIFY_URL's default: %s", mails[0].Text)
	}

	// A link scanner's GET shows the page and uses nothing.
	page := a.do("GET", "/v1/auth/verify-email?token="+tok, "", nil).want(t, "link page", 200)
	for h, want := range map[string]string{"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if page.header.Get(h) != want {
			t.Errorf("link page %s: got %q, want %q", h, page.header.Get(h), want)
		}
	}
	if !strings.Contains(page.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || !strings.Contains(page.raw, `action="/v1/auth/verify-email/confirm"`) {
		t.Errorf("link page: CSP %q, body %s", page.header.Get("Content-Security-Policy"), page.raw)
	}
	if me := a.do("GET", "/v1/users/me", p.access, nil); me.body["email_verified"] != false {
		t.Fatalf("the GET verified the email: %s", me.raw)
	}

	r := a.do("POST", "/v1/auth/verify-email/confirm", "", map[string]string{"token": tok}).want(t, "confirm", 200)
	if r.body["email_verified"] != true {
		t.Fatalf("confirm: got %s, want email_verified true", r.raw)
	}
	a.do("POST", "/v1/auth/verify-email/confirm", "", map[string]string{"token": tok}).want(t, "second use", 400, "token_invalid")

	// A resend supersedes; its form post answers with a page.
	a.do("POST", "/v1/auth/verify-email/request", p.access, nil).want(t, "resend", 202)
	mails = mailFor(t, mp, 2, "v@example.com")
	status, body := postForm(t, a, "/v1/auth/verify-email/confirm", url.Values{"token": {tokenIn(t, mails[len(mails)-1])}})
	if status != 200 || !strings.Contains(body, "verified") {
		t.Fatalf("form confirm: got %d %s", status, body)
	}
}

func TestPasswordResetEmail(t *testing.T) {
	mp := mailpittest.Start(t)
	a, _ := serveAPI(t, "USHER_SMTP_URL="+mp.SMTPURL())
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "r@example.com", "password": "forgot this one"}).want(t, "register", 201).pair()
	mailFor(t, mp, 1, "r@example.com")

	a.do("POST", "/v1/auth/password-reset/request", "", map[string]string{"email": "nobody@example.com"}).want(t, "unknown email", 202)
	a.do("POST", "/v1/auth/password-reset/request", "", map[string]string{"email": "R@Example.com"}).want(t, "known email", 202)
	mails := mailFor(t, mp, 2, "r@example.com")
	tok := tokenIn(t, mails[len(mails)-1])
	if !strings.Contains(mails[len(mails)-1].Text, "/v1/auth/password-reset?token=") {
		t.Fatalf("reset link: %s", mails[len(mails)-1].Text)
	}

	a.do("POST", "/v1/auth/password-reset/confirm", "", map[string]string{"token": tok, "new_password": "short"}).want(t, "weak password", 422, "validation_failed")
	a.do("POST", "/v1/auth/password-reset/confirm", "", map[string]string{"token": tok, "new_password": "remembered now"}).want(t, "confirm", 204)
	a.do("POST", "/v1/auth/password-reset/confirm", "", map[string]string{"token": tok, "new_password": "remembered now"}).want(t, "second use", 400, "token_invalid")
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "r@example.com", "password": "forgot this one"}).want(t, "old password", 401, "invalid_credentials")
	a.do("POST", "/v1/auth/login", "", map[string]string{"email": "r@example.com", "password": "remembered now"}).want(t, "new password", 200)
	a.rejectedWithin("session from before the reset", p.access, time.Second)
	a.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.refresh}).want(t, "refresh from before the reset", 401)

	// The notice arrives; the unknown address got nothing.
	notices := mailFor(t, mp, 3, "r@example.com")
	if !strings.Contains(strings.ToLower(notices[len(notices)-1].Subject+notices[len(notices)-1].Text), "password") {
		t.Fatalf("no password-changed notice: %+v", notices)
	}
	for _, m := range mp.Messages(t) {
		for _, to := range m.To {
			if to == "nobody@example.com" {
				t.Fatalf("an email went to the unknown address: %q", m.Subject)
			}
		}
	}
}

func TestAdminEmailGoesThroughThePipeline(t *testing.T) {
	mp := mailpittest.Start(t)
	env := stack(t, append(fastHashing, "USHER_SMTP_URL="+mp.SMTPURL())...)
	c := start(t, "serve", env...)
	c.waitReady(t)
	a := api{t, c.base}
	usher(t, env, "admin password long\n", "users", "create-admin", "--email", "root@example.com")
	admin := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "root@example.com", "password": "admin password long"}).want(t, "admin", 200).pair()

	a.do("POST", "/v1/admin/emails", admin.access, map[string]string{"to": "x@example.com", "subject": "a\r\nBcc: all@example.com", "text": "hi"}).want(t, "CR/LF subject", 422, "validation_failed")
	a.do("POST", "/v1/admin/emails", admin.access, map[string]string{"to": "Name <x@example.com>", "subject": "s", "text": "hi"}).want(t, "display name", 422, "validation_failed")
	a.do("POST", "/v1/admin/emails", admin.access, map[string]string{"to": "x@example.com", "subject": "Maintenance", "text": "We will be down at noon."}).want(t, "queue", 202)
	mails := mailFor(t, mp, 1, "x@example.com")
	if len(mails) != 1 || mails[0].Subject != "Maintenance" || !strings.Contains(mails[0].Text, "We will be down at noon.") {
		t.Fatalf("admin email: got %+v", mails)
	}
	if !strings.Contains(c.logs.String(), "admin action") {
		t.Error("admin email not logged as an admin action")
	}
}
