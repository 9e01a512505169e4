package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestSharedRedisBackEmpty: Redis down, then back empty (no persistence):
// the scheduler logs the same warning as for a quick restart (before, only
// the info line that the heartbeat was restored), once it has reconnected.
func TestSharedRedisBackEmpty(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const failed, lost = "heartbeat to the cluster failed", "Redis lost the cluster's state (restarted empty)"
	la := newLogSignal(failed, lost)
	modelScheduler(t, srv, "a", "m1", la)
	srv.Kill()
	waitLog(t, la, failed)
	srv.RestartEmpty()
	waitLog(t, la, lost)
}

// TestSharedRecoveryHeld: a lane refused within the share of the recovery
// after Redis restarted empty, while Redis answers, is held with words that
// say so, not "Redis unreachable" (HoldShare); a process with no share of
// it (it joined less than a heartbeat TTL before its view) says so
// (HoldRecoveryNone), not "share used" (HoldRecovery), and is held until
// the recovery's end (91 s after it noticed), its real start, not one
// grant life (30 s) as before (newcomer10 N10-2).
func TestSharedRecoveryHeld(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	la := newLogSignal("refused a grant")
	a := sharedScheduler(t, srv, "a", 6, nil, la)
	srv.Kill()
	srv.Restart() // empty
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	noticed := time.Now()
	// The grant finds the epoch gone and re-seeds; a, which joined less
	// than a heartbeat TTL before its view, has no share of the recovery.
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("refused a grant")
	now := time.Now()
	l := a.Summary().Classes[0].Lanes[0]
	// The recovery ends 91 s after the notice (between noticed and now).
	if end := noticed.Add(91 * time.Second); l.Held != HoldRecoveryNone || l.HeldUntil.Before(end) || l.HeldUntil.After(now.Add(91*time.Second+time.Millisecond)) {
		t.Errorf("lane refused in the recovery with Redis answering and no share: held %q until %v (in %v); want %q until the recovery's end (about 91 s)",
			l.Held, l.HeldUntil, l.HeldUntil.Sub(now), HoldRecoveryNone)
	}
	if cs := a.Keys()[0].Classes[0]; cs.State != "held" || cs.Reason != HoldRecoveryNone {
		t.Errorf("key state %+v, want held: %q", cs, HoldRecoveryNone)
	}
	if got, want := HoldWords(l.Held, now.Add(12*time.Second), now), "Redis back, recovering: no share yet (12s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}
	if got, want := HoldWords(HoldRecovery, now.Add(12*time.Second), now), "Redis back, recovering: share used (12s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}
	cancel()
}

// TestSharedConfirmingHeld: a lane refused in the grace after a call to
// Redis failed (store.Redis takes no share yet: Redis may still answer the
// other processes) is held with words that say so (HoldConfirming), not
// "share used" (HoldShare).
func TestSharedConfirmingHeld(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	la := newLogSignal("refused a grant")
	a := sharedScheduler(t, srv, "a", 6, nil, la)
	srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("refused a grant")
	now := time.Now()
	l := a.Summary().Classes[0].Lanes[0]
	if l.Held != HoldConfirming || l.HeldUntil.After(now.Add(time.Second)) {
		t.Errorf("lane refused in the grace: held %q until %v (now %v); want %q within a second (the next retry)", l.Held, l.HeldUntil, now, HoldConfirming)
	}
	if got, want := HoldWords(l.Held, now.Add(time.Second), now), "Redis unreachable: confirming (1s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}
	cancel()
}

// failGrant is a go-redis hook that, once armed, fails the next grant (a
// script call whose second key is a lane's window), alone or in a
// pipeline, as a read that timed out would, without sending it.
type failGrant struct{ armed atomic.Bool }

var errInjected = errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout (injected)")

func isGrant(c redis.Cmder) bool {
	a := c.Args()
	if len(a) < 5 || a[0] != "evalsha" && a[0] != "eval" {
		return false
	}
	k, _ := a[4].(string)
	return strings.Contains(k, ":win:")
}

func (f *failGrant) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failGrant) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isGrant(cmd) && f.armed.CompareAndSwap(true, false) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *failGrant) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if isGrant(c) && f.armed.CompareAndSwap(true, false) {
				for _, c := range cmds {
					c.SetErr(errInjected)
				}
				return errInjected
			}
		}
		return next(ctx, cmds)
	}
}

// TestSharedOneFailedCall: one grant that fails (a read timing out) while
// Redis answers: the lane waits for the grace's retry a second later,
// which reaches Redis, then for the recovery (this process, younger than a
// heartbeat TTL, has no share of it: 15 s), and the job runs. The outage
// is logged: when no heartbeat of the loop saw it, by a line of its own
// (else nothing would say that a call failed).
func TestSharedOneFailedCall(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const missed, restored = "a call to Redis failed and Redis answered again within the grace", "heartbeat to the cluster restored"
	la := newLogSignal(missed, restored, "heartbeat to the cluster failed")
	fail := &failGrant{}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	c.AddHook(fail)
	t.Cleanup(func() { c.Close() })
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "sched", Process: "a",
		Classes:  []store.RedisClass{{Name: "text", RPM: 60, RPD: 1000}},
		Projects: []string{"key1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a := start(t, Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 1000}, Concurrency: 4}},
		Keys: keys(1), Store: st, Logger: zerolog.New(la).Level(zerolog.DebugLevel)})
	fail.armed.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang, not a wait
	defer cancel()
	t0 := time.Now()
	if err := a.Do(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	t.Logf("the job ran %v after its grant failed", time.Since(t0))
	if fail.armed.Load() || st.Outages() != 1 || st.Unreachable() {
		t.Fatalf("armed %v, outages %d, unreachable %v", fail.armed.Load(), st.Outages(), st.Unreachable())
	}
	// Reported once: by the loop's own line when the grace's retry
	// reached Redis first, else as restored by the loop's heartbeat that
	// did (when it came within the second before the retry).
	tm := time.NewTimer(time.Minute) // a hang, not a wait
	defer tm.Stop()
	select {
	case <-la.seen(missed):
	case <-la.seen(restored):
		t.Log("the loop's heartbeat reached Redis before the retry")
	case <-tm.C:
		t.Fatalf("neither %q nor %q logged", missed, restored)
	}
	select {
	case <-la.seen("heartbeat to the cluster failed"):
		t.Error("the loop's heartbeat failed")
	default:
	}
}

// TestSharedJoinHeld: a process that joins while another process's
// heartbeat is overdue (it may be about to reach Redis from an outage) is
// held with words that say so (HoldJoin), not as recovering.
func TestSharedJoinHeld(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A process whose last heartbeat was 10 s ago (its entry expires 15 s
	// after it): killed, or in an outage.
	tm, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(ctx, "sched:procs", redis.Z{Score: float64(tm.Add(5 * time.Second).UnixMilli()), Member: "gone"}).Err(); err != nil {
		t.Fatal(err)
	}
	la := newLogSignal("refused a grant")
	a := sharedScheduler(t, srv, "a", 6, nil, la)
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("refused a grant")
	now := time.Now()
	l := a.Summary().Classes[0].Lanes[0]
	if l.Held != HoldJoin || !l.HeldUntil.After(now) {
		t.Errorf("lane refused as it joined: held %q until %v; want %q", l.Held, l.HeldUntil, HoldJoin)
	}
	if got, want := HoldWords(l.Held, now.Add(12*time.Second), now), "joined, waiting for the cluster (12s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}
	cancel()
}
