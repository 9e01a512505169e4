package scheduler

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// TestMinute429WithoutDelay: a per-minute 429 with no retry delay rests the
// lane until its own window log frees a slot (its oldest request's slot plus
// 60 s) plus the margin, not Config.Cooldown; one with a delay rests for the
// delay.
func TestMinute429WithoutDelay(t *testing.T) {
	const margin = 300 * time.Millisecond
	for _, tt := range []struct {
		name  string
		delay time.Duration
		want  time.Duration // after the first request
	}{
		{"no delay", 0, time.Minute + 2*margin},
		{"delay", 7 * time.Second, 5*time.Second + 7*time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}, Burst: 10, WindowMargin: margin}},
					Keys: keys(1), Cooldown: time.Hour}
				s := start(t, cfg)
				t0 := time.Now()
				for range 2 {
					if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Second)
				}
				time.Sleep(3 * time.Second)
				s.Submit(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
					return &RateLimitedError{Scope: ScopeMinute, RetryAfter: tt.delay}
				}})
				synctest.Wait()
				got := s.Summary().Classes[0].Lanes[0].CoolUntil
				if want := t0.Add(tt.want); !got.Equal(want) {
					t.Fatalf("cooling until %v after the first request, want %v", got.Sub(t0), tt.want)
				}
			})
		})
	}
}

// TestCleanStopsExact runs several processes one after another on one bbolt
// file, each sending a random number of requests (some refused by the work
// before they leave), and checks after each clean stop that the stored day
// count of every lane equals the requests it sent, and that the next
// process starts with the last one's window (inside a synctest bubble, so
// no time passes and the whole window is still there).
func TestCleanStopsExact(t *testing.T) {
	path := t.TempDir() + "/slideshowd.db"
	synctest.Test(t, func(t *testing.T) { testCleanStopsExact(t, path) })
}

func testCleanStopsExact(t *testing.T, path string) {
	sent := map[string]int{}
	for run := range 4 {
		st, err := store.Open(path, store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 100000, RPD: 1000000}, Burst: 1000, Concurrency: 4}},
			Keys: keys(2), Store: st}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if run > 0 {
			for _, lu := range s.Summary().Classes[0].Lanes {
				if lu.RPMUsed != sent[lu.Project] {
					t.Fatalf("run %d: lane %s starts with %d in its window, want the %d sent", run, lu.Project, lu.RPMUsed, sent[lu.Project])
				}
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for i := range 50 + 37*run {
			err := s.Do(context.Background(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
				if i%7 == 3 {
					return NotSent(&PermanentError{Err: context.Canceled})
				}
				sent[l.Project]++ // Do runs one job at a time
				return nil
			}})
			if err != nil && i%7 != 3 {
				t.Fatal(err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		counts, err := st.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, dc := range counts {
			got[dc.Lane.Project] += dc.Count
		}
		for p, n := range sent {
			if got[p] != n {
				t.Fatalf("run %d: lane %s: stored %d, sent %d: want equal after a clean stop", run, p, got[p], n)
			}
		}
		st.Close()
	}
}
