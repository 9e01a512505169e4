package scheduler

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
)

// classWaitOf returns the Summary's wait of class.
func classWaitOf(s *Scheduler, class string) *Wait {
	for _, c := range s.Summary().Classes {
		if c.Name == class {
			return c.Wait
		}
	}
	return nil
}

// waitsThenRuns checks that h waits with kind and reason, then runs, with
// one waiting and one resumed event in rec.
func waitsThenRuns(t *testing.T, h *Handle, rec *recorder, kind, reason string) {
	t.Helper()
	w, waiting := h.Waiting()
	if !waiting || w.Kind != kind || w.Reason != reason {
		t.Fatalf("Waiting = %+v, %v", w, waiting)
	}
	if err := h.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(rec.of(EventWaiting)) != 1 || len(rec.of(EventResumed)) != 1 {
		t.Fatalf("events: %d waiting, %d resumed", len(rec.of(EventWaiting)), len(rec.of(EventResumed)))
	}
}

func TestWaitReasons(t *testing.T) {
	t.Run("day", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			s := start(t, Config{Classes: textImage(60, 100, 10, 2, 2), Keys: keys(1), Observer: rec})
			for range 2 {
				if err := s.Do(t.Context(), Job{Class: "image", Work: ok}); err != nil {
					t.Fatal(err)
				}
			}
			h, err := s.Submit(t.Context(), Job{Class: "image", Work: ok})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
			w, waiting := h.Waiting()
			if !waiting || w.Kind != WaitDay || !w.Until.Equal(midnight) ||
				w.Reason != "image quota of all projects used for today, resets "+midnight.In(bucket.Pacific).Format("2006-01-02 15:04 MST") {
				t.Fatalf("Waiting = %+v, %v", w, waiting)
			}
			if cw := classWaitOf(s, "image"); cw == nil || cw.Kind != WaitDay {
				t.Fatalf("Summary wait = %+v", cw)
			}
			if cw := classWaitOf(s, "text"); cw != nil {
				t.Fatalf("text waits too: %+v", cw)
			}
			if ev := rec.of(EventWaiting); len(ev) != 1 || ev[0].Class != "image" || !strings.Contains(ev[0].Reason, "used for today") {
				t.Fatalf("waiting events = %+v", ev)
			}
			if err := h.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			if !time.Now().Equal(midnight) {
				t.Fatalf("started at %v, want the midnight %v", time.Now(), midnight)
			}
			if ev := rec.of(EventResumed); len(ev) != 1 || ev[0].Waited <= 0 {
				t.Fatalf("resumed events = %+v", ev)
			}
			if cw := classWaitOf(s, "image"); cw != nil {
				t.Fatalf("still waiting after it started: %+v", cw)
			}
			if _, waiting := h.Waiting(); waiting {
				t.Fatal("a finished job waits")
			}
		})
	})
	t.Run("cooldown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			s := start(t, Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(1), Observer: rec})
			tries := 0
			h, err := s.Submit(t.Context(), Job{Class: "text", Work: func(context.Context, Lease) error {
				if tries++; tries == 1 {
					return &RateLimitedError{Scope: ScopeMinute, RetryAfter: 20 * time.Second}
				}
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			waitsThenRuns(t, h, rec, WaitCooldown, "cooldown after 429, next slot in 20s")
		})
	})
	t.Run("rpm", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			s := start(t, Config{Classes: textImage(1, 100, 10, 10, 2), Keys: keys(1), Observer: rec})
			if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
				t.Fatal(err)
			}
			h, err := s.Submit(t.Context(), Job{Class: "text", Work: ok})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(12 * time.Second) // in the bubble: the wait is 48s away now
			waitsThenRuns(t, h, rec, WaitRPM, "RPM window, next slot in 48s")
		})
	})
	// A lane with room in its RPM window (1 of 60 used) but not in its
	// TPM window waits for TPM, and says so (it said "rpm", "RPM window").
	t.Run("tpm", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			s := start(t, Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100, TPM: 1000}, Concurrency: 2}},
				Keys: keys(1), Observer: rec})
			if err := s.Do(t.Context(), Job{Class: "text", Tokens: 900, Work: ok}); err != nil {
				t.Fatal(err)
			}
			h, err := s.Submit(t.Context(), Job{Class: "text", Tokens: 900, Work: ok})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(12 * time.Second) // in the bubble: the wait is 48s away now
			if cw := classWaitOf(s, "text"); cw == nil || cw.Kind != WaitTPM || cw.Reason != "TPM window, next slot in 48s" {
				t.Fatalf("Summary wait = %+v", cw)
			}
			waitsThenRuns(t, h, rec, WaitTPM, "TPM window, next slot in 48s")
		})
	})
	t.Run("short waits are not reported", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			s := start(t, Config{Classes: textImage(60, 1000, 10, 10, 2), Keys: keys(1), Observer: rec})
			for range 20 {
				if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(rec.of(EventWaiting)); n != 0 {
				t.Fatalf("%d waiting events for 1 s pacing", n)
			}
		})
	})
	t.Run("protected", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := start(t, Config{Classes: textImage(60, 10, 10, 10, 2), Keys: keys(1), Critical: 0.5})
			for range 5 {
				if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
					t.Fatal(err)
				}
			}
			h, err := s.Submit(t.Context(), Job{Class: "text", Work: ok})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			w, waiting := h.Waiting()
			if !waiting || w.Kind != WaitProtected || !strings.HasPrefix(w.Reason, "daily protection: text has used its critical share") {
				t.Fatalf("Waiting = %+v, %v", w, waiting)
			}
			if err := s.Do(t.Context(), Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
				t.Fatal(err)
			}
			// Do returns when the high job's work is done, maybe before the
			// dispatcher has looked at the queue again (the class's wait is
			// cleared while a job starts): let it settle.
			synctest.Wait()
			if _, waiting := h.Waiting(); !waiting {
				t.Fatal("a high job ran: the normal one must still wait")
			}
		})
	})
}

// OnSubmit hands the caller every Handle its context queues.
func TestOnSubmit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{Classes: textImage(60, 100, 10, 10, 2), Keys: keys(1)})
		var got []*Handle
		ctx := OnSubmit(t.Context(), func(h *Handle) { got = append(got, h) })
		if err := s.Do(ctx, Job{Class: "text", Work: ok}); err != nil {
			t.Fatal(err)
		}
		if err := s.Do(t.Context(), Job{Class: "text", Work: ok}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Class() != "text" || got[0].State() != StateDone {
			t.Fatalf("handles = %v", got)
		}
	})
}

// TestShortDuration: a wait under a second reads "<1s", never "0s".
func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Millisecond: "<1s", 999 * time.Millisecond: "<1s", time.Second: "1s",
		1499 * time.Millisecond: "1s", 20*time.Second + 600*time.Millisecond: "21s", 65 * time.Second: "1m5s",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
