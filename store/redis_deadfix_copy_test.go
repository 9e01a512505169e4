package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisDeadChargeCopyStartWhileBeatLate: d starts on a copy of c's
// file while c runs (a process on a copy of a running file, whose charge
// must stay); c's last heartbeat is 7 s old then (one heartbeat 2 s late
// on a loaded machine), past the 6 s grace. c goes on beating. Later the
// same day c dies during an outage after taking its share (2 units).
// Before 0657ee8, d took c for dead and set c's fix mark, which stayed:
// the survivors' charge of c added no day units, and c's own data
// directory started again did nothing (marked): c's 2 units were in no
// count of the cluster's day (count 10, 12 granted; review10 R10-2).
// 0657ee8 had c's next heartbeat delete the mark; now d, on a copy (another
// file), sets none: the survivors charge c's day units, and c's data
// directory's next start replaces that charge by its record.
func TestRedisDeadChargeCopyStartWhileBeatLate(t *testing.T) {
	ctx := context.Background()
	e := newDeadFixEnv(t)
	dir := t.TempDir()
	path, cpy := filepath.Join(dir, "c.db"), filepath.Join(dir, "copy.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
	copyFile(t, path, cpy)
	beat(t, e.a, e.b, e.c)
	e.clock.add(7 * time.Second) // c's next heartbeat 2 s late
	beat(t, e.a, e.b)
	d := e.openBolt(t, cpy, "d", e.cls) // a second process on the copy
	t.Cleanup(func() { d.Close() })
	rc := e.client(t)
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Fatalf("c's fix mark after d's start on a copy, c's heartbeat 7 s old: %d, %v; want none", n, err)
	}
	beat(t, e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Fatalf("c's fix mark after c's heartbeat: %d, %v; want none", n, err)
	}
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c, d) // c goes on beating
	e.outage(t, e.a, e.b, e.c, d)
	e.takeAll(t, 2, "no share", e.c) // c takes its share
	kill()                           // killed during the outage
	e.restartRedis(false)
	beat(t, e.a, e.b, d)
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
