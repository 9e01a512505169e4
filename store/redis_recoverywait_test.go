package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisRecoveryNoShareUntil (newcomer10 N10-2): after Redis restarted
// empty, a lane on which this process has no share of the recovery is
// refused with NoShare and until the real start: the time a slot of its
// view leaves the window, then, once the day's share is what refuses (RPD
// below RPM: the day's share is 0), the recovery's end. The day's
// refusal used to say the next heartbeat (5 s, again and again, for the
// last ~45 s of the recovery in the newcomer's run) and "share used" of
// a lane that had none.
func TestRedisRecoveryNoShareUntil(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 30, RPD: 20}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
	e.heartbeats(t, 20*time.Second, a, b) // views a heartbeat TTL after they joined: a share
	for _, s := range []*store.Redis{a, b} {
		if err := reserveErr(s, e.record(1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	e.heartbeats(t, 5*time.Second, a, b) // the views hold the two slots
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(time.Second)
	noticed := e.clock.now()
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Restarts() != 1 {
		t.Fatalf("Restarts %d, want 1", a.Restarts())
	}
	end := noticed.Add(30*time.Second + time.Minute + time.Second) // the recovery's end

	// The window's share grows as the view's slots leave (about 62 s
	// after they were granted): refused until then, with no share.
	ge := grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if !ge.NoShare {
		t.Errorf("refused %v with NoShare false: this process took nothing of the recovery's share", ge)
	}
	if ge.Until.Before(e.clock.now().Add(50*time.Second)) || !ge.Until.Before(end) {
		t.Errorf("refused until %v (in %v); want when the view's slots leave, about a minute on", ge.Until, ge.Until.Sub(e.clock.now()))
	}
	// Then the window has room (2 slots / 2 processes) but the day's share
	// is 0 (RPD 20 - the 28 slots others may have granted after the view
	// - the 2 counted): refused until the recovery's end, not the next
	// heartbeat.
	for _, d := range []time.Duration{0, 5 * time.Second, 20 * time.Second} {
		e.clock.add(ge.Until.Sub(e.clock.now()) + d)
		ge2 := grantErr(t, reserveErr(a, e.record(1, 1)), "share")
		if !ge2.NoShare {
			t.Errorf("%v before the end: day share refused with NoShare false: this process took no day unit of it", end.Sub(e.clock.now()))
		}
		if ge2.Until.Before(end) || ge2.Until.After(end.Add(time.Millisecond)) {
			t.Errorf("%v before the end: refused until %v (in %v); want the recovery's end %v", end.Sub(e.clock.now()), ge2.Until, ge2.Until.Sub(e.clock.now()), end)
		}
	}
	e.clock.add(end.Sub(e.clock.now()) + time.Millisecond)
	if err := reserveErr(a, e.record(1, 1)); err != nil {
		t.Errorf("at the recovery's end: %v", err)
	}
}

// TestRedisRecoveryShareUsed: the refusal of a lane whose share of the
// recovery this process took is not NoShare ("share used").
func TestRedisRecoveryShareUsed(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 30, RPD: 1000}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
	e.heartbeats(t, 20*time.Second, a, b)
	for _, s := range []*store.Redis{a, b} {
		if err := reserveErr(s, e.record(1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	e.heartbeats(t, 5*time.Second, a, b)
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.add(62 * time.Second) // the view's slots left: a's share is 1
	if err := reserveErr(a, e.record(1, 1)); err != nil {
		t.Fatalf("the share's slot: %v", err)
	}
	if ge := grantErr(t, reserveErr(a, e.record(1, 1)), "share"); ge.NoShare {
		t.Errorf("refused %v with NoShare after taking the share", ge)
	}
}
