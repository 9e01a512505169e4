package store_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// failNext is a go-redis hook that fails the next call (a command or a
// pipeline) once armed, as a read that timed out would, without sending it.
type failNext struct{ armed atomic.Bool }

var errInjected = errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout (injected)")

func (f *failNext) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failNext) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.armed.CompareAndSwap(true, false) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *failNext) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.armed.CompareAndSwap(true, false) {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

// graceProc is one process of the grace tests: its ledger and its sends
// (at their grant's time, one per cover: each grant's covers are stamped
// then).
type graceProc struct {
	name  string
	s     *store.Redis
	sends []time.Time
	first time.Time // its first grant at or after the outage's start
}

// saturate asks p for one slot at a time until refused, as a saturated
// lane does, and stamps each one at now. It returns how many it got and
// whether p was unreachable at any grant.
func (e *redisEnv) saturate(t *testing.T, p *graceProc, since time.Time) (int, bool) {
	t.Helper()
	got, down := 0, false
	for {
		was := p.s.Unreachable()
		_, err := p.s.Reserve(context.Background(), e.record(1, 1))
		if errors.Is(err, store.ErrNoGrant) {
			return got, down
		}
		if err != nil {
			t.Fatalf("%s at %v: %v", p.name, e.clock.now(), err)
		}
		now := e.clock.now()
		p.s.Stamped(lane, now)
		p.sends = append(p.sends, now)
		if !since.IsZero() && !now.Before(since) && p.first.IsZero() {
			p.first = now
		}
		got++
		down = down || was
	}
}

// TestRedisOneFailedCall: one call of process a fails (a read timing out)
// while Redis answers b, which keeps its lane saturated. a takes no share
// during the grace (Reserve refuses, Confirming), tries Redis again a
// second later and reconnects: no 60 s window (plus the margin) holds
// more than RPM sends of both together, and a sent nothing while cut off
// (it had no grant in hand). Before the grace, a granted itself its share
// (room / 2 of the slots its view saw leave) until its next heartbeat
// reached Redis, on top of b's full window: 15 sends of RPM 10.
func TestRedisOneFailedCall(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: 100 * time.Millisecond}
	fail := &failNext{}
	sa := e.openHooked(t, "a", nil, fail, cls)
	sb := e.open(t, "b", cls)
	// Grants taken ahead in the background would make the run depend on
	// the goroutines' timing.
	store.SetRedisPrefetch(sa, false)
	store.SetRedisPrefetch(sb, false)
	a, b := &graceProc{name: "a", s: sa}, &graceProc{name: "b", s: sb}
	e.heartbeats(t, 20*time.Second, sa, sb) // 12:00:20, N 2
	t0 := e.clock.now()
	// b fills the window; its idle grant settled at its next heartbeat, its
	// 10 slots leave it at 12:01:20.1 (a's view: 12:01:21).
	if n, _ := e.saturate(t, b, time.Time{}); n != 10 {
		t.Fatalf("b took %d, want 10", n)
	}
	// The heartbeats come at 12:00:22, 27, ..., 12:01:17, 22: a's call at
	// 12:01:18 fails, three seconds before the slots leave its view, and
	// its next heartbeat comes after they left.
	failAt := t0.Add(58 * time.Second)
	var reconnected time.Time
	for now := t0.Add(time.Second); !now.After(t0.Add(140 * time.Second)); now = now.Add(time.Second) {
		e.clock.add(time.Second)
		if now.Sub(t0)%(5*time.Second) == 2*time.Second { // the heartbeats, as the scheduler's
			for _, p := range []*graceProc{b, a} {
				if _, err := p.s.Heartbeat(ctx); err != nil {
					t.Fatalf("%s's heartbeat at %v: %v", p.name, now, err)
				}
			}
		}
		if now.Equal(failAt) {
			fail.armed.Store(true) // a's next call: its grant
		}
		n, down := e.saturate(t, a, failAt)
		if down {
			t.Errorf("%v: a granted %d while Redis was unreachable for it (beyond its grants in hand: none)", now, n)
		}
		if now.Equal(failAt) {
			if !sa.Unreachable() || sa.Outages() != 1 || !errors.Is(sa.Health(), store.ErrDegraded) {
				t.Fatalf("after the failed call: Unreachable %v, Outages %d, Health %v", sa.Unreachable(), sa.Outages(), sa.Health())
			}
			t.Log(sa.Health())
			grantErr(t, reserveErr(sa, e.record(1, 1)), "confirming")
		}
		if reconnected.IsZero() && now.After(failAt) && !sa.Unreachable() {
			reconnected = now
		}
		e.saturate(t, b, time.Time{})
	}
	if fail.armed.Load() {
		t.Fatal("no call of a failed")
	}
	// Reconnected at its first retry, a second after the failed call,
	// within the grace (a heartbeat interval and a second).
	if want := failAt.Add(time.Second); !reconnected.Equal(want) {
		t.Errorf("a reconnected at %v, want %v (its first retry)", reconnected, want)
	}
	all := append(append([]time.Time(nil), a.sends...), b.sends...)
	worst := checkSends(t, all, time.Minute+cls.Margin, cls.RPM, cls.RPD, 0)
	t.Logf("a %d sends, b %d; busiest interval %d of RPM %d", len(a.sends), len(b.sends), worst, cls.RPM)
	if a.first.IsZero() || len(a.sends) == 0 {
		t.Error("a sent nothing after it reconnected")
	}
	// Nothing was granted on a share, nor charged: the shared day count is
	// the sends, and b reached Redis all along (not presumed dead).
	u, err := sb.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].Count != len(all) {
		t.Errorf("shared day count %+v, %v; want %d", u, err, len(all))
	}
	if dc := sa.DeadCharges(); len(dc) != 0 {
		t.Errorf("a charged %v", dc)
	}
	if h := sa.Health(); h != nil {
		t.Errorf("a's Health after the recovery: %v", h)
	}
}

// TestRedisShareAfterGrace: Redis down for every process: each one's share
// begins a grace (a heartbeat interval and a second) after its failed call,
// not before, computed as without it (room / N of the slots of its view
// leaving after the outage began); every window (plus the margin) holds at
// most RPM sends of them all, through the outage and the recovery after
// Redis answers again. Before the grace, each took its share as soon as
// the view's slots left (3 s after its failed call here).
func TestRedisShareAfterGrace(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: 100 * time.Millisecond}
	sa, sb := e.open(t, "a", cls), e.open(t, "b", cls)
	store.SetRedisPrefetch(sa, false)
	store.SetRedisPrefetch(sb, false)
	a, b := &graceProc{name: "a", s: sa}, &graceProc{name: "b", s: sb}
	e.heartbeats(t, 20*time.Second, sa, sb) // 12:00:20, N 2
	t0 := e.clock.now()
	if n, _ := e.saturate(t, b, time.Time{}); n != 10 { // leave at 12:01:21 in the views (see TestRedisOneFailedCall)
		t.Fatalf("b took %d, want 10", n)
	}
	stopAt := t0.Add(58 * time.Second)  // 12:01:18: each one's next grant fails
	backAt := t0.Add(102 * time.Second) // 12:02:02, a heartbeat's time
	shareFrom := stopAt.Add(6 * time.Second)
	shared := 0
	for now := t0.Add(time.Second); !now.After(t0.Add(200 * time.Second)); now = now.Add(time.Second) {
		e.clock.add(time.Second)
		switch {
		case now.Equal(stopAt):
			e.srv.Stop()
		case now.Equal(backAt):
			e.srv.Restart()
		}
		if now.Sub(t0)%(5*time.Second) == 2*time.Second {
			for _, p := range []*graceProc{b, a} {
				_, err := p.s.Heartbeat(ctx)
				if up := now.Before(stopAt) || !now.Before(backAt); up != (err == nil) {
					t.Fatalf("%s's heartbeat at %v: %v", p.name, now, err)
				}
			}
		}
		for _, p := range []*graceProc{a, b} {
			n, down := e.saturate(t, p, stopAt)
			if down {
				shared += n
			}
			if now.Equal(stopAt) && !p.s.Unreachable() {
				t.Fatalf("%s reaches a stopped Redis", p.name)
			}
		}
		if now.Equal(shareFrom.Add(-time.Second)) {
			grantErr(t, reserveErr(sa, e.record(1, 1)), "confirming")
		}
	}
	// The room (the view's 10 slots) freed at 12:01:21, the share began
	// at 12:01:24: room / 2 each then.
	for _, p := range []*graceProc{a, b} {
		if !p.first.Equal(shareFrom) {
			t.Errorf("%s's first grant after Redis stopped at %v, want %v (the grace's end)", p.name, p.first, shareFrom)
		}
	}
	if shared != 10 {
		t.Errorf("%d granted on the shares, want 10 (5 each: the view's 10 slots left, RPM / 2 not reached before Redis came back)", shared)
	}
	all := append(append([]time.Time(nil), a.sends...), b.sends...)
	worst := checkSends(t, all, time.Minute+cls.Margin, cls.RPM, cls.RPD, 0)
	t.Logf("a %d sends, b %d (%d on the shares); busiest interval %d of RPM %d", len(a.sends), len(b.sends), shared, worst, cls.RPM)
	u, err := sb.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].Count != len(all) {
		t.Errorf("shared day count %+v, %v; want %d", u, err, len(all))
	}
}
