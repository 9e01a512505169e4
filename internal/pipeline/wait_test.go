package pipeline

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// A job whose images wait for tomorrow's quota says so in its status, with
// the reset time, and goes on at the Pacific midnight.
func TestStatusShowsQuotaWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		models := emulator.DefaultModels()
		models[emulator.DefaultImageModel] = emulator.Limits{RPM: 20, RPD: 1} // one image per project and day
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1, Models: models})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, setup{emu: e})
		id, err := h.p.Submit(t.Context(), request(5))
		if err != nil {
			t.Fatal(err)
		}
		// Three images are made, one per project; each project's next one
		// gets a per-day 429 (a few seconds apart: RPM pacing), then the
		// last two wait for the day.
		time.Sleep(time.Minute)
		synctest.Wait()
		st, err := h.p.Status(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
		if st.State != JobGenerating || st.Wait == nil || st.Wait.Kind != scheduler.WaitDay || !st.Wait.Until.Equal(midnight) ||
			!strings.HasPrefix(st.Wait.Reason, "image quota of all projects used for today, resets ") {
			t.Fatalf("status = %+v, wait %+v", st, st.Wait)
		}
		pg, err := h.p.Jobs(t.Context(), Filter{})
		if err != nil || len(pg.Jobs) != 1 || pg.Jobs[0].Wait == nil {
			t.Fatalf("Jobs = %+v, %v: want the wait there too", pg, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 24*time.Hour)
		defer cancel()
		if st, err := h.p.Wait(ctx, id); err != nil || st.State != JobDone || st.Wait != nil {
			t.Fatalf("job = %+v, %v", st, err)
		}
		if time.Now().Before(midnight) {
			t.Fatalf("done at %v, before the reset %v", time.Now(), midnight)
		}
	})
}

// A job queued behind max_active jobs in progress says so in its wait
// (kind slot), also a high-priority one: it showed "queued" with no
// reason. (A job in progress that waits for the next day gives its slot
// up instead: TestParkedForTheDay.)
func TestStatusShowsSlotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{maxActive: 1})
		first, err := h.p.Submit(t.Context(), request(12)) // paced: 4 images a lane, 3.3 s apart
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		r := request(1)
		r.Priority = "high"
		high, err := h.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		st, err := h.p.Status(t.Context(), high)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != JobQueued || st.Wait == nil || st.Wait.Kind != WaitSlot || st.Wait.Class != "" || !st.Wait.Until.IsZero() ||
			st.Wait.Reason != "max_active: all 1 slots taken by slideshows in progress; starts when one ends, highest priority first" {
			t.Fatalf("the high job: %+v, wait %+v; want queued, waiting for a slot", st, st.Wait)
		}
		// No class and no until in JSON (README; the class was there, "").
		if data, err := json.Marshal(st.Wait); err != nil || strings.Contains(string(data), `"class"`) || strings.Contains(string(data), `"until"`) {
			t.Errorf("the slot wait in JSON: %s, %v; want no class and no until", data, err)
		}
		if st, _ := h.p.Status(t.Context(), first); st.State.Final() || (st.Wait != nil && st.Wait.Kind != scheduler.WaitRPM) {
			t.Errorf("the first job: %s, wait %+v, want in progress, paced", st.State, st.Wait)
		}
		pg, err := h.p.Jobs(t.Context(), Filter{States: []JobState{JobQueued}})
		if err != nil || len(pg.Jobs) != 1 || pg.Jobs[0].Wait == nil || pg.Jobs[0].Wait.Kind != WaitSlot {
			t.Fatalf("Jobs = %+v, %v: want the slot wait there too", pg, err)
		}
		// Once the first job ends, the high one starts and its slot wait
		// is gone.
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		if st, err := h.p.Wait(ctx, high); err != nil || st.State != JobDone || st.Wait != nil {
			t.Fatalf("the high job = %+v, %v", st, err)
		}
		if st, _ := h.p.Status(t.Context(), first); st.State != JobDone {
			t.Errorf("the first job: %s, want done before the high one started", st.State)
		}
	})
}
