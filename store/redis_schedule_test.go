package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// maxInWindow returns the most sends any interval of span (half-open: a
// send at its start counts, one at its end does not) holds.
func maxInWindow(sends []time.Time, span time.Duration) int {
	s := slices.Clone(sends)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	worst := 0
	for i := range s {
		j, _ := slices.BinarySearchFunc(s, s[i].Add(span), func(a, b time.Time) int { return a.Compare(b) })
		worst = max(worst, j-i)
	}
	return worst
}

// TestRedisScheduledGrant: a window full of paced slots (3 of RPM 4, sent a
// second apart) and a ReserveUpTo for 4 covers: the 1 slot free now and 3
// future slots, each not before the moment one of the window's slots leaves
// it (its score + 60 s + 1 ms), exactly; a second process's grant is refused
// until those promised slots have left the window again (the old code
// granted b one slot and c one as soon as a slot left); sends at the
// scheduled times never put more than RPM in a 60 s window. Promises go no
// further than the record's life: a slot leaving before its expiry is
// promised, one leaving at it is not.
func TestRedisScheduledGrant(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 4, RPD: 100}
	a, b, c := e.open(t, "a", cls), e.open(t, "b", cls), e.open(t, "c", cls)
	t0 := e.clock.now()
	ra := e.record(3, 3)
	ra.Until = t0.Add(10 * time.Second)
	if _, err := a.Reserve(ctx, ra); err != nil {
		t.Fatal(err)
	}
	var sends []time.Time
	for i := range 3 { // a sends a request a second
		at := t0.Add(time.Duration(i) * time.Second)
		a.Stamped(lane, at)
		sends = append(sends, at)
	}
	if err := a.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	rc := e.client(t)
	// Each stamp is converted to Redis's clock with a millisecond of rounding.
	old := []int64{t0.UnixMilli() + 1, t0.UnixMilli() + 1001, t0.UnixMilli() + 2001}
	if got := e.windowScores(t, rc); !slices.Equal(got, old) {
		t.Fatalf("window %v, want %v", got, old)
	}

	e.clock.add(59500 * time.Millisecond)
	now := e.clock.now()
	r := store.Record{Lane: lane, Day: "2026-03-01", Units: 4, Covers: 4, At: now, Until: now.Add(20 * time.Second)}
	grantErr(t, reserveErr(b, r), "window") // Reserve still refuses it whole
	_, covers, sched, err := b.ReserveUpTo(ctx, r)
	if err != nil || covers != 4 {
		t.Fatalf("ReserveUpTo: covers %d, %v; want 4", covers, err)
	}
	var got []int64
	for _, at := range sched {
		got = append(got, at.UnixMilli())
	}
	want := []int64{old[0] + 60001, old[1] + 60001, old[2] + 60001}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule %v, want %v (each slot of the window leaving it)", got, want)
	}
	if recs, err := b.LedgerRecords(ctx); err != nil || len(recs.Records) != 1 || recs.Records[0].Covers != 4 {
		t.Errorf("b's records %+v, %v; want one of 4 covers", recs, err)
	}
	// b sends its first now and the others at their times.
	bsends := append([]time.Time{now}, sched...)
	sends = append(sends, bsends...)
	if w := maxInWindow(sends, time.Minute); w > cls.RPM {
		t.Errorf("sends %v: a minute holds %d, RPM %d", sends, w, cls.RPM)
	}

	// The window counts 7 slots for RPM 4: every slot leaving it until b's
	// grant is over is promised already, so c is refused, before and after
	// each promised time.
	for _, at := range append([]time.Time{now}, sched...) {
		e.clock.add(at.Add(500 * time.Millisecond).Sub(e.clock.now()))
		if _, n, _, err := c.ReserveUpTo(ctx, e.record(1, 1)); err == nil {
			t.Fatalf("c granted %d covers at %v, with b's promised slots in the window", n, e.clock.now().Sub(t0))
		} else {
			grantErr(t, err, "window")
		}
	}
	// b sends them and settles: its 4 slots at its sends; c waits until
	// the first of them leaves.
	for _, at := range bsends {
		b.Stamped(lane, at)
	}
	if err := b.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	grantErr(t, reserveErr(c, e.record(1, 1)), "window")
	e.clock.add(now.Add(time.Minute + 2*time.Millisecond).Sub(e.clock.now()))
	if _, err := c.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("c once b's first slot left: %v", err)
	}
	sends = append(sends, e.clock.now())
	if w := maxInWindow(sends, time.Minute); w > cls.RPM {
		t.Errorf("sends %v: a minute holds %d, RPM %d", sends, w, cls.RPM)
	}

	// The horizon is the record's life: a record of 2 s is promised the
	// slots leaving before it expires (1.5 s ahead here: half its life
	// promised none) and none leaving at or after its expiry: with none
	// leaving before, it gets the free slot alone; with no slot free,
	// nothing.
	e2 := newRedisEnv(t)
	x, y := e2.open(t, "x", cls), e2.open(t, "y", cls)
	if _, err := x.Reserve(ctx, e2.record(3, 3)); err != nil {
		t.Fatal(err)
	}
	e2.clock.add(59 * time.Second)
	sx := e2.clock.now().Add(-58500 * time.Millisecond)
	x.Stamped(lane, sx)
	x.Stamped(lane, sx.Add(400*time.Millisecond))
	x.Stamped(lane, sx.Add(1400*time.Millisecond)) // within x's grant of 2 s (a stamp after it adds a slot of its own)
	if err := x.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	// x's slots leave at 60.5 s, 60.9 s and 61.9 s (plus 2 ms each: the
	// stamp's rounding and the window's 1 ms): the first two before the
	// expiry (61 s) of a record of 2 s taken at 59 s, the third after it.
	_, covers, sched, err = y.ReserveUpTo(ctx, e2.record(4, 4))
	var times []time.Duration
	for _, at := range sched {
		times = append(times, at.Sub(e2.clock.now()))
	}
	if err != nil || covers != 3 || !slices.Equal(times, []time.Duration{1502 * time.Millisecond, 1902 * time.Millisecond}) {
		t.Errorf("ReserveUpTo of a 2 s record with slots leaving 1.502 s, 1.902 s and 2.902 s ahead: covers %d, schedule %v, %v; want 3: the free one and the first two", covers, times, err)
	}
	if _, covers, sched, err := x.ReserveUpTo(ctx, e2.record(3, 3)); err == nil {
		t.Errorf("ReserveUpTo on a window full with promises: covers %d, schedule %v", covers, sched)
	}
	e3 := newRedisEnv(t)
	x, y = e3.open(t, "x", cls), e3.open(t, "y", cls)
	if _, err := x.Reserve(ctx, e3.record(3, 3)); err != nil {
		t.Fatal(err)
	}
	e3.clock.add(59 * time.Second)
	for range 3 {
		x.Stamped(lane, e3.clock.now().Add(-58002*time.Millisecond))
	}
	if err := x.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	// x's slots leave exactly 2 s after y's record of 2 s is taken (their
	// stamps + 2 ms + 60 s): at its expiry, when no request of it may be
	// sent.
	if _, covers, sched, err := y.ReserveUpTo(ctx, e3.record(3, 3)); err != nil || covers != 1 || len(sched) != 0 {
		t.Errorf("ReserveUpTo with no slot leaving before the record's expiry: covers %d, schedule %v, %v; want 1, none", covers, sched, err)
	}
}

// TestRedisScheduledRandom: on a virtual clock, processes take grants of
// random sizes and lives with ReserveUpTo on a saturated lane, send a random
// part of each, the free slots at once and the scheduled ones at exactly
// their times (the earliest allowed), stamp every send at its time (no
// margin) and settle it at their next grant; no 60 s interval holds more
// than RPM sends, and scheduled slots were granted. Sends at the earliest
// allowed moment and stamps equal to sends leave the check no slack but
// the settlement's runs (100 ms).
func TestRedisScheduledRandom(t *testing.T) {
	seed := modelSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1_000_000}
	type proc struct {
		s    *store.Redis
		busy time.Time // its last send: it asks again no earlier
	}
	var ps []*proc
	for i := range 3 {
		ps = append(ps, &proc{s: e.open(t, "p"+strconv.Itoa(i), cls)})
	}
	var sends []time.Time
	future, grants := 0, 0
	end := e.clock.now().Add(10 * time.Minute)
	for e.clock.now().Before(end) {
		e.clock.add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		now := e.clock.now()
		p := ps[rng.IntN(len(ps))]
		if p.busy.After(now) {
			continue
		}
		covers := 1 + rng.IntN(8)
		r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: now,
			Until: now.Add(2*time.Second + time.Duration(rng.Int64N(int64(20*time.Second))))}
		_, n, sched, err := p.s.ReserveUpTo(ctx, r)
		if errors.Is(err, store.ErrNoGrant) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		grants++
		future += len(sched)
		times := make([]time.Time, 0, n)
		for range n - len(sched) {
			times = append(times, now)
		}
		times = append(times, sched...)
		used := rng.IntN(n + 1) // its first used slots are sent
		for _, at := range times[:used] {
			if !at.Before(r.Until) {
				t.Fatalf("slot at %v, after the grant's Until %v", at, r.Until)
			}
			p.s.Stamped(lane, at)
			sends = append(sends, at)
			p.busy = at
		}
	}
	if w := maxInWindow(sends, time.Minute); w > cls.RPM {
		t.Errorf("a minute holds %d sends, RPM %d (seed %d)", w, cls.RPM, seed)
	}
	t.Logf("%d grants, %d sends, %d scheduled slots granted", grants, len(sends), future)
	if future == 0 {
		t.Errorf("no scheduled slot granted")
	}
}
