package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/store"
)

// deleteOrderStore records, for each DeleteJob, whether the job's directory
// still existed: the record must go first.
type deleteOrderStore struct {
	store.Store
	jobsDir string

	mu      sync.Mutex
	dirWhen map[string]bool // id -> directory present at DeleteJob
}

func (s *deleteOrderStore) DeleteJob(ctx context.Context, id string) error {
	_, err := os.Stat(filepath.Join(s.jobsDir, id))
	s.mu.Lock()
	s.dirWhen[id] = err == nil
	s.mu.Unlock()
	return s.Store.DeleteJob(ctx, id)
}

// nextExpiry returns when Run's retention timer fires (zero: not set).
func (h *harness) nextExpiry() time.Time {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	return h.p.nextExpiry
}

// present reports whether job id's record and directory exist, failing
// the test when only one of them does.
func (h *harness) present(id string) bool {
	h.t.Helper()
	_, serr := h.p.Status(h.t.Context(), id)
	if serr != nil && !errors.Is(serr, ErrNotFound) {
		h.t.Fatalf("Status(%s): %v", id, serr)
	}
	_, derr := os.Stat(filepath.Join(h.dir, "jobs", id))
	if derr != nil && !os.IsNotExist(derr) {
		h.t.Fatal(derr)
	}
	if (serr == nil) != (derr == nil) {
		h.t.Fatalf("job %s: status error %v, directory error %v: want both or neither", id, serr, derr)
	}
	return serr == nil
}

// TestRetentionDeletesEndedJobs: a done or failed job is kept until exactly
// UpdatedAt+Retention, then its record goes, then its directory.
func TestRetentionDeletesEndedJobs(t *testing.T) {
	const retention = 6 * time.Hour
	for _, tt := range []struct {
		name   string
		faults emulator.Faults
		want   JobState
	}{
		{"done", emulator.Faults{}, JobDone},
		{"failed", emulator.Faults{NoImage: 1}, JobFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1, Faults: tt.faults})
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				st := &deleteOrderStore{Store: store.NewMemory(), jobsDir: filepath.Join(dir, "jobs"), dirWhen: map[string]bool{}}
				h := newHarness(t, setup{emu: e, st: st, dir: dir, retention: retention})
				if !h.nextExpiry().IsZero() {
					t.Errorf("timer set to %v with no job", h.nextExpiry())
				}
				id, err := h.p.Submit(t.Context(), request(2))
				if err != nil {
					t.Fatal(err)
				}
				end := h.wait(id)
				if end.State != tt.want {
					t.Fatalf("state %s, want %s", end.State, tt.want)
				}
				synctest.Wait() // Run has taken the end into account
				at := end.UpdatedAt.Add(retention)
				if got := h.nextExpiry(); !got.Equal(at) {
					t.Errorf("timer set to %v, want %v (UpdatedAt+Retention)", got, at)
				}

				time.Sleep(time.Until(at) - time.Nanosecond)
				synctest.Wait()
				if !h.present(id) {
					t.Fatalf("job deleted at %v, a nanosecond before its retention ends", time.Now())
				}
				if tt.want == JobDone {
					if _, err := h.p.ImagePath(t.Context(), id, 1); err != nil {
						t.Errorf("ImagePath before expiry: %v", err)
					}
				}

				time.Sleep(time.Nanosecond)
				synctest.Wait()
				if !time.Now().Equal(at) {
					t.Fatalf("now %v, want %v", time.Now(), at)
				}
				if h.present(id) {
					t.Fatalf("job still stored at UpdatedAt+Retention")
				}
				if _, err := h.p.Status(t.Context(), id); !errors.Is(err, ErrNotFound) {
					t.Errorf("Status after expiry: %v, want ErrNotFound", err)
				}
				if _, err := h.p.ImagePath(t.Context(), id, 1); !errors.Is(err, ErrNotFound) {
					t.Errorf("ImagePath after expiry: %v, want ErrNotFound", err)
				}
				if err := h.p.Retry(t.Context(), id); !errors.Is(err, ErrNotFound) {
					t.Errorf("Retry after expiry: %v, want ErrNotFound", err)
				}
				st.mu.Lock()
				dirThen, called := st.dirWhen[id]
				st.mu.Unlock()
				if !called || !dirThen {
					t.Errorf("DeleteJob called %v, directory present then %v: want the record deleted first", called, dirThen)
				}
				if got := h.nextExpiry(); !got.IsZero() {
					t.Errorf("timer set to %v with nothing left to expire", got)
				}
				list, err := h.p.List(t.Context())
				if err != nil || len(list) != 0 {
					t.Errorf("List after expiry: %v, %v", list, err)
				}
			})
		})
	}
}

// TestRetentionSkipsRetriedJob: a failed job reopened by Retry is not final:
// its old expiry passes while it runs again and it stays; once it ends
// again, its retention counts from that end.
func TestRetentionSkipsRetriedJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const retention = time.Hour
		e, err := emulator.New(emulator.Config{Keys: testKeys, Seed: 1, Faults: emulator.Faults{NoImage: 1}})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, setup{emu: e, retention: retention})
		id, err := h.p.Submit(t.Context(), request(2))
		if err != nil {
			t.Fatal(err)
		}
		failed := h.wait(id)
		if failed.State != JobFailed {
			t.Fatalf("state %s, want failed", failed.State)
		}
		if err := e.SetFaults(emulator.Faults{Latency: emulator.UniformLatency(90*time.Minute, 90*time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := h.p.Retry(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(75 * time.Minute) // past the failure's expiry, the images still running
		synctest.Wait()
		if !h.present(id) {
			t.Fatal("a retried job in progress was deleted")
		}
		mid, err := h.p.Status(t.Context(), id)
		if err != nil || mid.State.Final() || mid.Attempts != 2 {
			t.Fatalf("status %+v, %v: want in progress, attempt 2", mid, err)
		}
		if got := h.nextExpiry(); !got.IsZero() {
			t.Errorf("timer set to %v while no job is final", got)
		}
		done := h.wait(id)
		if done.State != JobDone {
			t.Fatalf("state %s after retry, want done", done.State)
		}
		synctest.Wait()
		at := done.UpdatedAt.Add(retention)
		if got := h.nextExpiry(); !got.Equal(at) {
			t.Errorf("timer set to %v, want %v", got, at)
		}
		time.Sleep(time.Until(at) - time.Nanosecond)
		synctest.Wait()
		if !h.present(id) {
			t.Fatal("job deleted before its second end's retention ended")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if h.present(id) {
			t.Fatal("job kept past its second end's retention")
		}
	})
}

// TestNoRetentionKeepsJobs: with Retention 0 nothing is deleted, no timer
// is set, and directories without a record stay.
func TestNoRetentionKeepsJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, setup{})
		orphan := filepath.Join(h.dir, "jobs", "0123456789abcdef01234567")
		if err := os.MkdirAll(orphan, 0o700); err != nil {
			t.Fatal(err)
		}
		id, err := h.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		if st := h.wait(id); st.State != JobDone {
			t.Fatalf("state %s", st.State)
		}
		synctest.Wait()
		if got := h.nextExpiry(); !got.IsZero() {
			t.Errorf("timer set to %v with Retention 0", got)
		}
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if !h.present(id) {
			t.Error("job deleted with Retention 0")
		}
		if _, err := h.p.ImagePath(t.Context(), id, 1); err != nil {
			t.Errorf("ImagePath: %v", err)
		}
		if _, err := os.Stat(orphan); err != nil {
			t.Errorf("directory without record removed with Retention 0: %v", err)
		}
	})
}

// TestRetentionAtStart: a Run with Retention set deletes at once the jobs
// that expired while nothing ran, removes the job directories without a
// record (a crash between a record's deletion and its files'), and keeps
// the rest; jobs still within their retention get the timer.
func TestRetentionAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		dir := t.TempDir()
		h1 := newHarness(t, setup{st: st, dir: dir})
		old, err := h1.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		h1.wait(old)
		h1.stop()

		time.Sleep(48 * time.Hour)
		h2 := newHarness(t, setup{st: st, dir: dir})
		recent, err := h2.p.Submit(t.Context(), request(1))
		if err != nil {
			t.Fatal(err)
		}
		recentEnd := h2.wait(recent)
		h2.stop()

		jobs := filepath.Join(dir, "jobs")
		orphan := filepath.Join(jobs, "0123456789abcdef01234567")
		if err := os.MkdirAll(orphan, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(orphan, "image-01.png"), tinyPNG(t), 0o600); err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(jobs, "not-a-job")
		if err := os.MkdirAll(other, 0o700); err != nil {
			t.Fatal(err)
		}

		h3 := newHarness(t, setup{st: st, dir: dir, retention: 24 * time.Hour})
		synctest.Wait()
		if h3.present(old) {
			t.Error("a job ended 48h ago kept with a 24h retention")
		}
		if !h3.present(recent) {
			t.Error("a job ended just now deleted")
		}
		if _, err := os.Stat(orphan); !os.IsNotExist(err) {
			t.Errorf("orphan job directory: %v, want removed", err)
		}
		if _, err := os.Stat(other); err != nil {
			t.Errorf("a directory that is not a job's was touched: %v", err)
		}
		if got, want := h3.nextExpiry(), recentEnd.UpdatedAt.Add(24*time.Hour); !got.Equal(want) {
			t.Errorf("timer set to %v, want %v", got, want)
		}
	})
}

// TestRetentionValidate: a negative Retention is refused, naming the field.
func TestRetentionValidate(t *testing.T) {
	h := newHarness(t, setup{noRun: true})
	cfg := h.p.cfg
	cfg.Retention = -time.Second
	if err := cfg.Validate(); err == nil || err.Error() != "pipeline: retention: -1s: must be >= 0 (0 keeps jobs for ever)" {
		t.Errorf("Validate: %v", err)
	}
}

// TestRetentionHold: a keyed Submit hands back a job an earlier run
// finished, already past its retention (the batch run again). Held before
// Run starts, it survives Run's start-up sweep and stays readable; released,
// it is deleted at once. A job that ends while held and passes its
// retention meanwhile is kept until released, then deleted. (Without Hold,
// the start-up sweep deleted the first one between Submit and Wait: every
// other run of the same batch failed with "not found".)
func TestRetentionHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const retention = time.Hour
		st, dir := store.NewMemory(), t.TempDir()
		r := request(1)
		r.Key = "batch entry 1"
		h1 := newHarness(t, setup{st: st, dir: dir, retention: retention})
		id, err := h1.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if s := h1.wait(id); s.State != JobDone {
			t.Fatalf("state %s", s.State)
		}
		h1.stop()
		time.Sleep(2 * retention)

		h2 := newHarness(t, setup{st: st, dir: dir, retention: retention, noRun: true})
		again, err := h2.p.Submit(t.Context(), r)
		if err != nil || again != id {
			t.Fatalf("keyed Submit again: %q, %v; want %q", again, err, id)
		}
		release, err := h2.p.Hold(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- h2.p.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		synctest.Wait()
		if !h2.present(id) {
			t.Fatal("a held job expired before Run started was deleted at start")
		}
		if s := h2.wait(id); s.State != JobDone {
			t.Fatalf("held job: state %s", s.State)
		}
		if _, err := h2.p.ImagePath(t.Context(), id, 1); err != nil {
			t.Errorf("ImagePath of the held job: %v", err)
		}
		release()
		release() // a second call is a no-op
		synctest.Wait()
		if h2.present(id) {
			t.Fatal("an expired job kept after its hold was released")
		}

		// Held while it ends and passes its retention.
		r.Key = "batch entry 2"
		id2, err := h2.p.Submit(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		release2, err := h2.p.Hold(t.Context(), id2)
		if err != nil {
			t.Fatal(err)
		}
		end := h2.wait(id2)
		time.Sleep(time.Until(end.UpdatedAt.Add(retention)) + time.Minute)
		synctest.Wait()
		if !h2.present(id2) {
			t.Fatal("a held job was deleted when its retention ended")
		}
		release2()
		synctest.Wait()
		if h2.present(id2) {
			t.Fatal("a job past its retention kept after its hold was released")
		}
		if _, err := h2.p.Hold(t.Context(), id2); !errors.Is(err, ErrNotFound) {
			t.Errorf("Hold of a deleted job: %v, want ErrNotFound", err)
		}
	})
}
