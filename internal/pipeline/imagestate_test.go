package pipeline

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// imageStates counts a status's images by state.
func imageStates(st Status) map[ImageState]int {
	n := make(map[ImageState]int)
	for _, is := range st.Images {
		n[is.State]++
	}
	return n
}

// An image is running only while its call is in flight: one whose call
// waits in the scheduler's queue for quota is pending (newcomer10 N10-3:
// every image of a job read "running" while none was sent, and the job's
// wait said nothing runs), in Status and in Jobs alike.
func TestImageRunningOnlyWhenDispatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1, Faults: emulator.Faults{
			Latency: func(model string, _ *rand.Rand) time.Duration {
				if model == emulator.DefaultImageModel {
					return 10 * time.Second
				}
				return 0
			}}})
		if err != nil {
			t.Fatal(err)
		}
		// 3 lanes of 1 RPM: 3 images go at once, the other 3 wait a minute.
		h := newHarness(t, setup{emu: e, imageLimits: bucket.Limits{RPM: 1, RPD: 240}})
		id, err := h.p.Submit(t.Context(), request(6))
		if err != nil {
			t.Fatal(err)
		}
		check := func(when string, want map[ImageState]int, waiting bool) {
			t.Helper()
			synctest.Wait()
			st, err := h.p.Status(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			got := imageStates(st)
			if len(got) != len(want) || got[ImageRunning] != want[ImageRunning] || got[ImagePending] != want[ImagePending] ||
				got[ImageDone] != want[ImageDone] {
				t.Errorf("%s: images %v, want %v", when, got, want)
			}
			if (st.Wait != nil) != waiting {
				t.Errorf("%s: wait %+v, want one: %v", when, st.Wait, waiting)
			}
			pg, err := h.p.Jobs(t.Context(), Filter{})
			if err != nil || len(pg.Jobs) != 1 {
				t.Fatalf("Jobs = %+v, %v", pg, err)
			}
			if got := imageStates(pg.Jobs[0]); got[ImageRunning] != want[ImageRunning] || got[ImagePending] != want[ImagePending] {
				t.Errorf("%s: Jobs' images %v, want %v as in Status", when, got, want)
			}
		}
		time.Sleep(time.Second) // the analysis is made, 3 images in flight
		check("3 calls in flight", map[ImageState]int{ImageRunning: 3, ImagePending: 3}, false)
		time.Sleep(15 * time.Second) // those 3 done; the others wait for the RPM windows
		check("3 done, 3 queued for quota", map[ImageState]int{ImageDone: 3, ImagePending: 3}, true)
		if st, _ := h.p.Status(t.Context(), id); st.Wait != nil && st.Wait.Kind != scheduler.WaitRPM {
			t.Errorf("wait %+v, want rpm", st.Wait)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		if st, err := h.p.Wait(ctx, id); err != nil || st.State != JobDone || imageStates(st)[ImageDone] != 6 {
			t.Fatalf("job = %+v, %v", st, err)
		}
	})
}

// A record stored with an image running (by a process killed while the
// call was in flight, or by a version that stored "running" before the
// scheduler sent the call) reads pending: nothing runs it until the job is
// worked again, and then only once its call is sent.
func TestStoredRunningImageReadsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{noRun: true})
		id, err := h.p.Submit(t.Context(), request(2))
		if err != nil {
			t.Fatal(err)
		}
		r, err := h.p.load(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		r.State = JobGenerating
		r.ImageStates[0].State = ImageRunning
		if err := h.p.put(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		for name, get := range map[string]func() (Status, error){
			"Status":       func() (Status, error) { return h.p.Status(t.Context(), id) },
			"StoredStatus": func() (Status, error) { return StoredStatus(t.Context(), h.st, id) },
			"StoredJobs": func() (Status, error) {
				pg, err := StoredJobs(t.Context(), h.st, Filter{})
				if err != nil || len(pg.Jobs) != 1 {
					t.Fatalf("StoredJobs = %+v, %v", pg, err)
				}
				return pg.Jobs[0], nil
			},
		} {
			st, err := get()
			if err != nil {
				t.Fatal(err)
			}
			if got := imageStates(st); got[ImagePending] != 2 {
				t.Errorf("%s: images %v, want both pending", name, got)
			}
		}
	})
}
