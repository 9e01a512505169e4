package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisEmptyRestartRecoveryEnd: a grant refused within the recovery
// after Redis lost its state says to ask again no later than the recovery's
// end, also when asked in the last millisecond before it (the end's
// sub-millisecond part). The newcomer's binary run: daemon B, held until
// its recovery's end (15:19:37, 107 s after it noticed), asked again when
// the scheduler's timer fired at that Unix millisecond, still a fraction
// of a millisecond before the end, and was refused until its share's room
// freed (45 and 57 s later: held 164 s in all); reproduced here with a
// debug build (refused at 15:50:45 until 15:51:44 and 15:51:52). The
// refusal compared the end and the time in whole milliseconds (end > n),
// the recovery itself in nanoseconds.
func TestRedisEmptyRestartRecoveryEnd(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	e.clock.add(500 * time.Microsecond)
	a := e.open(t, "a", cls)
	store.SetRedisPrefetch(a, false)
	e.srv.Kill()
	e.srv.Restart()
	noticed := e.clock.now()
	if _, err := a.Heartbeat(ctx); err != nil { // notices: newEpoch
		t.Fatal(err)
	}
	if a.Restarts() != 1 {
		t.Fatalf("Restarts %d, want 1", a.Restarts())
	}
	// The recovery lasts the longest grant life (30 s), the window and a
	// second of rounding after the notice; a has no share (it joined less
	// than a heartbeat TTL before its view): refused until then.
	end := noticed.Add(30*time.Second + time.Minute + time.Second)
	ge := grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if ge.Until.After(end.Add(time.Millisecond)) {
		t.Fatalf("refused until %v; want no later than the recovery's end %v", ge.Until, end)
	}
	e.clock.add(end.Sub(e.clock.now()) - 300*time.Microsecond) // the end's millisecond, before it
	ge = grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if ge.Until.After(end.Add(time.Millisecond)) {
		t.Errorf("refused %v before the recovery's end until %v; want no later than the end %v", end.Sub(e.clock.now()), ge.Until, end)
	}
	e.clock.add(time.Millisecond)
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Errorf("after the recovery's end: %v", err)
	}
}
