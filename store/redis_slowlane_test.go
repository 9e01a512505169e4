package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// slowLaneRun is a paced image lane (20 RPM, 250 RPD, burst 1, margin 250
// ms) on a Redis ledger, driven on a virtual clock as the scheduler's
// dispatcher drives it: acquire, grant the lease's record with
// ReserveUpTo (its schedule given to the lane, a refusal held until its
// time), stamp, tell the ledger.
type slowLaneRun struct {
	sends   []time.Time
	grants  []int // Covers granted, per grant of new units, in order
	refused int
	rounds  int // grant calls (ReserveUpTo) made
}

func runSlowLane(t *testing.T, d time.Duration) slowLaneRun {
	t.Helper()
	ctx := context.Background()
	const margin = 250 * time.Millisecond
	limits := bucket.Limits{RPM: 20, RPD: 250}
	e := newRedisEnv(t)
	st := e.open(t, "a", store.RedisClass{Name: "image", RPM: limits.RPM, RPD: limits.RPD, Margin: margin})
	pool, err := bucket.New(bucket.Config{
		Classes: []bucket.ClassConfig{{Name: "image", Limits: limits, Burst: 1, WindowMargin: margin}},
		Keys:    []bucket.Key{{ID: "k1", Project: "p1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := pool.Class("image")
	lane := store.LaneID{Project: "p1", Class: "image"}
	var out slowLaneRun
	end := e.clock.now().Add(d)
	for e.clock.now().Before(end) {
		now := e.clock.now()
		l, ok, next := c.AcquireFor(now, 0, 1000)
		if !ok {
			if next.IsZero() || !next.After(now) {
				t.Fatalf("at %v: no lease and next %v", now, next)
			}
			e.clock.add(next.Sub(now))
			continue
		}
		if l.Record {
			out.rounds++
			r := store.Record{Lane: lane, Day: l.Day, Units: l.Chunk, Covers: l.Covers, At: now, Until: l.Until()}
			_, covers, sched, err := st.ReserveUpTo(ctx, r)
			var ge *store.GrantError
			if errors.As(err, &ge) {
				out.refused++
				c.ChunkFailed(l)
				c.Refund(l, now)
				// GrantError.Until is on the wall clock (time.Now), not
				// the ledger's virtual one: hold for as long.
				c.Hold("p1", now.Add(time.Until(ge.Until)+time.Millisecond), "window")
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if covers < l.Covers || len(sched) > 0 {
				c.Scheduled(l, covers, sched)
			}
			if l.Chunk > 0 {
				out.grants = append(out.grants, covers)
			}
		}
		st.Stamped(lane, c.Stamp(l, now))
		out.sends = append(out.sends, now)
	}
	return out
}

// TestRedisSlowLaneFullWindow: a paced image lane keeps its window full
// (20 sends a minute) for 6 minutes; once the window is full (from its
// second minute), each grant of new units still covers at least 9
// requests, most of them scheduled slots (before a grant's future slots
// reached half its life ahead only: about 5), no grant is refused, the
// lane makes at most 0.11 grant calls a request, and no 60 s window (plus
// the margin) holds more than RPM sends.
func TestRedisSlowLaneFullWindow(t *testing.T) {
	run := runSlowLane(t, 6*time.Minute)
	if w := maxInWindow(run.sends, time.Minute); w > 20 {
		t.Errorf("a minute holds %d sends, RPM 20", w)
	}
	if len(run.sends) < 6*20*95/100 {
		t.Errorf("%d sends in 6 minutes, want about 120 (RPM used)", len(run.sends))
	}
	if run.refused > 0 {
		t.Errorf("%d grants refused, want none", run.refused)
	}
	// The first grants come while the lane's pace is not known yet and
	// the window empty; from the third on the window is full.
	for i, n := range run.grants {
		if i >= 2 && i < len(run.grants)-1 && n < 9 {
			t.Errorf("grant %d covers %d requests, want >= 9 (all: %v)", i, n, run.grants)
			break
		}
	}
	if per := float64(run.rounds) / float64(len(run.sends)); per > 0.11 {
		t.Errorf("%d grant calls for %d sends: %.3f a request, want <= 0.11 (grants %v)", run.rounds, len(run.sends), per, run.grants)
	}
	t.Logf("%d sends, %d grant calls, %d refused, covers %v", len(run.sends), run.rounds, run.refused, run.grants)
}
