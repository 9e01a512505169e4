package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

func TestCancelQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []JobState
		h := newHarness(t, setup{noRun: true, onChange: func(s Status) { changes = append(changes, s.State) }})
		id, err := h.p.Submit(t.Context(), request(2))
		if err != nil {
			t.Fatal(err)
		}
		waited := make(chan Status, 1)
		go func() {
			st, _ := h.p.Wait(t.Context(), id)
			waited <- st
		}()
		synctest.Wait()
		st, err := h.p.Cancel(t.Context(), id)
		if err != nil || st.State != JobCanceled || st.Error == "" {
			t.Fatalf("Cancel = %+v, %v; want canceled", st, err)
		}
		if got := <-waited; got.State != JobCanceled {
			t.Fatalf("Wait = %+v, want it to end canceled", got)
		}
		if changes[len(changes)-1] != JobCanceled {
			t.Fatalf("OnChange saw %v, want canceled last", changes)
		}
		if _, err := h.p.Cancel(t.Context(), id); !errors.Is(err, ErrFinal) {
			t.Fatalf("second Cancel = %v, want ErrFinal", err)
		}
		if _, err := h.p.Cancel(t.Context(), strings.Repeat("0", 24)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Cancel(unknown) = %v, want ErrNotFound", err)
		}
		// Run starts: the canceled job never runs; a retry reopens it.
		h2 := newHarness(t, setup{emu: h.e, st: h.st, dir: h.dir})
		h.stop()
		synctest.Wait()
		if n := served(h.e, "gemini-3-flash-preview"); n != 0 {
			t.Fatalf("a canceled job was analysed (%d calls)", n)
		}
		if err := h2.p.Retry(t.Context(), id); err != nil {
			t.Fatalf("Retry of a canceled job: %v", err)
		}
		if st := h2.wait(id); st.State != JobDone {
			t.Fatalf("retried job = %+v", st)
		}
	})
}

// A running job's calls are cancelled: the requests already sent count
// against the quota, the one still queued in the scheduler never leaves.
func TestCancelRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		generating := make(chan struct{}, 1)
		h := newHarness(t, setup{onChange: func(s Status) {
			if s.State == JobGenerating {
				select {
				case generating <- struct{}{}:
				default:
				}
			}
		}})
		if err := h.e.SetFaults(emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
			if strings.Contains(model, "image") {
				return 30 * time.Second
			}
			return 0
		}}); err != nil {
			t.Fatal(err)
		}
		id, err := h.p.Submit(t.Context(), request(4))
		if err != nil {
			t.Fatal(err)
		}
		<-generating
		synctest.Wait() // images 1-3 are at the emulator, one per lane; image 4 waits for RPM pacing
		st, err := h.p.Cancel(t.Context(), id)
		if err != nil || st.State != JobCanceled {
			t.Fatalf("Cancel = %+v, %v", st, err)
		}
		if st.Analysis == nil || countImages(st, ImagePending) != 4 {
			t.Fatalf("canceled job = %+v: want its analysis kept and every image pending", st)
		}
		synctest.Wait()
		var imageDay int
		for _, c := range h.sched.Summary().Classes {
			if c.Name == "image" {
				imageDay = c.DayUsed
			}
		}
		sent := 0
		for k, n := range h.e.Stats().Requests {
			if strings.Contains(k.Model, "image") {
				sent += n
			}
		}
		if sent != 3 || imageDay != 3 {
			t.Fatalf("image units counted = %d, requests the emulator saw = %d; want 3 and 3: the sent requests count, the queued one never leaves",
				imageDay, sent)
		}
		files, _ := filepath.Glob(filepath.Join(h.dir, "jobs", id, "image-*"))
		if len(files) != 0 {
			t.Fatalf("image files of a canceled job: %v", files)
		}
		if _, err := os.Stat(filepath.Join(h.dir, "jobs", id, AnalysisFile)); err != nil {
			t.Fatalf("analysis file: %v", err)
		}
		// Canceled is final: a restart does not resume it.
		h.stop()
		h2 := newHarness(t, setup{emu: h.e, st: h.st, dir: h.dir})
		synctest.Wait()
		if st, _ := h2.p.Status(t.Context(), id); st.State != JobCanceled {
			t.Fatalf("after restart: %+v", st)
		}
	})
}

func TestJobsFilterAndPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{noRun: true})
		var ids []string
		start := time.Now()
		for i := range 7 {
			r := request(1)
			r.Priority = []string{"low", "normal", "high"}[i%3]
			id, err := h.p.Submit(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			time.Sleep(time.Second) // distinct creation times, in a bubble
		}
		if _, err := h.p.Cancel(t.Context(), ids[1]); err != nil {
			t.Fatal(err)
		}
		// Pages of 3, newest first, cover every job once.
		var got []string
		f := Filter{Limit: 3}
		for {
			pg, err := h.p.Jobs(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range pg.Jobs {
				got = append(got, st.ID)
			}
			if pg.Next == "" {
				break
			}
			f.Cursor = pg.Next
		}
		if len(got) != 7 {
			t.Fatalf("paged ids = %v", got)
		}
		for i, id := range got {
			if id != ids[6-i] {
				t.Fatalf("page order = %v, want newest first %v", got, ids)
			}
		}
		check := func(f Filter, want ...string) {
			t.Helper()
			pg, err := h.p.Jobs(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, st := range pg.Jobs {
				got = append(got, st.ID)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("Jobs(%+v) = %v, want %v", f, got, want)
			}
		}
		check(Filter{States: []JobState{JobCanceled}}, ids[1])
		check(Filter{Priority: "high"}, ids[5], ids[2])
		check(Filter{Since: start.Add(4 * time.Second)}, ids[6], ids[5], ids[4])
		check(Filter{States: []JobState{JobQueued}, Priority: "normal"}, ids[4])
		for _, bad := range []Filter{{States: []JobState{"lost"}}, {Priority: "urgent"}, {Cursor: "xyz"}, {Limit: -1}} {
			var ie *InputError
			if _, err := h.p.Jobs(t.Context(), bad); !errors.As(err, &ie) {
				t.Fatalf("Jobs(%+v) = %v, want an *InputError", bad, err)
			}
		}
	})
}

// A job that ended cannot be canceled.
func TestCancelDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{})
		id, err := h.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		st := h.wait(id)
		if st.State != JobDone {
			t.Fatalf("job = %+v", st)
		}
		if _, err := h.p.Cancel(context.Background(), id); !errors.Is(err, ErrFinal) {
			t.Fatalf("Cancel of a done job = %v, want ErrFinal", err)
		}
	})
}
