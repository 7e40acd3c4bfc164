package actors

import "github.com/anthdm/hollywood/actor"

// tokenActor owns one-time tokens: email verification and password reset.
type tokenActor struct{ deps }

func newTokenActor(d deps) actor.Producer {
	return func() actor.Receiver { return &tokenActor{d} }
}

func (a *tokenActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		m.ok(StateUp)
	}
}
