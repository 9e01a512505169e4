package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestRedisChargeDayAcrossMidnight (review 8, F1, the shared day count): a
// and b share a lane of RPD 2 (real redis-server, virtual clock). a's
// request, granted on the old day 0.5 s before Pacific midnight, is written
// after it: the API counts it on the new day, so a charges the new day's
// count (ChargeDay, one atomic increment), in Redis and in its own store.
// 2 s after midnight b asks the new day for 2 units and is refused (1 taken
// of 2), then granted 1: the new day's 2 are the late request and b's one.
// Without the charge b was granted 2 and the API saw 3 that day.
func TestRedisChargeDayAcrossMidnight(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	// 23:59:59.5 Pacific on 2026-03-01 (PST).
	e.clock.add(time.Date(2026, 3, 1, 23, 59, 59, 500_000_000, pacific(t)).Sub(e.clock.now()))
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 2, Margin: 250 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	const oldDay, newDay = "2026-03-01", "2026-03-02"
	rec := func(day string, n int) store.Record {
		at := e.clock.now()
		return store.Record{Lane: lane, Day: day, Units: n, Covers: n, At: at, Until: at.Add(2 * time.Second)}
	}
	if n, err := a.Reserve(ctx, rec(oldDay, 1)); err != nil || n != 1 {
		t.Fatalf("a's grant on the old day: %d, %v", n, err)
	}
	a.Stamped(lane, e.clock.now().Add(cls.Margin))
	e.clock.add(2 * time.Second) // written late: 1.5 s after midnight
	if n, err := a.ChargeDay(ctx, newDay, lane, 1); err != nil || n != 1 {
		t.Fatalf("a's charge of the new day: %d, %v; want 1", n, err)
	}
	if got := ownDayCount(t, a, newDay); got != 1 {
		t.Fatalf("a's own store counts %d on the new day, want 1", got)
	}
	if got := ownDayCount(t, a, oldDay); got != 1 {
		t.Fatalf("a's own store counts %d on the old day, want 1 (its unit stays)", got)
	}
	e.clock.add(500 * time.Millisecond)
	_, err := b.Reserve(ctx, rec(newDay, 2))
	if ge := grantErr(t, err, "day"); ge.Day != 1 {
		t.Fatalf("b refused with the new day's count %d, want 1 (a's late request)", ge.Day)
	}
	if n, err := b.Reserve(ctx, rec(newDay, 1)); err != nil || n != 2 {
		t.Fatalf("b's grant of 1 on the new day: %d, %v; want the count 2", n, err)
	}
	// A charge is an increment, never refused: a second late request of a
	// takes the count past RPD (it reached the API anyway).
	if n, err := a.ChargeDay(ctx, newDay, lane, 1); err != nil || n != 3 {
		t.Fatalf("a's second charge: %d, %v; want 3", n, err)
	}
	rc := e.client(t)
	if n, err := rc.Get(ctx, "test:day:"+newDay+":2:p1/text").Int(); err != nil || n != 3 {
		t.Fatalf("Redis's count of the new day %d, %v; want 3", n, err)
	}
	if u, err := rc.HGetAll(ctx, "test:use:"+newDay+":2:p1/text").Result(); err != nil || u["a"] != "2" || u["b"] != "1" {
		t.Fatalf("the new day's use per process %v, %v; want a 2, b 1", u, err)
	}
	// Bad input is named, and nothing is charged.
	if _, err := a.ChargeDay(ctx, newDay, store.LaneID{Project: "p1", Class: "image"}, 1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a charge on a class the ledger does not have: %v, want ErrInvalid", err)
	}
	if _, err := a.ChargeDay(ctx, newDay, lane, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a charge of 0 units: %v, want ErrInvalid", err)
	}
	if got := ownDayCount(t, a, newDay); got != 2 {
		t.Fatalf("a's own store counts %d on the new day, want 2", got)
	}
}

func pacific(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ownDayCount is s's own store's count of lane on day.
func ownDayCount(t *testing.T, s store.Store, day string) int {
	t.Helper()
	counts, err := s.Daily(context.Background(), day)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Lane == lane {
			return c.Count
		}
	}
	return 0
}

// newDayHoldsOne lets 5 minutes pass (past midnight and a recovery:
// every slot granted before may have left the window), runs a heartbeat of
// a and b, and fails the test unless b, on newDay at RPD 2, is refused a
// grant of 2 units ("..., why" in the message) and then granted 1 with the
// day count 2: the cluster's count of newDay held a's one unit.
func (e *redisEnv) newDayHoldsOne(t *testing.T, newDay string, a, b *store.Redis, why string) {
	t.Helper()
	ctx := context.Background()
	e.clock.add(5 * time.Minute)
	beat(t, a, b)
	rec := func(n int) store.Record {
		at := e.clock.now()
		return store.Record{Lane: lane, Day: newDay, Units: n, Covers: n, At: at, Until: at.Add(2 * time.Second)}
	}
	if n, err := b.Reserve(ctx, rec(2)); err == nil {
		t.Fatalf("b granted the new day's 2 units of RPD 2 (count %d): %s", n, why)
	}
	if n, err := b.Reserve(ctx, rec(1)); err != nil || n != 2 {
		t.Fatalf("b's grant of 1 on the new day: %d, %v; want the count 2", n, err)
	}
}

// TestRedisReseedKeepsTomorrow (gap 3 of the midnight charge): a charges
// the next Pacific day one unit 0.5 s before midnight (ChargeDay: a request
// written late across it), then Redis restarts empty before midnight. The
// re-seed of a's heartbeat adds its own store's count of tomorrow too, so
// the new day starts with that unit in the cluster's count: after the
// recovery b is refused the new day's 2 units of RPD 2 and granted 1.
// Before, the re-seed added today's counts only: the new day's count was 0
// and b was granted 2 (3 requests reached the API that day).
func TestRedisReseedKeepsTomorrow(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	// 23:59:59 Pacific on 2026-03-01 (PST).
	e.clock.add(time.Date(2026, 3, 1, 23, 59, 59, 0, pacific(t)).Sub(e.clock.now()))
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 2, Margin: 250 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	const newDay = "2026-03-02"
	if n, err := a.ChargeDay(ctx, newDay, lane, 1); err != nil || n != 1 {
		t.Fatalf("a's charge of the new day: %d, %v; want 1", n, err)
	}
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(500 * time.Millisecond) // still before midnight
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	rc := e.client(t)
	key := "test:day:" + newDay + ":2:p1/text"
	if n, err := rc.Get(ctx, key).Int(); err != nil || n != 1 {
		t.Fatalf("the new day's count after a's re-seed: %d, %v; want 1 (a's unit charged before midnight)", n, err)
	}
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	// Past midnight and the recovery after the restart (every slot
	// granted before it may have left the window).
	e.newDayHoldsOne(t, newDay, a, b, "a's unit charged before midnight was lost by the re-seed")
	if n, err := rc.Get(ctx, key).Int(); err != nil || n != 2 {
		t.Fatalf("Redis's count of the new day %d, %v; want 2", n, err)
	}
}

// TestRedisChargeDayUnreachable (gap 2 of the midnight charge): a's charge
// of the new day finds Redis stopped (it kept its state: append-only). The
// unit is in a's own store at once and, from a's heartbeat that reaches
// Redis again, in the cluster's count of the new day: b is then refused the
// new day's 2 units of RPD 2. When Redis comes back empty instead, a's
// re-seed adds it (once, not twice). Before, the unit stayed in a's own
// store: with Redis's state kept, no re-seed ran, and the cluster's count of
// the new day never had it.
func TestRedisChargeDayUnreachable(t *testing.T) {
	for _, empty := range []bool{false, true} {
		name := "kept"
		if empty {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// 23:59:59 Pacific on 2026-03-01 (PST).
			e := &redisEnv{srv: redistest.Start(t, redistest.Options{AppendOnly: true}),
				clock: &vclock{t: time.Date(2026, 3, 1, 23, 59, 59, 0, pacific(t))}}
			cls := store.RedisClass{Name: "text", RPM: 10, RPD: 2, Margin: 250 * time.Millisecond}
			a, b := e.open(t, "a", cls), e.open(t, "b", cls)
			const newDay = "2026-03-02"
			e.srv.Stop()
			n, err := a.ChargeDay(ctx, newDay, lane, 1)
			if !errors.Is(err, store.ErrUnavailable) || n != 1 {
				t.Fatalf("a's charge with Redis stopped: %d, %v; want the own count 1 and ErrUnavailable", n, err)
			}
			t.Log(err)
			if empty {
				e.srv.RestartEmpty()
			} else {
				e.srv.Restart()
			}
			e.clock.add(2 * time.Second) // past midnight
			for _, s := range []*store.Redis{a, b} {
				if _, err := s.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			rc := e.client(t)
			key := "test:day:" + newDay + ":2:p1/text"
			if n, err := rc.Get(ctx, key).Int(); err != nil || n != 1 {
				t.Fatalf("the new day's count after a reached Redis again: %d, %v; want 1 (a's unit, once)", n, err)
			}
			if got := ownDayCount(t, a, newDay); got != 1 {
				t.Fatalf("a's own store counts %d on the new day, want 1", got)
			}
			// After the recovery, b's grants of the new day count it.
			e.newDayHoldsOne(t, newDay, a, b, "a's unit charged while Redis was stopped is not in it")
		})
	}
}
