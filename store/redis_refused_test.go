package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// failDaily is a Local store whose Daily fails: OpenRedis fails in its
// join, after its heartbeat and its limits registration.
type failDaily struct{ store.Local }

func (failDaily) Daily(context.Context, string) ([]store.DailyCount, error) {
	return nil, errors.New("daily counts unreadable")
}

// clusterState checks what Redis and s's view say of the cluster: the
// live processes (a heartbeat, Usage's processes, the processes zset) are
// want, and none of gone has a limits registration.
func clusterState(t *testing.T, e *redisEnv, s *store.Redis, want []string, gone ...string) {
	t.Helper()
	ctx := context.Background()
	if n, err := s.Heartbeat(ctx); err != nil || n != len(want) {
		t.Errorf("%s's heartbeat: %d live, %v; want %d (%v)", s.Process(), n, err, len(want), want)
	}
	if u, err := s.Usage(ctx, "2026-03-01"); err != nil || !slices.Equal(u.Processes, want) {
		t.Errorf("%s's usage: processes %v, %v; want %v", s.Process(), u.Processes, err, want)
	}
	c := e.client(t)
	lives, err := c.ZRange(ctx, "test:procs", 0, -1).Result()
	var got []string
	for _, id := range lives {
		got = append(got, store.DisplayName(id))
	}
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("processes zset %v, %v; want %v", got, err, want)
	}
	for _, p := range gone {
		if ks, err := c.Keys(ctx, "test:limits:"+p+"~*").Result(); err != nil || len(ks) != 0 {
			t.Errorf("%s's limits registration: %v, %v; want none", p, ks, err)
		}
	}
}

// outage stops Redis with a and c live, checks the share a's /healthz
// text states (1/n), restarts it and runs both past their recovery; it
// returns the processes charged as presumed dead.
func outage(t *testing.T, e *redisEnv, n int, a, c *store.Redis) []string {
	t.Helper()
	e.srv.Stop()
	for _, s := range []*store.Redis{a, c} {
		if _, err := s.Heartbeat(context.Background()); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(10 * time.Second) // past the grace
	if err := a.Health(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf(" 1/%d of each lane's RPM", n)) {
		t.Errorf("a's health during the outage: %v; want a share of 1/%d", err, n)
	}
	e.srv.Restart()
	e.heartbeats(t, 40*time.Second, a, c) // past the recovery (a TTL) and its check of the dead
	var charged []string
	for _, s := range []*store.Redis{a, c} {
		for _, ch := range s.DeadCharges() {
			charged = append(charged, ch.Process)
		}
	}
	return charged
}

// TestRedisRefusedLeavesNothing: processes that fail to start leave
// nothing counted alive. With a and c live at RPM 10, a process with RPM
// 12 is refused by OpenRedis 8 times (a supervisor restarting it), one
// with the same limits fails in OpenRedis after it registered (its Local
// store unreadable), and one that opened abandons its start (Abandon):
// a's and c's heartbeats count 2 processes, Usage lists a and c, no
// limits registration of theirs is left, an outage right after gives a
// the share 1/2, and after it nobody is presumed dead. The one that
// abandoned after a's and c's views counted it is not charged either
// (it sent nothing). Before, each refused start stayed in the live
// processes for its heartbeat's 15 s: 10 live, a share of 1/10, and each
// charged after the outage (as a newcomer saw through the binary: 11
// processes in /v1/usage and 8 charged on every lane).
func TestRedisRefusedLeavesNothing(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	a, c := e.open(t, "a", cls), e.open(t, "c", cls)
	e.heartbeats(t, 20*time.Second, a, c)
	opts := func(process string, cls store.RedisClass) store.RedisOptions {
		return store.RedisOptions{Client: e.client(t), Cluster: "test", Process: process,
			Classes: []store.RedisClass{cls}, Projects: []string{"p1"}, Now: e.clock.now}
	}
	other := cls
	other.RPM = 12
	want := "store: redis: limits differ between processes: lane p1/text: rpm 12, rpd 100, window margin 100ms here, rpm 10, rpd 100, window margin 100ms in process "
	var gone []string
	for i := range 8 {
		p := fmt.Sprintf("b%d", i)
		gone = append(gone, p)
		_, err := store.OpenRedis(ctx, store.NewMemory(), opts(p, other))
		if !errors.Is(err, store.ErrLimitsConflict) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("OpenRedis(%s) with other limits: %v; want %q...", p, err, want)
		}
		e.clock.add(time.Second)
	}
	if _, err := store.OpenRedis(ctx, failDaily{store.NewMemory()}, opts("f", cls)); err == nil || !strings.Contains(err.Error(), "daily counts unreadable") {
		t.Fatalf("OpenRedis(f) with an unreadable Local store: %v", err)
	}
	clusterState(t, e, a, []string{"a", "c"}, append(gone, "f")...)
	if ch := outage(t, e, 2, a, c); len(ch) != 0 {
		t.Errorf("presumed dead after the outage: %v; want none", ch)
	}

	// z joins, is counted in a's and c's views, then abandons its start;
	// Redis stops before a's and c's next heartbeats (their last views count
	// z: a share of 1/3, on the safe side).
	z, err := store.OpenRedis(ctx, store.NewMemory(), opts("z", cls))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	e.heartbeats(t, 0, a, c, z)
	if err := z.Abandon(ctx); err != nil {
		t.Fatal(err)
	}
	if ch := outage(t, e, 3, a, c); len(ch) != 0 {
		t.Errorf("presumed dead after the outage: %v; want none (z abandoned its start)", ch)
	}
	clusterState(t, e, a, []string{"a", "c"}, "z")
}

// beforeBeat runs fn once, before the first heartbeat script of process
// on the cluster "test" (its opening heartbeat: KEYS processes and epoch).
type beforeBeat struct {
	process string
	once    sync.Once
	fn      func()
}

func (h *beforeBeat) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeBeat) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		a := cmd.Args()
		if len(a) > 6 && (a[0] == "evalsha" || a[0] == "eval") && fmt.Sprint(a[2]) == "3" && a[3] == "test:procs" && strings.HasPrefix(fmt.Sprint(a[6]), h.process+"~") {
			h.once.Do(h.fn)
		}
		return next(ctx, cmd)
	}
}

func (h *beforeBeat) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisRefusedAtOnce: two processes with other limits start at once:
// y registers between x's check of the limits and x's heartbeat, so x is
// refused after its heartbeat (register's second check). x leaves nothing
// counted: y's heartbeat counts 1 process and Usage lists y alone. Before,
// x's heartbeat stayed for 15 s (2 live).
func TestRedisRefusedAtOnce(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	other := textClass
	other.RPM = 6
	var y *store.Redis
	h := &beforeBeat{process: "x", fn: func() { y = e.open(t, "y") }}
	cx := e.client(t)
	cx.AddHook(h)
	_, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: cx, Cluster: "test", Process: "x",
		Classes: []store.RedisClass{other}, Projects: []string{"p1"}, Now: e.clock.now})
	want := "store: redis: limits differ between processes: lane p1/text: rpm 6, rpd 8, window margin 100ms here, rpm 5, rpd 8, window margin 100ms in process y"
	if !errors.Is(err, store.ErrLimitsConflict) || err.Error() != want {
		t.Fatalf("OpenRedis(x): %v; want %q", err, want)
	}
	if y == nil {
		t.Fatal("y did not start before x's heartbeat")
	}
	clusterState(t, e, y, []string{"y"}, "x")
}
