package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// windowScores returns the scores of the slots of the lane's shared window
// (Unix ms), ascending: a member's score once per slot it holds.
func (e *redisEnv) windowScores(t *testing.T, c *redis.Client) []int64 {
	t.Helper()
	zs, err := c.ZRangeWithScores(context.Background(), "test:win:2:p1/text", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, z := range zs {
		out = append(out, rep(int64(z.Score), store.MemberSlots(z.Member.(string)))...)
	}
	return out
}

// checkWindow stops the test unless the lane's shared window holds exactly
// the slots want (as windowScores returns them); what says when it is read
// ("after Settle").
func (e *redisEnv) checkWindow(t *testing.T, rc *redis.Client, what string, want []int64) {
	t.Helper()
	if got := e.windowScores(t, rc); !slices.Equal(got, want) {
		t.Fatalf("window %s %v, want %v", what, got, want)
	}
}

// openMargin opens the ledger of process "a" alone on a new Redis, with
// the one text class of rpm and rpd and a window margin of 100 ms, and a
// client to read Redis's keys with.
func openMargin(t *testing.T, rpm, rpd int) (*redisEnv, *store.Redis, *redis.Client) {
	t.Helper()
	e := newRedisEnv(t)
	a := e.open(t, "a", store.RedisClass{Name: "text", RPM: rpm, RPD: rpd, Margin: 100 * time.Millisecond})
	return e, a, e.client(t)
}

// ms is the clock's now plus d in Unix ms.
func (e *redisEnv) ms(d time.Duration) int64 { return e.clock.now().Add(d).UnixMilli() }

func rep(v int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func sorted(v ...int64) []int64 {
	slices.Sort(v)
	return v
}

// TestRedisGiveBack: a grant's slots sit at its expiry plus the margin;
// once the grant is over (the lane's next grant), those its process
// stamped move to their stamps (on Redis's clock: the virtual clock here,
// plus a millisecond of rounding) and the others leave the window, so
// another process can take them at once. Stamps beyond Covers (a lease
// refunded after its stamp) keep the latest Covers.
func TestRedisGiveBack(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	rc := e.client(t)
	t0 := e.clock.now()
	if _, err := a.Reserve(ctx, e.record(6, 6)); err != nil {
		t.Fatal(err)
	}
	e.checkWindow(t, rc, "after a's grant", rep(e.ms(2100*time.Millisecond), 6))
	// a sends 2 of its 6 (stamps: dispatch plus the margin).
	a.Stamped(lane, t0.Add(200*time.Millisecond))
	a.Stamped(lane, t0.Add(700*time.Millisecond))
	// Without the give-back b could not have 6: 6 + 6 > 10.
	e.clock.add(time.Second)
	if _, err := b.Reserve(ctx, e.record(6, 6)); err == nil {
		t.Fatal("b's 6 granted while a's grant is not over")
	}
	// a's next grant (its renewal covering 4) settles its first one.
	if _, err := a.Reserve(ctx, e.record(4, 0)); err != nil {
		t.Fatal(err)
	}
	want := sorted(t0.Add(200*time.Millisecond).UnixMilli()+1, t0.Add(700*time.Millisecond).UnixMilli()+1)
	want = append(want, rep(e.ms(2100*time.Millisecond), 4)...)
	e.checkWindow(t, rc, "after a's renewal", want)
	// b's 4 fit now (2 + 4 + 4 = 10), no more.
	if _, err := b.Reserve(ctx, e.record(5, 5)); err == nil {
		t.Fatal("b's 5 granted over RPM")
	}
	if _, err := b.Reserve(ctx, e.record(4, 4)); err != nil {
		t.Fatalf("b's 4 after a's give-back: %v", err)
	}
	// a's renewal: 3 stamps of its 4 covers, all kept, one slot removed.
	// b stamps 5 on its 4 covers (one lease refunded after its stamp: the
	// stamps exceed the sends): the 4 latest are kept.
	t1 := e.clock.now()
	for _, d := range []time.Duration{100, 300, 900} {
		a.Stamped(lane, t1.Add(d*time.Millisecond))
	}
	for _, d := range []time.Duration{150, 250, 350, 450, 550} {
		b.Stamped(lane, t1.Add(d*time.Millisecond))
	}
	e.clock.add(1500 * time.Millisecond)
	// a's grant of 2 is refused (2 + 3 + 4 + 2 > 10: b's grant is not
	// over yet), but it settled a's renewal; b's next grant settles b's.
	if _, err := a.Reserve(ctx, e.record(2, 2)); err == nil {
		t.Fatal("a's grant over RPM")
	}
	if _, err := b.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("b's 1 after a's renewal was settled: %v", err)
	}
	ms := func(d time.Duration) int64 { return t1.Add(d*time.Millisecond).UnixMilli() + 1 }
	want = sorted(t0.Add(200*time.Millisecond).UnixMilli()+1, t0.Add(700*time.Millisecond).UnixMilli()+1,
		ms(100), ms(300), ms(900), ms(250), ms(350), ms(450), ms(550))
	want = append(want, e.ms(2100*time.Millisecond))
	e.checkWindow(t, rc, "after b's second grant", want)
}

// TestRedisGiveBackIdle: a grant with no grant after it (its lane's work
// ended) is settled at the first heartbeat once it has been expired for a
// third of the heartbeat TTL, and every lane's last grant at Settle (a
// clean stop). A stamp never moves a slot later than its grant put it: a
// stamp after the grant's score (a dispatcher stalled) keeps a slot there
// and adds one of its own at the stamp, and so does a stamp with no grant
// in hand (TestRedisStampAfterScore has why).
func TestRedisGiveBackIdle(t *testing.T) {
	ctx := context.Background()
	e, a, rc := openMargin(t, 10, 100)
	t0 := e.clock.now()
	if _, err := a.Reserve(ctx, e.record(5, 5)); err != nil {
		t.Fatal(err)
	}
	a.Stamped(lane, t0.Add(300*time.Millisecond))
	a.Stamped(lane, t0.Add(5*time.Second)) // late: kept at the grant's score, and a slot of its own
	late := t0.Add(5*time.Second).UnixMilli() + 1
	full := append(rep(e.ms(2100*time.Millisecond), 5), late)
	// Expired (2.1 s) but not for 5 s yet: nothing changes.
	e.clock.add(7 * time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkWindow(t, rc, "at the first heartbeat", full)
	e.clock.add(200 * time.Millisecond)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	want := []int64{t0.Add(300*time.Millisecond).UnixMilli() + 1, t0.Add(2100 * time.Millisecond).UnixMilli(), late}
	e.checkWindow(t, rc, "once the grant was idle", want)
	// A clean stop settles the last grant at once; a settled grant is not
	// settled again.
	t1 := e.clock.now()
	if _, err := a.Reserve(ctx, e.record(4, 4)); err != nil {
		t.Fatal(err)
	}
	a.Stamped(lane, t1.Add(150*time.Millisecond))
	if err := a.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	want = append(want, t1.Add(150*time.Millisecond).UnixMilli()+1)
	slices.Sort(want)
	e.checkWindow(t, rc, "after Settle", want)
	a.Stamped(lane, t1.Add(time.Second)) // no grant in hand: a slot of its own
	want = append(want, t1.Add(time.Second).UnixMilli()+1)
	slices.Sort(want)
	e.clock.add(10 * time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkWindow(t, rc, "after a heartbeat with nothing to settle", want)
}

// TestRedisGiveBackEmptied: when Redis lost its state, a pending
// settlement is applied in the new epoch, to the slots the re-seed added
// again; and the re-seed adds a settled grant's kept slots only (at the
// latest of their stamps), not its covers.
func TestRedisGiveBackEmptied(t *testing.T) {
	ctx := context.Background()
	e, a, rc := openMargin(t, 20, 100)
	// Grants at once only: the windows checked here hold no grant taken
	// ahead (TestRedisPrefetchGiveBack checks the give-back with them).
	store.SetRedisPrefetch(a, false)
	t0 := e.clock.now()
	if _, err := a.Reserve(ctx, e.record(5, 5)); err != nil { // G1
		t.Fatal(err)
	}
	a.Stamped(lane, t0.Add(200*time.Millisecond))
	a.Stamped(lane, t0.Add(400*time.Millisecond))
	e.clock.add(time.Second)
	if _, err := a.Reserve(ctx, e.record(3, 3)); err != nil { // G2: G1 keeps 2
		t.Fatal(err)
	}
	a.Stamped(lane, t0.Add(1300*time.Millisecond))
	g1 := []int64{t0.Add(200*time.Millisecond).UnixMilli() + 1, t0.Add(400*time.Millisecond).UnixMilli() + 1}
	g2 := e.ms(2100 * time.Millisecond)
	e.checkWindow(t, rc, "before Redis lost it", append(slices.Clone(g1), rep(g2, 3)...))
	if err := rc.FlushAll(ctx).Err(); err != nil { // Redis restarted empty
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	// G3's grant finds no epoch: the re-seed adds G1's 2 kept slots (at
	// the later stamp) and G2's 3; the grant is refused within the
	// recovery's share (none: a's view came as it joined), which lasts
	// until every slot granted before may have left the window; past it,
	// G3 is granted and the re-seeded slots, left, are pruned.
	grantErr(t, reserveErr(a, e.record(2, 2)), "share")
	e.checkWindow(t, rc, "after the re-seed", append([]int64{g1[1], g1[1]}, rep(g2, 3)...))
	e.clock.add(110 * time.Second)
	if _, err := a.Reserve(ctx, e.record(2, 2)); err != nil {
		t.Fatal(err)
	}
	g3 := e.ms(2100 * time.Millisecond)
	e.checkWindow(t, rc, "after G3", rep(g3, 2))
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].Count != 10 {
		t.Errorf("day count after the re-seed %+v, %v; want 10 (5 + 3 + 2 granted)", u, err)
	}
}

// TestRedisReserveUpTo: with room for one request but not for the record's
// Covers, ReserveUpTo grants it for one (all its day units), and the Local
// record says so; Reserve refuses it whole; with no room, both refuse.
func TestRedisReserveUpTo(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 4, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	if _, err := a.Reserve(ctx, e.record(3, 3)); err != nil {
		t.Fatal(err)
	}
	// a sends its 3 in the grant's last millisecond (stamped at its
	// expiry itself, the offset's millisecond of rounding puts them past
	// its score: late stamps, each with a slot of its own; the scheduler
	// covers no lease in a record's last half second).
	for range 3 {
		a.Stamped(lane, e.clock.now().Add(2*time.Second-time.Millisecond))
	}
	grantErr(t, reserveErr(b, e.record(2, 2)), "window")
	n, covers, sched, err := b.ReserveUpTo(ctx, e.record(2, 2))
	if err != nil || covers != 1 || n != 5 || len(sched) != 0 {
		t.Fatalf("ReserveUpTo: count %d, covers %d, %v; want 5, 1", n, covers, err)
	}
	if recs, err := b.LedgerRecords(ctx); err != nil || len(recs.Records) != 1 || recs.Records[0].Covers != 1 || recs.Records[0].Units != 2 {
		t.Errorf("b's records %+v, %v; want one of 1 covers, 2 units", recs, err)
	}
	if n, covers, _, err := a.ReserveUpTo(ctx, e.record(2, 2)); err == nil {
		t.Errorf("ReserveUpTo on a full window: count %d, covers %d", n, covers)
	}
	rc := e.client(t)
	e.checkWindow(t, rc, "at the end", rep(e.ms(2*time.Second), 4))
}
