package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slideshowd/slideshowd/store"
)

// expireAfter moves the virtual clock by d and Redis's expiry of keys (c's;
// all
// the test cluster's when none are given) with it: the scripts set times to
// live from the virtual clock's durations, and Redis counts them down in
// real time, so a key whose time to live is at most d is deleted (as Redis
// would have by then) and the others' are shortened by d.
func expireAfter(t *testing.T, c *redis.Client, e *redisEnv, d time.Duration, keys ...string) {
	t.Helper()
	ctx := context.Background()
	if len(keys) == 0 {
		var err error
		if keys, err = c.Keys(ctx, "test:*").Result(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		p, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case p < 0: // no key, or no time to live
		case p <= d:
			c.Del(ctx, k)
		default:
			c.PExpire(ctx, k, p-d)
		}
	}
	e.clock.add(d)
}

// TestRedisWindowOutlivesLongGrant: a slow lane's grant of 30 s (5 slots,
// counted at its expiry plus the margin, so live for 91 s) by a process
// killed with it in hand, then another process's grant of 2 s (5 slots
// more): the window is full. The lane then goes idle; 65 s later the killed
// process's slots are still live (their score is 26 s from leaving), so
// the next grant gets the 5 slots left. Before, the second grant set the window's
// time to live to its own need (2 s + 1 s + 60 s + 1 s), lowering the
// first one's: Redis dropped the window with the killed life's 5 slots in
// it and the third grant was given 10 (15 slots within 36 s at RPM 10).
func TestRedisWindowOutlivesLongGrant(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: time.Second}
	a := e.open(t, "a", cls)
	at := e.clock.now()
	long := store.Record{Lane: lane, Day: "2026-03-01", Units: 5, Covers: 5, At: at, Until: at.Add(30 * time.Second)}
	if _, err := a.Reserve(ctx, long); err != nil {
		t.Fatal(err)
	}
	// a is killed with its grant in hand (dropped: no Settle).
	e.clock.add(100 * time.Millisecond)
	b := e.open(t, "b", cls)
	at = e.clock.now()
	short := store.Record{Lane: lane, Day: "2026-03-01", Units: 5, Covers: 5, At: at, Until: at.Add(2 * time.Second)}
	if _, err := b.Reserve(ctx, short); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b.Stamped(lane, at.Add(cls.Margin))
	}
	if err := b.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	expireAfter(t, e.client(t), e, 65*time.Second, "test:win:2:p1/text", "test:wincount:2:p1/text")
	at = e.clock.now()
	r := store.Record{Lane: lane, Day: "2026-03-01", Units: 10, Covers: 10, At: at, Until: at.Add(2 * time.Second)}
	_, covers, sched, err := b.ReserveUpTo(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if now := covers - len(sched); now > 5 {
		t.Errorf("granted %d slots to send now while the killed process's 5 are live for 26 s more (RPM 10): want 5", now)
	}
}
