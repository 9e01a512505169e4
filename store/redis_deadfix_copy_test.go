package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisDeadChargeCopyStartWhileBeatLate: d starts on a copy of c's
// file while c runs (a process on a copy of a running file, whose charge
// must stay); c's last heartbeat is 7 s old then (one heartbeat 2 s late
// on a loaded machine), past the 6 s grace, so d takes c for dead and sets
// c's fix mark. c goes on beating. Later the same day c dies during an
// outage after taking its share (2 units). Before, the mark stayed: the
// survivors' charge of c added no day units, and c's own data directory
// started again did nothing (marked): c's 2 units were in no count of the
// cluster's day (count 10, 12 granted; review10 R10-2). Now c's next
// heartbeat deletes the mark: the survivors charge c's day units, and c's
// data directory's next start replaces that charge by its record.
func TestRedisDeadChargeCopyStartWhileBeatLate(t *testing.T) {
	ctx := context.Background()
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 9, RPD: 900, Margin: 100 * time.Millisecond}}
	dir := t.TempDir()
	path, cpy := filepath.Join(dir, "c.db"), filepath.Join(dir, "copy.db")
	e.a, e.b = e.open(t, "a", e.cls), e.open(t, "b", e.cls)
	e.c = e.openBolt(t, path, "c", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	for _, s := range []*store.Redis{e.a, e.b, e.c} {
		if !e.take(t, s, 1, 1) {
			t.Fatalf("%s: no grant", s.Process())
		}
	}
	copyFile(t, path, cpy)
	beat(t, e.a, e.b, e.c)
	e.clock.add(7 * time.Second) // c's next heartbeat 2 s late
	beat(t, e.a, e.b)
	d := e.openBolt(t, cpy, "d", e.cls) // a second process on the copy
	t.Cleanup(func() { d.Close() })
	rc := e.client(t)
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 1 {
		t.Fatalf("c's fix mark after d's start with c's heartbeat 7 s old: %d, %v; want set (the test's premise)", n, err)
	}
	beat(t, e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Fatalf("c's fix mark after c's heartbeat: %d, %v; want deleted", n, err)
	}
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c, d) // c goes on beating
	e.clock.add(time.Second)
	e.srv.Stop()
	for _, s := range []*store.Redis{e.a, e.b, e.c, d} {
		if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(92 * time.Second)
	if !e.take(t, e.c, 2, 2) { // c takes its share
		t.Fatal("c: no share")
	}
	if err := e.c.Close(); err != nil { // killed during the outage
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b, d} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 30*time.Second, e.a, e.b, d)
	cs := e.charges(e.a, e.b, d)
	if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Units == 0 {
		t.Errorf("charges %+v, want c once with day units", cs)
	}
	c2 := e.openBolt(t, path, "c2", e.cls) // c's data directory again
	t.Cleanup(func() { c2.Close() })
	e.saturate(t, 10*time.Second, e.a, e.b, d, c2)
	count, cUse := dayCount(t, rc, "c")
	t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
	if count < e.units {
		t.Fatalf("cluster day count %d below the units granted (and sent) %d", count, e.units)
	}
}
