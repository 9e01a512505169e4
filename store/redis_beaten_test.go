package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// loseBeatReply is a go-redis hook that, once, lets the opening heartbeat
// script of process (on the cluster "test") run in Redis and then loses
// its reply, as a read that timed out after the script ran would.
type loseBeatReply struct {
	process string
	done    atomic.Bool
}

func (h *loseBeatReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseBeatReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		a := cmd.Args()
		if err == nil && len(a) > 6 && (a[0] == "evalsha" || a[0] == "eval") && fmt.Sprint(a[2]) == "3" && a[3] == "test:procs" &&
			strings.HasPrefix(fmt.Sprint(a[6]), h.process+"~") && h.done.CompareAndSwap(false, true) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return err
	}
}

func (h *loseBeatReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// liveEntries returns how many heartbeats (live or not) and limits
// registrations Redis holds for the cluster "test".
func liveEntries(t *testing.T, e *redisEnv) (int64, int) {
	t.Helper()
	ctx := context.Background()
	c := e.client(t)
	n, err := c.ZCard(ctx, "test:procs").Result()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := c.Keys(ctx, "test:limits:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n, len(ks)
}

// TestRedisOpenBeatReplyLost: x's opening heartbeat ran in Redis but its
// reply was lost, so OpenRedis fails; x leaves nothing counted: a's next
// heartbeat counts 1 process, and Redis holds a's heartbeat and limits
// registration alone. Before, x's heartbeat stayed for its 15 s (a
// start refused, counted alive meanwhile, and charged as dead after an
// outage that began then).
func TestRedisOpenBeatReplyLost(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a := e.open(t, "a")
	cx := e.client(t)
	h := &loseBeatReply{process: "x"}
	cx.AddHook(h)
	o := e.options(t, "x")
	o.Client = cx
	if _, err := store.OpenRedis(ctx, store.NewMemory(), o); !errors.Is(err, store.ErrUnavailable) || !h.done.Load() {
		t.Fatalf("OpenRedis(x) with its heartbeat's reply lost: %v (lost %v); want ErrUnavailable", err, h.done.Load())
	}
	if n, err := a.Heartbeat(ctx); err != nil || n != 1 {
		t.Errorf("a's heartbeat: %d live, %v; want 1", n, err)
	}
	if beats, regs := liveEntries(t, e); beats != 1 || regs != 1 {
		t.Errorf("%d heartbeats, %d limits registrations in Redis; want a's alone", beats, regs)
	}
}

// TestRedisAbandonSameName: two processes given one name x (a
// misconfiguration); the second's start fails after its heartbeat (its
// Local store unreadable) and it abandons its join: the first x's
// heartbeat and limits registration stay. Before, abandon removed them by
// the name (the first counted dead until its next heartbeat).
func TestRedisAbandonSameName(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	x := e.open(t, "x")
	if _, err := store.OpenRedis(ctx, failDaily{store.NewMemory()}, e.options(t, "x")); err == nil || !strings.Contains(err.Error(), "daily counts unreadable") {
		t.Fatalf("OpenRedis(x) with an unreadable Local store: %v", err)
	}
	if beats, regs := liveEntries(t, e); beats != 1 || regs != 1 {
		t.Errorf("%d heartbeats, %d limits registrations in Redis; want the first x's", beats, regs)
	}
	u, err := x.Usage(ctx, "2026-03-01")
	if err != nil || len(u.Processes) != 1 || u.Processes[0] != "x" {
		t.Errorf("x's usage: processes %v, %v; want x", u.Processes, err)
	}
}
