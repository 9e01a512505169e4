package store_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// copyFile copies the file at from to to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisDeadChargeReplaced: a process that dies during an outage is
// charged its share of the day (a bound: 9 units here), though it took 1
// unit on its share; when its data directory starts again (a new life,
// another name, as the daemon's default names are), its Bolt file shows
// what that life took on its share and not in Redis, and the charge is
// replaced by it: the cluster's day count becomes the units granted,
// never below them. Both orders: the survivors charge it, then it starts
// again; it starts again as Redis answers (held as it joins), then the
// survivors charge it (its window slots still, no day units). The
// correction is made once: a second start on a copy of the same file (a
// race of two lives) changes nothing. Before, the charge stayed: the day
// count 8 units above what was granted.
func TestRedisDeadChargeReplaced(t *testing.T) {
	for _, tc := range []struct {
		name        string
		restartLate bool // after the charge
		empty       bool // Redis comes back empty: the charge is of the day only, in the new epoch
	}{
		{"charged then restarted", true, false},
		{"restarted then charged", false, false},
		{"restarted, Redis back empty, then charged", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newDeadFixEnv(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "c.db")
			e.c = e.openBolt(t, path, "c", e.cls)
			kill := closeAtEnd(t, e.c)
			e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
			e.takeAll(t, 1, "no grant", e.a, e.b, e.c) // a little of the day from Redis
			e.outage(t, e.a, e.b, e.c)
			e.takeAll(t, 3, "no share", e.a, e.b)
			e.takeAll(t, 1, "no share", e.c) // c takes 1 of its share of 3
			kill()                           // killed: no settlement, no Leave
			e.restartRedis(tc.empty)
			var c2 *store.Redis
			if !tc.restartLate {
				c2 = e.openBolt(t, path, "c2", e.cls)
				t.Cleanup(func() { c2.Close() })
				if !c2.Joining() {
					t.Error("c2 not held as it joined right after the outage")
				}
			}
			beat(t, e.a, e.b)
			if tc.empty {
				// The longer recovery (92 s and a TTL), then the charge of
				// the day only; c2 beats with the survivors.
				e.saturate(t, 130*time.Second, e.a, e.b, c2)
				cs := e.charges(e.a, e.b, c2)
				rc := e.client(t)
				count, cUse := dayCount(t, rc, "c")
				t.Logf("charges %+v; day count %d, c's part %d, units granted %d", cs, count, cUse, e.units)
				if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Slots != 0 {
					t.Fatalf("charges %+v, want c's once, of the day only", cs)
				}
				if cUse != 0 || count < e.units {
					t.Errorf("day count %d, c's part %d: want c's part 0 (its units are in its data directory's, re-seeded under c2) and the count not below %d",
						count, cUse, e.units)
				}
				return
			}
			e.saturate(t, 30*time.Second, e.a, e.b)
			cs := e.charges(e.a, e.b)
			if len(cs) != 1 || cs[0].Process != "c" || len(cs[0].Lanes) != 1 || cs[0].Lanes[0].Slots != 3 {
				t.Fatalf("charges %+v, want c once, 3 slots", cs)
			}
			rc := e.client(t)
			count, cUse := dayCount(t, rc, "c")
			t.Logf("c charged %+v; day count %d, c's part %d, units granted %d", cs[0].Lanes[0], count, cUse, e.units)
			if tc.restartLate {
				if cs[0].Lanes[0].Units != 9 || count != e.units+8 {
					t.Fatalf("c charged %d units, day count %d: want 9 and %d (the test's premise)", cs[0].Lanes[0].Units, count, e.units+8)
				}
				copyFile(t, path, filepath.Join(dir, "c-copy.db"))
				c2 = e.openBolt(t, path, "c2", e.cls)
				t.Cleanup(func() { c2.Close() })
				// Said once, for the log: c's 9 units replaced by its 1.
				want := []store.DeadFix{{Life: store.RedisLife(e.c), Lane: lane, Day: "2026-03-01", Charged: 9, Counted: 1,
					Recorded: 1, Count: e.units}}
				if fx := c2.DeadFixes(); !reflect.DeepEqual(fx, want) {
					t.Errorf("c2's replacements %+v, want %+v", fx, want)
				}
			} else if cs[0].Lanes[0].Units != 0 {
				t.Errorf("c charged %d units after its data directory started again, want 0 (replaced)", cs[0].Lanes[0].Units)
			}
			count, cUse = dayCount(t, rc, "c")
			if count != e.units || cUse != 2 {
				t.Errorf("after c's data directory started again: day count %d, c's part %d; want %d (the units granted) and 2 (its grant and its share)",
					count, cUse, e.units)
			}
			if tc.restartLate {
				c3 := e.openBolt(t, filepath.Join(dir, "c-copy.db"), "c3", e.cls)
				t.Cleanup(func() { c3.Close() })
				if n, _ := dayCount(t, rc, "c"); n != count {
					t.Errorf("a second start on a copy of c's file: day count %d, want %d (corrected once)", n, count)
				}
			}
			e.saturate(t, 10*time.Second, e.a, e.b, c2)
			if n, _ := dayCount(t, rc, "c"); n < e.units {
				t.Errorf("day count %d below the units granted %d", n, e.units)
			}
		})
	}
}

// TestRedisDeadChargeReplacedLater: a process killed and started again at
// once on its data directory (a supervisor), just before an outage: its
// killed life is still in the views (it beat within the grace), so the
// survivors charge it after the outage though it took nothing on a share;
// the new life, which found that life beating within the grace as it
// started (it may still run on a file that reads as this one, a clone: not
// replaced then), replaces the charge at a heartbeat once the killed
// life's heartbeat is overdue (here before the outage: the charge then
// adds no day units; when Redis comes back empty, that replacement is
// lost with its state, and c2 makes it again in the new epoch): the day
// count is what was granted.
func TestRedisDeadChargeReplacedLater(t *testing.T) {
	t.Run("Redis back with its state", func(t *testing.T) { deadChargeReplacedLater(t, false, 92*time.Second) })
	// The charge is then of the day only, in the new epoch, at the end of
	// the longer recovery: c2 replaces it again in that epoch.
	t.Run("Redis back empty", func(t *testing.T) { deadChargeReplacedLater(t, true, 92*time.Second) })
	// After an outage longer than 10 minutes (the charge then comes more
	// than 10 minutes after c2 started): before, c2 made the replacement
	// again only in the epochs it joined in its first 10 minutes, and the
	// charge stayed (c's part 9 units).
	t.Run("Redis back empty after 11 minutes", func(t *testing.T) { deadChargeReplacedLater(t, true, 11*time.Minute) })
}

func deadChargeReplacedLater(t *testing.T, empty bool, outage time.Duration) {
	ctx := context.Background()
	e := newDeadFixEnv(t)
	path := filepath.Join(t.TempDir(), "c.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
	kill()                                 // killed
	c2 := e.openBolt(t, path, "c2", e.cls) // at once
	t.Cleanup(func() { c2.Close() })
	rc := e.client(t)
	if n, _ := dayCount(t, rc, "c"); n != e.units {
		t.Fatalf("day count %d before the outage, want %d", n, e.units)
	}
	fixMark := "test:deadfix:" + store.RedisLife(e.c)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 0 {
		t.Fatalf("c's charge replaced as c2 started, c beating within the grace (%d, %v)", n, err)
	}
	e.clock.add(5 * time.Second)
	beat(t, e.a, e.b) // their views still hold c (its heartbeat expires 15 s after its last)
	e.clock.add(2 * time.Second)
	beat(t, c2) // c's heartbeat is overdue: replaced (by nothing: no charge yet)
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 1 {
		t.Fatalf("c's charge not replaced at c2's heartbeat after c's was overdue (%d, %v)", n, err)
	}
	e.clock.add(time.Second)
	e.stopRedis(t, e.a, e.b, c2)
	e.clock.add(outage)
	e.takeAll(t, 2, "no share", e.a, e.b) // their share: RPM / 4 (c2 and c in their views)
	e.restartRedis(empty)
	beat(t, e.a, e.b)
	// c2 beats with them from now on.
	wait, slots := 30*time.Second, 2 // RPM / 4
	if empty {
		wait, slots = 130*time.Second, 0
	}
	e.saturate(t, wait, e.a, e.b, c2)
	cs := e.charges(e.a, e.b, c2)
	if len(cs) != 1 || cs[0].Process != "c" || cs[0].Lanes[0].Slots != slots {
		t.Fatalf("charges %+v, want c's once, %d slots", cs, slots)
	}
	e.saturate(t, 10*time.Second, e.a, e.b, c2) // c2's next heartbeats
	if n, err := rc.Exists(ctx, fixMark).Result(); err != nil || n != 1 {
		t.Errorf("c's charge not replaced (%d, %v)", n, err)
	}
	count, cUse := dayCount(t, rc, "c")
	t.Logf("c charged %+v; then day count %d, c's part %d, units granted %d", cs[0].Lanes[0], count, cUse, e.units)
	// Said for the log when the charge added day units (c2 replaced it
	// before, by nothing, in each epoch: the charge then adds none).
	fx := c2.DeadFixes()
	var want []store.DeadFix
	if u := cs[0].Lanes[0].Units; u > 0 {
		want = []store.DeadFix{{Life: store.RedisLife(e.c), Lane: lane, Day: "2026-03-01", Charged: u, Count: count}}
	}
	if !reflect.DeepEqual(fx, want) {
		t.Errorf("c2's replacements %+v, want %+v", fx, want)
	}
	if empty {
		// Its grant is in its data directory's counts, re-seeded under c2.
		if count < e.units || cUse != 0 {
			t.Errorf("day count %d, c's part %d; want at least %d (the units granted) and 0 (no charge)", count, cUse, e.units)
		}
		return
	}
	if count != e.units || cUse != 1 {
		t.Errorf("day count %d, c's part %d; want %d (the units granted) and 1 (its grant: nothing on a share)", count, cUse, e.units)
	}
}
