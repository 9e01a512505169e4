package store_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// The Redis ledger's per-request and per-grant allocations (issue 13: the
// dispatch path with a Redis ledger within 20 % of the in-memory one, see
// bench/README.md (b)). Every lease stamped calls Stamped; every grant
// calls the grant script. These pin what the hot path allocates.

// bigClass: limits no test here reaches, so every grant is granted.
var bigClass = store.RedisClass{Name: "text", RPM: 1 << 30, RPD: 1 << 30, Margin: 100 * time.Millisecond}

// TestRedisStampedAllocs: stamping a grant's leases allocates nothing (the
// grant's room for its stamps is made once, with the grant; they are
// trimmed in place past 2 × Covers + 8).
func TestRedisStampedAllocs(t *testing.T) {
	e := newRedisEnv(t)
	s := e.open(t, "a", bigClass)
	store.SetRedisPrefetch(s, false)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	at := e.clock.now()
	least := uint64(1 << 62)
	for range 3 { // the least of three: another goroutine may allocate
		if _, err := s.Reserve(context.Background(), e.record(100, 100)); err != nil {
			t.Fatal(err)
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range 250 {
			s.Stamped(lane, at)
		}
		runtime.ReadMemStats(&m1)
		least = min(least, m1.Mallocs-m0.Mallocs)
	}
	if least != 0 {
		t.Errorf("Stamped: %d allocations for a grant's 250 stamps, want 0", least)
	}
}

// TestRedisGrantAllocs: one grant (Reserve of a record, each settling the
// previous grant) allocates at most grantAllocs objects, go-redis's
// command and reply included (84 here before the grant script's keys were
// built once per lane and its arguments sized once; 51 after; 44 since the
// script's reply gives its numbers as integers).
func TestRedisGrantAllocs(t *testing.T) {
	e := newRedisEnv(t)
	s := e.open(t, "a", bigClass)
	store.SetRedisPrefetch(s, false)
	ctx := context.Background()
	n := testing.AllocsPerRun(50, func() {
		if _, err := s.Reserve(ctx, e.record(100, 100)); err != nil {
			t.Fatal(err)
		}
		s.Stamped(lane, e.clock.now())
	})
	t.Logf("%v allocations a grant", n)
	if n > grantAllocs {
		t.Errorf("a grant: %v allocations, want at most %d", n, grantAllocs)
	}
}

const grantAllocs = 60
