package bucket

import (
	"testing"
	"time"
)

// TestScheduled: a lane whose record was granted with a schedule (a shared
// window's future slots: Scheduled) is not ready before each time of the
// record's last covers, and Acquire says when it will be; a refunded lease
// gives its cover back (the next lease may be taken at once); fewer covers
// granted make the lane record again sooner; past the record's renewal
// time the lane records again rather than wait.
func TestScheduled(t *testing.T) {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// setup returns a class whose last lease took a record of 4 covers at t0.
	setup := func(t *testing.T) (*Class, Lease) {
		c := mustPool(t, Config{Classes: []ClassConfig{{Name: "text", Limits: Limits{RPM: 100, RPD: 1000}}}, Keys: keysN(1)}).Class("text")
		var l Lease
		for range 4 {
			var ok bool
			if l, ok, _ = c.Acquire(t0, 0); !ok {
				t.Fatal("no lease")
			}
		}
		if !l.Record || l.Covers != 4 {
			t.Fatalf("lease %+v: want a record of 4 covers", l)
		}
		return c, l
	}
	want := func(t *testing.T, c *Class, at time.Time, ok bool, record bool, next time.Time) Lease {
		t.Helper()
		l, got, n := c.Acquire(at, 0)
		if got != ok || (ok && l.Record != record) || (!ok && !n.Equal(next)) {
			t.Fatalf("Acquire at %v: lease %+v, ok %v, next %v; want ok %v, record %v, next %v",
				at.Sub(t0), l, got, n.Sub(t0), ok, record, next.Sub(t0))
		}
		return l
	}

	t.Run("times", func(t *testing.T) {
		c, l := setup(t)
		c.Scheduled(l, 4, []time.Time{ms(100), ms(200)})
		want(t, c, t0, true, false, time.Time{}) // its second cover is free now
		want(t, c, t0, false, false, ms(100))
		want(t, c, ms(99), false, false, ms(100))
		l3 := want(t, c, ms(100), true, false, time.Time{})
		want(t, c, ms(100), false, false, ms(200))
		c.Refund(l3, ms(150)) // its cover comes back: free at once
		want(t, c, ms(150), true, false, time.Time{})
		want(t, c, ms(150), false, false, ms(200))
		want(t, c, ms(200), true, false, time.Time{})
		want(t, c, ms(200), true, true, time.Time{}) // the record is used up
	})
	t.Run("fewer", func(t *testing.T) {
		c, l := setup(t)
		c.Scheduled(l, 3, []time.Time{ms(100)})
		want(t, c, t0, true, false, time.Time{})
		want(t, c, t0, false, false, ms(100))
		want(t, c, ms(100), true, false, time.Time{})
		want(t, c, ms(100), true, true, time.Time{}) // 3 covers used: records again
	})
	t.Run("renewal", func(t *testing.T) {
		c, l := setup(t)
		c.Scheduled(l, 4, []time.Time{ms(1900), ms(1950), ms(1990)})
		// At the record's renewal time (ChunkLife/4 before its Until) the
		// lane records again, before its schedule's 1.9 s: the schedule
		// was the old record's.
		want(t, c, ms(10), false, false, t0.Add(ChunkLife-renewLead))
		want(t, c, t0.Add(ChunkLife-renewLead), true, true, time.Time{})
		want(t, c, t0.Add(ChunkLife-renewLead), true, false, time.Time{})
	})
	t.Run("stale", func(t *testing.T) {
		c, l := setup(t)
		want(t, c, t0, true, false, time.Time{})
		want(t, c, t0, true, false, time.Time{})
		want(t, c, t0, true, false, time.Time{})
		want(t, c, t0, true, true, time.Time{}) // a new record
		c.Scheduled(l, 4, []time.Time{ms(100)}) // the old record's: ignored
		want(t, c, t0, true, false, time.Time{})
	})
}
