package pipeline

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// parkSetup: max_active 2, an image day of 6 (2 per project) of which
// daily protection keeps the last half for high priority: 3 normal images
// a day.
func parkSetup(e *emulator.Emulator, st store.Store, dir string) setup {
	return setup{emu: e, st: st, dir: dir, maxActive: 2, imageLimits: bucket.Limits{RPM: 18, RPD: 2}, critical: 0.5}
}

// TestParkedForTheDay (F-j): under daily protection, normal slideshows that
// wait for the next Pacific day give up their max_active slots: a
// high-priority one submitted then starts at once and ends the same day
// (it stayed queued behind them until midnight, "queued" with no reason).
// The parked ones stay stored, show their wait, are queued again when the
// quota comes back (the next day), by priority, survive a restart, and
// end with every image made once.
func TestParkedForTheDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		st, dir := store.NewMemory(), t.TempDir()
		h := newHarness(t, parkSetup(e, st, dir))
		var normal []string
		for _, n := range []int{4, 4, 1} {
			id, err := h.p.Submit(t.Context(), request(n))
			if err != nil {
				t.Fatal(err)
			}
			normal = append(normal, id)
		}
		time.Sleep(time.Minute) // 3 images made; the class is critical
		synctest.Wait()
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		for _, id := range normal {
			s, err := h.p.Status(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if s.State.Final() || s.Wait == nil || s.Wait.Kind != scheduler.WaitProtected || !s.Wait.Until.Equal(midnight) ||
				!strings.HasPrefix(s.Wait.Reason, "daily protection: image has used its critical share") {
				t.Fatalf("normal job %s: %+v, wait %+v; want it waiting for the day, protected", id, s, s.Wait)
			}
			for _, is := range s.Images {
				if is.State == ImageRunning {
					t.Errorf("normal job %s: image %d running while parked", id, is.N)
				}
			}
		}
		if n := h.p.inProgress.Load(); n != 0 {
			t.Errorf("%d jobs hold a max_active slot while every one waits for the day, want 0", n)
		}
		// Their calls left the scheduler's queue: the summary the daemon
		// serves (GET /v1/usage) has their wait on the image class.
		for _, cs := range h.p.WithParked(h.sched.Summary()).Classes {
			if cs.Name == "image" && (cs.Wait == nil || cs.Wait.Kind != scheduler.WaitProtected) {
				t.Errorf("the image class's wait with the parked jobs: %+v, want protected", cs.Wait)
			}
		}
		r := request(1)
		r.Priority = "high"
		high, err := h.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		s, err := h.p.Wait(ctx, high)
		cancel()
		if err != nil || s.State != JobDone {
			t.Fatalf("the high job a minute after its submit: %+v, %v; want done (it waited for a slot until midnight)", s, err)
		}

		// A restart while parked: nothing lost, they park again.
		h.stop()
		h = newHarness(t, parkSetup(e, st, dir))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		for _, id := range normal {
			if s, err := h.p.Status(t.Context(), id); err != nil || s.Wait == nil || s.Wait.Kind != scheduler.WaitProtected {
				t.Fatalf("after the restart, job %s: %+v, %v; want it parked again", id, s, err)
			}
		}
		if n := h.p.inProgress.Load(); n != 0 {
			t.Errorf("after the restart, %d jobs hold a slot, want 0", n)
		}
		// Three normal images a day: the nine take three days.
		ctx, cancel = context.WithTimeout(t.Context(), 96*time.Hour)
		defer cancel()
		for _, id := range normal {
			s, err := h.p.Wait(ctx, id)
			if err != nil || s.State != JobDone {
				t.Fatalf("job %s: %+v, %v; want done", id, s, err)
			}
			if s.Wait != nil {
				t.Errorf("job %s done with a wait %+v", id, s.Wait)
			}
		}
		if !time.Now().After(midnight) {
			t.Errorf("the normal jobs ended at %v, before the day turned (%v)", time.Now(), midnight)
		}
		if got := served(e, emulator.DefaultImageModel); got != 10 {
			t.Errorf("%d images made, want 10 (4 + 4 + 1 normal, 1 high): each once", got)
		}
	})
}
