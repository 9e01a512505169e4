package gemini

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/scheduler"
)

// The late-write tests (TestLateWritesNoMinute429, TestLateFlushNoMinute429,
// TestLateWriteAcrossMidnight) share one set-up, the lateWriteRig: the real
// genai client and scheduler against the emulator at the same limits, with
// a transport of the test's that writes some requests late.

// lateWriteRig is the emulator and the scheduler at equal limits on one
// text lane: key "k1" (secret "secret-1") of project "p1", model
// DefaultTextModel, the text class's RPM and RPD as given to
// newLateWriteRig, its window margin 250 ms, the default burst. Build it
// inside a synctest bubble; the scheduler runs until the test's cleanup.
// The embedded stack's client (on the emulator's own transport) is not the
// one under test: make that with client.
type lateWriteRig struct {
	*stack
	lane emulator.LaneKey // the one lane: project p1, DefaultTextModel
}

// newLateWriteRig starts a lateWriteRig whose emulator and scheduler both
// allow rpm requests a minute and rpd a Pacific day on the lane.
func newLateWriteRig(t *testing.T, rpm, rpd int) *lateWriteRig {
	t.Helper()
	st := newStack(t, emulator.Config{Models: map[string]emulator.Limits{DefaultTextModel: {RPM: rpm, RPD: rpd}}},
		[]stackKey{{"k1", "secret-1", "p1", true}}, func(cfg *scheduler.Config) {
			cfg.Classes[0].Limits = bucket.Limits{RPM: rpm, RPD: rpd}
			cfg.Classes[0].WindowMargin = 250 * time.Millisecond
		})
	return &lateWriteRig{stack: st, lane: emulator.LaneKey{Project: "p1", Model: DefaultTextModel}}
}

// client returns a Client with the rig's key and scheduler whose requests
// go through rt (a late-writing transport over the emulator, e.g. one
// wrapping r.emu.Transport() or serving r.emu as an http.Handler).
func (r *lateWriteRig) client(t *testing.T, rt http.RoundTripper) *Client {
	t.Helper()
	c, err := New(t.Context(), Config{Keys: []Key{{ID: "k1", Secret: "secret-1"}}, BaseURL: testBase,
		HTTPClient: &http.Client{Transport: rt}, Scheduler: r.sched})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// minuteCounts returns the emulator's per-minute 429s on the lane so far
// and the most requests that arrived on it in any sliding 60 s window.
func (r *lateWriteRig) minuteCounts() (n429, maxWindow int) {
	stats := r.emu.Stats()
	return stats.RateLimitedPerMinute[r.lane], stats.MaxSentWindow[r.lane]
}

// startAnalyses starts n AnalyzeSlideshow calls of testSlideshow on c, each
// in a goroutine of wg; a call's error fails the test (t.Error). Wait on wg
// for them.
func startAnalyses(t *testing.T, wg *sync.WaitGroup, c *Client, n int) {
	for range n {
		wg.Go(func() {
			if _, err := c.AnalyzeSlideshow(t.Context(), testSlideshow()); err != nil {
				t.Error(err)
			}
		})
	}
}

// oldAndNew runs body as two subtests: fixed true under newName (the
// code under test), then false under oldName (the test's stand-in for the
// old code, where the test checks it shows the fault).
func oldAndNew(t *testing.T, newName, oldName string, body func(t *testing.T, fixed bool)) {
	for _, fixed := range []bool{true, false} {
		name := newName
		if !fixed {
			name = oldName
		}
		t.Run(name, func(t *testing.T) { body(t, fixed) })
	}
}
