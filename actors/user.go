package actors

import (
	"context"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/usher-auth/usher/internal/testhooks"
)

// userActor owns accounts. It never blocks in Receive: each request's
// database work runs in a goroutine that answers the request's own Call.
type userActor struct{ deps }

func newUserActor(d deps) actor.Producer {
	return func() actor.Receiver { return &userActor{d} }
}

func (a *userActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		testhooks.Panic(m.Testhook, "user.receive")
		a.sup.spawn("user", m.Call, func() { a.ping(m) })
	}
}

func (a *userActor) ping(m Ping) {
	testhooks.Panic(m.Testhook, "user.goroutine")
	testhooks.Delay(m.Testhook, "user.slow", time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), m.Deadline)
	defer cancel()
	if err := a.db.Ping(ctx); err != nil {
		m.ok(StateDown)
		return
	}
	m.ok(StateUp)
}
