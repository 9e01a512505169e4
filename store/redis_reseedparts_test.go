package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// The re-seed of an empty Redis counts each process's part of the day
// (seedScript): verifier10's X12 (a process stopped cleanly, then Redis
// unreachable while the others sent on their shares, then back empty: the
// cluster's day count stayed 254-391 units below the API's to the end)
// and newcomer10's N10-5 (a dead charge replaced came back with an empty
// restart). On main at 6fdf4bc the re-seed was max(the largest count a
// live process saw, the sum of the live processes' own counts): each test
// below fails there.

// reseedCls: a share of the window (RPM / 2 or / 3) holds the grants of
// an outage round below.
var reseedCls = store.RedisClass{Name: "text", RPM: 30, RPD: 1000, Margin: 100 * time.Millisecond}

// stopCleanly stops s as a daemon's clean exit does: out of the live
// processes (Leave), then its Local store closed.
func stopCleanly(t *testing.T, s *store.Redis) {
	t.Helper()
	if err := s.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// outageShares stops Redis, fails each of ss's heartbeat, and runs rounds
// of the outage 63 s apart (the first past the grace and every slot granted
// before it):
// in each, every process of ss takes per units on its share. Redis stays
// stopped.
func (e *deadEnv) outageShares(t *testing.T, rounds, per int, ss ...*store.Redis) {
	t.Helper()
	e.srv.Stop()
	for _, s := range ss {
		if _, err := s.Heartbeat(context.Background()); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(102 * time.Second)
	for r := range rounds {
		if r > 0 {
			e.clock.add(63 * time.Second)
		}
		for _, s := range ss {
			if !e.take(t, s, per, per) {
				t.Fatalf("%s: no share in round %d: %v", s.Process(), r, reserveErr(s, e.record(1, 1)))
			}
		}
	}
	e.clock.add(time.Second)
}

// reseedCount is the lane's day count in Redis.
func reseedCount(t *testing.T, e *deadEnv) int {
	t.Helper()
	n, _ := dayCount(t, e.client(t), "")
	return n
}

// TestRedisReseedGoneProcess: verifier10's X12 order of events. Of three
// processes, c takes 6 units and stops cleanly; a and b's views hold its
// part (gone); Redis is unreachable while a and b send 20 units each on
// their shares, then comes back empty. Each re-seed counts c's part from
// its last view: the day count is every unit granted (46) once a has
// re-seeded, and stays so once both have. Before, c's 6 were lost: the
// count was the sum of a and b's own counts (40) or the last count seen
// (10), whichever was larger.
func TestRedisReseedGoneProcess(t *testing.T) {
	ctx := context.Background()
	e := &deadEnv{redisEnv: newRedisEnv(t), cls: reseedCls}
	a, b, c := e.open(t, "a", e.cls), e.open(t, "b", e.cls), e.open(t, "c", e.cls)
	for _, s := range []*store.Redis{a, b, c} {
		store.SetRedisPrefetch(s, false)
	}
	e.heartbeats(t, 20*time.Second, a, b, c)
	for _, g := range []struct {
		s *store.Redis
		n int
	}{{a, 2}, {b, 2}, {c, 6}} {
		if !e.take(t, g.s, g.n, g.n) {
			t.Fatalf("%s: no grant", g.s.Process())
		}
	}
	stopCleanly(t, c)
	e.heartbeats(t, 5*time.Second, a, b) // their views: c gone, its 6 units
	e.outageShares(t, 2, 10, a, b)
	e.srv.RestartEmpty()
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if n := reseedCount(t, e); n < 6+22 {
		t.Errorf("day count %d after a's re-seed; want at least %d (c's 6, a's 22)", n, 6+22)
	}
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if n := reseedCount(t, e); n != e.units {
		t.Errorf("day count %d after both re-seeded; want %d, every unit granted (c's 6 included, none twice)", n, e.units)
	}
	// Past the recovery, granting again: still every unit.
	e.saturate(t, 100*time.Second, a, b)
	if n := reseedCount(t, e); n < e.units {
		t.Errorf("day count %d after the recovery; want at least %d granted", n, e.units)
	}
}

// TestRedisReseedOrders: four processes, d stopped cleanly (its part in
// the views), a, b and c each with units from Redis and from their shares
// of an outage, then Redis back empty; they re-seed in three orders (one
// Redis each). The count is the same in each order, every unit granted,
// after each re-seed never below d's part plus the own counts re-seeded so
// far. Before, d's units were lost in every order.
func TestRedisReseedOrders(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			ctx := context.Background()
			e := &deadEnv{redisEnv: newRedisEnv(t), cls: reseedCls}
			ss := []*store.Redis{e.open(t, "a", e.cls), e.open(t, "b", e.cls), e.open(t, "c", e.cls)}
			d := e.open(t, "d", e.cls)
			all := append([]*store.Redis{d}, ss...)
			for _, s := range all {
				store.SetRedisPrefetch(s, false)
			}
			e.heartbeats(t, 20*time.Second, all...)
			own := []int{1, 2, 3}
			for i, s := range ss {
				if !e.take(t, s, own[i], own[i]) {
					t.Fatalf("%s: no grant", s.Process())
				}
			}
			if !e.take(t, d, 5, 5) {
				t.Fatal("d: no grant")
			}
			stopCleanly(t, d)
			e.heartbeats(t, 5*time.Second, ss...)
			e.outageShares(t, 2, 6, ss...) // 12 each: a share of RPM / 3 = 10 a round
			for i := range own {
				own[i] += 12
			}
			e.srv.RestartEmpty()
			least := 5
			for _, i := range order {
				if _, err := ss[i].Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
				least += own[i]
				if n := reseedCount(t, e); n < least {
					t.Errorf("day count %d once %s re-seeded; want at least %d (d's 5 and the own counts re-seeded)", n, ss[i].Process(), least)
				}
			}
			if n := reseedCount(t, e); n != e.units {
				t.Errorf("day count %d once all re-seeded; want %d, every unit granted once", n, e.units)
			}
		})
	}
}

// TestRedisReseedRestartedLife: c, on a Bolt file, takes 4 units and is
// killed; c2 starts on its file under another name (a daemon's default
// names hold the pid), so the views hold c's 4 under c (gone) and c2's own
// count holds them too; so with c3 after c2. b stops cleanly; an outage
// with share sends; Redis back empty. The last life's re-seed names the
// file's earlier lives (SharedLife.Prev): their parts are counted within
// its own count, once: the count is every unit granted, after one restart
// and after three. Before, b's units were lost; and with the previous
// life alone named (this change's first form), the lives before it were
// counted twice.
func TestRedisReseedRestartedLife(t *testing.T) {
	for _, restarts := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d restarts", restarts), func(t *testing.T) {
			ctx := context.Background()
			e := &deadEnv{redisEnv: newRedisEnv(t), cls: reseedCls}
			path := filepath.Join(t.TempDir(), "c.db")
			a, b := e.open(t, "a", e.cls), e.open(t, "b", e.cls)
			c := e.openBolt(t, path, "c", e.cls)
			for _, s := range []*store.Redis{a, b} {
				store.SetRedisPrefetch(s, false)
			}
			e.heartbeats(t, 20*time.Second, a, b, c)
			for _, g := range []struct {
				s *store.Redis
				n int
			}{{a, 1}, {b, 3}, {c, 4}} {
				if !e.take(t, g.s, g.n, g.n) {
					t.Fatalf("%s: no grant", g.s.Process())
				}
			}
			for i := range restarts {
				if err := c.Close(); err != nil { // killed
					t.Fatal(err)
				}
				for range 4 { // c's heartbeat expires and is pruned: c2 not held
					e.clock.add(5 * time.Second)
					beat(t, a, b)
				}
				c = e.openBolt(t, path, fmt.Sprintf("c%d", i+2), e.cls)
				e.heartbeats(t, 20*time.Second, a, b, c) // its views give it a share
				if !e.take(t, c, 2, 2) {
					t.Fatalf("%s: no grant", c.Process())
				}
			}
			t.Cleanup(func() { c.Close() })
			stopCleanly(t, b)
			e.heartbeats(t, 5*time.Second, a, c)
			e.outageShares(t, 2, 10, a, c)
			e.srv.RestartEmpty()
			for _, s := range []*store.Redis{a, c} {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			n := reseedCount(t, e)
			t.Logf("%d restarts: day count %d, units granted %d", restarts, n, e.units)
			if n != e.units {
				t.Errorf("day count %d; want %d, every unit granted (b's 3 included), c's lives' units once", n, e.units)
			}
		})
	}
}

// TestRedisReseedAfterChargeReplaced: newcomer10's N10-5. c is killed in
// an outage and charged 9 day units (it took 1 on its share); its data
// directory starts again (c2) and replaces the charge by that 1: the day
// count is every unit granted. The views after it read that count; then
// Redis restarts empty. The re-seed counts the parts the views read: the
// count is every unit granted, not the 8 units of the charge removed.
// Before, the largest count seen (the charged one) came back.
func TestRedisReseedAfterChargeReplaced(t *testing.T) {
	ctx := context.Background()
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 9, RPD: 900, Margin: 100 * time.Millisecond}}
	path := filepath.Join(t.TempDir(), "c.db")
	e.a, e.b = e.open(t, "a", e.cls), e.open(t, "b", e.cls)
	e.c = e.openBolt(t, path, "c", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	for _, s := range []*store.Redis{e.a, e.b, e.c} {
		if !e.take(t, s, 1, 1) {
			t.Fatalf("%s: no grant", s.Process())
		}
	}
	e.clock.add(time.Second)
	e.srv.Stop()
	for _, s := range []*store.Redis{e.a, e.b, e.c} {
		if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(92 * time.Second)
	for _, s := range []*store.Redis{e.a, e.b} {
		if !e.take(t, s, 3, 3) {
			t.Fatalf("%s: no share", s.Process())
		}
	}
	if !e.take(t, e.c, 1, 1) {
		t.Fatal("c: no share")
	}
	if err := e.c.Close(); err != nil { // killed
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 30*time.Second, e.a, e.b)
	if cs := e.charges(e.a, e.b); len(cs) != 1 || cs[0].Lanes[0].Units != 9 {
		t.Fatalf("charges %+v; want c's, 9 units (the test's premise)", cs)
	}
	if n := reseedCount(t, e); n != e.units+8 {
		t.Fatalf("day count %d after the charge; want %d (the test's premise)", n, e.units+8)
	}
	c2 := e.openBolt(t, path, "c2", e.cls)
	t.Cleanup(func() { c2.Close() })
	if n := reseedCount(t, e); n != e.units {
		t.Fatalf("day count %d after c2 replaced the charge; want %d (the test's premise)", n, e.units)
	}
	e.heartbeats(t, 10*time.Second, e.a, e.b, c2) // views of the replaced count
	e.srv.Stop()
	e.srv.RestartEmpty()
	for _, s := range []*store.Redis{e.a, e.b, c2} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := reseedCount(t, e); n != e.units {
		t.Errorf("day count %d after the empty restart; want %d, every unit granted (not the %d of the replaced charge)", n, e.units, e.units+8)
	}
}

// TestRedisReseedAfterGiveBack: the other half of N10-5. a is granted 10
// day units and gives 8 back unused (Settle: the day count and its Local
// count fall to 2); b's and a's views read 10, then 2; Redis restarts
// empty. The re-seeded count is 2, as before the restart. Before, the
// largest count seen (10) came back: the 8 units given back counted
// again for the rest of the day.
func TestRedisReseedAfterGiveBack(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a", reseedCls), e.open(t, "b", reseedCls)
	for _, s := range []*store.Redis{a, b} {
		store.SetRedisPrefetch(s, false)
	}
	e.heartbeats(t, 20*time.Second, a, b)
	if _, err := a.Reserve(ctx, e.record(10, 10)); err != nil {
		t.Fatal(err)
	}
	beat(t, a, b) // views: 10
	if err := a.Settle(ctx, store.Settlement{GiveBack: []store.DailyCount{{Day: "2026-03-01", Lane: lane, Count: 8}}}); err != nil {
		t.Fatal(err)
	}
	e.clock.add(5 * time.Second)
	beat(t, a, b) // views: 2
	rc := e.client(t)
	if n, _ := dayCount(t, rc, ""); n != 2 {
		t.Fatalf("day count %d after the give-back; want 2 (the test's premise)", n)
	}
	e.flushAll(t)
	e.clock.add(time.Second)
	beat(t, a, b) // both re-seed
	if n, _ := dayCount(t, rc, ""); n != 2 {
		t.Errorf("day count %d after the empty restart; want 2 (not the 10 before the give-back)", n)
	}
}
