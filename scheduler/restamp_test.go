package scheduler

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// TestLateWriteMovesSlot: at RPM 3 and a margin of 250 ms, a burst of 3
// whose second request is written 1 s after its dispatch (reported with
// Lease.Wrote) and a second burst of 3 a minute later: the late request
// reaches the API up to WriteMargin (125 ms) after its write, so its slot
// moves there and the second burst must not put 3 more in the minute
// ending at its arrival. Before Wrote, the late request kept its slot at
// its dispatch plus the margin, and the second burst's 3 were sent at the
// dispatch plus the margin plus 60 s, 4 arrivals within 60 s. With the
// memory and bbolt ledgers, in one process and across a clean stop (the
// moved slot is what the window log stores). A write within the first half
// of the margin (the others) moves nothing.
func TestLateWriteMovesSlot(t *testing.T) {
	for _, tt := range []struct {
		name    string
		bolt    bool
		restart bool
	}{
		{"memory", false, false},
		{"memory restart", false, true},
		{"bolt", true, false},
		{"bolt restart", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/slideshowd.db"
			synctest.Test(t, func(t *testing.T) { testLateWrite(t, tt.bolt, tt.restart, path) })
		})
	}
}

func testLateWrite(t *testing.T, bolt, restart bool, path string) {
	const margin = 250 * time.Millisecond
	var st store.Store = store.NewMemory()
	if bolt {
		b, err := store.Open(path, store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		st = b
	}
	cfg := Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 3, RPD: 100}, Burst: 3, WindowMargin: margin}},
		Keys: keys(1), Store: st}
	var (
		mu       sync.Mutex
		arrivals []time.Time
		moved    []bool
	)
	// work writes its request after delay and says so; it arrives
	// WriteMargin (half the margin) after the write, the latest allowed.
	work := func(delay time.Duration) func(context.Context, Lease) error {
		return func(_ context.Context, l Lease) error {
			time.Sleep(delay)
			w := time.Now()
			moves := l.MovesSlot(w)
			l.Wrote(w)
			mu.Lock()
			arrivals = append(arrivals, w.Add(margin/2))
			moved = append(moved, l.st.slot.Load() != l.Slot.UnixNano())
			if moves != moved[len(moved)-1] || l.MovesSlot(w) {
				t.Errorf("write %v after the dispatch: MovesSlot said %v before Wrote, %v after; the slot moved: %v",
					delay, moves, l.MovesSlot(w), moved[len(moved)-1])
			}
			mu.Unlock()
			return nil
		}
	}
	run := func(s *Scheduler, delays ...time.Duration) {
		var works []func(context.Context, Lease) error
		for _, d := range delays {
			works = append(works, work(d))
		}
		runJobs(t, s, works...)
	}
	s, stop := startStoppable(t, context.Background(), cfg)
	run(s, 0, time.Second, 100*time.Millisecond)
	if want := []bool{false, false, true}; !slices.Equal(moved, want) {
		t.Fatalf("slots moved %v, want %v (writes after 0, 100 ms and 1 s; half the margin is 125 ms)", moved, want)
	}
	if restart {
		stop()
		s, stop = startStoppable(t, context.Background(), cfg)
	}
	run(s, 0, 0, 0)
	stop()
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	for i := 3; i < len(arrivals); i++ {
		if d := arrivals[i].Sub(arrivals[i-3]); d < time.Minute {
			t.Fatalf("4 arrivals within %v (from %v after the first): RPM 3 exceeded; arrivals %v", d, arrivals[i-3].Sub(arrivals[0]), arrivals)
		}
	}
}
