package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestSharedJoinReleasedEarly: a process joins while another's heartbeat
// is overdue, so its lane is held (HoldJoin, 12 s); that process beats
// again (it was late, not unreachable: no recovering key), and the
// joiner's next heartbeat releases the hold: the lane asks again and the
// job runs before the hold's end. Before, it ran at the hold's end.
func TestSharedJoinReleasedEarly(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tm, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Its last heartbeat 10 s ago (its entry expires 15 s after it).
	if err := c.ZAdd(ctx, "sched:procs", redis.Z{Score: float64(tm.Add(5 * time.Second).UnixMilli()), Member: "late"}).Err(); err != nil {
		t.Fatal(err)
	}
	const refused, released = "refused a grant", "its lanes ask again"
	la := newLogSignal(refused, released)
	a := sharedScheduler(t, srv, "a", 6, nil, la)
	done := make(chan time.Time, 1)
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error {
		done <- time.Now()
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	<-la.seen(refused)
	l := a.Summary().Classes[0].Lanes[0]
	if l.Held != HoldJoin {
		t.Fatalf("lane held %q, want %q", l.Held, HoldJoin)
	}
	end := l.HeldUntil
	// It beats again.
	if tm, err = c.Time(ctx).Result(); err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(ctx, "sched:procs", redis.Z{Score: float64(tm.Add(15 * time.Second).UnixMilli()), Member: "late"}).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-done:
		if !at.Before(end) {
			t.Errorf("the job ran at %v, not before the hold's end %v", at, end)
		}
		t.Logf("ran %v before the hold's end", end.Sub(at).Round(time.Millisecond))
	case <-time.After(time.Minute):
		t.Fatal("the job did not run within a minute")
	}
	select {
	case <-la.seen(released):
	default:
		t.Errorf("no line saying the lanes ask again")
	}
	cancel()
}
