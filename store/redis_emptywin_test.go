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
			e := newRedisEnv(t)
			const rpm = 10
			cls := store.RedisClass{Name: "text", RPM: rpm, RPD: 100}
			a, b := e.open(t, "a", cls), e.open(t, "b", cls)
			e.heartbeats(t, 15*time.Second, a, b)
			var sends []time.Time
			for _, g := range []struct {
				s *store.Redis
				n int
			}{{a, 8}, {b, 2}} {
				if _, err := g.s.Reserve(ctx, e.record(g.n, g.n)); err != nil {
					t.Fatal(err)
				}
				for range g.n {
					g.s.Stamped(lane, e.clock.now())
					sends = append(sends, e.clock.now())
				}
			}
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
			got, share, next := 0, 0, e.clock.now().Add(5*time.Second)
			for i := range 120 {
				e.clock.add(time.Second)
				if now := e.clock.now(); !now.Before(next) {
					if _, err := b.Heartbeat(ctx); err != nil {
						t.Fatal(err)
					}
					next = now.Add(5 * time.Second)
				}
				_, err := b.Reserve(ctx, e.record(1, 1))
				if errors.Is(err, store.ErrNoGrant) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				b.Stamped(lane, e.clock.now())
				sends = append(sends, e.clock.now())
				got++
				if i < 85 {
					share++
				}
			}
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
	e := newRedisEnv(t)
	const rpm = 10
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	var sends []time.Time
	if _, err := a.Reserve(ctx, e.record(8, 8)); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		a.Stamped(lane, e.clock.now())
		sends = append(sends, e.clock.now())
	}
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
	next := e.clock.now().Add(5 * time.Second)
	for range 120 {
		e.clock.add(time.Second)
		if now := e.clock.now(); !now.Before(next) {
			for _, s := range []*store.Redis{b, c} {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			next = now.Add(5 * time.Second)
		}
		for _, s := range []*store.Redis{c, b} {
			_, err := s.Reserve(ctx, e.record(1, 1))
			if errors.Is(err, store.ErrNoGrant) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Stamped(lane, e.clock.now())
			sends = append(sends, e.clock.now())
			got[s]++
		}
	}
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
	e := newRedisEnv(t)
	const rpm = 10
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	e.srv.Stop()
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(95 * time.Second) // every slot from before may have left: the share is RPM / 2
	var sends []time.Time
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Reserve(ctx, e.record(rpm/2, rpm/2)); err != nil {
			t.Fatalf("share of RPM / 2: %v", err)
		}
		for range rpm / 2 {
			s.Stamped(lane, e.clock.now())
			sends = append(sends, e.clock.now())
		}
	}
	// a dies; Redis comes back empty; b reconnects and re-seeds its 5.
	e.clock.add(5 * time.Second)
	e.srv.Restart()
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Restarts() != 1 {
		t.Errorf("b's Restarts %d, want 1", b.Restarts())
	}
	got, next := 0, e.clock.now().Add(5*time.Second)
	for range 130 {
		e.clock.add(time.Second)
		if now := e.clock.now(); !now.Before(next) {
			if _, err := b.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
			next = now.Add(5 * time.Second)
		}
		if _, err := b.Reserve(ctx, e.record(1, 1)); errors.Is(err, store.ErrNoGrant) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		b.Stamped(lane, e.clock.now())
		sends = append(sends, e.clock.now())
		got++
	}
	if at, n := windowOver(sends, rpm); n > 0 {
		t.Errorf("%d sends in the 60 s from %v, RPM %d", n, at.Format(time.TimeOnly), rpm)
	}
	if got < rpm/2 {
		t.Errorf("b sent %d in the 130 s after Redis came back", got)
	}
}
