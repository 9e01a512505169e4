package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// crashable is the store of one simulated process: it passes calls to the
// shared Memory until the process is killed, then fails every call without
// applying it, as a process that no longer exists writes nothing.
type crashable struct {
	*store.Memory
	dead atomic.Bool
}

var errKilled = errors.New("process killed")

func (c *crashable) AddDaily(ctx context.Context, day string, lane store.LaneID, n int) (int, error) {
	if c.dead.Load() {
		return 0, errKilled
	}
	return c.Memory.AddDaily(ctx, day, lane, n)
}

func (c *crashable) Reserve(ctx context.Context, r store.Record) (int, error) {
	if c.dead.Load() {
		return 0, errKilled
	}
	return c.Memory.Reserve(ctx, r)
}

func (c *crashable) Settle(ctx context.Context, s store.Settlement) error {
	if c.dead.Load() {
		return errKilled
	}
	return c.Memory.Settle(ctx, s)
}

func (c *crashable) SetLaneState(ctx context.Context, s store.LaneState) error {
	if c.dead.Load() {
		return errKilled
	}
	return c.Memory.SetLaneState(ctx, s)
}

func (c *crashable) DisableKey(ctx context.Context, d store.DisabledKey) error {
	if c.dead.Load() {
		return errKilled
	}
	return c.Memory.DisableKey(ctx, d)
}

// TestRestartsModel runs a sequence of simulated processes on one store:
// each submits random work for a random time and then stops cleanly or is
// killed (its store stops applying writes and its work stops sending), and
// the next starts at once or a little later. Across every process it checks
// that no lane sends more than its RPM in any 60 s window, that after each
// clean stop the stored day count of every lane equals the requests it sent,
// and that after each kill the stored count is at least what was sent and at
// most one chunk per lane per kill more.
func TestRestartsModel(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -run TestRestartsModel -seed %d)", seed, seed)
	synctest.Test(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(seed, 9))
		var rmu sync.Mutex
		rnd := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return r.IntN(n) }

		classes := []ClassConfig{
			{Name: "text", Limits: bucket.Limits{RPM: 30, RPD: 5000}, Concurrency: 6, Burst: 30, WindowMargin: 200 * time.Millisecond},
			{Name: "image", Limits: bucket.Limits{RPM: 4, RPD: 300}, Concurrency: 3, Burst: 4, WindowMargin: 100 * time.Millisecond},
		}
		ks := []bucket.Key{{ID: "a", Project: "p1"}, {ID: "b", Project: "p1"}, {ID: "c", Project: "p2"}}
		mem := store.NewMemory()

		var smu sync.Mutex
		sends := map[store.LaneID][]time.Time{}
		sentCount := func() map[store.LaneID]int {
			smu.Lock()
			defer smu.Unlock()
			out := map[store.LaneID]int{}
			for l, ts := range sends {
				out[l] = len(ts)
			}
			return out
		}
		stored := func() map[store.LaneID]int {
			hist, err := mem.History(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out := map[store.LaneID]int{}
			for _, dc := range hist {
				out[dc.Lane] += dc.Count
			}
			return out
		}
		maxChunks := 0
		for _, c := range classes {
			maxChunks += 2 * bucket.MaxChunk(c.Limits) // two projects
		}
		kills := 0

		for proc := range 8 {
			st := &crashable{Memory: mem}
			var dead atomic.Bool
			s, err := New(Config{Classes: classes, Keys: ks, Store: st, Seed: seed + uint64(proc),
				BackoffBase: time.Second, BackoffMax: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			work := func(ctx context.Context, l Lease) error {
				if dead.Load() {
					return NotSent(errKilled)
				}
				smu.Lock()
				lane := store.LaneID{Project: l.Project, Class: l.Class}
				sends[lane] = append(sends[lane], time.Now())
				smu.Unlock()
				select {
				case <-time.After(time.Duration(rnd(3000)) * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				switch x := rnd(100); {
				case x < 80:
					return nil
				case x < 88:
					return &TransientError{Err: errors.New("503")}
				default:
					return &RateLimitedError{Scope: ScopeMinute} // no retry delay
				}
			}
			jobs := 10 + rnd(60)
			for range jobs {
				class := "text"
				if rnd(3) == 0 {
					class = "image"
				}
				if _, err := s.Submit(context.Background(), Job{Class: class, Work: work}); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Duration(rnd(120_000)) * time.Millisecond) // the process's life
			kill := rnd(2) == 0
			if kill {
				st.dead.Store(true)
				dead.Store(true)
				kills++
			}
			cancel()
			err = <-done
			if kill != (err != nil) {
				t.Fatalf("process %d (killed %v): Run returned %v", proc, kill, err)
			}
			sent, got := sentCount(), stored()
			over := 0
			for _, lane := range lanesOf(sent, got) {
				if got[lane] < sent[lane] {
					t.Fatalf("process %d: lane %s: stored %d < sent %d", proc, lane, got[lane], sent[lane])
				}
				if !kill && kills == 0 && got[lane] != sent[lane] {
					t.Fatalf("process %d stopped cleanly: lane %s: stored %d, sent %d: want equal", proc, lane, got[lane], sent[lane])
				}
				over += got[lane] - sent[lane]
			}
			if over > kills*maxChunks {
				t.Fatalf("process %d: stored counts exceed sent by %d after %d kills, more than one chunk per lane per kill (%d)", proc, over, kills, maxChunks)
			}
			t.Logf("process %d: %d jobs, killed %v, sent %v, stored %v", proc, jobs, kill, sent, got)
			time.Sleep(time.Duration(rnd(3)) * time.Duration(rnd(20_000)) * time.Millisecond) // 0 (often) or a pause
		}

		smu.Lock()
		defer smu.Unlock()
		for lane, ts := range sends {
			rpm := classes[0].Limits.RPM
			if lane.Class == "image" {
				rpm = classes[1].Limits.RPM
			}
			slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
			for i := 0; i+rpm < len(ts); i++ {
				if d := ts[i+rpm].Sub(ts[i]); d < time.Minute {
					t.Fatalf("lane %s: %d requests within %v (from %v), RPM %d", lane, rpm+1, d, ts[i], rpm)
				}
			}
		}
	})
}

func lanesOf(ms ...map[store.LaneID]int) []store.LaneID {
	var out []store.LaneID
	for _, m := range ms {
		for l := range m {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}
