package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisJoinerRefusalUntilHoldEnd: a process that joins while the
// running ones recover after Redis restarted empty is refused every grant
// until that recovery ends; its refusal's Until (the wait's "until", the
// "next slot in" of the scheduler's wait) is that end, not a grant life
// later: a daemon held 91 s had announced "next slot in 30s", then "10s"
// (newcomer9 N9-2). Asking each second, the first grant comes in the
// second after Until.
func TestRedisJoinerRefusalUntilHoldEnd(t *testing.T) {
	ctx := context.Background()
	const rpm = 10
	e, cls, a, b := openViewing(t, rpm)
	sendGranted(t, e, a, 8, e.clock.now())
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(2 * time.Second)
	if _, err := b.Heartbeat(ctx); err != nil { // notices: recovers, holds joiners
		t.Fatal(err)
	}
	c := e.open(t, "c", cls)
	joined := e.clock.now()
	ge := grantErr(t, reserveErr(c, e.record(1, 1)), "share")
	if !c.Joining() {
		t.Fatal("c is not held as it joined")
	}
	var granted time.Time
	for i := 1; i <= 200 && granted.IsZero(); i++ {
		e.clock.add(time.Second)
		if i%5 == 0 {
			for _, s := range []*store.Redis{b, c} {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if reserveErr(c, e.record(1, 1)) == nil {
			granted = e.clock.now()
		}
	}
	if granted.IsZero() {
		t.Fatal("c not granted in the 200 s after it joined")
	}
	t.Logf("c joined at %v, refused until %v (in %v), first granted %v after", joined.Format(time.TimeOnly), ge.Until.Format(time.TimeOnly), ge.Until.Sub(joined), granted.Sub(joined))
	if !ge.Joining {
		t.Errorf("the refusal of a joining process: GrantError.Joining false (%v)", ge)
	}
	if ge.Until.After(granted) || !ge.Until.After(granted.Add(-time.Second)) {
		t.Errorf("the refusal's Until %v after the join, want the hold's end: c was first granted %v after (asked each second)", ge.Until.Sub(joined), granted.Sub(joined))
	}
}
