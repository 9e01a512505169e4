package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// crashLife is a Bolt store whose records of the Redis ledger's life
// (SetSharedLife) fail once crash is set: the process dies before the
// record is written (what is already written stays).
type crashLife struct {
	*store.Bolt
	crash atomic.Bool
}

func (c *crashLife) SetSharedLife(ctx context.Context, cluster string, l store.SharedLife) error {
	if c.crash.Load() {
		return errors.New("crashed")
	}
	return c.Bolt.SetSharedLife(ctx, cluster, l)
}

// openCrash opens a ledger named process on the Bolt file at path, its
// life records failing once the returned crashLife's crash is set (from
// the start with crashed: OpenRedis fails as it records its life, after
// it replaced the previous one's charge).
func (e *redisEnv) openCrash(t *testing.T, path, process string, cls store.RedisClass, crashed bool) (*store.Redis, *crashLife, error) {
	t.Helper()
	b, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	local := &crashLife{Bolt: b}
	local.crash.Store(crashed)
	s, err := store.OpenRedis(context.Background(), local, e.options(t, process, cls))
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	store.SetRedisPrefetch(s, false)
	return s, local, nil
}

// TestRedisDeadChargeCrashAfterReconcile: c takes 1 unit on its share of
// an outage (its Bolt file records it, pending), its reconnect adds it to
// the cluster's day count, and c dies before the record saying so is
// written (a kill between the two). When c's data directory starts again,
// that unit must not be added a second time: the cluster's day count is
// the units granted, never below them. With c's reconcile marked (not
// charged) and without (killed before it marked, its heartbeat gone by
// the survivors' check: charged as dead, and that charge removed). A start
// that replaces the charge and dies before it records its own life leaves
// it replaced once, and so does a start on a copy of c's file. When Redis
// then comes back empty, c2's re-seed of c's file's counts holds the unit
// once, and the record adds nothing in the new epoch (a start on a copy
// re-seeds the copy's counts again: over, on the safe side). Before, the
// record's unit was added again: the day count one above.
func TestRedisDeadChargeCrashAfterReconcile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		charged bool
		empty   bool // then Redis restarted empty: re-seeded once
	}{
		{"reconciled, then killed", false, false},
		{"killed before its reconciled mark", true, false},
		{"reconciled, killed, Redis back empty", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newDeadFixEnv(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "c.db")
			var cl *crashLife
			var err error
			if e.c, cl, err = e.openCrash(t, path, "c", e.cls, false); err != nil {
				t.Fatal(err)
			}
			kill := closeAtEnd(t, e.c)
			e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
			e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
			e.outage(t, e.a, e.b, e.c)
			e.takeAll(t, 3, "no share", e.a, e.b)
			e.takeAll(t, 1, "no share", e.c) // recorded pending in c's file
			e.restartRedis(false)
			cl.crash.Store(true) // c dies before its record is emptied
			beat(t, e.c)
			kill() // killed: no settlement, no Leave
			rc := e.client(t)
			if tc.charged {
				// Killed before it marked its reconcile: only its
				// heartbeat, renewed as it reconnected, says it reached
				// Redis, and it is pruned a TTL later, before the
				// survivors' check (they reconnect 5 s after c).
				if err := rc.Del(ctx, "test:reconciled:"+store.RedisLife(e.c)).Err(); err != nil {
					t.Fatal(err)
				}
				e.clock.add(4 * time.Second)
			}
			e.clock.add(time.Second)
			beat(t, e.a, e.b)
			e.saturate(t, 30*time.Second, e.a, e.b)
			cs := e.charges(e.a, e.b)
			count, cUse := dayCount(t, rc, "c")
			t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
			if tc.charged {
				if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Units == 0 || count <= e.units {
					t.Fatalf("charges %+v, day count %d: want c charged units, the count above %d (the test's premise)", cs, count, e.units)
				}
			} else if len(cs) != 0 || count != e.units {
				t.Fatalf("charges %+v, day count %d: want none and %d (the test's premise)", cs, count, e.units)
			}
			if tc.empty {
				// Every process re-seeds its own data directory's counts
				// (c's by the next start on it): c's unit once.
				e.stopRedis(t, e.a, e.b)
				e.restartRedis(true)
				beat(t, e.a, e.b)
			}
			copyFile(t, path, filepath.Join(dir, "c-copy.db"))
			// A start that replaces c's charge and dies before it records
			// its own life: the next start does not replace it again.
			if _, _, err := e.openCrash(t, path, "c1", e.cls, true); err == nil {
				t.Fatal("c1 started though its life could not be recorded")
			}
			if n, _ := dayCount(t, rc, "c"); n != e.units {
				t.Errorf("after a start that replaced c's charge and died: day count %d, want %d", n, e.units)
			}
			c2 := e.openBolt(t, path, "c2", e.cls)
			t.Cleanup(func() { c2.Close() })
			if fx := c2.DeadFixes(); len(fx) != 0 {
				t.Errorf("c2 replaced %+v, want nothing (c1 did)", fx)
			}
			if tc.empty {
				// The longer recovery, and the survivors' charge of c (of
				// the day only) in the new epoch.
				e.saturate(t, 130*time.Second, e.a, e.b, c2)
			}
			if n, _ := dayCount(t, rc, "c"); n != e.units {
				t.Errorf("after c2 started on c's file: day count %d, want %d", n, e.units)
			}
			// A second start, on a copy of c's file made before c1 and c2.
			c3 := e.openBolt(t, filepath.Join(dir, "c-copy.db"), "c3", e.cls)
			t.Cleanup(func() { c3.Close() })
			e.saturate(t, 10*time.Second, e.a, e.b, c2)
			count, cUse = dayCount(t, rc, "c")
			switch {
			case tc.empty:
				// c's units are in its file's counts, re-seeded under c2;
				// the copy's start re-seeds them again (join: a data
				// directory's counts are added once per epoch per copy;
				// over, never below).
				if count < e.units || cUse != 0 {
					t.Errorf("after a start on a copy of c's file: day count %d, c's part %d; want at least %d and 0", count, cUse, e.units)
				}
				t.Logf("after a start on a copy of c's file, Redis back empty: day count %d for %d granted", count, e.units)
			case count != e.units || cUse != 2:
				t.Errorf("after c's data directory started again: day count %d, c's part %d; want %d (the units granted, c's share unit once) and 2",
					count, cUse, e.units)
			}
		})
	}
}

// TestRedisDeadChargeReplacedAcrossMidnight: c takes 1 unit of its share
// on a Pacific day (2026-03-01) and is killed in the outage; Redis answers
// again after Pacific midnight, and the survivors charge c on the new day
// (2026-03-02: it may have sent on its share until then). When c's data
// directory starts again, each day's count is corrected on its own: the
// old day gets c's recorded unit, the new day loses the charge (c sent
// nothing on it), each equal to the units granted on it.
func TestRedisDeadChargeReplacedAcrossMidnight(t *testing.T) {
	ctx := context.Background()
	const d1, d2 = "2026-03-01", "2026-03-02"
	e := newDeadFixEnvAt(t, time.Date(2026, 3, 2, 7, 56, 0, 0, time.UTC)) // 23:56 Pacific
	granted := map[string]int{}
	take := func(s *store.Redis, day string, n int) bool {
		t.Helper()
		r := e.record(n, n)
		r.Day = day
		if _, err := s.Reserve(ctx, r); err != nil {
			if !errors.Is(err, store.ErrNoGrant) {
				t.Fatalf("%s: %v", s.Process(), err)
			}
			return false
		}
		for range n {
			s.Stamped(lane, e.clock.now().Add(e.cls.Margin))
		}
		granted[day] += n
		return true
	}
	path := filepath.Join(t.TempDir(), "c.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	for _, s := range []*store.Redis{e.a, e.b, e.c} {
		if !take(s, d1, 1) {
			t.Fatalf("%s: no grant", s.Process())
		}
	}
	e.outage(t, e.a, e.b, e.c) // 23:57:53
	for _, s := range []*store.Redis{e.a, e.b} {
		if !take(s, d1, 3) {
			t.Fatalf("%s: no share", s.Process())
		}
	}
	if !take(e.c, d1, 1) {
		t.Fatal("c: no share")
	}
	kill()                       // killed
	e.clock.add(3 * time.Minute) // 00:00:53, the new day
	e.srv.Restart()
	var cs []store.DeadCharge
	for el := time.Duration(0); el < 30*time.Second; el += time.Second {
		for _, s := range []*store.Redis{e.a, e.b} {
			if el%(5*time.Second) == 0 {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20 && take(s, d2, 1); i++ {
			}
			cs = append(cs, s.DeadCharges()...)
		}
		e.clock.add(time.Second)
	}
	if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Day != d2 || cs[0].Lanes[0].Units == 0 {
		t.Fatalf("charges %+v, want c's once, on %s (the test's premise)", cs, d2)
	}
	rc := e.client(t)
	count := func(day string) int {
		n, err := rc.Get(ctx, "test:day:"+day+":2:p1/text").Int()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Logf("c charged %+v; day counts %d, %d; granted %v", cs[0].Lanes[0], count(d1), count(d2), granted)
	c2 := e.openBolt(t, path, "c2", e.cls)
	t.Cleanup(func() { c2.Close() })
	for _, day := range []string{d1, d2} {
		if n := count(day); n != granted[day] {
			t.Errorf("after c's data directory started again: %s's count %d, want %d (granted on it)", day, n, granted[day])
		}
	}
	fx := c2.DeadFixes()
	if len(fx) != 2 || fx[0].Day != d1 || fx[0].Counted != 1 || fx[0].Charged != 0 ||
		fx[1].Day != d2 || fx[1].Counted != 0 || fx[1].Charged != cs[0].Lanes[0].Units {
		t.Errorf("c2's replacements %+v, want %s counted 1, %s charged %d counted 0", fx, d1, d2, cs[0].Lanes[0].Units)
	}
}

// TestRedisDeadChargeSecondOutage: c's reconnect after a first outage adds
// its share unit to Redis (and marks it added with its record's number);
// in a second outage c takes another unit on its share and is killed
// before it reconnects. When its data directory starts again, that unit,
// in a record written after the mark, is added: the day count is the units
// granted, never below them (a mark that skipped every later record would
// leave it one below).
func TestRedisDeadChargeSecondOutage(t *testing.T) {
	e := newDeadFixEnv(t)
	path := filepath.Join(t.TempDir(), "c.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	outage := func() {
		t.Helper()
		e.outage(t, e.a, e.b, e.c)
		e.takeAll(t, 3, "no share", e.a, e.b)
		e.takeAll(t, 1, "no share", e.c)
	}
	outage()
	e.restartRedis(false)
	e.saturate(t, 30*time.Second, e.a, e.b, e.c) // c reconnects: its unit in Redis
	rc := e.client(t)
	if n, _ := dayCount(t, rc, "c"); n != e.units {
		t.Fatalf("day count %d after the first outage, want %d", n, e.units)
	}
	outage()
	kill() // killed
	e.restartRedis(false)
	beat(t, e.a, e.b)
	e.saturate(t, 30*time.Second, e.a, e.b)
	cs := e.charges(e.a, e.b)
	count, cUse := dayCount(t, rc, "c")
	t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
	c2 := e.openBolt(t, path, "c2", e.cls)
	t.Cleanup(func() { c2.Close() })
	if count, cUse = dayCount(t, rc, "c"); count != e.units {
		t.Errorf("after c's data directory started again: day count %d, c's part %d; want %d (the units granted)",
			count, cUse, e.units)
	}
}
