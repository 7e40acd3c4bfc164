package actors

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/google/uuid"

	"github.com/usher-auth/usher/internal/event"
	"github.com/usher-auth/usher/internal/ratelimit"
	"github.com/usher-auth/usher/internal/testhooks"
	"github.com/usher-auth/usher/store"
)

// userActor owns accounts. It never blocks in Receive: each request's
// work runs in a goroutine that answers the request's own Call, so one slow
// query never serializes a node.
type userActor struct{ deps }

func newUserActor(d deps) actor.Producer {
	return func() actor.Receiver { return &userActor{d} }
}

func (a *userActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		testhooks.Panic(m.Testhook, "user.receive")
		a.run(m.Call, func(ctx context.Context) { a.ping(ctx, m) })
	case Register:
		a.run(m.Call, func(ctx context.Context) { a.register(ctx, m) })
	case Login:
		a.run(m.Call, func(ctx context.Context) { a.login(ctx, m) })
	case UpdateMe:
		a.run(m.Call, func(ctx context.Context) { a.updateMe(ctx, m) })
	case ChangePassword:
		a.run(m.Call, func(ctx context.Context) { a.changePassword(ctx, m) })
	case DeleteMe:
		a.run(m.Call, func(ctx context.Context) { a.deleteMe(ctx, m) })
	case UpdateUser:
		a.run(m.Call, func(ctx context.Context) { a.updateUser(ctx, m) })
	case DeleteUser:
		a.run(m.Call, func(ctx context.Context) { a.deleteUser(ctx, m.Call, m.UserID) })
	case SendEmail:
		a.run(m.Call, func(ctx context.Context) { a.sendEmail(ctx, m) })
	}
}

func (a *userActor) run(call Call, f func(context.Context)) { a.goWithDeadline("user", call, f) }

func (a *userActor) ping(ctx context.Context, m Ping) {
	testhooks.Panic(m.Testhook, "user.goroutine")
	testhooks.Delay(m.Testhook, "user.slow", time.Second)
	if err := a.db.Ping(ctx); err != nil {
		m.ok(StateDown)
		return
	}
	m.ok(StateUp)
}

func (a *userActor) register(ctx context.Context, m Register) {
	if !a.allow(ctx, m.Call, ratelimit.RegisterIP, m.Client.IP) {
		return
	}
	hash, err := a.hasher.hash(m.Call, m.Password)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	id := uuid.NewString()
	plain, verify := newOneTimeToken(store.PurposeVerify, a.ttl.Verify)
	ev, err := a.mailEvent(event.UserRegistered, id, event.Mail{To: m.Email, Token: plain})
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	u, s, now, ch, err := a.db.Register(ctx, store.NewUser{ID: id, Email: m.Email, PasswordHash: hash, Name: m.Name}, a.newSession(m.Call), verify, ev)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	a.answerPair(m.Call, u, s, now)
}

func (a *userActor) login(ctx context.Context, m Login) {
	if !a.allow(ctx, m.Call, ratelimit.LoginIP, m.Client.IP) || !a.allow(ctx, m.Call, ratelimit.LoginEmail, m.Email) {
		return
	}
	u, err := a.db.UserByEmail(ctx, m.Email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.fail(m.Call, err)
		return
	}
	// An unknown email is verified against a dummy hash: the same work and
	// the same answer as a wrong password.
	ok, rehash, err := a.hasher.verify(m.Call, m.Password, u.PasswordHash)
	if err != nil && !isHashRefusal(err) {
		a.fail(m.Call, err)
		return
	}
	if !ok {
		m.fail(CodeInvalidCredentials, "wrong email or password")
		return
	}
	if u.DisabledAt != nil {
		m.fail(CodeAccountDisabled, "this account is disabled")
		return
	}
	if rehash {
		a.rehash(ctx, m.Call, u, m.Password)
	}
	testhooks.Delay(m.Testhook, "user.login.hold", 2*time.Second)
	u, s, now, err := a.db.StartSession(ctx, u.ID, u.CredentialsVersion, a.newSession(m.Call))
	if errors.Is(err, store.ErrStale) {
		// The password changed while this login checked the old one.
		m.fail(CodeInvalidCredentials, "wrong email or password")
		return
	}
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.answerPair(m.Call, u, s, now)
}

// rehash replaces an imported or outdated hash after a successful login. A
// failure only means it is tried again next time.
func (a *userActor) rehash(ctx context.Context, call Call, u store.User, pw string) {
	hash, err := a.hasher.hash(call, pw)
	if err == nil {
		err = a.db.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash)
	}
	if err != nil {
		a.sup.log.Warn("re-hash password", "user", u.ID, "err", err)
	}
}

func (a *userActor) newSession(call Call) store.NewSession {
	return store.NewSession{
		ID:        uuid.NewString(),
		Lifetime:  a.life.Session,
		UserAgent: truncate(call.Client.UserAgent, 512),
		IP:        call.Client.IP,
	}
}

func (a *userActor) answerPair(call Call, u store.User, s store.Session, now time.Time) {
	pair, err := a.mint.pair(u, s, now)
	if err != nil {
		a.fail(call, err)
		return
	}
	call.ok(pair)
}

func (a *userActor) updateMe(ctx context.Context, m UpdateMe) {
	u, ch, err := a.db.SetName(ctx, m.Claims.UserID, m.Name)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	m.ok(viewOf(u))
}

// checkPassword loads the caller and verifies pw; on failure it has
// answered (403 invalid_credentials on these routes).
func (a *userActor) checkPassword(ctx context.Context, call Call, pw string) (store.User, bool) {
	u, err := a.db.UserByID(ctx, call.Claims.UserID)
	if err != nil {
		a.fail(call, err)
		return u, false
	}
	ok, _, err := a.hasher.verify(call, pw, u.PasswordHash)
	if err != nil && !isHashRefusal(err) {
		a.fail(call, err)
		return u, false
	}
	if !ok {
		call.fail(CodeInvalidCredentials, "the current password is wrong")
		return u, false
	}
	return u, true
}

func (a *userActor) changePassword(ctx context.Context, m ChangePassword) {
	u, ok := a.checkPassword(ctx, m.Call, m.Current)
	if !ok {
		return
	}
	hash, err := a.hasher.hash(m.Call, m.New)
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	ev, err := a.mailEvent(event.PasswordChanged, u.ID, event.Mail{To: u.Email})
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	ch, err := a.db.ChangePassword(ctx, u.ID, u.CredentialsVersion, hash, m.Claims.SessionID, ev)
	if errors.Is(err, store.ErrStale) {
		m.fail(CodeInvalidCredentials, "the password changed meanwhile; sign in again")
		return
	}
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	m.answer(Reply{})
}

func (a *userActor) deleteMe(ctx context.Context, m DeleteMe) {
	if _, ok := a.checkPassword(ctx, m.Call, m.Password); !ok {
		return
	}
	a.deleteUser(ctx, m.Call, m.Claims.UserID)
}

func (a *userActor) deleteUser(ctx context.Context, call Call, id string) {
	ch, err := a.db.DeleteUser(ctx, id, newEvent(event.UserDeleted, id))
	if err != nil {
		a.fail(call, err)
		return
	}
	a.committed(ctx, ch)
	call.answer(Reply{})
}

func (a *userActor) updateUser(ctx context.Context, m UpdateUser) {
	u, ch, err := a.db.AdminUpdate(ctx, m.UserID, store.AdminChange{Role: m.Role, Disabled: m.Disabled})
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.committed(ctx, ch)
	m.ok(viewOf(u))
}

// sendEmail queues an admin's email through the same sealed pipeline.
func (a *userActor) sendEmail(ctx context.Context, m SendEmail) {
	if !a.allow(ctx, m.Call, ratelimit.AdminEmail, m.Claims.UserID) {
		return
	}
	ev, err := a.mailEvent(event.EmailRequested, "", event.Mail{To: m.To, Subject: m.Subject, Text: m.Text})
	if err == nil {
		err = a.db.QueueEvent(ctx, ev)
	}
	if err != nil {
		a.fail(m.Call, err)
		return
	}
	a.log.Info("admin action: email queued", "admin", m.Claims.UserID, "event", ev.ID, "request_id", m.ID)
	m.answer(Reply{})
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
