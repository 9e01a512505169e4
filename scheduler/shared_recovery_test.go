package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
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
// say so (HoldRecovery), not "Redis unreachable" (HoldShare).
func TestSharedRecoveryHeld(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	la := newLogSignal("refused a grant")
	a := sharedScheduler(t, srv, "a", 6, nil, la)
	srv.Kill()
	srv.Restart() // empty
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The grant finds the epoch gone and re-seeds; a, which joined less
	// than a heartbeat TTL before its view, has no share of the recovery.
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("refused a grant")
	now := time.Now()
	l := a.Summary().Classes[0].Lanes[0]
	if l.Held != HoldRecovery || !l.HeldUntil.After(now) {
		t.Errorf("lane refused in the recovery with Redis answering: held %q until %v; want %q", l.Held, l.HeldUntil, HoldRecovery)
	}
	if cs := a.Keys()[0].Classes[0]; cs.State != "held" || cs.Reason != HoldRecovery {
		t.Errorf("key state %+v, want held: %q", cs, HoldRecovery)
	}
	if got, want := HoldWords(l.Held, now.Add(12*time.Second), now), "Redis back, recovering: share used (12s)"; got != want {
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
