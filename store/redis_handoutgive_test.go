package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisHandOutRefusalGivesBack (review11 R11-1): a's record is granted
// (1 day unit), its Local write takes 8 s, a's heartbeat settles the idle
// grant meanwhile and b takes the whole RPM. handOut's re-grant is refused
// ("window") and Reserve returns the refusal; the scheduler (ledger.commit
// -> abandon -> ChunkFailed) then records the chunk again. The refused
// record's day unit stayed in Redis's day count (and a's part of it): it
// was counted twice for the day (day count 12, a's part 2, for 11 sent).
// Now the refusal gives it back in Redis.
func TestRedisHandOutRefusalGivesBack(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: 250 * time.Millisecond}
	slow := &slowRecord{Memory: store.NewMemory(), clock: e.clock}
	a, err := store.OpenRedis(ctx, slow, e.options(t, "a", cls))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := e.open(t, "b", cls)
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
	rec := func(covers int) store.Record {
		at := e.clock.now()
		return store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: at, Until: at.Add(2 * time.Second)}
	}
	slow.d = 8 * time.Second
	slow.during = func() {
		if _, err := a.Heartbeat(ctx); err != nil {
			t.Error(err)
		}
		if _, err := b.Reserve(ctx, rec(10)); err != nil {
			t.Errorf("b's 10: %v", err)
		}
	}
	_, err = a.Reserve(ctx, rec(1))
	var ge *store.GrantError
	if !errors.As(err, &ge) {
		t.Fatalf("a's slow record: %v, want a refusal (the test's premise)", err)
	}
	rc := e.client(t)
	n, aPart := dayCount(t, rc, "a")
	t.Logf("a's Reserve refused (%v); day count %d, a's part %d", err, n, aPart)
	// The scheduler records the chunk again once the window has room,
	// sends it, and settles (nothing to give back: its memory holds 1 used
	// of 1 reserved).
	e.clock.add(70 * time.Second)
	if _, err := a.Reserve(ctx, rec(1)); err != nil {
		t.Fatal(err)
	}
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	e.clock.add(3 * time.Second)
	if err := a.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	n, aPart = dayCount(t, rc, "a")
	t.Logf("after a's record again, its send and its settle: day count %d, a's part %d; sent 11 (b 10, a 1)", n, aPart)
	if aPart != 1 || n != 11 {
		t.Errorf("day count %d (a's part %d), want 11 (1): the refused record's unit was never given back", n, aPart)
	}
}
