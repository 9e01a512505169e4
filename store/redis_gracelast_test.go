package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// cutHook fails every call while cut (a process cut off from Redis), as a
// read that timed out would, without sending it.
type cutHook struct{ cut atomic.Bool }

func (f *cutHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *cutHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.cut.Load() {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *cutHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.cut.Load() {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

// TestRedisGraceLastSecondRetry: a is cut off from Redis at F while b
// keeps the lane saturated; a's lane asks every second, so its retries at
// F+1 .. F+5 fail. Redis answers a again right after its try at F+5,
// within the grace (6 s), so a must take no share: its first Reserve at
// F+6, where the share would begin, tries Redis once more and reconnects.
// No 60 s window (plus the margin) of both holds more than RPM. Before
// (no try after the grace's last retry), a granted itself its share at
// F+6 on top of b's full window until its heartbeat at F+9: 15 sends in a
// window of RPM 10.
func TestRedisGraceLastSecondRetry(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: 100 * time.Millisecond}
	cut := &cutHook{}
	sa := e.openHooked(t, "a", nil, cut, cls)
	sb := e.open(t, "b", cls)
	// Grants taken ahead in the background would make the run depend on
	// the goroutines' timing.
	store.SetRedisPrefetch(sa, false)
	store.SetRedisPrefetch(sb, false)
	a, b := &graceProc{name: "a", s: sa}, &graceProc{name: "b", s: sb}
	e.heartbeats(t, 20*time.Second, sa, sb)
	t0 := e.clock.now()
	if n, _ := e.saturate(t, b, time.Time{}); n != 10 {
		t.Fatalf("b took %d, want 10", n)
	}
	failAt := t0.Add(58 * time.Second)
	shared := 0
	for now := t0.Add(time.Second); !now.After(t0.Add(140 * time.Second)); now = now.Add(time.Second) {
		e.clock.add(time.Second)
		if now.Sub(t0)%(5*time.Second) == 2*time.Second { // heartbeats at F+4, F+9, ...
			for _, p := range []*graceProc{b, a} {
				_, _ = p.s.Heartbeat(ctx)
			}
		}
		if now.Equal(failAt) {
			cut.cut.Store(true)
		}
		if n, down := e.saturate(t, a, failAt); down && n > 0 {
			shared += n
			t.Errorf("at F+%v: a granted %d on its share; Redis answers it since F+5", now.Sub(failAt), n)
		}
		if now.Equal(failAt.Add(5 * time.Second)) {
			cut.cut.Store(false) // Redis answers a again, within the grace
		}
		e.saturate(t, b, time.Time{})
	}
	if sa.Outages() != 1 {
		t.Errorf("a's outages %d, want 1 (its call at F failed)", sa.Outages())
	}
	all := append(append([]time.Time(nil), a.sends...), b.sends...)
	worst := checkSends(t, all, time.Minute+cls.Margin, cls.RPM, cls.RPD, 0)
	t.Logf("a %d sends (%d on a share), b %d; busiest interval %d of RPM %d", len(a.sends), shared, len(b.sends), worst, cls.RPM)
}
