package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-auth/usher/internal/testenv"
)

// splitStack migrates a fresh database and starts n nodes and a gateway
// against the shared NATS server; extra env applies to every process.
func splitStack(t *testing.T, extra ...string) (env []string, gw *child) {
	testenv.Require(t, "NATS")
	env = stack(t, append(append(fastHashing, "USHER_NATS_URL="+testenv.NATSURL), extra...)...)
	usher(t, env, "", "migrate", "up")
	start(t, "node", env...)
	gw = start(t, "gateway", env...)
	gw.waitReady(t)
	return env, gw
}

// A gateway whose NATS connection is cut still learns of revocations from
// PostgreSQL within a second.
func TestRevocationSurvivesALostNATSMessage(t *testing.T) {
	env, gw := splitStack(t)
	proxy := testenv.NewProxy(t, strings.TrimPrefix(testenv.NATSURL, "nats://"))
	cutGW := start(t, "gateway", append(env, "USHER_NATS_URL=nats://"+proxy.Addr())...)
	cutGW.waitReady(t)

	a, b := api{t, gw.base}, api{t, cutGW.base}
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "cut@example.com", "password": "revoke me quickly"}).want(t, "register", 201).pair()
	p2 := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "cut@example.com", "password": "revoke me quickly"}).want(t, "login", 200).pair()
	b.do("GET", "/v1/users/me", p2.access, nil).want(t, "through the second gateway", 200)

	proxy.Cut()
	a.do("DELETE", "/v1/users/me/sessions/"+sid(p2), p.access, nil).want(t, "revoke", 204)
	b.rejectedWithin("revoked while the gateway's NATS is cut", p2.access, time.Second)
}

// Revocations outlive the user: after the account is deleted and its rows
// cascade, a restarted gateway still refuses its tokens.
func TestDeletedUsersTokensStayRejectedAfterRestart(t *testing.T) {
	env, gw := splitStack(t)
	a := api{t, gw.base}
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "gone@example.com", "password": "delete me please"}).want(t, "register", 201).pair()
	a.do("DELETE", "/v1/users/me", p.access, map[string]string{"password": "delete me please"}).want(t, "delete", 204)
	usher(t, env, "", "migrate", "status") // the database is still there

	if err := gw.stop(t); err != nil {
		t.Fatalf("stop gateway: %v", err)
	}
	gw2 := start(t, "gateway", env...)
	gw2.waitReady(t)
	api{t, gw2.base}.do("GET", "/v1/users/me", p.access, nil).want(t, "deleted user's token after restart", 401, "unauthorized")
}

// A login that checked the old password while the password changed must
// not leave a live session.
func TestLoginRacingAPasswordChangeLeavesNoSession(t *testing.T) {
	a, _ := serveAPI(t)
	p := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "race@example.com", "password": "the old password"}).want(t, "register", 201).pair()

	done := make(chan response)
	go func() {
		done <- a.doWithHook("POST", "/v1/auth/login", "", "user.login.hold", map[string]string{"email": "race@example.com", "password": "the old password"})
	}()
	time.Sleep(500 * time.Millisecond) // the login is now held after its password check
	a.do("POST", "/v1/users/me/password", p.access, map[string]string{"current_password": "the old password", "new_password": "the new password"}).want(t, "change", 204)
	r := <-done
	if r.status == 200 {
		a.rejectedWithin("the racing login's token", r.pair().access, time.Second)
	} else if r.status != 401 {
		t.Fatalf("racing login: got %d %v, want 401 or an immediately revoked session", r.status, r.body)
	}
	list := a.do("GET", "/v1/users/me/sessions", p.access, nil).want(t, "sessions", 200)
	if items, _ := list.body["items"].([]any); len(items) != 1 {
		t.Fatalf("sessions after the race: got %s, want only the changer's", list.raw)
	}
}

func TestRefreshReplayAfterNodeRestartEndsSession(t *testing.T) {
	testenv.Require(t, "NATS")
	env := stack(t, append(fastHashing, "USHER_NATS_URL="+testenv.NATSURL, "USHER_REFRESH_GRACE=10s")...)
	usher(t, env, "", "migrate", "up")
	node := start(t, "node", env...)
	gw := start(t, "gateway", env...)
	gw.waitReady(t)
	a := api{t, gw.base}
	p0 := a.do("POST", "/v1/auth/register", "", map[string]string{"email": "replay@example.com", "password": "replay after restart"}).want(t, "register", 201).pair()
	p1 := a.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p0.refresh}).want(t, "rotation 1", 200).pair()
	a.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p1.refresh}).want(t, "rotation 2", 200)

	if err := node.stop(t); err != nil {
		t.Fatalf("stop node: %v", err)
	}
	start(t, "node", env...)
	gw.waitReady(t)
	a.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p0.refresh}).want(t, "replay of the oldest after restart", 401, "token_invalid")
	a.rejectedWithin("session ended by the replay", p1.access, time.Second)
}

// 20 parallel wrong passwords for one email count 20 against its limit of
// 10: the counter is atomic across requests.
func TestLoginLimitIsAtomic(t *testing.T) {
	a, _ := serveAPI(t, "USHER_RATE_LIMITS=on")
	var wg sync.WaitGroup
	statuses := make(chan response, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- a.do("POST", "/v1/auth/login", "", map[string]string{"email": "target@example.com", "password": "wrong guess"})
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for r := range statuses {
		counts[r.status]++
		if r.status == 429 && r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if counts[401] != 10 || counts[429] != 10 {
		t.Fatalf("got statuses %v, want 10×401 and 10×429", counts)
	}
}

// Verification resends have the reset request's limit of 3 an hour per
// email but count apart: using them up leaves the password resets whole.
func TestVerificationResendsCountApartFromResets(t *testing.T) {
	a, _ := serveAPI(t, "USHER_RATE_LIMITS=on")
	email := "resend@example.com"
	access := a.do("POST", "/v1/auth/register", "", map[string]string{"email": email, "password": "resend and reset"}).want(t, "register", 201).pair().access
	for i := range 3 {
		a.do("POST", "/v1/auth/verify-email/request", access, nil).want(t, fmt.Sprintf("resend %d", i+1), 202)
	}
	a.do("POST", "/v1/auth/verify-email/request", access, nil).want(t, "resend 4", 429, "rate_limited")
	for i := range 3 {
		a.do("POST", "/v1/auth/password-reset/request", "", map[string]string{"email": email}).want(t, fmt.Sprintf("reset request %d", i+1), 202)
	}
	a.do("POST", "/v1/auth/password-reset/request", "", map[string]string{"email": email}).want(t, "reset request 4", 429, "rate_limited")
}

// A forged X-Forwarded-For from a peer that is not a trusted proxy does not
// change the client address a session records.
func TestForgedForwardedForIsIgnored(t *testing.T) {
	a, _ := serveAPI(t)
	r, err := send("POST", a.base+"/v1/auth/register", "", map[string]string{"email": "xff@example.com", "password": "forwarded for whom"}, map[string]string{"X-Forwarded-For": "203.0.113.66"})
	if err != nil {
		t.Fatal(err)
	}
	r.want(t, "register", 201)
	list := a.do("GET", "/v1/users/me/sessions", r.pair().access, nil).want(t, "sessions", 200)
	if !strings.Contains(list.raw, `"ip":"127.0.0.1"`) || strings.Contains(list.raw, "203.0.113.66") {
		t.Fatalf("sessions: got %s, want the connection's address", list.raw)
	}
}

// Beyond the hasher's capacity, logins are shed at once with 503
// overloaded and Retry-After; the rest are answered normally.
func TestHasherShedsLoadWith503(t *testing.T) {
	a, _ := serveAPI(t, "USHER_ARGON2_MEMORY_KIB=19456", "USHER_ARGON2_TIME=2")
	var wg sync.WaitGroup
	results := make(chan response, 60)
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- a.do("POST", "/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "burst of logins"})
		}()
	}
	wg.Wait()
	close(results)
	counts := map[int]int{}
	for r := range results {
		counts[r.status]++
		if r.status == 503 && (r.body["code"] != "overloaded" || r.header.Get("Retry-After") == "") {
			t.Errorf("503: got %s Retry-After %q, want overloaded with Retry-After", r.raw, r.header.Get("Retry-After"))
		}
	}
	if counts[503] == 0 || counts[401] == 0 || counts[401]+counts[503] != 60 {
		t.Fatalf("got statuses %v, want some 401 and some 503, nothing else", counts)
	}
}
