package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// lateCopyEnv is newDeadFixEnv with c on its Bolt file c.db, 20 s of
// heartbeats and one unit each from Redis, then d on a copy of c.db made
// then, started while c's last heartbeat is 7 s old (one heartbeat 2 s
// late: a loaded machine). It returns c.db's path, d, and kill (c killed,
// see closeAtEnd).
func lateCopyEnv(t *testing.T) (e *deadEnv, path string, d *store.Redis, kill func()) {
	t.Helper()
	e = newDeadFixEnv(t)
	dir := t.TempDir()
	path, cpy := filepath.Join(dir, "c.db"), filepath.Join(dir, "copy.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill = closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
	copyFile(t, path, cpy)
	beat(t, e.a, e.b, e.c)
	e.clock.add(7 * time.Second) // c's next heartbeat 2 s late
	beat(t, e.a, e.b)
	d = e.openBolt(t, cpy, "d", e.cls) // a second process on the copy
	t.Cleanup(func() { d.Close() })
	return e, path, d, kill
}

// TestRedisDeadChargeCopyLateNeverBack (review10 R10-2's residue, a): d
// starts on a copy of c's file while c runs, c's heartbeat 7 s old; c
// never reaches Redis again: an outage begins before its next heartbeat,
// c takes 2 units of its share and is killed in it. Before, d's start took
// c for dead and set c's fix mark, which c never deleted (no heartbeat):
// the survivors' charge of c added no day units and c's own data
// directory's next start changed nothing, so c's 2 units were in no count
// of the cluster's day (10 for 12 granted). Now a start on a copy (another
// file) only raises a charge and marks nothing: the survivors charge c's
// day units (a start on a stale copy of c's file keeps it), and c's data
// directory's next start replaces that charge by what c recorded.
func TestRedisDeadChargeCopyLateNeverBack(t *testing.T) {
	ctx := context.Background()
	e, path, d, kill := lateCopyEnv(t)
	stale := filepath.Join(t.TempDir(), "stale.db")
	copyFile(t, path, stale) // c's file before the outage
	rc := e.client(t)
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Errorf("c's fix mark after d's start on a copy of c's file: %d, %v; want none (c runs)", n, err)
	}
	if fx := d.DeadFixes(); len(fx) != 0 {
		t.Errorf("d's replacements %+v, want none (c took nothing on a share)", fx)
	}
	e.outage(t, e.a, e.b, e.c, d)    // c's heartbeat, 8 s late, fails
	e.takeAll(t, 2, "no share", e.c) // c takes its share
	kill()                           // killed during the outage
	e.restartRedis(false)
	beat(t, e.a, e.b, d)
	e.saturate(t, 30*time.Second, e.a, e.b, d)
	cs := e.charges(e.a, e.b, d)
	count, cUse := dayCount(t, rc, "c")
	t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
	if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Units == 0 {
		t.Errorf("charges %+v, want c once with day units", cs)
	}
	if count < e.units {
		t.Fatalf("cluster day count %d below the units granted (and sent) %d, c's data directory not started again", count, e.units)
	}
	// A start on a copy of c's file from before the outage (nothing
	// pending): the charge stays.
	d2 := e.openBolt(t, stale, "d2", e.cls)
	t.Cleanup(func() { d2.Close() })
	if n, _ := dayCount(t, rc, "c"); n != count {
		t.Errorf("after a start on a copy of c's file from before the outage: day count %d, want %d (the charge kept)", n, count)
	}
	c2 := e.openBolt(t, path, "c2", e.cls) // c's data directory again
	t.Cleanup(func() { c2.Close() })
	if fx := c2.DeadFixes(); len(fx) != 1 || fx[0].Counted != 2 {
		t.Errorf("c2's replacements %+v, want c's charge replaced by its 2 units", fx)
	}
	count, cUse = dayCount(t, rc, "c")
	if count != e.units || cUse != 3 {
		t.Errorf("after c's data directory started again: day count %d, c's part %d; want %d (the units granted) and 3",
			count, cUse, e.units)
	}
	e.saturate(t, 10*time.Second, e.a, e.b, d, c2)
	if n, _ := dayCount(t, rc, "c"); n < e.units {
		t.Errorf("day count %d below the units granted %d", n, e.units)
	}
}

// TestRedisDeadChargeCopyNewEpoch (review10 R10-2's residue, b): d starts
// on a copy of c's file while c runs (its heartbeat 7 s old); c beats on.
// An outage: c takes 2 units of its share; Redis comes back empty; the
// survivors join the new epoch, and c, alive, has not reached Redis there
// yet when it is killed. Before, d, whose start had taken c for dead, made
// its replacement again in the new epoch, where c's heartbeat entry was
// gone until its first heartbeat there: c's fix mark set again, so the
// survivors' charge of c (of the day only) added no day units, and c's 2
// units were in no count of the cluster's day while c's data directory
// did not start again. Now d, on a copy, marks nothing in any epoch: the
// charge stays until c's data directory starts, whose re-seed adds them.
func TestRedisDeadChargeCopyNewEpoch(t *testing.T) {
	ctx := context.Background()
	e, path, d, kill := lateCopyEnv(t)
	rc := e.client(t)
	beat(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c, d)
	e.outage(t, e.a, e.b, e.c, d)
	e.takeAll(t, 2, "no share", e.c) // c takes its share
	e.restartRedis(true)
	beat(t, e.a, e.b, d)
	e.clock.add(5 * time.Second)
	beat(t, e.a, e.b, d)
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	n, err := rc.Exists(ctx, fixMark).Result()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("c alive, not back in the new epoch yet: its fix mark %d", n)
	kill() // before it reached Redis again
	// The longer recovery after Redis lost its state, then the survivors'
	// charge of c, of the day only.
	e.saturate(t, 130*time.Second, e.a, e.b, d)
	cs := e.charges(e.a, e.b, d)
	count, cUse := dayCount(t, rc, "c")
	t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
	if n != 0 {
		t.Errorf("c's fix mark set in the new epoch before c reached it (d's start on a copy of c's file)")
	}
	if count < e.units {
		t.Fatalf("cluster day count %d below the units granted (and sent) %d, c's data directory not started again", count, e.units)
	}
	c2 := e.openBolt(t, path, "c2", e.cls) // c's data directory again
	t.Cleanup(func() { c2.Close() })
	e.saturate(t, 10*time.Second, e.a, e.b, d, c2)
	if n, _ := dayCount(t, rc, "c"); n < e.units {
		t.Errorf("after c's data directory started again: day count %d below the units granted %d", n, e.units)
	}
}

// TestRedisDeadChargeCopySameFileID (review11 R11-3): a copy of c's data
// directory whose file reads as c's own (the same boot id, device and
// inode numbers: a clone of the disk that the boot id did not tell apart;
// simulated by rewriting the copy's record through Bolt.SetSharedLife,
// which stamps the copy's identity). d starts on it while c runs, beating
// on time; an outage begins before c's next heartbeat, c takes 2 units of
// its share and is killed in it. Before, d's start took the running c for
// dead at once (its record read as in d's own file): an exact replacement
// and c's fix mark, and c's own data directory's next start changed
// nothing (marked): the day count 9 for 11 granted. Now d leaves c while c
// beats within the grace; its replacement after the outage (c overdue,
// from the copy's short record) is made again by c's own next start, whose
// record is numbered later: the day count is the units granted.
func TestRedisDeadChargeCopySameFileID(t *testing.T) {
	ctx := context.Background()
	e := newDeadFixEnv(t)
	dir := t.TempDir()
	path, cpy := filepath.Join(dir, "c.db"), filepath.Join(dir, "copy.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
	copyFile(t, path, cpy)
	// The copy's file reads as the one c's record was written to.
	cs, err := store.Open(cpy, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := cs.SharedLife(ctx, "test")
	if err != nil || l.Life == "" || !l.Copy {
		t.Fatalf("copy's record %+v, %v; want c's, read as a copy", l, err)
	}
	if err := cs.SetSharedLife(ctx, "test", l); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	beat(t, e.a, e.b, e.c) // c beats on time
	d := e.openBolt(t, cpy, "d", e.cls)
	t.Cleanup(func() { d.Close() })
	rc := e.client(t)
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Errorf("c's fix mark after d's start, c beating on time: %d, %v; want none", n, err)
	}
	e.outage(t, e.a, e.b, e.c, d) // before c's next heartbeat
	e.takeAll(t, 2, "no share", e.c)
	kill()
	e.restartRedis(false)
	beat(t, e.a, e.b, d)
	e.saturate(t, 30*time.Second, e.a, e.b, d)
	cs2 := e.charges(e.a, e.b, d)
	c2 := e.openBolt(t, path, "c2", e.cls) // c's data directory again
	t.Cleanup(func() { c2.Close() })
	count, cUse := dayCount(t, rc, "c")
	t.Logf("charges %+v; after c's data directory started again: day count %d, c's part %d, units granted %d", cs2, count, cUse, e.units)
	if count != e.units || cUse != 3 {
		t.Errorf("after c's data directory started again: day count %d, c's part %d; want %d (the units granted) and 3", count, cUse, e.units)
	}
	e.saturate(t, 10*time.Second, e.a, e.b, d, c2)
	if n, _ := dayCount(t, rc, "c"); n < e.units {
		t.Errorf("day count %d below the units granted %d", n, e.units)
	}
}
