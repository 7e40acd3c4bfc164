package actors

import (
	"context"
	"time"

	"github.com/anthdm/hollywood/actor"
)

// redisPingTimeout keeps a stalled Redis from holding up a ping: the cache
// is optional, so slow counts as degraded.
const redisPingTimeout = 250 * time.Millisecond

// cacheActor fronts Redis. Redis slow or down degrades it; it never fails a
// read.
type cacheActor struct{ deps }

func newCacheActor(d deps) actor.Producer {
	return func() actor.Receiver { return &cacheActor{d} }
}

func (a *cacheActor) Receive(c *actor.Context) {
	switch m := c.Message().(type) {
	case actor.Started, actor.Stopped:
	case Ping:
		a.sup.spawn("cache", m.Call, func() { a.ping(m) })
	}
}

func (a *cacheActor) ping(m Ping) {
	ctx, cancel := context.WithTimeout(context.Background(), redisPingTimeout)
	defer cancel()
	if err := a.redis.Ping(ctx).Err(); err != nil {
		m.ok(StateDegraded)
		return
	}
	m.ok(StateUp)
}
