package store_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// replyHook calls fn, once armed, after the first command whose reply is a
// granted grant's (a script's reply starting with "ok"), before the ledger
// reads that reply.
type replyHook struct {
	mu    sync.Mutex
	armed bool
	fn    func()
}

func (h *replyHook) arm(fn func()) { h.mu.Lock(); h.armed, h.fn = true, fn; h.mu.Unlock() }

func (h *replyHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *replyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c, ok := cmd.(*redis.Cmd)
		if !ok || err != nil {
			return err
		}
		if res, ok := c.Val().([]any); !ok || len(res) == 0 || res[0] != "ok" {
			return err
		}
		h.fire()
		return err
	}
}

// fire disarms h and calls its fn if it was armed (once per arm).
func (h *replyHook) fire() {
	h.mu.Lock()
	fn := h.fn
	if !h.armed {
		fn = nil
	}
	h.armed = false
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (h *replyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisGrantReplyDuringReseed: Redis grants a 4 slots and day units
// and loses its state (FLUSHALL) while the grant's reply is on its way; a's
// heartbeat finds the epoch gone and re-seeds before a has noted the reply.
// The re-seed used to read a's counts without that grant (its count seen
// and its slots were noted after, its Local record later still): the
// shared day count came back at 5 (the count a and b had seen) and the
// window at 5 slots (b's 3 and a's first 2, which its second grant had
// given back unused, not that grant's 4), with 9 day units granted and 7
// slots held. Now a join waits for the grants whose replies are on their
// way: 9 and 7.
func TestRedisGrantReplyDuringReseed(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 20, RPD: 100}
	hook := &replyHook{}
	a := e.openHooked(t, "a", nil, hook, cls)
	store.SetRedisPrefetch(a, false)
	b := e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	for _, g := range []struct {
		s *store.Redis
		n int
	}{{a, 2}, {b, 3}} {
		if _, err := g.s.Reserve(ctx, e.record(g.n, g.n)); err != nil {
			t.Fatal(err)
		}
	}
	e.heartbeats(t, 0, a, b) // both views: 5
	flush := e.client(t)
	joining := make(chan struct{}, 1)
	store.SetRedisJoinHook(a, func() {
		select {
		case joining <- struct{}{}:
		default:
		}
	})
	beat := make(chan error, 1)
	hook.arm(func() {
		// The grant is in Redis and its reply here: Redis loses its
		// state, and a's heartbeat re-seeds; until the join waits for
		// this grant (or, on the old code, has re-seeded without it).
		if err := flush.FlushAll(ctx).Err(); err != nil {
			t.Error(err)
		}
		go func() { _, err := a.Heartbeat(ctx); beat <- err }()
		select {
		case <-joining:
		case err := <-beat:
			beat <- err
		}
	})
	if n, err := a.Reserve(ctx, e.record(4, 4)); err != nil || n != 9 {
		t.Fatalf("a's grant of 4: day count %d, %v; want 9", n, err)
	}
	if err := <-beat; err != nil {
		t.Fatalf("a's heartbeat: %v", err)
	}
	if _, err := b.Heartbeat(ctx); err != nil { // b re-seeds too
		t.Fatal(err)
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil || len(u.Lanes) != 1 {
		t.Fatalf("Usage: %+v, %v", u, err)
	}
	if got := u.Lanes[0].Count; got < 9 {
		t.Errorf("shared day count after the re-seeds: %d; want at least the 9 units granted (a 6, b 3)", got)
	}
	if got := u.Lanes[0].Window; got < 7 {
		t.Errorf("shared window after the re-seeds: %d slots; want at least the 7 granted and not given back (a's 4, b's 3)", got)
	}
}

// reconcileHook calls fn, once armed, after the first command carrying a
// reconcile's member (process:seq:r:, reconcileScript), before the ledger
// reads its reply.
type reconcileHook struct{ replyHook }

func (h *reconcileHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		found := false
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok && strings.HasSuffix(s, ":r:") {
				found = true
			}
		}
		if !found {
			return err
		}
		h.fire()
		return err
	}
}

// TestRedisShareGrantDuringReconcile: Redis kept its state through an
// outage; as the heartbeat that reaches it again reconciles a's lane (its
// grants on the share added to Redis), a grant from the share starts
// during that round trip. It used to be counted pending and then dropped
// with the lane's pending grants once the round trip ended (reconcileLane
// deleted them all): the shared day count stayed below a's Local count
// for good (2 of 3 with the reconnect's wait for the share's grants
// removed). The reconnect now holds the share's grants until it has ended
// (1569e63): the grant waits, finds Redis reachable and asks it (3 of 3).
func TestRedisShareGrantDuringReconcile(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	hook := &reconcileHook{}
	local := store.NewMemory()
	a := e.openHooked(t, "a", local, hook, cls)
	store.SetRedisPrefetch(a, false)
	b := e.open(t, "b", cls)
	e.outageOnShare(t, a, b)
	entered := make(chan struct{}, 1)
	store.SetRedisShareHook(a, func() {
		select {
		case entered <- struct{}{}:
		default:
		}
	})
	done := make(chan error, 1)
	hook.arm(func() {
		go func() { done <- reserveErr(a, e.record(1, 1)) }()
		select {
		case err := <-done: // not held: granted from the share meanwhile
			done <- err
		case <-entered:
			if !store.RedisReconnecting(a) {
				done <- <-done
			} // else held until the reconnect ends
		}
	})
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the grant during the reconcile: %v", err)
	}
	own, err := local.Daily(ctx, "2026-03-01")
	if err != nil || len(own) != 1 || own[0].Count != 3 {
		t.Fatalf("a's Local day counts %+v, %v; want 3", own, err)
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil || len(u.Lanes) != 1 {
		t.Fatalf("Usage %+v, %v", u, err)
	}
	if got := u.Lanes[0].Count; got < 3 {
		t.Errorf("shared day count %d; want at least the 3 units a was granted", got)
	}
}
