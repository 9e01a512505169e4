package scheduler

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// newTask builds a queued task the way Submit does, without queueing it.
func newTask(s *Scheduler, ctx context.Context, j Job) *task {
	now := time.Now()
	t := &task{job: j, id: s.nextID.Add(1), ctx: ctx, enqueued: now, queuedAt: now, heapIdx: -1}
	t.handle = &Handle{id: t.id, class: j.Class, done: make(chan struct{})}
	return t
}

// A job whose context ends between Acquire and the dispatcher unregistering
// its cancellation hook gives its lease back. The lease's chunk of daily
// units was never written, so the chunk must be given back too: otherwise the
// next request on the lane is covered by a reservation that is not durable
// and a crash under-counts the day.
func TestCanceledAtDispatchDoesNotKeepUnwrittenChunk(t *testing.T) {
	st := store.NewMemory()
	s, err := New(Config{
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}, Concurrency: 1, Burst: 10}},
		Keys:    keys(1),
		Store:   st,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := s.classes["text"]
	workers := pool.New().WithMaxGoroutines(1)

	// The first job's context has ended and its hook has already fired:
	// stop reports false, as it does when the hook runs concurrently.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	canceled := newTask(s, ctx, Job{Class: "text", Work: ok})
	canceled.stop = func() bool { return false }
	r.mu.Lock()
	r.queues[level(PriorityNormal)].pushBack(canceled)
	r.mu.Unlock()
	r.dispatchReady(workers, t.Context())
	if got := canceled.handle.State(); got != StateCanceled {
		t.Fatalf("canceled job state = %v, want canceled", got)
	}

	// The next job is sent: the store must count it before it runs.
	sent := make(chan struct{})
	next := newTask(s, t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
		close(sent)
		return nil
	}})
	r.mu.Lock()
	r.queues[level(PriorityNormal)].pushBack(next)
	r.mu.Unlock()
	r.dispatchReady(workers, t.Context())
	<-sent
	workers.Wait()

	day := bucket.Day(time.Now(), bucket.Pacific)
	counts, err := st.Daily(t.Context(), day)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, dc := range counts {
		stored += dc.Count
	}
	if stored < 1 {
		t.Fatalf("store counts %d daily units for day %s after 1 request was sent: under-count", stored, day)
	}
	u := r.class.Usage(time.Now())
	if res := u.Lanes[0].Reserved; res > stored {
		t.Fatalf("lane reserves %d daily units but the store holds %d: reservation not durable", res, stored)
	}
}

// failHead ends a job the dispatcher found unservable. When a retried job
// went back in front of it meanwhile (requeue pushes at the head), the ended
// job must still leave the queue: otherwise it is dispatched and its work
// runs after it has failed, and the queue counts it as live.
func TestFailHeadBehindRequeuedJob(t *testing.T) {
	s, err := New(Config{
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}, Concurrency: 2, Burst: 10}},
		Keys:    keys(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := s.classes["text"]
	ran := make(chan string, 2)
	work := func(name string) func(context.Context, Lease) error {
		return func(context.Context, Lease) error { ran <- name; return nil }
	}
	failed := newTask(s, t.Context(), Job{Class: "text", Work: work("failed")})
	retried := newTask(s, t.Context(), Job{Class: "text", Work: work("retried")})
	q := &r.queues[level(PriorityNormal)]
	r.mu.Lock()
	q.pushBack(failed)
	q.pushFront(retried) // a retry went back to the head after failed was picked
	r.mu.Unlock()
	r.failHead(failed, ErrNoLanes)
	if got := failed.handle.State(); got != StateFailed {
		t.Fatalf("state = %v, want failed", got)
	}
	r.mu.Lock()
	live := q.live
	r.mu.Unlock()
	if live != 1 {
		t.Fatalf("queue live count = %d after failing one of two jobs, want 1", live)
	}
	workers := pool.New().WithMaxGoroutines(2)
	r.dispatchReady(workers, t.Context())
	workers.Wait()
	close(ran)
	var names []string
	for n := range ran {
		names = append(names, n)
	}
	if len(names) != 1 || names[0] != "retried" {
		t.Fatalf("work ran for %v, want only [retried]", names)
	}
}

// closeQueued ends queued jobs after Run. A job whose cancellation hook fires
// while closeQueued ends it must not be taken out of the queue a second time:
// the queue's live count stays at zero, not below.
func TestCloseQueuedRacingCancelHook(t *testing.T) {
	s, err := New(Config{
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}, Concurrency: 1}},
		Keys:    keys(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := s.classes["text"]
	queued := newTask(s, t.Context(), Job{Class: "text", Work: ok})
	delayed := newTask(s, t.Context(), Job{Class: "text", Work: ok})
	delayed.notBefore = time.Now().Add(time.Hour)
	for _, tk := range []*task{queued, delayed} {
		tk.stop = func() bool { r.cancelQueued(tk); return false } // the hook runs just now
	}
	r.mu.Lock()
	r.queues[level(PriorityNormal)].pushBack(queued)
	r.delayed.push(delayed)
	r.mu.Unlock()
	r.closeQueued()
	for _, tk := range []*task{queued, delayed} {
		if !tk.handle.State().Final() {
			t.Fatalf("job %d not ended: %v", tk.id, tk.handle.State())
		}
	}
	r.mu.Lock()
	live := r.queues[level(PriorityNormal)].live
	r.mu.Unlock()
	if live != 0 {
		t.Fatalf("queue live count = %d after closing, want 0", live)
	}
}

// What a rate limit or a bad key says about the lane holds whatever became of
// the job: a per-day 429 (or a key error) answered to a job whose context
// ended meanwhile, or during shutdown, still exhausts the lane (disables the
// key), so no later job is sent there the same day.
func TestLaneEffectsApplyWhenJobCanceled(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		check func(bucket.LaneUsage) bool
	}{
		{"day429", &RateLimitedError{Scope: ScopeDay}, func(l bucket.LaneUsage) bool { return !l.ExhaustedUntil.IsZero() }},
		{"minute429", &RateLimitedError{Scope: ScopeMinute, RetryAfter: 20 * time.Second}, func(l bucket.LaneUsage) bool { return !l.CoolUntil.IsZero() }},
		{"key", &KeyError{Reason: "invalid"}, func(l bucket.LaneUsage) bool { return len(l.DisabledKeys) == 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: keys(1)})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				err := s.Do(ctx, Job{Class: "image", Work: func(context.Context, Lease) error {
					cancel() // the caller gives up just as the answer comes
					return tc.err
				}})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Do = %v, want canceled", err)
				}
				u := s.Pool().Class("image").Usage(time.Now())
				if !tc.check(u.Lanes[0]) {
					t.Fatalf("after %v on a canceled job the lane is %+v: the answer was ignored", tc.err, u.Lanes[0])
				}
			})
		})
	}
}
