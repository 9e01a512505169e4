package scheduler

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: random)")

// TestModelRandomized submits many jobs with random priorities, token
// estimates, outcomes, latencies, cancellations and deadlines over two
// simulated days, and checks the scheduler's invariants from its events:
// every job ends exactly once; no lane exceeds its RPM in any 60 s window or
// its RPD in any Pacific day; nothing is dispatched to a lane that is cooling
// down or exhausted, or with a disabled key.
func TestModelRandomized(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -run TestModelRandomized -seed %d)", seed, seed)
	synctest.Test(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(seed, 7))
		var rmu sync.Mutex
		rnd := func(f func(*rand.Rand) int) int { rmu.Lock(); defer rmu.Unlock(); return f(r) }

		limits := map[string]bucket.Limits{
			"text":  {RPM: 6, RPD: 120},
			"image": {RPM: 2, RPD: 25},
		}
		ks := []bucket.Key{{ID: "a", Project: "p1"}, {ID: "b", Project: "p1"}, {ID: "c", Project: "p2"}, {ID: "d", Project: "p3"}}
		rec := &recorder{}
		cfg := Config{
			Classes: []ClassConfig{
				{Name: "text", Limits: limits["text"], Concurrency: 3},
				{Name: "image", Limits: limits["image"], Concurrency: 2},
			},
			Keys: ks, Observer: rec, Seed: seed,
			BackoffBase: time.Second, BackoffMax: 20 * time.Second,
		}
		s := start(t, cfg)

		var mu sync.Mutex
		notSent := map[[2]uint64]bool{} // (job, attempt) whose request never left
		var handles []*Handle

		work := func(ctx context.Context, l Lease) error {
			lat := time.Duration(rnd(func(r *rand.Rand) int { return r.IntN(5000) })) * time.Millisecond
			select {
			case <-time.After(lat):
			case <-ctx.Done():
				return ctx.Err()
			}
			switch x := rnd(func(r *rand.Rand) int { return r.IntN(100) }); {
			case x < 70:
				l.ReportTokens(rnd(func(r *rand.Rand) int { return r.IntN(100) }))
				return nil
			case x < 78:
				return &RateLimitedError{Scope: ScopeMinute, RetryAfter: time.Duration(rnd(func(r *rand.Rand) int { return r.IntN(40) })) * time.Second}
			case x < 80:
				return &RateLimitedError{Scope: ScopeUnknown}
			case x < 81:
				return &RateLimitedError{Scope: ScopeDay}
			case x < 90:
				return &TransientError{Err: errors.New("503")}
			case x < 93:
				return &PermanentError{Err: errors.New("400")}
			case x < 94 && l.KeyID == "d":
				return &KeyError{Reason: "leaked"}
			default:
				return NotSent(errors.New("not sent"))
			}
		}
		// Record not-sent attempts by wrapping work with the job id known from the event stream.
		jobs := 0
		end := time.Now().Add(48 * time.Hour)
		for time.Now().Before(end) && jobs < 1500 {
			class := "text"
			if rnd(func(r *rand.Rand) int { return r.IntN(3) }) == 0 {
				class = "image"
			}
			prio := Priority(rnd(func(r *rand.Rand) int { return r.IntN(3) }) - 1)
			ctx := t.Context()
			var cancel context.CancelFunc = func() {}
			switch rnd(func(r *rand.Rand) int { return r.IntN(10) }) {
			case 0:
				ctx, cancel = context.WithCancel(ctx)
				d := time.Duration(rnd(func(r *rand.Rand) int { return r.IntN(600) })) * time.Second
				time.AfterFunc(d, cancel)
			case 1:
				ctx, cancel = context.WithTimeout(ctx, time.Duration(1+rnd(func(r *rand.Rand) int { return r.IntN(7200) }))*time.Second)
			}
			var h *Handle
			var hmu sync.Mutex
			w := func(ctx context.Context, l Lease) error {
				err := work(ctx, l)
				var ns *NotSentError
				if errors.As(err, &ns) {
					hmu.Lock()
					id := h.ID()
					hmu.Unlock()
					mu.Lock()
					notSent[[2]uint64{id, uint64(l.Attempt)}] = true
					mu.Unlock()
				}
				return err
			}
			hmu.Lock()
			var err error
			h, err = s.Submit(ctx, Job{Class: class, Priority: prio, Tokens: rnd(func(r *rand.Rand) int { return r.IntN(50) }), Work: w})
			hmu.Unlock()
			if err != nil {
				cancel()
				t.Fatalf("Submit: %v", err)
			}
			go func() { <-h.Done(); cancel() }()
			handles = append(handles, h)
			jobs++
			time.Sleep(time.Duration(rnd(func(r *rand.Rand) int { return r.IntN(40_000) })) * time.Millisecond)
		}
		// Let everything finish: at most two more days.
		for _, h := range handles {
			ctx, cancel := context.WithTimeout(t.Context(), 72*time.Hour)
			h.Wait(ctx)
			cancel()
		}
		synctest.Wait()

		// Every job ended exactly once.
		finals := map[uint64]int{}
		for _, e := range rec.of(EventFinished) {
			if e.Final {
				finals[e.JobID]++
			}
		}
		states := map[State]int{}
		for _, h := range handles {
			if !h.State().Final() {
				t.Fatalf("job %d never ended: %v", h.ID(), h.State())
			}
			states[h.State()]++
			if finals[h.ID()] != 1 && !isNoCapacityAtSubmit(h) {
				t.Fatalf("job %d ended %d times", h.ID(), finals[h.ID()])
			}
		}
		t.Logf("%d jobs: %v", len(handles), states)

		// Lane bounds, counting requests that left the process.
		type laneKey struct{ class, project string }
		byLane := map[laneKey][]time.Time{}
		for _, e := range rec.of(EventDispatched) {
			mu.Lock()
			ns := notSent[[2]uint64{e.JobID, uint64(e.Attempt)}]
			mu.Unlock()
			if !ns {
				byLane[laneKey{e.Class, e.Project}] = append(byLane[laneKey{e.Class, e.Project}], e.Time)
			}
		}
		for lk, times := range byLane {
			sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
			rpm, rpd := limits[lk.class].RPM, limits[lk.class].RPD
			for i := rpm; i < len(times); i++ {
				if times[i].Sub(times[i-rpm]) < time.Minute {
					t.Fatalf("%v: %d requests within %v", lk, rpm+1, times[i].Sub(times[i-rpm]))
				}
			}
			perDay := map[string]int{}
			for _, at := range times {
				perDay[bucket.Day(at, bucket.Pacific)]++
			}
			for d, n := range perDay {
				if n > rpd {
					t.Fatalf("%v: %d requests on %s, RPD %d", lk, n, d, rpd)
				}
			}
		}

		// Nothing dispatched to a cooling or exhausted lane or a disabled key.
		blocked := append(rec.of(EventLaneCooled), rec.of(EventLaneExhausted)...)
		disabled := rec.of(EventKeyDisabled)
		for _, d := range rec.of(EventDispatched) {
			for _, b := range blocked {
				if b.Class == d.Class && b.Project == d.Project && d.Time.After(b.Time) && d.Time.Before(b.Until) {
					t.Fatalf("job %d dispatched on %s/%s at %v while it was blocked (%v) from %v until %v",
						d.JobID, d.Class, d.Project, d.Time, b.Kind, b.Time, b.Until)
				}
			}
			for _, k := range disabled {
				if d.KeyID == k.KeyID && d.Time.After(k.Time) {
					t.Fatalf("job %d dispatched with key %s at %v after it was disabled at %v", d.JobID, d.KeyID, d.Time, k.Time)
				}
			}
		}
		t.Logf("dispatched %d, cooled %d, exhausted %d, disabled %d",
			len(rec.of(EventDispatched)), len(rec.of(EventLaneCooled)), len(rec.of(EventLaneExhausted)), len(disabled))
	})
}

func isNoCapacityAtSubmit(h *Handle) bool {
	return errors.Is(h.Err(), ErrNoCapacity)
}
