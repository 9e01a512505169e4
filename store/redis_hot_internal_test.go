package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestOwnGrantsPruned: the grants a process keeps for re-seeding an empty
// Redis (join) hold about two minutes of its grants, not every grant of its
// life: a lane granting every second for ten minutes (its stamps kept, so
// each grant stays in the list once settled) keeps at most the last ~120.
// A re-seed still adds every grant within join's cutoff.
func TestOwnGrantsPruned(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := OpenRedis(context.Background(), NewMemory(), RedisOptions{Client: c, Cluster: "test", Process: "p",
		Classes: []RedisClass{{Name: "text", RPM: 1 << 20, RPD: 1 << 20}}, Projects: []string{"p1"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.pf.off = true
	lane := LaneID{Project: "p1", Class: "text"}
	ctx := context.Background()
	for i := range 600 {
		at := clock()
		if _, err := s.Reserve(ctx, Record{Lane: lane, Day: "2026-03-01", Units: 1, Covers: 1, At: at, Until: at.Add(time.Second)}); err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
		s.Stamped(lane, at)
		mu.Lock()
		now = now.Add(time.Second)
		mu.Unlock()
	}
	s.mu.Lock()
	n := len(s.grants[lane])
	cutoff := clock().Add(-2 * time.Minute).UnixMilli()
	within := 0
	for _, g := range s.grants[lane] {
		if g.score >= cutoff {
			within++
		}
	}
	s.mu.Unlock()
	if n > 125 {
		t.Errorf("%d own grants kept after 600 s of one grant a second, want about 120", n)
	}
	if within < 115 {
		t.Errorf("%d own grants within the last two minutes kept, want about 120", within)
	}
}
