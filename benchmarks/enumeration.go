package benchmarks

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// Enumeration is the timing side channel check of BUDGETS.md: login for an
// unknown address vs a wrong password, and reset requests for an unknown vs
// a known address, in interleaved trials, one request at a time.
type Enumeration struct {
	Trials int              `json:"trials"`
	Runs   []EnumerationRun `json:"runs"`
}

// EnumerationRun is one run of both checks. A side that was not measured
// (its scenario not selected, or its route failing) has Error set.
type EnumerationRun struct {
	Run   int             `json:"run"`
	Login EnumerationPair `json:"login"` // A: unknown email, B: wrong password
	Reset EnumerationPair `json:"reset"` // A: unknown email, B: known email
}

// EnumerationPair compares the latencies of two kinds of request.
type EnumerationPair struct {
	Measured  bool           `json:"measured"`
	A         string         `json:"a"`
	B         string         `json:"b"`
	AStats    LatencySummary `json:"a_latency"`
	BStats    LatencySummary `json:"b_latency"`
	AMedianMs float64        `json:"a_median_ms"` // exact, from every sample
	BMedianMs float64        `json:"b_median_ms"`
	DiffMs    float64        `json:"median_difference_ms"` // |median A − median B|
	Errors    int            `json:"errors"`               // answers other than the expected status
	Error     string         `json:"error"`
}

const (
	enumWarmup    = 10 // discarded pairs before the trials
	wrongPassword = "usher-bench wrong-guess-31"
)

// enumerate runs both checks once, for the scenarios that were selected.
func (b *bench) enumerate(ctx context.Context, run int) error {
	er := EnumerationRun{Run: run}
	defer func() { b.res.Enumeration.Runs = append(b.res.Enumeration.Runs, er) }()
	if b.enumUsers == nil {
		users, err := b.f.importUsers(ctx, "enum", 16)
		if err != nil {
			return err
		}
		b.enumUsers = users
	}
	c := newClient(b.o.Base, 4)
	defer c.close()
	login := func(email string) []byte {
		return jsonBody(map[string]string{"email": email, "password": wrongPassword})
	}
	if b.selected("login") {
		b.progress(fmt.Sprintf("enumeration run %d/%d: login unknown email vs wrong password, %d trials each", run, b.o.Runs, b.o.EnumTrials))
		er.Login = b.pair(ctx, c, "/v1/auth/login", http.StatusUnauthorized,
			"unknown email", func(k int) []byte { return login(b.f.email("nobody")) },
			"wrong password", func(k int) []byte { return login(b.enumUsers[k%len(b.enumUsers)]) })
	} else {
		er.Login.Error = "login not selected"
	}
	if b.selected("reset-request") {
		b.progress(fmt.Sprintf("enumeration run %d/%d: reset request unknown vs known email, %d trials each", run, b.o.Runs, b.o.EnumTrials))
		reset := func(email string) []byte { return jsonBody(map[string]string{"email": email}) }
		er.Reset = b.pair(ctx, c, "/v1/auth/password-reset/request", http.StatusAccepted,
			"unknown email", func(k int) []byte { return reset(b.f.email("nobody")) },
			"known email", func(k int) []byte { return reset(b.enumUsers[k%len(b.enumUsers)]) })
	} else {
		er.Reset.Error = "reset-request not selected"
	}
	b.clearProgress()
	for _, p := range []struct {
		what string
		p    EnumerationPair
	}{{"login", er.Login}, {"reset request", er.Reset}} {
		if p.p.Measured {
			b.logf("enumeration run %d: %s: %s median %s, %s median %s, difference %.2f ms", run, p.what,
				p.p.A, fmtMs(p.p.AMedianMs), p.p.B, fmtMs(p.p.BMedianMs), p.p.DiffMs)
		}
	}
	return ctx.Err()
}

func (b *bench) selected(name string) bool {
	for _, s := range b.res.Scenarios {
		if s.Name == name {
			return true
		}
	}
	return false
}

// pair sends trials of a and b one at a time, each pair in random order,
// and compares their medians.
func (b *bench) pair(ctx context.Context, c *client, path string, want int,
	aName string, a func(k int) []byte, bName string, bb func(k int) []byte) EnumerationPair {
	p := EnumerationPair{A: aName, B: bName}
	ha, hb := newHist(histDigits), newHist(histDigits)
	var ra, rb []float64 // exact, for the medians compared
	for k := range b.o.EnumTrials + enumWarmup {
		sides := []int{0, 1}
		if rand.IntN(2) == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			body := a(k)
			if side == 1 {
				body = bb(k)
			}
			start := time.Now()
			o := c.call(ctx, http.MethodPost, path, body, "", nil)
			took := time.Since(start)
			if ctx.Err() != nil {
				p.Error = ctx.Err().Error()
				return p
			}
			if err := expect(o, want, "POST "+path); err != nil {
				p.Errors++
				if o.Status == http.StatusNotImplemented || p.Errors > b.o.EnumTrials/10 {
					p.Error = err.Error()
					return p
				}
				continue
			}
			if k < enumWarmup {
				continue
			}
			if side == 0 {
				ha.RecordValue(max(took.Microseconds(), histMin))
				ra = append(ra, msOf(took))
			} else {
				hb.RecordValue(max(took.Microseconds(), histMin))
				rb = append(rb, msOf(took))
			}
		}
	}
	if len(ra) == 0 || len(rb) == 0 {
		p.Error = "no trial answered as expected"
		return p
	}
	p.Measured = true
	p.AStats, p.BStats = Summarize(ha), Summarize(hb)
	p.AMedianMs, p.BMedianMs = round(median(ra), 3), round(median(rb), 3)
	p.DiffMs = round(math.Abs(p.AMedianMs-p.BMedianMs), 3)
	return p
}
