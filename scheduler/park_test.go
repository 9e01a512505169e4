package scheduler

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// Withdraw ends a queued job with its error, without running it or taking
// quota; it leaves a running job alone. DayWait says a normal job of a
// critical class waits for the next Pacific midnight (protected), a high
// one does not, and a spent day is a day wait for every priority.
func TestWithdrawAndDayWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 4}, Concurrency: 1}},
			Keys: keys(1), Store: store.NewMemory(), Critical: 0.5}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		defer func() { cancel(); <-done }()

		release := make(chan struct{})
		ran := 0
		work := func(context.Context, Lease) error { ran++; <-release; return nil }
		first, err := s.Submit(context.Background(), Job{Class: "text", Work: work})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // first runs (concurrency 1): second queues
		second, err := s.Submit(context.Background(), Job{Class: "text", Work: work})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		errGone := errors.New("gone")
		if first.Withdraw(errGone) {
			t.Error("Withdraw took a running job out")
		}
		if !second.Withdraw(errGone) {
			t.Fatal("Withdraw left a queued job")
		}
		if err := second.Wait(context.Background()); !errors.Is(err, errGone) || second.State() != StateCanceled {
			t.Errorf("withdrawn job: %v, %v; want canceled with its error", err, second.State())
		}
		close(release)
		if err := first.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ran != 1 {
			t.Errorf("%d jobs ran, want 1 (the withdrawn one never)", ran)
		}
		if _, ok := s.DayWait("text", PriorityNormal); ok {
			t.Error("DayWait with 3 of 4 left: waiting")
		}
		s.Do(context.Background(), Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}) // 2 of 4: critical
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		if w, ok := s.DayWait("text", PriorityNormal); !ok || w.Kind != WaitProtected || !w.Until.Equal(midnight) {
			t.Errorf("DayWait(normal) on a critical class: %+v, %v; want protected until %v", w, ok, midnight)
		}
		if w, ok := s.DayWait("text", PriorityHigh); ok {
			t.Errorf("DayWait(high) on a critical class: %+v; want none", w)
		}
		for range 2 {
			if err := s.Do(context.Background(), Job{Class: "text", Priority: PriorityHigh, Work: func(context.Context, Lease) error { return nil }}); err != nil {
				t.Fatal(err)
			}
		}
		if w, ok := s.DayWait("text", PriorityHigh); !ok || w.Kind != WaitDay || w.Until.Before(midnight) {
			t.Errorf("DayWait(high) with the day spent: %+v, %v; want day, until %v or later", w, ok, midnight)
		}
		if _, ok := s.DayWait("nope", PriorityHigh); ok {
			t.Error("DayWait of an unknown class: waiting")
		}
	})
}
