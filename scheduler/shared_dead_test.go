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

// deadStore is a shared store whose heartbeats report one process charged
// as dead (store.Redis.DeadCharges) once.
type deadStore struct {
	mu      sync.Mutex
	charges []store.DeadCharge
}

func (d *deadStore) Watch(ctx context.Context, ready chan<- struct{}, _ func(store.SharedEvent)) error {
	close(ready)
	<-ctx.Done()
	return nil
}
func (d *deadStore) Heartbeat(context.Context) (int, error) { return 2, nil }
func (d *deadStore) Leave(context.Context) error            { return nil }
func (d *deadStore) DeadCharges() []store.DeadCharge {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.charges
	d.charges = nil
	return c
}

// TestSharedDeadChargeLogged: a process presumed dead after an outage and
// charged its share is logged once, at warning level, with its name and,
// per lane, what was added (no key).
func TestSharedDeadChargeLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logw testutil.Buffer
		s := &Scheduler{log: zerolog.New(&logw)}
		d := &deadStore{charges: []store.DeadCharge{{Process: "web-2-31-9f2c01ab", Lanes: []store.DeadLane{
			{Lane: store.LaneID{Project: "key1", Class: "text"}, Day: "2026-03-01", Slots: 3, Units: 30, Tokens: 1000},
			{Lane: store.LaneID{Project: "key1", Class: "image"}, Day: "2026-03-01", Slots: 1, Units: 2},
		}}}}
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
		if n := strings.Count(out, "presumed dead"); n != 1 {
			t.Fatalf("%d lines about the dead process, want 1:\n%s", n, out)
		}
		want := `"level":"warn","process":"web-2-31-9f2c01ab","lanes":"key1/text: 3 slots, 30 units of 2026-03-01, 1000 tokens; key1/image: 1 slots, 2 units of 2026-03-01"`
		if !strings.Contains(out, want) {
			t.Errorf("log:\n%s\nwant a line with %s", out, want)
		}
	})
}
