package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// reseedFlushed joins a and b on one lane, a takes 3 day units and b 5,
// both heartbeats read the count (8), then Redis is emptied (FLUSHALL: as
// a restart without persistence, no call failing).
func reseedFlushed(t *testing.T) (*redisEnv, *store.Redis, *store.Redis) {
	t.Helper()
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 20, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	for _, g := range []struct {
		s *store.Redis
		n int
	}{{a, 3}, {b, 5}} {
		if _, err := g.s.Reserve(ctx, e.record(g.n, g.n)); err != nil {
			t.Fatal(err)
		}
	}
	e.heartbeats(t, 0, a, b)
	e.flushAll(t)
	return e, a, b
}

// checkReseedView checks s's cluster view: re-seeding with waiting (nil:
// not re-seeding), the lane's count in Redis, and while re-seeding its
// least (the larger of that, a's own and the last count a saw) and a's own.
func checkReseedView(t *testing.T, s *store.Redis, what string, waiting []string, redis, least, own int) {
	t.Helper()
	u, err := s.Usage(context.Background(), "2026-03-01")
	if err != nil {
		t.Fatalf("%s: Usage: %v", what, err)
	}
	if u.Reseeding != (waiting != nil) || !slices.Equal(u.ReseedWaiting, waiting) {
		t.Errorf("%s: Reseeding %v, waiting for %q; want %v, %q", what, u.Reseeding, u.ReseedWaiting, waiting != nil, waiting)
	}
	if len(u.Lanes) != 1 {
		t.Fatalf("%s: lanes %+v", what, u.Lanes)
	}
	l := u.Lanes[0]
	if l.Count != redis || l.Least != least || l.Own != own {
		t.Errorf("%s: day count %d in Redis, least %d, own %d; want %d, %d, %d", what, l.Count, l.Least, l.Own, redis, least, own)
	}
}

// TestRedisUsageReseeding: after Redis is emptied under two processes, the
// cluster's view says re-seeding, naming the processes that have not
// re-seeded, until both have; meanwhile the lane's least day count is never
// below the last count a saw (8: the cluster's) nor a's own (3). Before, the
// view showed a day count of 0 until a heartbeat re-seeded, and nothing said
// so.
func TestRedisUsageReseeding(t *testing.T) {
	ctx := context.Background()
	e, a, b := reseedFlushed(t)
	checkReseedView(t, a, "flushed, no re-seed yet", []string{"a", "b"}, 0, 8, 3)
	e.clock.add(time.Second)
	if _, err := a.Heartbeat(ctx); err != nil { // a notices and re-seeds
		t.Fatal(err)
	}
	checkReseedView(t, a, "a re-seeded", []string{"b"}, 8, 8, 3)
	checkReseedView(t, b, "a re-seeded, seen by b", []string{"b"}, 8, 8, 5)
	e.clock.add(time.Second)
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	checkReseedView(t, a, "both re-seeded", nil, 8, 0, 0)
	checkReseedView(t, b, "both re-seeded, seen by b", nil, 8, 0, 0)
}

// TestRedisUsageReseedingGrace: a process that does not re-seed (b stopped
// beating: killed) keeps the view re-seeding only for the grace after a's
// own re-seed (a heartbeat interval and a second).
func TestRedisUsageReseedingGrace(t *testing.T) {
	ctx := context.Background()
	e, a, _ := reseedFlushed(t)
	e.clock.add(time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.add(5 * time.Second)
	checkReseedView(t, a, "5 s after a's re-seed", []string{"b"}, 8, 8, 3)
	e.clock.add(time.Second)
	checkReseedView(t, a, "6 s after a's re-seed", nil, 8, 0, 0)
}
