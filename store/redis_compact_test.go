package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

const (
	winKey   = "test:win:2:p1/text"
	countKey = "test:wincount:2:p1/text"
)

// windowMembers returns the number of members of the lane's window and
// its count hash (members, slots; 0, 0 without one).
func windowMembers(t *testing.T, c *redis.Client) (members int64, counted [2]int) {
	t.Helper()
	ctx := context.Background()
	members, err := c.ZCard(ctx, winKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.HMGet(ctx, countKey, "m", "s").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range h {
		if s, ok := v.(string); ok {
			counted[i], _ = strconv.Atoi(s)
		}
	}
	return members, counted
}

// TestRedisGrantMembers: a grant of N slots writes one member to the
// shared window, whatever N, and its settlement one per run of stamps (a
// burst of 100 sends: one); the window's count (members, slots) follows,
// and expires with the window.
func TestRedisGrantMembers(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 1000, RPD: 10000, Margin: 100 * time.Millisecond}
	a := e.open(t, "a", cls)
	store.SetRedisPrefetch(a, false) // grants at once only: the members checked are theirs
	rc := e.client(t)
	for _, n := range []int{1, 100, 400} {
		if _, err := a.Reserve(ctx, e.record(n, n)); err != nil {
			t.Fatal(err)
		}
		// The previous grant's settlement (no stamps) removed it.
		if m, c := windowMembers(t, rc); m != 1 || c != [2]int{1, n} {
			t.Fatalf("grant of %d: %d members, count %v; want 1 member of %d slots", n, m, c, n)
		}
	}
	t0 := e.clock.now()
	for i := range 100 { // a burst: 100 sends within 100 µs
		a.Stamped(lane, t0.Add(time.Duration(i)*time.Microsecond))
	}
	e.clock.add(3 * time.Second)
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	if m, c := windowMembers(t, rc); m != 2 || c != [2]int{2, 101} {
		t.Fatalf("after the settlement: %d members, count %v; want the burst's run (100) and the grant (1)", m, c)
	}
	// The run is at its latest stamp: 99 µs rounded up to the
	// millisecond, plus the offset's millisecond.
	if got := e.windowScores(t, rc); len(got) != 101 || got[0] != t0.UnixMilli()+2 || got[99] != t0.UnixMilli()+2 {
		t.Errorf("window %v, want 100 slots at the burst's latest stamp (+2 ms) and the grant's", got)
	}
	// The count expires with the window.
	ttl, cttl := rc.PTTL(ctx, winKey).Val(), rc.PTTL(ctx, countKey).Val()
	if ttl <= 0 || cttl <= 0 || cttl > ttl {
		t.Errorf("window expires in %v, its count in %v", ttl, cttl)
	}
	// Once the window is over, nothing is left of either.
	e.clock.add(70 * time.Second)
	if _, err := a.Heartbeat(ctx); err != nil { // settles the idle grant
		t.Fatal(err)
	}
	if _, err := a.Reserve(ctx, e.record(2, 2)); err != nil {
		t.Fatal(err)
	}
	if m, c := windowMembers(t, rc); m != 1 || c != [2]int{1, 2} {
		t.Errorf("a minute later: %d members, count %v; want the last grant only", m, c)
	}
}

// TestRedisWindowFreeAt: a full window answers when enough slots free,
// walking its members oldest first and summing the slots each holds.
func TestRedisWindowFreeAt(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	// A window of 6 s: the answer is not capped by when a grant may be
	// given back (13 s here, see Reserve).
	const win = 6 * time.Second
	var ps []*store.Redis
	for _, p := range []string{"a", "b", "c", "d"} {
		s := e.open(t, p, cls)
		store.SetRedisWindow(s, win)
		ps = append(ps, s)
	}
	t0 := e.clock.now()
	for i, n := range []int{3, 4, 3} {
		if _, err := ps[i].Reserve(ctx, e.record(n, n)); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Second)
	}
	// Slots: a's 3 at t0+2 s, b's 4 at t0+3 s, c's 3 at t0+4 s; now is
	// t0+3 s. d asks (its refusals settle nothing).
	for _, tt := range []struct {
		covers int
		free   time.Duration // after t0, Redis's clock
	}{{1, 2 * time.Second}, {3, 2 * time.Second}, {4, 3 * time.Second}, {7, 3 * time.Second}, {8, 4 * time.Second}} {
		ge := grantErr(t, reserveErr(ps[3], e.record(tt.covers, tt.covers)), "window")
		want := time.Now().Add(t0.Add(tt.free + win + time.Millisecond).Sub(e.clock.now()))
		if d := ge.Until.Sub(want); d < -500*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("%d covers: Until in %v, want about %v", tt.covers, time.Until(ge.Until), time.Until(want))
		}
	}
	// Past a's 3 (t0+2 s + 6 s), 3 fit and 4 do not.
	e.clock.add(5*time.Second + time.Millisecond)
	grantErr(t, reserveErr(ps[3], e.record(4, 4)), "window")
	if _, err := ps[3].Reserve(ctx, e.record(3, 3)); err != nil {
		t.Fatalf("3 once a's grant left: %v", err)
	}
	// More than RPM never fits, even in an empty window: refused for the
	// window, asked again a window from now (on the old code a script
	// error, taken for Redis unreachable).
	e.clock.add(20 * time.Second)
	ge := grantErr(t, reserveErr(ps[3], e.record(11, 11)), "window")
	if want := time.Now().Add(win); ge.Until.Before(want.Add(-500*time.Millisecond)) || ge.Until.After(want.Add(500*time.Millisecond)) {
		t.Errorf("11 covers at RPM 10: Until in %v, want about %v", time.Until(ge.Until), win)
	}
	if ps[3].Unreachable() {
		t.Error("a grant above RPM made Redis unreachable")
	}
}

// TestRedisOlderMembers: a window written by an older slideshowd (one
// member per slot, no count) is counted right, member by member, and so is
// one whose count hash does not match it (written by something that does
// not keep it).
func TestRedisOlderMembers(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	rc := e.client(t)
	score := float64(e.clock.now().Add(time.Second).UnixMilli())
	for i := range 6 { // an older process's grant of 6
		rc.ZAdd(ctx, winKey, redis.Z{Score: score, Member: "old:1z:" + strconv.Itoa(i+1)})
	}
	grantErr(t, reserveErr(a, e.record(5, 5)), "window")
	if _, err := a.Reserve(ctx, e.record(4, 4)); err != nil {
		t.Fatalf("4 next to the older process's 6: %v", err)
	}
	if m, c := windowMembers(t, rc); m != 7 || c != [2]int{7, 10} {
		t.Fatalf("%d members, count %v; want 7 members of 10 slots", m, c)
	}
	// Another writer removes 3 of the older slots and adds a member of
	// 1: the count (10) no longer matches the members; counted again,
	// the window holds 3 + 4 + 1 = 8, room for b's 2.
	rc.ZRem(ctx, winKey, "old:1z:1", "old:1z:2", "old:1z:3")
	rc.ZAdd(ctx, winKey, redis.Z{Score: score, Member: "other:2z:g*1"})
	grantErr(t, reserveErr(b, e.record(3, 3)), "window")
	if _, err := b.Reserve(ctx, e.record(2, 2)); err != nil {
		t.Fatalf("2 next to 8: %v", err)
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if l := u.Lanes[0]; l.Window != 10 || l.WindowByProcess["old"] != 3 || l.WindowByProcess["other"] != 1 ||
		l.WindowByProcess["a"] != 4 || l.WindowByProcess["b"] != 2 {
		t.Errorf("usage window %d by process %v; want 10: old 3, other 1, a 4, b 2", l.Window, l.WindowByProcess)
	}
}

// TestRedisOlderProcessConflict: a process refuses to start next to a live
// process of an older slideshowd (its limits registered without the window
// format), in one line that names the formats.
func TestRedisOlderProcessConflict(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	rc := e.client(t)
	// An older process "old", alive, with the same limits.
	rc.ZAdd(ctx, "test:procs", redis.Z{Score: float64(e.clock.now().Add(15 * time.Second).UnixMilli()), Member: "old"})
	rc.HSet(ctx, "test:limits:old", "p1/text", "rpm 5, rpd 8, window margin 100ms")
	err := e.joinErr(t, "new", textClass)
	want := "lane p1/text: rpm 5, rpd 8, window margin 100ms, window format 2 here, rpm 5, rpd 8, window margin 100ms, window format 1 (an older slideshowd: all processes of a cluster must run the same version) in process old"
	if !errors.Is(err, store.ErrLimitsConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err\n got %v\nwant one containing %s", err, want)
	}
}
