package actors

import (
	"context"

	"github.com/anthdm/hollywood/actor"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/store"
)

// tokenActor owns one-time tokens: email verification and password reset.
// Like the user actor it never blocks in Receive.
type tokenActor struct{ deps }

func newTokenActor(d deps) actor.Producer {
	return func() actor.Receiver { return &tokenActor{d} }
}

func (a *tokenActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		m.ok(StateUp)
	case RequestVerification:
		a.run(m.Call, func(ctx context.Context) { a.requestVerification(ctx, m) })
	case ConfirmVerification:
		a.run(m.Call, func(ctx context.Context) { a.confirmVerification(ctx, m) })
	case RequestReset:
		a.run(m.Call, func(ctx context.Context) { a.requestReset(ctx, m) })
	case ConfirmReset:
		a.run(m.Call, func(ctx context.Context) { a.confirmReset(ctx, m) })
	}
}

func (a *tokenActor) run(call Call, f func(context.Context)) { a.goWithDeadline("token", call, f) }

func (a *tokenActor) requestVerification(ctx context.Context, m RequestVerification) {
	if !a.allow(ctx, m.Call, ratelimit.VerifyEmail, m.Claims.Email) || !a.allow(ctx, m.Call, ratelimit.VerifyIP, m.Client.IP) {
		return
	}
	plain, tok := newOneTimeToken(store.PurposeVerify, a.ttl.Verify)
	ev, err := a.mailEvent(event.VerificationRequested, m.Claims.UserID, event.Mail{To: m.Claims.Email, Token: plain})
	if err == nil {
		err = a.db.RequestVerification(ctx, m.Claims.UserID, tok, ev)
	}
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	m.answer(Reply{})
}

func (a *tokenActor) confirmVerification(ctx context.Context, m ConfirmVerification) {
	u, ch, err := a.db.ConfirmVerification(ctx, hashToken(m.Token), func(u store.User) (event.Envelope, error) {
		return newEvent(event.EmailVerified, u.ID), nil
	})
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	m.ok(viewOf(u))
}

// requestReset does the same work whether or not the account exists: the
// same limits, the same sealing, the same statements.
func (a *tokenActor) requestReset(ctx context.Context, m RequestReset) {
	if !a.allow(ctx, m.Call, ratelimit.ResetEmail, m.Email) || !a.allow(ctx, m.Call, ratelimit.ResetIP, m.Client.IP) {
		return
	}
	plain, tok := newOneTimeToken(store.PurposeReset, a.ttl.Reset)
	ev, err := a.mailEvent(event.ResetRequested, "", event.Mail{To: m.Email, Token: plain})
	if err == nil {
		err = a.db.RequestReset(ctx, m.Email, tok, ev)
	}
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	m.answer(Reply{})
}

// confirmReset checks the token before spending a hash on the new
// password, then uses it in the statements that set the password and end
// every session.
func (a *tokenActor) confirmReset(ctx context.Context, m ConfirmReset) {
	hash := hashToken(m.Token)
	u, err := a.db.TokenOwner(ctx, hash, store.PurposeReset)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	newHash, err := a.hasher.hash(m.Call, m.NewPassword)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	ev, err := a.mailEvent(event.PasswordChanged, u.ID, event.Mail{To: u.Email})
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	ch, err := a.db.ResetPassword(ctx, hash, newHash, u.ID, ev)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	m.answer(Reply{})
}
