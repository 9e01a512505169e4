package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// windowOver returns the first 60 s window of sends that holds more than
// rpm of them, as its start and count; the zero Time when none does.
func windowOver(sends []time.Time, rpm int) (time.Time, int) {
	for i, s := range sends {
		n := 0
		for _, o := range sends {
			if !o.Before(s) && o.Sub(s) < time.Minute {
				n++
			}
		}
		if n > rpm {
			return sends[i], n
		}
	}
	return time.Time{}, 0
}

// openViewing opens processes a and b on a new Redis, with the one text
// class of rpm and RPD 100, and lets 15 s of heartbeats pass: each has a
// view of both.
func openViewing(t *testing.T, rpm int) (*redisEnv, store.RedisClass, *store.Redis, *store.Redis) {
	t.Helper()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	return e, cls, a, b
}

// sendGranted has s take a grant of n slots and day units and send all n
// at at (stamped then); it returns their send times.
func sendGranted(t *testing.T, e *redisEnv, s *store.Redis, n int, at time.Time) []time.Time {
	t.Helper()
	if _, err := s.Reserve(context.Background(), e.record(n, n)); err != nil {
		t.Fatalf("grant of %d: %v", n, err)
	}
	sends := make([]time.Time, n)
	for i := range sends {
		s.Stamped(lane, at)
		sends[i] = at
	}
	return sends
}

// sendEverySecond advances the clock by a second secs times. Each time,
// once 5 s have passed since the start or the last heartbeats, each of
// beats sends its heartbeat; then each of senders, in order, asks for one
// slot and, granted, sends it at once, and sent is called with the sender
// and i, the second (from 0). It returns the send times.
func sendEverySecond(t *testing.T, e *redisEnv, secs int, beats, senders []*store.Redis, sent func(s *store.Redis, i int)) []time.Time {
	t.Helper()
	ctx := context.Background()
	var sends []time.Time
	next := e.clock.now().Add(5 * time.Second)
	for i := range secs {
		e.clock.add(time.Second)
		if now := e.clock.now(); !now.Before(next) {
			for _, s := range beats {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			next = now.Add(5 * time.Second)
		}
		for _, s := range senders {
			_, err := s.Reserve(ctx, e.record(1, 1))
			if errors.Is(err, store.ErrNoGrant) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Stamped(lane, e.clock.now())
			sends = append(sends, e.clock.now())
			sent(s, i)
		}
	}
	return sends
}

// TestRedisEmptyRestartDeadProcess: a fills 8 of the lane's RPM 10 and is
// no longer alive (it stopped cleanly: Settle and Leave; it was killed; its
// heartbeat expired while it stalled) when Redis restarts empty, or when
// Redis comes back empty after an outage. Nobody re-seeds a's slots, so
// Redis's window holds only b's 2: b must still not be granted more than
// RPM minus a's 8 until they leave the window (the newcomer's binary run:
// 14 image requests in a 60 s window at RPM 10, two per-minute 429s 15 s
// after the restart, when b's recovery of one heartbeat TTL ended). Every
// second for 120 s b asks for a slot and sends what it is granted; no 60 s
// window of all the sends may hold more than 10, and b gets the lane back
// on its share once a's slots have left (before, a heartbeat that found
// Redis restarted empty counted b joined anew before it took the share
// from its view: b had no share at all).
func TestRedisEmptyRestartDeadProcess(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exit   func(t *testing.T, e *redisEnv, a, b *store.Redis)
		outage bool
	}{
		{name: "clean stop", exit: func(t *testing.T, e *redisEnv, a, _ *store.Redis) {
			if err := a.Settle(context.Background(), store.Settlement{}); err != nil {
				t.Fatal(err)
			}
			if err := a.Leave(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "killed", exit: func(*testing.T, *redisEnv, *store.Redis, *store.Redis) {}},
		{name: "stalled past its heartbeat", exit: func(t *testing.T, e *redisEnv, a, b *store.Redis) {
			// a's heartbeat expires while b's goes on: b's views count
			// a dead, its slots are still in the window.
			e.heartbeats(t, 20*time.Second, b)
		}},
		{name: "outage then empty, clean stop", outage: true, exit: func(t *testing.T, e *redisEnv, a, _ *store.Redis) {
			if err := a.Settle(context.Background(), store.Settlement{}); err != nil {
				t.Fatal(err)
			}
			if err := a.Leave(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "outage then empty, killed", outage: true, exit: func(*testing.T, *redisEnv, *store.Redis, *store.Redis) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			const rpm = 10
			e, _, a, b := openViewing(t, rpm)
			sends := append(sendGranted(t, e, a, 8, e.clock.now()), sendGranted(t, e, b, 2, e.clock.now())...)
			tc.exit(t, e, a, b)
			if _, err := b.Heartbeat(ctx); err != nil { // b's view: a's 8 and its 2
				t.Fatal(err)
			}
			e.clock.add(2 * time.Second)
			if tc.outage {
				e.srv.Stop()
				if _, err := b.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("heartbeat with Redis stopped: %v", err)
				}
				e.clock.add(5 * time.Second)
				e.srv.Restart() // empty
			} else {
				e.srv.Kill()
				e.srv.Restart()
			}
			if _, err := b.Heartbeat(ctx); err != nil { // notices, re-seeds its 2
				t.Fatal(err)
			}
			if b.Restarts() != 1 {
				t.Errorf("b's Restarts %d, want 1 (Redis lost the cluster's state)", b.Restarts())
			}
			got, share := 0, 0
			sends = append(sends, sendEverySecond(t, e, 120, []*store.Redis{b}, []*store.Redis{b}, func(_ *store.Redis, i int) {
				got++
				if i < 85 {
					share++
				}
			})...)
			t.Logf("b sent %d, %d of them in the first 85 s", got, share)
			if at, n := windowOver(sends, rpm); n > 0 {
				t.Errorf("%d sends in the 60 s from %v (a's 8 at %v), RPM %d", n, at.Format(time.TimeOnly), sends[0].Format(time.TimeOnly), rpm)
			}
			if share < rpm/2 {
				// a's 8 and b's 2 leave 60 s after they were sent: b's
				// share of that room (10 / 2 when its view counted a
				// alive, else 10), before its recovery ends (91 s).
				t.Errorf("b sent %d in the 85 s after the restart: it had no share of the room a's slots left", share)
			}
		})
	}
}

// TestRedisEmptyRestartJoiner: a process that starts while the running
// ones recover after Redis restarted empty has no view from before, and
// a's slots (a no longer alive) are in no Redis window: it takes no grant
// until that recovery ends, then gets the lane (before, it was granted
// the room a's 8 slots still held: 18 sends in a 60 s window at RPM 10).
func TestRedisEmptyRestartJoiner(t *testing.T) {
	ctx := context.Background()
	const rpm = 10
	e, cls, a, b := openViewing(t, rpm)
	sends := sendGranted(t, e, a, 8, e.clock.now())
	if _, err := b.Heartbeat(ctx); err != nil { // b's view: a's 8; then a is killed
		t.Fatal(err)
	}
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(2 * time.Second)
	if _, err := b.Heartbeat(ctx); err != nil { // notices, re-seeds nothing of a's
		t.Fatal(err)
	}
	c := e.open(t, "c", cls)
	grantErr(t, reserveErr(c, e.record(1, 1)), "share")
	got := map[*store.Redis]int{}
	sends = append(sends, sendEverySecond(t, e, 120, []*store.Redis{b, c}, []*store.Redis{c, b}, func(s *store.Redis, _ int) { got[s]++ })...)
	if at, n := windowOver(sends, rpm); n > 0 {
		t.Errorf("%d sends in the 60 s from %v, RPM %d", n, at.Format(time.TimeOnly), rpm)
	}
	if got[c] == 0 {
		t.Errorf("c sent nothing in the 120 s after it joined: the recovery did not end for it")
	}
}

// TestRedisEmptyRestartDiesInOutage: a sends on its share while Redis is
// unreachable and dies before Redis comes back empty: nobody adds a's
// share sends, so b's recovery must last until they have left the window
// (before, b was granted them again 15 s after it reconnected).
func TestRedisEmptyRestartDiesInOutage(t *testing.T) {
	ctx := context.Background()
	const rpm = 10
	e, _, a, b := openViewing(t, rpm)
	e.srv.Stop()
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(95 * time.Second) // every slot from before may have left: the share is RPM / 2
	// Each sends its share.
	sends := append(sendGranted(t, e, a, rpm/2, e.clock.now()), sendGranted(t, e, b, rpm/2, e.clock.now())...)
	// a dies; Redis comes back empty; b reconnects and re-seeds its 5.
	e.clock.add(5 * time.Second)
	e.srv.Restart()
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Restarts() != 1 {
		t.Errorf("b's Restarts %d, want 1", b.Restarts())
	}
	got := 0
	sends = append(sends, sendEverySecond(t, e, 130, []*store.Redis{b}, []*store.Redis{b}, func(*store.Redis, int) { got++ })...)
	if at, n := windowOver(sends, rpm); n > 0 {
		t.Errorf("%d sends in the 60 s from %v, RPM %d", n, at.Format(time.TimeOnly), rpm)
	}
	if got < rpm/2 {
		t.Errorf("b sent %d in the 130 s after Redis came back", got)
	}
}
