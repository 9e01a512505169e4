package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisDeadChargeKeptAfterRestore: c (bbolt) is backed up (a copy of
// the file) before an outage; during the outage c takes its share (3
// units) and is killed; the survivors charge it 9. The operator restores
// the backup (`slideshowd store restore`: the copy put in place, its life
// records forgotten, ForgetSharedLives) and starts the daemon on it. The
// backup's record named c with no pending units: before, the start
// replaced c's charge by those 0 units, and c's 3 share units, sent, were
// in no count of the cluster's day (count 9, 12 granted; review10 R10-1).
// Now the restored file has no record: the charge stays, and the cluster's
// day count is not below the units granted.
func TestRedisDeadChargeKeptAfterRestore(t *testing.T) {
	ctx := context.Background()
	e := newDeadFixEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.db")
	backup := filepath.Join(dir, "backup.db")
	e.c = e.openBolt(t, path, "c", e.cls)
	kill := closeAtEnd(t, e.c)
	e.heartbeats(t, 20*time.Second, e.a, e.b, e.c)
	e.takeAll(t, 1, "no grant", e.a, e.b, e.c)
	copyFile(t, path, backup) // the backup, before the outage
	e.outage(t, e.a, e.b, e.c)
	e.takeAll(t, 3, "no share", e.a, e.b, e.c)
	kill() // killed
	e.restartRedis(false)
	beat(t, e.a, e.b)
	e.saturate(t, 30*time.Second, e.a, e.b)
	cs := e.charges(e.a, e.b)
	if len(cs) != 1 || cs[0].Process != "c" {
		t.Fatalf("charges %+v, want c once", cs)
	}
	rc := e.client(t)
	before, _ := dayCount(t, rc, "c")
	// store restore: the backup put in place, its life records forgotten.
	copyFile(t, backup, path)
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := st.SharedLife(ctx, "test"); err != nil || l.Life == "" {
		t.Fatalf("the backup's life record: %+v, %v; want c's", l, err)
	}
	if n, err := st.ForgetSharedLives(ctx); err != nil || n != 1 {
		t.Fatalf("ForgetSharedLives: %d, %v; want 1 record", n, err)
	}
	if l, err := st.SharedLife(ctx, "test"); err != nil || l.Life != "" {
		t.Fatalf("life record after ForgetSharedLives: %+v, %v; want none", l, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := e.openBolt(t, path, "c2", e.cls)
	t.Cleanup(func() { c2.Close() })
	e.saturate(t, 10*time.Second, e.a, e.b, c2)
	count, cUse := dayCount(t, rc, "c")
	t.Logf("c charged %+v; day count %d before the restored start, %d after (c's part %d); units granted %d",
		cs[0].Lanes[0], before, count, cUse, e.units)
	if count < e.units {
		t.Fatalf("cluster day count %d below the units granted (and sent) %d: c's share units removed by the backup's stale life record", count, e.units)
	}
	if fixes := c2.DeadFixes(); len(fixes) != 0 {
		t.Errorf("c2 replaced a charge from a restored file: %+v", fixes)
	}
}
