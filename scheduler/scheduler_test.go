package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	goleak.VerifyTestMain(m)
}

func keys(n int) []bucket.Key {
	ks := make([]bucket.Key, n)
	for i := range ks {
		id := fmt.Sprintf("key%d", i+1)
		ks[i] = bucket.Key{ID: id, Project: id}
	}
	return ks
}

func textImage(textRPM, textRPD, imageRPM, imageRPD, conc int) []ClassConfig {
	return []ClassConfig{
		{Name: "text", Limits: bucket.Limits{RPM: textRPM, RPD: textRPD}, Concurrency: conc},
		{Name: "image", Limits: bucket.Limits{RPM: imageRPM, RPD: imageRPD}, Concurrency: conc},
	}
}

// start builds a scheduler and runs it until the test ends: inside a
// synctest bubble for tests about time, outside one for tests against a
// real redis-server (the shared-store tests).
func start(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, stop := startStoppable(t, t.Context(), cfg)
	t.Cleanup(stop)
	return s
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) of(kind EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func ok(context.Context, Lease) error { return nil }

func TestPriorityOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1), Aging: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []string
		var hs []*Handle
		for i, p := range []Priority{PriorityLow, PriorityNormal, PriorityHigh, PriorityLow, PriorityHigh, PriorityNormal} {
			name := fmt.Sprintf("%s%d", p, i)
			h, err := s.Submit(t.Context(), Job{Class: "text", Priority: p, Name: name, Work: func(context.Context, Lease) error {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		for _, h := range hs {
			if err := h.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		<-done
		want := []string{"high2", "high4", "normal1", "normal5", "low0", "low3"}
		if fmt.Sprint(order) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", order, want)
		}
	})
}

func TestAgingPreventsStarvation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// One request a minute; a stream of high jobs always waiting.
		s := start(t, Config{Classes: textImage(1, 10000, 1, 250, 1), Keys: keys(1), Aging: 2 * time.Minute})
		var lowDone atomic.Bool
		stop := make(chan struct{})
		defer close(stop)
		for range 2 {
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := s.Do(t.Context(), Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(time.Second)
		submitted := time.Now()
		h, err := s.Submit(t.Context(), Job{Class: "text", Priority: PriorityLow, Work: func(context.Context, Lease) error {
			lowDone.Store(true)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Low needs 2 levels: 2 x Aging, then the next slot, give or take the highs that aged alongside.
		if waited := time.Since(submitted); waited > 8*time.Minute || !lowDone.Load() {
			t.Fatalf("low-priority job waited %v behind a stream of high", waited)
		}
	})
}

func TestSpreadAcrossLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 16), Keys: keys(5)})
		var mu sync.Mutex
		per := map[string]int{}
		var hs []*Handle
		for range 1000 {
			h, _ := s.Submit(t.Context(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
				mu.Lock()
				per[l.KeyID]++
				mu.Unlock()
				return nil
			}})
			hs = append(hs, h)
		}
		for _, h := range hs {
			if err := h.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range keys(5) {
			if per[k.ID] < 190 || per[k.ID] > 210 {
				t.Errorf("%s served %d of 1000, want 200 ± 10: %v", k.ID, per[k.ID], per)
			}
		}
	})
}

func TestRetryOnAnotherLaneAfter429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: keys(2), Observer: rec})
		var tried []string
		err := s.Do(t.Context(), Job{Class: "image", Work: func(_ context.Context, l Lease) error {
			tried = append(tried, l.KeyID)
			if l.KeyID == "key1" {
				return &RateLimitedError{Scope: ScopeMinute, RetryAfter: 26 * time.Second, Quota: "GenerateRequestsPerMinutePerProjectPerModel"}
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tried) != "[key1 key2]" {
			t.Fatalf("tried %v, want key1 then key2", tried)
		}
		cooled := rec.of(EventLaneCooled)
		if len(cooled) != 1 || cooled[0].Project != "key1" || !cooled[0].Until.Equal(time.Now().Add(26*time.Second)) {
			t.Fatalf("lane cooled events %+v", cooled)
		}
		// The image lane of key1 cools; its text lane does not.
		sum := s.Summary()
		for _, c := range sum.Classes {
			for _, l := range c.Lanes {
				cooling := !l.CoolUntil.IsZero()
				if want := c.Name == "image" && l.Project == "key1"; cooling != want {
					t.Errorf("%s/%s cooling %v, want %v", c.Name, l.Project, cooling, want)
				}
			}
		}
		var used []string
		for range 4 {
			s.Do(t.Context(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
				used = append(used, l.KeyID)
				return nil
			}})
		}
		if n := countOf(used, "key1"); n != 2 {
			t.Fatalf("text jobs after an image 429 on key1: %v, want key1 used as usual", used)
		}
	})
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func TestExhaustedUntilPacificMidnight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		rec := &recorder{}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: keys(1), Store: st, Observer: rec})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "image", Work: func(_ context.Context, l Lease) error {
			calls++
			if calls == 1 {
				return &RateLimitedError{Scope: ScopeDay, RetryAfter: 0}
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		midnight := bucket.NextMidnight(rec.of(EventLaneExhausted)[0].Time, bucket.Pacific)
		d := rec.of(EventDispatched)
		if len(d) != 2 || d[1].Time.Before(midnight) {
			t.Fatalf("after a per-day 429 the retry ran at %v, want not before the next Pacific midnight %v", d[len(d)-1].Time, midnight)
		}
		if !d[1].Time.Equal(midnight) {
			t.Fatalf("retry at %v, want at midnight %v", d[1].Time, midnight)
		}
		states, _ := st.LaneStates(t.Context())
		if len(states) != 1 || !states[0].ExhaustedUntil.Equal(midnight) {
			t.Fatalf("persisted lane states %+v", states)
		}
	})
}

func TestKeyInvalidDisabledEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: keys(2), Store: st})
		var tried []string
		err := s.Do(t.Context(), Job{Class: "image", Work: func(_ context.Context, l Lease) error {
			tried = append(tried, l.KeyID)
			if l.KeyID == "key1" {
				return &KeyError{Reason: "leaked"}
			}
			return nil
		}})
		if err != nil || fmt.Sprint(tried) != "[key1 key2]" {
			t.Fatalf("err %v tried %v", err, tried)
		}
		for range 6 {
			s.Do(t.Context(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
				if l.KeyID == "key1" {
					t.Error("text job sent on a disabled key")
				}
				return nil
			}})
		}
		dk, _ := st.DisabledKeys(t.Context())
		if len(dk) != 1 || dk[0].KeyID != "key1" || dk[0].Reason != "leaked" {
			t.Fatalf("stored disabled keys %+v", dk)
		}
		if sum := s.Summary(); len(sum.DisabledKeys) != 1 || sum.Classes[0].Keys != 1 {
			t.Fatalf("summary %+v", sum)
		}
		if err := s.EnableKey(t.Context(), "key1"); err != nil {
			t.Fatal(err)
		}
		if dk, _ := st.DisabledKeys(t.Context()); len(dk) != 0 {
			t.Fatalf("still disabled after EnableKey: %+v", dk)
		}
	})
}

func TestProjectErrorDisablesProjectKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ks := []bucket.Key{{ID: "a", Project: "p"}, {ID: "b", Project: "p"}, {ID: "c", Project: "q"}}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: ks})
		var tried []string
		err := s.Do(t.Context(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
			tried = append(tried, l.KeyID)
			if l.Project == "p" {
				return &KeyError{Reason: ReasonOutOfCredit, Project: true}
			}
			return nil
		}})
		if err != nil || fmt.Sprint(tried) != "[a c]" {
			t.Fatalf("err %v tried %v, want [a c]", err, tried)
		}
		if sum := s.Summary(); len(sum.DisabledKeys) != 2 {
			t.Fatalf("disabled %+v, want a and b", sum.DisabledKeys)
		}
	})
}

// A project that cannot serve (out of credit) and is the only one: the job
// fails at once with the reason, after one request, not in a loop.
func TestProjectErrorAloneFailsWithReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ks := []bucket.Key{{ID: "a", Project: "p"}, {ID: "b", Project: "p"}}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 4), Keys: ks})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "image", Work: func(_ context.Context, l Lease) error {
			calls++
			return &KeyError{Reason: ReasonBillingRequired, Project: true}
		}})
		if !errors.Is(err, ErrNoLanes) || !strings.Contains(err.Error(), "project p: billing required (keys a, b)") {
			t.Fatalf("err %v, want ErrNoLanes naming the reason", err)
		}
		if calls != 1 {
			t.Fatalf("%d calls, want 1", calls)
		}
		// The text class has no lane either: a text job fails without a call.
		err = s.Do(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error { calls++; return nil }})
		if !errors.Is(err, ErrNoLanes) || calls != 1 {
			t.Fatalf("text: err %v after %d calls", err, calls)
		}
	})
}

// A limit of 0 (ScopeNoQuota) stops that lane only, durably, until
// ResumeLane or a change of the class's configuration.
func TestNoQuotaStopsLane(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		classes := textImage(1000, 10000, 20, 250, 4)
		classes[1].Model = "gemini-3-pro-image-preview"
		ks := []bucket.Key{{ID: "a", Project: "p"}, {ID: "c", Project: "q"}}
		ctx, cancel := context.WithCancel(t.Context())
		s, err := New(Config{Classes: classes, Keys: ks, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		calls := map[string]int{}
		work := func(_ context.Context, l Lease) error {
			calls[l.Class+"/"+l.Project]++
			if l.Class == "image" && l.Project == "p" {
				return &RateLimitedError{Scope: ScopeNoQuota, Quota: "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}
			}
			return nil
		}
		for range 4 {
			if err := s.Do(t.Context(), Job{Class: "image", Work: work}); err != nil {
				t.Fatal(err)
			}
			if err := s.Do(t.Context(), Job{Class: "text", Work: work}); err != nil {
				t.Fatal(err)
			}
		}
		if calls["image/p"] != 1 || calls["image/q"] != 4 || calls["text/p"] == 0 {
			t.Fatalf("calls %v: want one image call on p, the text lane of p still used", calls)
		}
		sum := s.Summary()
		if lane := sum.Classes[1].Lanes[0]; lane.Project != "p" || lane.Stopped != ReasonNoQuota || lane.Enabled {
			t.Fatalf("image lane of p: %+v", lane)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		states, _ := st.LaneStates(t.Context())
		if len(states) != 1 || states[0].Stopped != ReasonNoQuota {
			t.Fatalf("stored lane states %+v", states)
		}

		// Restarted with the same configuration: still stopped; alone, a job
		// fails with the reason.
		s2, err := New(Config{Classes: classes, Keys: ks[:1], Store: st})
		if err != nil {
			t.Fatal(err)
		}
		if lane := s2.Summary().Classes[1].Lanes[0]; lane.Stopped != ReasonNoQuota {
			t.Fatalf("after restart: %+v", lane)
		}
		ctx2, cancel2 := context.WithCancel(t.Context())
		go func() { done <- s2.Run(ctx2) }()
		err = s2.Do(t.Context(), Job{Class: "image", Work: work})
		if !errors.Is(err, ErrNoLanes) || !strings.Contains(err.Error(), "project p: no quota on this model") {
			t.Fatalf("alone: %v", err)
		}
		if err := s2.ResumeLane(t.Context(), "image", "p"); err != nil {
			t.Fatal(err)
		}
		if err := s2.ResumeLane(t.Context(), "image", "nope"); !errors.Is(err, ErrUnknownLane) {
			t.Fatalf("ResumeLane of an unknown project: %v, want ErrUnknownLane", err)
		}
		if states, _ := st.LaneStates(t.Context()); len(states) != 0 {
			t.Fatalf("resumed lane still stored: %+v", states)
		}
		cancel2()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// Stopped again, then restarted with another model: resumed.
		st.SetLaneState(t.Context(), store.LaneState{Lane: store.LaneID{Project: "p", Class: "image"}, Stopped: ReasonNoQuota, Config: classes[1].stopConfig()})
		classes[1].Model = "gemini-4-image"
		s3, err := New(Config{Classes: classes, Keys: ks, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		if lane := s3.Summary().Classes[1].Lanes[0]; lane.Stopped != "" || !lane.Enabled {
			t.Fatalf("after a model change: %+v", lane)
		}
		if states, _ := st.LaneStates(t.Context()); len(states) != 0 {
			t.Fatalf("stop of another configuration still stored: %+v", states)
		}
	})
}

func TestCancelWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1, 10000, 1, 250, 1), Keys: keys(1)})
		if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
			t.Fatal(err)
		}
		// The lane has no capacity for a minute: the next job queues.
		ctx, cancel := context.WithCancel(t.Context())
		ran := false
		h, err := s.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { ran = true; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if h.State() != StateQueued {
			t.Fatalf("state %v, want queued", h.State())
		}
		if est := h.EstimatedStart(); !est.After(time.Now()) {
			t.Fatalf("estimated start %v, want in the future", est)
		}
		cancel()
		if err := h.Wait(t.Context()); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait: %v, want context.Canceled", err)
		}
		time.Sleep(2 * time.Minute)
		if ran || h.State() != StateCanceled {
			t.Fatalf("canceled job ran=%v state=%v", ran, h.State())
		}
		if q := s.Summary().Classes[0]; q.QueuedNormal != 0 {
			t.Fatalf("canceled job still counted in the queue: %+v", q)
		}
	})
}

func TestCancelWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1)})
		ctx, cancel := context.WithCancel(t.Context())
		started := make(chan struct{})
		h, _ := s.Submit(ctx, Job{Class: "text", Work: func(ctx context.Context, _ Lease) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}})
		<-started
		if h.State() != StateRunning {
			t.Fatalf("state %v", h.State())
		}
		cancel()
		if err := h.Wait(t.Context()); !errors.Is(err, context.Canceled) || h.State() != StateCanceled {
			t.Fatalf("err %v state %v", err, h.State())
		}
		// The request may have left: its day unit stays counted.
		if used := s.Summary().Classes[0].DayUsed; used != 1 {
			t.Fatalf("day used %d, want 1", used)
		}
	})
}

func TestNotSentRefunds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1)})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
			calls++
			if calls == 1 {
				return NotSent(errors.New("encoding failed"))
			}
			return nil
		}})
		if err != nil || calls != 2 {
			t.Fatalf("err %v calls %d", err, calls)
		}
		if used := s.Summary().Classes[0].DayUsed; used != 1 {
			t.Fatalf("day used %d, want 1 (the not-sent attempt refunded)", used)
		}
	})
}

func TestDeadlineFailFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1)})
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		// The only image lane answers a per-day 429: the job's retry cannot
		// start before midnight, after its deadline.
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		err := s.Do(ctx, Job{Class: "image", Work: func(context.Context, Lease) error {
			return &RateLimitedError{Scope: ScopeDay}
		}})
		var nc *NoCapacityError
		if !errors.As(err, &nc) || !errors.Is(err, ErrNoCapacity) || !nc.Earliest.Equal(midnight) {
			t.Fatalf("Do: %v, want a NoCapacityError with earliest %v", err, midnight)
		}
		// A new job with a deadline before midnight fails at once.
		before := time.Now()
		h, err := s.Submit(ctx, Job{Class: "image", Work: ok})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Wait(t.Context()); !errors.As(err, &nc) || !nc.Earliest.Equal(midnight) {
			t.Fatalf("Submit with a deadline before capacity: %v", err)
		}
		if time.Since(before) != 0 {
			t.Fatal("fail-fast took time")
		}
		// Without a deadline the job simply waits for midnight.
		h, _ = s.Submit(t.Context(), Job{Class: "image", Work: ok})
		if err := h.Wait(t.Context()); err != nil || !time.Now().Equal(midnight) {
			t.Fatalf("err %v at %v, want success at %v", err, time.Now(), midnight)
		}
	})
}

func TestTransientRetriesWithinBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(2), Observer: rec,
			BackoffBase: time.Second, BackoffMax: 8 * time.Second})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
			calls++
			return errors.New("503 overloaded")
		}})
		if !errors.Is(err, ErrRetriesExhausted) || calls != 5 {
			t.Fatalf("err %v after %d calls, want ErrRetriesExhausted after 5", err, calls)
		}
		var te *TransientError
		if !errors.As(err, &te) {
			t.Fatalf("final error %v does not carry the transient cause", err)
		}
		d := rec.of(EventDispatched)
		for i := 1; i < len(d); i++ {
			gap := d[i].Time.Sub(d[i-1].Time)
			hi := min(time.Second<<(i-1), 8*time.Second)
			if gap < hi/2 || gap > hi {
				t.Errorf("backoff before attempt %d: %v, want in [%v, %v]", i+1, gap, hi/2, hi)
			}
		}
		// The lane is not blamed: no cooldown.
		if c := rec.of(EventLaneCooled); len(c) != 0 {
			t.Fatalf("transient failures cooled a lane: %+v", c)
		}
	})
}

func TestPermanentFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(2)})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
			calls++
			return &PermanentError{Err: errors.New("400 INVALID_ARGUMENT")}
		}})
		var pe *PermanentError
		if !errors.As(err, &pe) || calls != 1 {
			t.Fatalf("err %v calls %d", err, calls)
		}
	})
}

func TestWorkPanicFailsJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1)})
		err := s.Do(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error { panic("boom") }})
		var pe *PermanentError
		if !errors.As(err, &pe) {
			t.Fatalf("err %v", err)
		}
		if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
			t.Fatalf("scheduler unusable after a panic: %v", err)
		}
	})
}

func TestDailyProtection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10, 20, 250, 1), Keys: keys(1)})
		for range 9 {
			if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
				t.Fatal(err)
			}
		}
		if !s.Summary().Classes[0].Critical {
			t.Fatal("9 of 10 used: not critical")
		}
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		low, _ := s.Submit(t.Context(), Job{Class: "text", Priority: PriorityLow, Work: ok})
		normal, _ := s.Submit(t.Context(), Job{Class: "text", Priority: PriorityNormal, Work: ok})
		if err := s.Do(t.Context(), Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
			t.Fatal(err)
		}
		if low.State() != StateQueued || normal.State() != StateQueued {
			t.Fatalf("below-high jobs ran on a critical day: %v %v", low.State(), normal.State())
		}
		if err := normal.Wait(t.Context()); err != nil || time.Now().Before(midnight) {
			t.Fatalf("normal job: %v at %v, want after %v", err, time.Now(), midnight)
		}
		low.Wait(t.Context())
	})
}

func TestShutdownWithWorkInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Classes: textImage(1000, 10000, 20, 250, 2), Keys: keys(1)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		var hs []*Handle
		for range 5 {
			h, _ := s.Submit(t.Context(), Job{Class: "text", Work: func(ctx context.Context, _ Lease) error {
				<-ctx.Done()
				return ctx.Err()
			}})
			hs = append(hs, h)
		}
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		running, queued := 0, 0
		for _, h := range hs {
			if !h.State().Final() {
				t.Fatalf("job %d not ended after Run returned: %v", h.ID(), h.State())
			}
			if errors.Is(h.Err(), ErrClosed) {
				if h.State() == StateFailed {
					queued++
				}
			}
			if h.State() == StateFailed {
				running++
			}
		}
		if queued != 5 {
			t.Fatalf("%d of 5 jobs ended with ErrClosed", queued)
		}
		if _, err := s.Submit(t.Context(), Job{Class: "text", Work: ok}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Submit after Run: %v", err)
		}
		if err := s.Run(t.Context()); !errors.Is(err, ErrClosed) {
			t.Fatalf("second Run: %v", err)
		}
	})
}

func TestShutdownGraceLetsRunningFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := New(Config{Classes: textImage(1000, 10000, 20, 250, 2), Keys: keys(1), ShutdownGrace: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		h, _ := s.Submit(t.Context(), Job{Class: "text", Work: func(ctx context.Context, _ Lease) error {
			select {
			case <-time.After(5 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
		synctest.Wait()
		cancel()
		<-done
		if err := h.Err(); err != nil || h.State() != StateDone {
			t.Fatalf("running job within the grace period: %v %v", h.State(), err)
		}
	})
}

// wakeCounter counts dispatcher wake-ups through the Observer-free path: the
// test reads the runners' loop counters.
func TestIdleDoesNotWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 2), Keys: keys(2)})
		synctest.Wait()
		before := s.wakeups()
		time.Sleep(time.Hour)
		if n := s.wakeups() - before; n != 0 {
			t.Fatalf("idle scheduler woke %d times in an hour", n)
		}
		// Every image lane exhausted: a queued job wakes nobody until midnight.
		for _, k := range keys(2) {
			s.classes["image"].class.Exhaust(k.Project, time.Now())
		}
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		h, _ := s.Submit(t.Context(), Job{Class: "image", Work: ok})
		synctest.Wait()
		before = s.wakeups()
		time.Sleep(time.Until(midnight) - time.Second)
		if n := s.wakeups() - before; n != 0 {
			t.Fatalf("scheduler with every lane exhausted woke %d times before midnight", n)
		}
		if err := h.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRestoreFromStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		cfg := Config{Classes: textImage(1000, 10000, 20, 250, 2), Keys: keys(1), Store: st}
		func() {
			ctx, cancel := context.WithCancel(t.Context())
			s, _ := New(cfg)
			done := make(chan error)
			go func() { done <- s.Run(ctx) }()
			for range 3 {
				s.Do(t.Context(), Job{Class: "image", Work: ok})
			}
			s.Submit(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
				return &RateLimitedError{Scope: ScopeMinute, RetryAfter: time.Hour}
			}}) // cools key1's text lane for an hour; the job waits for it
			synctest.Wait()
			cancel()
			<-done
		}()
		s2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sum := s2.Summary()
		img := sum.Classes[1]
		if img.DayUsed != 3 {
			t.Fatalf("restored image day used %d after a clean stop, want exactly 3", img.DayUsed)
		}
		if got := sum.Classes[1].Lanes[0].RPMUsed; got != 3 {
			t.Fatalf("restored image window holds %d, want the 3 requests sent", got)
		}
		if sum.Classes[0].Lanes[0].CoolUntil.IsZero() {
			t.Fatal("cooldown not restored")
		}
	})
}

func TestSubmitErrors(t *testing.T) {
	s, err := New(Config{Classes: textImage(1000, 10000, 20, 250, 2), Keys: keys(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(t.Context(), Job{Class: "video", Work: ok}); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("unknown class: %v", err)
	}
	if _, err := s.Submit(t.Context(), Job{Class: "text"}); err == nil {
		t.Fatal("job without work accepted")
	}
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Classes: textImage(0, 10, 1, 1, 1), Keys: keys(1)}, "rpm: 0"},
		{Config{Classes: textImage(1, 10, 1, 1, -1), Keys: keys(1)}, "concurrency: -1"},
		{Config{Classes: textImage(1, 10, 1, 1, 1)}, "keys: none"},
	} {
		if _, err := New(tt.cfg); err == nil || !contains(err.Error(), tt.want) {
			t.Errorf("New: %v, want %q", err, tt.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A lane that keeps answering 429 (someone else spends its quota) delays a
// job but never fails it: rate limits spend no retry budget.
func TestRateLimitsDoNotFailTheJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1)})
		calls := 0
		err := s.Do(t.Context(), Job{Class: "image", Work: func(context.Context, Lease) error {
			calls++
			if calls <= 50 {
				return &RateLimitedError{Scope: ScopeMinute, RetryAfter: time.Second}
			}
			return nil
		}})
		if err != nil || calls != 51 {
			t.Fatalf("after 50 rate limits: err %v, calls %d; want success on the 51st", err, calls)
		}
	})
}

// While a class is critical, a job below Protect cannot start before the next
// quota day: one whose deadline comes first fails at once.
func TestDeadlineFailFastWhenProtected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(1000, 10, 20, 250, 1), Keys: keys(1)})
		for range 9 {
			if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
				t.Fatal(err)
			}
		}
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		ctx, cancel := context.WithDeadline(t.Context(), midnight.Add(-time.Minute))
		defer cancel()
		h, err := s.Submit(ctx, Job{Class: "text", Priority: PriorityNormal, Work: ok})
		if err != nil {
			t.Fatal(err)
		}
		var nc *NoCapacityError
		if err := h.Err(); !errors.As(err, &nc) || !nc.Earliest.Equal(midnight) {
			t.Fatalf("normal job with a deadline before midnight on a critical day: %v, want ErrNoCapacity with earliest %v", err, midnight)
		}
		if err := s.Do(ctx, Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
			t.Fatalf("a high job still runs: %v", err)
		}
	})
}

// A per-day 429 answered after the Pacific midnight that followed its request
// speaks of the day that ended: the new day is not blocked.
func TestDay429AcrossMidnightDoesNotBlockTheNewDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := start(t, Config{Classes: textImage(1000, 10000, 20, 250, 1), Keys: keys(1), Observer: rec})
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		time.Sleep(time.Until(midnight) - 5*time.Second)
		calls := 0
		err := s.Do(t.Context(), Job{Class: "image", Work: func(ctx context.Context, _ Lease) error {
			calls++
			if calls == 1 {
				time.Sleep(10 * time.Second) // the answer comes after midnight
				return &RateLimitedError{Scope: ScopeDay}
			}
			return nil
		}})
		if err != nil || calls != 2 {
			t.Fatalf("err %v calls %d", err, calls)
		}
		if got := time.Since(midnight); got > 6*time.Second {
			t.Fatalf("the retry ran %v after midnight: the new day was blocked", got)
		}
		if ex := rec.of(EventLaneExhausted); len(ex) != 0 {
			t.Fatalf("lane exhausted for the new day: %+v", ex)
		}
		// Before midnight the same answer exhausts the lane until midnight.
		next := bucket.NextMidnight(time.Now(), bucket.Pacific)
		s.Do(t.Context(), Job{Class: "image", Work: func(context.Context, Lease) error {
			if time.Now().Before(next) {
				return &RateLimitedError{Scope: ScopeDay}
			}
			return nil
		}})
		if ex := rec.of(EventLaneExhausted); len(ex) != 1 || !ex[0].Until.Equal(next) {
			t.Fatalf("exhausted events %+v, want one until %v", ex, next)
		}
	})
}

// TestDefaultConcurrency: with Concurrency unset, the class runs as many
// jobs at once as its window can start over the longest recent call:
// the lanes' summed RPM times the 60 s windows that call spans. Two lanes at
// 2 RPM with calls of 90 s: 4 at once until a call has ended, then 8; the
// pool never holds back what the window allows while calls are short.
func TestDefaultConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: []ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: 2, RPD: 100}}}, Keys: keys(2)})
		conc := func() (limit, running int) {
			c := s.Summary().Classes[0]
			return c.Concurrency, c.Running
		}
		if l, _ := conc(); l != 4 {
			t.Fatalf("concurrency before any call %d, want 4 (summed RPM)", l)
		}
		var hs []*Handle
		for range 12 {
			h, err := s.Submit(t.Context(), Job{Class: "image", Work: func(ctx context.Context, _ Lease) error {
				time.Sleep(90 * time.Second)
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		synctest.Wait()
		if l, r := conc(); l != 4 || r != 4 {
			t.Fatalf("at 0 s: concurrency %d, running %d; want 4 and 4 (the whole window at once)", l, r)
		}
		time.Sleep(61 * time.Second) // the window frees, but no call has ended: 90 s is not known yet
		synctest.Wait()
		if l, r := conc(); l != 4 || r != 4 {
			t.Fatalf("at 61 s: concurrency %d, running %d; want 4 and 4", l, r)
		}
		time.Sleep(30 * time.Second) // the first 4 ended after 90 s (two windows); 4 more started
		synctest.Wait()
		if l, r := conc(); l != 8 || r != 4 {
			t.Fatalf("at 91 s: concurrency %d, running %d; want 8 and 4", l, r)
		}
		time.Sleep(60 * time.Second) // the window frees again at 150 s: 4 more on top of the 4 running
		synctest.Wait()
		if l, r := conc(); l != 8 || r != 8 {
			t.Fatalf("at 151 s: concurrency %d, running %d; want 8 and 8", l, r)
		}
		for _, h := range hs {
			if err := h.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestSummaryTPMOnlyWithLimit: a lane of a class without TPM has no
// tpm_used in the summary's JSON (its tokens are counted, with no limit to
// count them against); one with TPM has tpm_used and tpm_limit.
func TestSummaryTPMOnlyWithLimit(t *testing.T) {
	s := start(t, Config{Classes: []ClassConfig{
		{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}},
		{Name: "image", Limits: bucket.Limits{RPM: 60, RPD: 100, TPM: 5000}},
	}, Keys: keys(1)})
	for _, class := range []string{"text", "image"} {
		if err := s.Do(t.Context(), Job{Class: class, Tokens: 1200, Work: func(context.Context, Lease) error { return nil }}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(s.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Classes []struct {
			Name  string
			Lanes []map[string]any
		}
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	for _, c := range sum.Classes {
		l := c.Lanes[0]
		_, used := l["tpm_used"]
		_, limit := l["tpm_limit"]
		switch {
		case c.Name == "text" && (used || limit):
			t.Errorf("text without TPM: lane %v has tpm_used or tpm_limit", l)
		case c.Name == "image" && (l["tpm_used"] != 1200.0 || l["tpm_limit"] != 5000.0):
			t.Errorf("image with TPM 5000: lane %v, want tpm_used 1200 and tpm_limit 5000", l)
		}
	}
}
