package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/internal/testutil"
	"github.com/slideshowd/slideshowd/store"
)

// fixStore is a shared store whose heartbeats report a dead life's day
// charge replaced (store.Redis.DeadFixes) once.
type fixStore struct {
	mu    sync.Mutex
	fixes []store.DeadFix
}

func (d *fixStore) Watch(ctx context.Context, ready chan<- struct{}, _ func(store.SharedEvent)) error {
	close(ready)
	<-ctx.Done()
	return nil
}
func (d *fixStore) Heartbeat(context.Context) (int, error) { return 2, nil }
func (d *fixStore) Leave(context.Context) error            { return nil }
func (d *fixStore) DeadFixes() []store.DeadFix {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.fixes
	d.fixes = nil
	return f
}

// TestSharedDeadFixLogged: a dead life's day charge replaced by what its
// data directory recorded is logged once per lane, with the life, lane,
// day, the units charged before and counted now, the units recorded and
// the day count after (no key).
func TestSharedDeadFixLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logw testutil.Buffer
		s := &Scheduler{log: zerolog.New(&logw)}
		d := &fixStore{fixes: []store.DeadFix{
			{Life: "web-2~9f2c01ab", Lane: store.LaneID{Project: "key1", Class: "text"}, Day: "2026-03-01", Charged: 1250,
				Counted: 3, Recorded: 3, Count: 4021},
			{Life: "web-2~9f2c01ab", Lane: store.LaneID{Project: "key1", Class: "image"}, Day: "2026-03-01", Charged: 15,
				Recorded: 2, Count: 40},
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			s.runShared(ctx, d)
			close(done)
		}()
		time.Sleep(3*HeartbeatEvery + time.Second)
		synctest.Wait()
		cancel()
		<-done
		out := logw.String()
		if n := strings.Count(out, "day charge replaced"); n != 2 {
			t.Fatalf("%d lines about the replaced charge, want 2 (one per lane):\n%s", n, out)
		}
		for _, want := range []string{
			`"level":"info","life":"web-2~9f2c01ab","lane":"key1/text","day":"2026-03-01","charged":1250,"counted":3,"recorded":3,"day_count":4021`,
			`"level":"info","life":"web-2~9f2c01ab","lane":"key1/image","day":"2026-03-01","charged":15,"counted":0,"recorded":2,"day_count":40`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log:\n%s\nwant a line with %s", out, want)
			}
		}
	})
}
