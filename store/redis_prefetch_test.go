package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// gate is a go-redis hook that counts the commands a client sends and,
// while closed, holds each one until it opens (or its context ends).
type gate struct {
	n    atomic.Int64
	shut atomic.Pointer[chan struct{}]
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) wait(ctx context.Context) error {
	if ch := g.shut.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		g.n.Add(1)
		if err := g.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g.n.Add(1)
		if err := g.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

// close holds every command from now on; the returned func lets them go.
func (g *gate) close() (open func()) {
	ch := make(chan struct{})
	g.shut.Store(&ch)
	return func() {
		g.shut.Store(nil)
		close(ch)
	}
}

// openGated opens a ledger named process whose client goes through a gate.
func (e *redisEnv) openGated(t *testing.T, process string, cls store.RedisClass) (*store.Redis, *gate) {
	t.Helper()
	g := &gate{}
	return e.openHooked(t, process, nil, g, cls), g
}

// dayCount is the lane's shared day count of 2026-03-01 and this
// process's part of it.
func dayCount(t *testing.T, c *redis.Client, process string) (int, int) {
	t.Helper()
	ctx := context.Background()
	n, err := c.Get(ctx, "test:day:2026-03-01:2:p1/text").Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	u, err := c.HGet(ctx, "test:use:2026-03-01:2:p1/text", process).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n, u
}

// reserveStamp reserves r on s and stamps sent of its leases, 100 ms
// apart from the clock's now plus the margin, returning the stamps' window
// scores (Unix ms plus a millisecond of rounding).
func reserveStamp(t *testing.T, e *redisEnv, s *store.Redis, r store.Record, sent int) []int64 {
	t.Helper()
	if _, err := s.Reserve(context.Background(), r); err != nil {
		t.Fatalf("Reserve(%d covers, %d units): %v", r.Covers, r.Units, err)
	}
	var out []int64
	for i := range sent {
		at := e.clock.now().Add(time.Duration(100+100*i) * time.Millisecond)
		s.Stamped(lane, at)
		out = append(out, at.UnixMilli()+1)
	}
	return out
}

// TestRedisPrefetchServes: once a lane records again within a record's
// life (a fast lane), its next grant is taken in the background, and its
// next record is served from it while every command to Redis is held: no
// round trip. The day count returned is the one that grant saw; the Local
// record is written as for a grant at once; the grant taken ahead is
// scored at its own expiry (2 lives) plus the margin.
func TestRedisPrefetchServes(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 100, RPD: 1000, Margin: 100 * time.Millisecond}
	a, g := e.openGated(t, "a", cls)
	rc := e.client(t)
	reserveStamp(t, e, a, e.record(5, 5), 5)
	if held := store.WaitRedisPrefetch(a); held != 0 {
		t.Fatalf("a slow lane's first record took %d grants ahead", held)
	}
	e.clock.add(500 * time.Millisecond)
	reserveStamp(t, e, a, e.record(5, 5), 5) // a fast lane: the next grant is taken ahead
	if held := store.WaitRedisPrefetch(a); held != 1 {
		t.Fatalf("grants held ahead: %d, want 1", held)
	}
	if n, _ := dayCount(t, rc, "a"); n != 15 {
		t.Fatalf("day count with a grant taken ahead %d, want 15", n)
	}
	taken := e.ms(4100 * time.Millisecond) // its At (the clock) + 2 × 2 s + the margin
	if got := e.windowScores(t, rc); !slices.Contains(got, taken) {
		t.Fatalf("window %v: no slot of the grant taken ahead at %d", got, taken)
	}
	e.clock.add(500 * time.Millisecond)
	open := g.close()
	n0 := g.n.Load()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	n, err := a.Reserve(rctx, e.record(5, 5))
	cancel()
	sent := g.n.Load() - n0
	open()
	if err != nil {
		t.Fatalf("Reserve served ahead: %v (commands sent %d)", err, sent)
	}
	if n != 15 {
		t.Errorf("day count returned %d, want 15 (the one the grant taken ahead saw)", n)
	}
	recs, err := a.LedgerRecords(ctx)
	if err != nil || len(recs.Records) != 3 || recs.Records[2].Covers != 5 || recs.Records[2].Units != 5 {
		t.Errorf("Local records %+v, %v; want 3, the last of 5 covers and 5 units", recs, err)
	}
	// The record's hand-out launched the next grant ahead, which settles
	// the second grant (5 stamps kept).
	if held := store.WaitRedisPrefetch(a); held != 1 {
		t.Fatalf("grants held ahead after a record served: %d, want 1", held)
	}
	if n, _ := dayCount(t, rc, "a"); n != 20 {
		t.Errorf("day count %d, want 20 (3 records and one grant ahead of 5)", n)
	}
}

// TestRedisPrefetchGiveBack: with grants taken ahead, the give-back stays
// exact: after Settle the window holds exactly the stamps (each grant's
// unused slots removed, the grant taken ahead and not served removed whole)
// and the shared day count equals the units used (the caller's give-back
// plus the units taken ahead and banked, given back by the ledger). A
// record smaller than the grant taken ahead banks the difference; the
// next grant ahead asks for that many fewer units.
func TestRedisPrefetchGiveBack(t *testing.T) {
	ctx := context.Background()
	e, a, rc := openMargin(t, 100, 400)
	var stamps []int64
	used := 0
	for i, r := range []struct{ covers, units, sent int }{
		{6, 6, 6}, {6, 6, 6}, // granted at once; the second takes the next ahead (6)
		{4, 4, 4}, // served ahead: 2 units banked; the next ahead asks 4 units, 6 covers
		{6, 6, 6}, // served ahead from 4 + 2 banked
		{3, 3, 1}, // served ahead: 3 banked, 2 of its units never used
	} {
		stamps = append(stamps, reserveStamp(t, e, a, e.record(r.covers, r.units), r.sent)...)
		used += r.sent
		if held := store.WaitRedisPrefetch(a); i > 0 && held != 1 {
			t.Fatalf("record %d: grants held ahead %d, want 1", i, held)
		}
		e.clock.add(time.Second)
	}
	recs, _ := a.LedgerRecords(ctx)
	if got := len(recs.Records); got != 5 {
		t.Fatalf("Local records %d, want 5", got)
	}
	n, _ := dayCount(t, rc, "a")
	if want := 6 + 6 + 4 + 6 + 3 + 3 + 3; n != want { // records; 3 banked; 3 (6 - 3 banked) ahead
		t.Errorf("day count before Settle %d, want %d", n, want)
	}
	if err := a.Settle(ctx, store.Settlement{GiveBack: []store.DailyCount{{Day: "2026-03-01", Lane: lane, Count: 2}}}); err != nil {
		t.Fatal(err)
	}
	if n, u := dayCount(t, rc, "a"); n != used || u != used {
		t.Errorf("after Settle: day count %d, a's use %d; want %d (the units used)", n, u, used)
	}
	slices.Sort(stamps)
	e.checkWindow(t, rc, "after Settle", stamps)
}

// TestRedisPrefetchNotServed: a grant taken ahead is not served to a
// record it does not fit (larger than it; its Until too early; another
// Pacific day): that record is granted at once, and the grant taken ahead
// is given back by the lane's next grant taken ahead, or by a heartbeat
// once the lane is idle. The shared day count ends at the records' units.
func TestRedisPrefetchNotServed(t *testing.T) {
	ctx := context.Background()
	e, a, rc := openMargin(t, 100, 400)
	units := 0
	rec := func(covers, n int) {
		t.Helper()
		reserveStamp(t, e, a, e.record(covers, n), covers)
		units += n
		store.WaitRedisPrefetch(a)
	}
	rec(4, 4)
	e.clock.add(time.Second)
	rec(4, 4) // 4 ahead
	e.clock.add(time.Second)
	rec(8, 8) // larger: granted at once; 4 given back, 8 ahead
	if n, _ := dayCount(t, rc, "a"); n != units+8 {
		t.Errorf("day count %d, want %d (the records and 8 ahead)", n, units+8)
	}
	e.clock.add(2500 * time.Millisecond) // the grant ahead ends before the next record's Until
	rec(2, 2)
	if n, _ := dayCount(t, rc, "a"); n != units {
		t.Errorf("day count %d, want %d (a stale grant ahead given back; the lane is slow again)", n, units)
	}
	e.clock.add(500 * time.Millisecond)
	rec(2, 2) // fast again: 8 ahead (the largest of the last four records)
	e.clock.add(500 * time.Millisecond)
	// Another Pacific day's record is granted at once, the grant ahead given back.
	at := e.clock.now()
	r := store.Record{Lane: lane, Day: "2026-03-02", Units: 1, Covers: 1, At: at, Until: at.Add(2 * time.Second)}
	if _, err := a.Reserve(ctx, r); err != nil {
		t.Fatal(err)
	}
	store.WaitRedisPrefetch(a)
	if n, _ := dayCount(t, rc, "a"); n != units {
		t.Errorf("day count of 2026-03-01 %d, want %d", n, units)
	}
	// Idle for two lives: a heartbeat gives the grant ahead back.
	e.clock.add(5 * time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := rc.Get(ctx, "test:day:2026-03-02:2:p1/text").Int()
	if err != nil || n != 1 {
		t.Errorf("day count of 2026-03-02 after an idle heartbeat %d, %v; want 1", n, err)
	}
}

// TestRedisPrefetchOutage: Redis unreachable drops the grant taken ahead
// (no record is served from it: grants come from the share), and the
// heartbeat that reconnects gives it back; no bound is exceeded: the day
// count is the units recorded, and the window holds no slot of it.
func TestRedisPrefetchOutage(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 100, RPD: 1000, Margin: 100 * time.Millisecond}
	a := e.open(t, "a", cls)
	e.heartbeats(t, 20*time.Second, a)
	rc := e.client(t)
	var stamps []int64
	stamps = append(stamps, reserveStamp(t, e, a, e.record(5, 5), 5)...)
	e.clock.add(500 * time.Millisecond)
	stamps = append(stamps, reserveStamp(t, e, a, e.record(5, 5), 5)...)
	if held := store.WaitRedisPrefetch(a); held != 1 {
		t.Fatalf("grants held ahead %d, want 1", held)
	}
	e.srv.Stop()
	e.clock.add(500 * time.Millisecond)
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	// The grace, then the share: no room before the view's slots leave;
	// the grant ahead is not served.
	grantErr(t, reserveErr(a, e.record(5, 5)), "confirming")
	e.clock.add(6 * time.Second)
	grantErr(t, reserveErr(a, e.record(5, 5)), "share")
	if held := store.WaitRedisPrefetch(a); held != 0 {
		t.Fatalf("grants held ahead in an outage %d, want 0", held)
	}
	e.srv.Restart()
	e.clock.add(time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Unreachable() {
		t.Fatal("still unreachable")
	}
	if n, u := dayCount(t, rc, "a"); n != 10 || u != 10 {
		t.Errorf("after reconnect: day count %d, a's use %d; want 10", n, u)
	}
	// The second grant (in use when Redis went away) keeps its slots as
	// granted until settled; the grant ahead has none left.
	if err := a.Settle(ctx, store.Settlement{}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(stamps)
	if got := e.windowScores(t, rc); len(got) > 10 || !slices.Equal(got[:min(5, len(got))], stamps[:5]) {
		t.Errorf("window after Settle %v, want the first grant's stamps %v and at most 5 more", got, stamps[:5])
	}
}

// TestRedisPrefetchCrash: a process dropped without Settle (closed, its
// goroutines stopped) over-counts the day by at most two grants per fast
// lane: the unused units of the grant in use and those taken ahead.
func TestRedisPrefetchCrash(t *testing.T) {
	e, a, rc := openMargin(t, 100, 400)
	sent := 0
	for i := range 6 {
		n, k := 3+i%3, 3+i%3 // 3, 4, 5, ...: grants of at most 5, all sent but the last one's
		if i == 5 {
			k = 1
		}
		reserveStamp(t, e, a, e.record(n, n), k)
		sent += k
		e.clock.add(400 * time.Millisecond)
	}
	store.WaitRedisPrefetch(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	n, _ := dayCount(t, rc, "a")
	if n < sent || n-sent > 2*5 {
		t.Errorf("day count %d after a crash, %d sent: over-counted by %d, want at most 2 grants of at most 5", n, sent, n-sent)
	}
	t.Logf("day count %d, sent %d", n, sent)
}

// TestRedisPrefetchUpTo: ReserveUpTo served from a grant taken ahead with
// fewer Covers than the record asks gets the grant's Covers (the caller
// records again), and Reserve is granted at once instead.
func TestRedisPrefetchUpTo(t *testing.T) {
	ctx := context.Background()
	e, a, _ := openMargin(t, 100, 400)
	for range 2 {
		reserveStamp(t, e, a, e.record(3, 3), 3)
		e.clock.add(500 * time.Millisecond)
	}
	store.WaitRedisPrefetch(a) // 3 covers ahead
	_, covers, sched, err := a.ReserveUpTo(ctx, e.record(5, 3))
	if err != nil || covers != 3 || sched != nil {
		t.Fatalf("ReserveUpTo from a grant ahead of 3 covers: %d, schedule %v, %v; want 3, none", covers, sched, err)
	}
	store.WaitRedisPrefetch(a) // 5 covers ahead
	e.clock.add(500 * time.Millisecond)
	_, covers, _, err = a.ReserveUpTo(ctx, e.record(4, 0))
	if err != nil || covers != 4 {
		t.Fatalf("ReserveUpTo from a grant ahead of 5 covers: %d, %v; want 4", covers, err)
	}
}

// TestRedisPrefetchModel: a randomized check (seed printed) of three
// processes on a virtual clock recording one lane at random intervals
// (often within a record's life: a fast lane, whose records are served
// from grants taken ahead; and in bursts that fill the window), each record's leases stamped at random times
// before its Until, some unused, some stamped and refunded (stampSends);
// with heartbeats every 5 s, and processes killed now and then (closed
// without Settle) or stopped cleanly (Settle, giving back the last
// record's unsent units). No interval of the window plus the margin holds
// more than RPM sends, no day more than RPD; and at the end the shared day
// count is the units recorded less those given back, plus at most one
// grant taken ahead per process killed (the crash bound: the other grant,
// the one in use, is in the units recorded).
//
// Redis expires a lane's window on its own clock, real time, life + margin
// + window + 1 s after the lane's last grant, so on a virtual clock the
// window must outlast any stall of the test between two grants: with a
// 300 ms window and records of 200 ms it was 1.52 s, which a loaded -race
// run can spend (the slots vanish while the virtual window still holds
// them; TestRedisTokensModel, ff8ee75). The times are the old ones x 10
// (6.2 s), not the real window's scale: grants are taken ahead only for
// records of at most bucket.ChunkLife (2 s), the life used here.
func TestRedisPrefetchModel(t *testing.T) {
	seed := modelSeed(t)
	rng := rand.New(rand.NewPCG(seed, 17))
	ctx := context.Background()
	e := newRedisEnv(t)
	const (
		window = 3 * time.Second
		margin = 200 * time.Millisecond
		life   = 2 * time.Second
		rpm    = 120
		rpd    = 4500
		// A grant taken ahead holds at most the largest of the lane's last
		// four records' Covers (4) or, ramping up, twice the last (8).
		most = 8
	)
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: rpd, Margin: margin}
	gen := 0
	open := func() *store.Redis {
		gen++
		s := e.open(t, fmt.Sprintf("p%d", gen), cls)
		store.SetRedisWindow(s, window)
		return s
	}
	ps := []*store.Redis{open(), open(), open()}
	procs := e.client(t)
	var sends []time.Time
	recorded, givenBack, kills, served := 0, 0, 0, 0
	next := e.clock.now().Add(5 * time.Second)
	for step := range 2000 {
		gap := 600 // fast lanes with room in the window, or a burst that fills it
		if step/200%3 == 2 {
			gap = 20
		}
		e.clock.add(time.Duration(rng.IntN(gap)) * time.Millisecond)
		if now := e.clock.now(); !now.Before(next) {
			for _, p := range ps {
				if _, err := p.Heartbeat(ctx); err != nil {
					t.Fatalf("step %d: heartbeat: %v", step, err)
				}
			}
			next = now.Add(5 * time.Second)
		}
		i := rng.IntN(len(ps))
		p := ps[i]
		covers := 4 - rng.IntN(2)
		at := e.clock.now()
		r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: at, Until: at.Add(life)}
		_, err := p.Reserve(ctx, r)
		if errors.Is(err, store.ErrNoGrant) {
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		mine := stampSends(rng, p, at, r.Until, covers, margin, nil)
		sends = append(sends, mine...)
		recorded += covers
		switch rng.IntN(60) {
		case 0: // killed: its grants are dropped
			store.WaitRedisPrefetch(p)
			served += store.RedisPrefetchServed(p)
			p.Close()
			// Its heartbeat as if already expired and pruned: with a kill
			// every few seconds, the processes started after it would be
			// held as they join (its heartbeat overdue, redis_join.go;
			// TestRedisJoinAfterKill), and the model would seldom fill
			// the window.
			if err := procs.ZRem(ctx, "test:procs", store.RedisLife(p)).Err(); err != nil {
				t.Fatal(err)
			}
			kills++
			ps[i] = open()
		case 1: // a clean stop
			back := covers - len(mine)
			if err := p.Settle(ctx, store.Settlement{GiveBack: []store.DailyCount{{Day: r.Day, Lane: lane, Count: back}}}); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			givenBack += back
			served += store.RedisPrefetchServed(p)
			if err := p.Leave(ctx); err != nil { // as the daemon's clean stop does
				t.Fatalf("step %d: %v", step, err)
			}
			p.Close()
			ps[i] = open()
		}
	}
	for _, p := range ps { // the last ones are killed too
		store.WaitRedisPrefetch(p)
		served += store.RedisPrefetchServed(p)
		p.Close()
		kills++
	}
	span := window + margin
	worst := checkSends(t, sends, span, rpm, rpd, seed)
	rc := e.client(t)
	count, _ := dayCount(t, rc, "")
	if want := recorded - givenBack; count < want || count > want+most*kills || count < len(sends) || count > rpd {
		t.Errorf("shared day count %d: want %d (recorded %d less %d given back) plus at most %d a kill (%d kills); sends %d, RPD %d (seed %d)",
			count, want, recorded, givenBack, most, kills, len(sends), rpd, seed)
	}
	t.Logf("%d sends, busiest %v interval %d of %d; day count %d: %d recorded, %d given back, %d kills; %d records served from grants taken ahead",
		len(sends), span, worst, rpm, count, recorded, givenBack, kills, served)
	if served < 100 || worst < rpm/2 {
		t.Errorf("%d records served from grants taken ahead, busiest interval %d: the model did not exercise them under load", served, worst)
	}
}

// TestRedisPrefetchSlowLane: records that live longer than the fast lanes'
// 2 s (a slow lane's, bucket.RecordLife) take no grant ahead, however
// close together; nor do those of a class with TPM.
func TestRedisPrefetchSlowLane(t *testing.T) {
	ctx := context.Background()
	e, a, _ := openMargin(t, 100, 400)
	for range 3 {
		at := e.clock.now()
		if _, err := a.Reserve(ctx, store.Record{Lane: lane, Day: "2026-03-01", Units: 2, Covers: 2, At: at, Until: at.Add(10 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		e.clock.add(500 * time.Millisecond)
	}
	if held := store.WaitRedisPrefetch(a); held != 0 {
		t.Errorf("a slow lane holds %d grants taken ahead, want 0", held)
	}
	tc := store.RedisClass{Name: "text", RPM: 100, RPD: 400, TPM: 100000, Margin: 100 * time.Millisecond}
	e2 := newRedisEnv(t) // its own Redis: the same lane with other limits
	b := e2.open(t, "b", tc)
	for range 3 {
		r := e2.record(2, 2)
		r.Tokens = 10
		if _, err := b.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		e2.clock.add(500 * time.Millisecond)
	}
	if held := store.WaitRedisPrefetch(b); held != 0 {
		t.Errorf("a lane with TPM holds %d grants taken ahead, want 0", held)
	}
}
