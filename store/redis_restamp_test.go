package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisRestamped: requests of a's grants written late (their slots moved
// from their stamps to their writes plus half the margin) keep slots of
// their own no earlier than their arrivals in the shared window (on
// Redis's clock: the virtual clock here, plus a millisecond of rounding),
// so a minute after the stamps, when the early slots leave, the late ones
// still hold the window and b is granted RPM minus those, not more. Before
// Restamped the settlement kept the early stamps only, and b got 3 of RPM
// 5 with 1 in the window, with 3 late requests that had arrived within the
// minute. Three cases: a lease of the current grant written before the
// grant's score (its stamp replaced: no Redis call, the settlement keeps
// it), a lease of a grant already settled, and a lease of the current grant
// written after the grant's score (a slot added at once, in one round trip).
func TestRedisRestamped(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 5, RPD: 100, Margin: 100 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	rc := e.client(t)
	t0 := e.clock.now()
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	if _, err := a.Reserve(ctx, e.record(3, 3)); err != nil {
		t.Fatal(err)
	}
	stamp := t0.Add(100 * time.Millisecond)
	for range 3 {
		a.Stamped(lane, stamp)
	}
	a.Restamped(lane, stamp, stamp, 0) // not later: nothing
	e.clock.add(time.Second)
	// Of the current grant, before its score (t0 + 2.1 s): the stamp moves,
	// the window does not change until the settlement.
	to := t0.Add(1050 * time.Millisecond)
	a.Restamped(lane, stamp, to, 0)
	e.checkWindow(t, rc, "after a late write of the current grant", rep(ms(2100*time.Millisecond), 3))
	// a's next grant (a record of 1, no new unit) settles the first: its
	// stamps kept, the late one at its write.
	e.clock.add(time.Second)
	if _, err := a.Reserve(ctx, e.record(1, 0)); err != nil {
		t.Fatal(err)
	}
	stamp2 := t0.Add(2100 * time.Millisecond)
	a.Stamped(lane, stamp2)
	e.checkWindow(t, rc, "after the settlement", sorted(ms(101*time.Millisecond), ms(101*time.Millisecond), ms(1051*time.Millisecond), ms(4100*time.Millisecond)))
	// Of the settled grant: a slot added.
	e.clock.add(time.Second)
	to2 := t0.Add(3050 * time.Millisecond)
	a.Restamped(lane, stamp, to2, 0)
	// Of the current grant, after its score (t0 + 4.1 s): a slot added.
	to3 := t0.Add(4200 * time.Millisecond)
	a.Restamped(lane, stamp2, to3, 0)
	e.checkWindow(t, rc, "after two late writes that add slots", sorted(ms(101*time.Millisecond), ms(101*time.Millisecond),
		ms(1051*time.Millisecond), ms(3051*time.Millisecond), ms(4100*time.Millisecond), ms(4201*time.Millisecond)))
	// A minute after the first stamps the early slots have left; the late
	// ones (and a's second grant) have not: 4 of RPM 5.
	e.clock.add(stamp.Add(time.Minute + time.Millisecond).Sub(e.clock.now()))
	if err := reserveErr(b, e.record(2, 2)); err == nil {
		t.Fatal("b granted 2 over RPM 5 while the 3 late slots and a's grant are in the window")
	}
	if err := reserveErr(b, e.record(1, 1)); err != nil {
		t.Fatalf("b refused 1 with 4 in the window: %v", err)
	}
	e.clock.add(to3.Add(time.Minute + 2*time.Millisecond).Sub(e.clock.now()))
	if err := reserveErr(b, e.record(4, 4)); err != nil {
		t.Fatalf("b refused once the late slots left: %v", err)
	}
}
