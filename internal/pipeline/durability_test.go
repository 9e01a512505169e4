package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/store"
)

// pausingStore pauses the first PutJob of a queued record, after storing
// it, until release is closed: a Submit caught between storing its job
// and queueing it. It pauses only when the pipeline's lock is free then,
// that is when a Run could find the stored record and work it meanwhile;
// with the lock held nobody can, and it goes on at once.
type pausingStore struct {
	store.Store
	p       *Pipeline
	once    sync.Once
	stored  chan string // the job's id
	release chan struct{}
}

func (s *pausingStore) PutJob(ctx context.Context, j store.JobRecord) error {
	if err := s.Store.PutJob(ctx, j); err != nil {
		return err
	}
	var r record
	if json.Unmarshal(j.Data, &r) == nil && r.State == JobQueued {
		s.once.Do(func() {
			open := s.p.mu.TryLock()
			if open {
				s.p.mu.Unlock()
			}
			s.stored <- j.ID
			if open {
				<-s.release
			}
		})
	}
	return nil
}

// TestSubmitRacingResumeEndsOnce: a job that Run resumes from the store
// and finishes while its Submit has not yet queued it must not run again
// when Submit queues it (from the record Submit stored, now stale).
func TestSubmitRacingResumeEndsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := &pausingStore{Store: store.NewMemory(), stored: make(chan string), release: make(chan struct{})}
		var mu sync.Mutex
		var changes []JobState
		h := newHarness(t, setup{st: ps, noRun: true, onChange: func(s Status) {
			mu.Lock()
			changes = append(changes, s.State)
			mu.Unlock()
		}})
		ps.p = h.p
		submitted := make(chan error, 1)
		go func() {
			_, err := h.p.Submit(context.Background(), request(2))
			submitted <- err
		}()
		id := <-ps.stored

		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			if err := h.p.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		t.Cleanup(func() { cancel(); <-ran })
		if st := h.wait(id); st.State != JobDone {
			t.Fatalf("state %s error %q, want done", st.State, st.Error)
		}
		close(ps.release)
		if err := <-submitted; err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		dones := 0
		for _, s := range changes {
			if s == JobDone {
				dones++
			}
		}
		if dones != 1 {
			t.Errorf("the job ended %d times (changes %v), want once", dones, changes)
		}
		st, err := h.p.Status(t.Context(), id)
		if err != nil || st.State != JobDone {
			t.Errorf("stored state %s (%v), want done", st.State, err)
		}
	})
}

// failingStore fails the first PutJob of a record with an analysis: a
// store error (a full disk, say) in the middle of a job.
type failingStore struct {
	store.Store
	once sync.Once
}

func (s *failingStore) PutJob(ctx context.Context, j store.JobRecord) error {
	var r record
	fail := false
	if json.Unmarshal(j.Data, &r) == nil && r.Analysis != nil {
		s.once.Do(func() { fail = true })
	}
	if fail {
		return errors.New("disk full")
	}
	return s.Store.PutJob(ctx, j)
}

// TestStoreErrorMidJobIsRetried: a job cut short by a store error while
// Run goes on is worked again later, not left in progress until the next
// start; what it finished (the analysis) is not asked for again.
func TestStoreErrorMidJobIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{st: &failingStore{Store: store.NewMemory()}})
		id, err := h.p.Submit(t.Context(), request(2))
		if err != nil {
			t.Fatal(err)
		}
		st := h.wait(id)
		if st.State != JobDone {
			t.Fatalf("state %s error %q, want done", st.State, st.Error)
		}
		if got := served(h.e, emulator.DefaultTextModel); got != 1 {
			t.Errorf("analysis asked for %d times, want 1", got)
		}
		if got := served(h.e, emulator.DefaultImageModel); got != 2 {
			t.Errorf("%d images generated, want 2", got)
		}
	})
}

// TestStopWithJobWaitingToBeRequeued: Run stops while a job cut short
// waits to be worked again; the job stays stored and the next Run ends it.
func TestStopWithJobWaitingToBeRequeued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, dir := store.NewMemory(), t.TempDir()
		h1 := newHarness(t, setup{st: &failingStore{Store: st}, dir: dir})
		id, err := h1.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the job has been cut short and waits
		h1.stop()
		if s, err := h1.p.Status(t.Context(), id); err != nil || s.State.Final() {
			t.Fatalf("after the stop: %s (%v), want a job in progress", s.State, err)
		}
		h2 := newHarness(t, setup{st: st, dir: dir, emu: h1.e})
		if s := h2.wait(id); s.State != JobDone {
			t.Fatalf("state %s error %q, want done", s.State, s.Error)
		}
		if got := served(h1.e, emulator.DefaultTextModel); got != 1 {
			t.Errorf("analysis asked for %d times, want 1", got)
		}
	})
}
