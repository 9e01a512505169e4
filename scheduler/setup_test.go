package scheduler

import (
	"context"
	"sync"
	"testing"
)

// Set-up shared by the scheduler's tests: a scheduler run until stop (one
// stopped and started again on the same store; start, in scheduler_test.go,
// runs one until the test's end with it), and a batch of jobs run to their
// end.

// startStoppable builds a scheduler from cfg and runs it until stop (or
// ctx's end), which cancels its Run and waits for Run to return (a clean
// stop: what a restart in the tests follows); Run's error fails the test
// (t.Error). Call stop once, from the test's goroutine, before the test
// ends (a deferred stop does). Inside or outside a synctest bubble.
func startStoppable(t *testing.T, ctx context.Context, cfg Config) (s *Scheduler, stop func()) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// runJobs submits a "text" Job for each of works, all before waiting, and
// waits until every one has ended. A refused Submit fails the test at once
// (t.Fatal); a job's error fails it (t.Error). Call it from the test's
// goroutine.
func runJobs(t *testing.T, s *Scheduler, works ...func(context.Context, Lease) error) {
	t.Helper()
	var wg sync.WaitGroup
	for _, w := range works {
		h, err := s.Submit(context.Background(), Job{Class: "text", Work: w})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := h.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
