package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisShortTTLJoinHeld: with a HeartbeatTTL of 6 s (a public option),
// the grace is TTL/3 + TTL/15 = 2.4 s. a and b saturate a lane at RPM 10,
// Redis stops (keeping its state) right after their heartbeats, and a
// sends on its share at F+2.5 s; Redis then answers again and d starts
// before a or b reach it: their entries, 2.5 s old, are overdue (the
// grace), so d is held. Before (overdue only at TTL/3 + 1 s = 3 s), d was
// granted the room of a's share sends: 15 in a minute of RPM 10.
func TestRedisShortTTLJoinHeld(t *testing.T) {
	ctx := context.Background()
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 10, RPD: 10000, Margin: 100 * time.Millisecond}}
	open := func(name string) *store.Redis {
		o := e.options(t, name, e.cls)
		o.HeartbeatTTL = 6 * time.Second
		s, err := store.OpenRedis(ctx, store.NewMemory(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	beat := func(ss ...*store.Redis) {
		t.Helper()
		for _, s := range ss {
			if _, err := s.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, b := open("a"), open("b")
	for range 6 { // a view of both, older than the TTL
		e.clock.add(2 * time.Second)
		beat(a, b)
	}
	for i := range 59 { // both saturate the lane, heartbeats every 2 s
		e.clock.add(time.Second)
		if i%2 == 0 {
			beat(a, b)
		}
		for _, s := range []*store.Redis{a, b} {
			for j := 0; j < 20 && e.take(t, s, 1, 1); j++ {
			}
		}
	}
	e.clock.add(800 * time.Millisecond)
	beat(a, b)
	e.srv.Stop()
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
	e.clock.add(2500 * time.Millisecond) // past the grace (2.4 s)
	n := 0
	for n < e.cls.RPM && e.take(t, a, 1, 1) {
		n++
	}
	if n == 0 {
		_, err := a.Reserve(ctx, e.record(1, 1))
		t.Fatalf("a: no share at F+2.5s: %v; %v", err, a.Health())
	}
	e.srv.Restart()
	d := open("d")
	m := 0
	for m < e.cls.RPM && e.take(t, d, 1, 1) {
		m++
	}
	if m > 0 || !d.Joining() {
		t.Errorf("d granted %d (joining %v) while a's share sends are in no Redis window", m, d.Joining())
	}
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	t.Logf("a sent %d on its share; d granted %d; busiest minute %d of %d", n, m, worst, e.cls.RPM)
}
