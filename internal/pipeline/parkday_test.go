package pipeline

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// TestParkedWaitBecomesDay: a job parked under daily protection says
// "protected"; once the day is spent (a high-priority job took the rest),
// its wait says "day", in Status and in the summary's class wait, as a job
// parked then would. newcomer11: the parked jobs kept "daily protection:
// ... only high priority starts" until a restart.
func TestParkedWaitBecomesDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, parkSetup(e, store.NewMemory(), t.TempDir()))
		normal, err := h.p.Submit(t.Context(), request(4)) // 3 made, the 4th waits for the day, protected
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		kind := func(when, want string) {
			t.Helper()
			s, err := h.p.Status(t.Context(), normal)
			if err != nil || s.Wait == nil || s.Wait.Kind != want || !s.Wait.Until.Equal(midnight) {
				t.Fatalf("%s: the normal job %+v, %v; want its wait %s until midnight", when, s.Wait, err, want)
			}
			for _, cs := range h.p.WithParked(h.sched.Summary()).Classes {
				if cs.Name == "image" && (cs.Wait == nil || cs.Wait.Kind != want) {
					t.Errorf("%s: the image class's wait %+v, want %s", when, cs.Wait, want)
				}
			}
		}
		kind("parked", scheduler.WaitProtected)
		if n := h.p.inProgress.Load(); n != 0 {
			t.Fatalf("%d jobs hold a slot, want the normal one parked", n)
		}
		r := request(3)
		r.Priority = "high"
		high, err := h.p.Submit(t.Context(), r) // the day's last 3 units
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if s, err := h.p.Wait(ctx, high); err != nil || s.State != JobDone {
			t.Fatalf("the high job: %+v, %v", s, err)
		}
		time.Sleep(2 * parkEvery)
		synctest.Wait()
		kind("the day spent", scheduler.WaitDay)
	})
}
