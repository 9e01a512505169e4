package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/testutil"
	"github.com/slideshowd/slideshowd/scheduler"
)

// The quota across process lifetimes, judged by what the API saw: every
// test here serves the emulator as its own process (`slideshowd emulate`) on
// loopback, with limits equal to slideshowd's, and reads its stats.

// quotaLimits are the per-project limits of the emulator and slideshowd
// alike: small, so that a minute is few requests and a test that crosses a
// minute boundary takes about a minute.
type quotaLimits struct {
	text, image bucket.Limits
	textLatency string // emulate's -text-latency
	imgLatency  string // emulate's -image-latency
	projects    int
}

func (q quotaLimits) emulateArgs(seed uint64) []string {
	return []string{"-keys", strconv.Itoa(q.projects), "-projects", strconv.Itoa(q.projects),
		"-text-rpm", strconv.Itoa(q.text.RPM), "-text-rpd", strconv.Itoa(q.text.RPD),
		"-image-rpm", strconv.Itoa(q.image.RPM), "-image-rpd", strconv.Itoa(q.image.RPD),
		"-text-latency", q.textLatency, "-image-latency", q.imgLatency,
		"-seed", strconv.FormatUint(seed%(1<<62)+1, 10)}
}

// config is slideshowd's: the same limits, burst = RPM on the image class,
// no daemon listening where usage looks for one.
func (q quotaLimits) config(extra string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:1
log:
  format: json
  level: info
classes:
  text:
    rpm: %d
    rpd: %d
  image:
    rpm: %d
    rpd: %d
    burst: %d
%s`, q.text.RPM, q.text.RPD, q.image.RPM, q.image.RPD, q.image.RPM, extra)
}

func (q quotaLimits) of(model string) bucket.Limits {
	if model == emulator.DefaultImageModel {
		return q.image
	}
	return q.text
}

// start serves the emulator with q's limits (`slideshowd emulate`) and
// returns a directory with slideshowd.yaml holding config, and the
// environment that points slideshowd at the emulator and at dir/data.
func (q quotaLimits) start(t *testing.T, seed uint64, config string) (dir string, vars map[string]string) {
	t.Helper()
	_, vars = startEmulate(t, q.emulateArgs(seed)...)
	dir = t.TempDir()
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), config)
	return dir, vars
}

// imageRequests adds up the image model's requests of checkAPISaw's lanes.
func imageRequests(sent map[string]int) int {
	n := 0
	for lane, c := range sent {
		if strings.HasSuffix(lane, emulator.DefaultImageModel) {
			n += c
		}
	}
	return n
}

// quotaSeed is the first seed of the randomized tests: SLIDESHOWD_TEST_SEED
// replays a run; else random. Printed by each test.
func quotaSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("SLIDESHOWD_TEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SLIDESHOWD_TEST_SEED=%q: %v", s, err)
		}
		return n
	}
	return rand.Uint64()
}

// laneName is project/model.
func laneName(project, model string) string { return project + "/" + model }

// checkAPISaw fails the test unless the emulator saw zero 429s for a
// per-minute quota and, on every lane, at most its RPM in any 60 s window.
// It returns the requests the API saw per lane.
func checkAPISaw(t *testing.T, q quotaLimits, st emulatorStats) map[string]int {
	t.Helper()
	for _, l := range st.RateLimitedPerMinute {
		t.Errorf("lane %s: %d per-minute 429s", laneName(l.Project, l.Model), l.Count)
	}
	for _, l := range st.MaxSentWindow {
		if rpm := q.of(l.Model).RPM; l.Count > rpm {
			t.Errorf("lane %s: %d requests in a 60 s window, RPM %d", laneName(l.Project, l.Model), l.Count, rpm)
		}
	}
	sent := map[string]int{}
	for _, l := range st.Sent {
		sent[laneName(l.Project, l.Model)] = len(l.Times)
	}
	return sent
}

// storedDay reads the day counts slideshowd stored, per lane, from the data
// directory (`usage -json` asking no daemon: nothing listens on port 1).
func storedDay(t *testing.T, dir string, vars map[string]string) map[string]int {
	t.Helper()
	r := runBin(t, dir, vars, "usage", "-json", "-addr", "127.0.0.1:1")
	if r.code != 0 {
		t.Fatalf("usage -json: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var sum scheduler.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("usage -json: %v\n%s", err, r.stdout)
	}
	models := map[string]string{"text": emulator.DefaultTextModel, "image": emulator.DefaultImageModel}
	out := map[string]int{}
	for _, c := range sum.Classes {
		for _, l := range c.Lanes {
			if l.DayUsed > 0 {
				out[laneName(l.Project, models[c.Name])] = l.DayUsed
			}
		}
	}
	return out
}

// batchProc is a batch run in the background.
type batchProc struct {
	cmd    *exec.Cmd
	stdout testutil.Buffer
	stderr bytes.Buffer
	ready  chan struct{} // closed at the first progress line: signals are handled, Run started
	ended  chan struct{} // closed when stdout closes
}

func startBatch(t *testing.T, dir string, vars map[string]string, batch string) *batchProc {
	t.Helper()
	b := &batchProc{cmd: exec.Command(bin, "batch", batch, "-out", "out", "-progress", "lines"),
		ready: make(chan struct{}), ended: make(chan struct{})}
	b.cmd.Dir = dir
	b.cmd.Env = cmdEnv(t, vars)
	b.cmd.Stderr = &b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.ended)
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			b.stdout.Write([]byte(sc.Text() + "\n"))
			if !seen && strings.HasPrefix(sc.Text(), "progress:") {
				seen = true
				close(b.ready)
			}
		}
	}()
	t.Cleanup(func() { b.cmd.Process.Kill(); <-b.ended; b.cmd.Wait() })
	return b
}

// stopAfter sends sig to the batch d after it started working (its first
// progress line: d is a moment the test drew at random, not a wait for
// something to happen) and returns its exit code (-N: killed by signal N).
func (b *batchProc) stopAfter(d time.Duration, sig syscall.Signal) int {
	var tm *time.Timer
	select {
	case <-b.ready:
		tm = time.AfterFunc(d, func() { b.cmd.Process.Signal(sig) })
	case <-b.ended:
	}
	<-b.ended
	err := b.cmd.Wait()
	if tm != nil {
		tm.Stop()
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 0
}

// TestRestartsKeepTheQuota runs, for several seeds, sequences of batch
// processes on one data directory, each started at once after the last
// ended, against one emulator: a batch with more than a minute's worth of
// images (burst = RPM: the first minute goes at once), stopped at a random
// moment of its first seconds, run again at once, and so on, then run to
// the end. Sequence "kill": kill -9, then a clean stop (SIGINT), then to
// the end; sequence "clean": two clean stops, then to the end. Across all
// the processes of a sequence the emulator shows zero per-minute 429s and
// no 60 s window over RPM on any lane; the day counts slideshowd stored
// equal the requests the API saw after clean stops only, and after a kill
// are at least those and at most one chunk (1 % of RPD) per lane more.
func TestRestartsKeepTheQuota(t *testing.T) {
	q := quotaLimits{
		text:        bucket.Limits{RPM: 60, RPD: 1000},
		image:       bucket.Limits{RPM: 3, RPD: 100},
		textLatency: "50ms-300ms", imgLatency: "300ms-1s",
		projects: 2,
	}
	base := quotaSeed(t)
	for i := range 3 {
		seed := base + uint64(i)
		for _, seq := range []struct {
			name  string
			stops []syscall.Signal
		}{
			{"kill", []syscall.Signal{syscall.SIGKILL, syscall.SIGINT}},
			{"clean", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}},
		} {
			t.Run(fmt.Sprintf("%s/seed=%d", seq.name, seed), func(t *testing.T) {
				t.Parallel()
				t.Logf("seed %d (SLIDESHOWD_TEST_SEED=%d replays the first of the run)", seed, base)
				r := rand.New(rand.NewPCG(seed, 9))
				dir, vars := q.start(t, seed, q.config(""))
				// 3 slideshows of 3 images: 9 images, one and a half
				// minutes' worth over two projects at 3 RPM.
				batch := smallBatch(t, dir, 3, 3)
				kills := 0
				for n, sig := range seq.stops {
					at := time.Duration(200+r.IntN(3800)) * time.Millisecond
					b := startBatch(t, dir, vars, batch)
					code := b.stopAfter(at, sig)
					t.Logf("run %d: %v after %v: exit %d", n+1, sig, at, code)
					if sig == syscall.SIGKILL {
						kills++
					} else if code != exitSignal && code != exitOK {
						t.Fatalf("run %d stopped with SIGINT: exit %d\n%s\n%s", n+1, code, b.stdout.String(), b.stderr.String())
					}
				}
				last := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
				if last.code != 0 {
					t.Fatalf("last run: exit %d\n%s\n%s", last.code, last.stdout, last.stderr)
				}
				checkOutputs(t, filepath.Join(dir, "out"), 3, 3)

				sent := checkAPISaw(t, q, emulatorStatsAt(t, vars["GEMINI_BASE_URL"]))
				stored := storedDay(t, dir, vars)
				for lane := range mergeKeys(sent, stored) {
					model := lane[strings.Index(lane, "/")+1:]
					chunk := bucket.MaxChunk(q.of(model))
					s, a := stored[lane], sent[lane]
					t.Logf("lane %s: API saw %d, stored %d", lane, a, s)
					switch {
					case kills == 0 && s != a:
						t.Errorf("lane %s: stored %d after clean stops only, the API saw %d: want equal", lane, s, a)
					case kills > 0 && (s < a || s > a+kills*chunk):
						t.Errorf("lane %s: stored %d after %d kill -9, the API saw %d: want %d to %d", lane, s, kills, a, a, a+kills*chunk)
					}
				}
			})
		}
	}
}

func mergeKeys(ms ...map[string]int) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			out[k] = true
		}
	}
	return out
}

// TestServeUnderLoadKeepsTheQuota: the daemon with a few hundred slideshows
// submitted at once (more than a minute of images: the first minute goes at
// once, burst = RPM), killed with kill -9 at a random moment and started
// again at once, finishes every job, and the emulator shows zero
// per-minute 429s and no 60 s window over RPM on any lane.
func TestServeUnderLoadKeepsTheQuota(t *testing.T) {
	t.Parallel()
	q := quotaLimits{
		text:        bucket.Limits{RPM: 200, RPD: 5000},
		image:       bucket.Limits{RPM: 80, RPD: 1000},
		textLatency: "100ms-500ms", imgLatency: "1s-3s",
		projects: 3,
	}
	seed := quotaSeed(t)
	t.Logf("seed %d (SLIDESHOWD_TEST_SEED replays it)", seed)
	r := rand.New(rand.NewPCG(seed, 10))
	dir, vars := q.start(t, seed, q.config(""))
	d := startServe(t, dir, vars)
	const n = 300 // 300 images: 240 a minute over three projects
	ids := make([]string, n)
	for i := range ids {
		code, body := d.call(t, "POST", "/v1/slideshows", "",
			fmt.Sprintf(`{"source": "Deck %d", "slides": [{"text": "Slide one of deck %d"}], "images": 1}`, i, i))
		var created struct{ ID string }
		if code != 202 || json.Unmarshal(body, &created) != nil {
			t.Fatalf("create %d: %d %s", i, code, body)
		}
		ids[i] = created.ID
	}
	at := time.Duration(r.IntN(15000)) * time.Millisecond
	tm := time.AfterFunc(at, func() { d.cmd.Process.Kill() })
	<-d.done
	d.cmd.Wait()
	tm.Stop()
	t.Logf("serve killed %v after the last submission", at)
	d2 := startServe(t, dir, vars)
	for _, id := range ids {
		if st := d2.waitJob(t, id, "", nil); st.State != "done" {
			t.Fatalf("job %s: %s (%s)", id, st.State, st.Error)
		}
	}
	total := imageRequests(checkAPISaw(t, q, emulatorStatsAt(t, vars["GEMINI_BASE_URL"])))
	if total < n {
		t.Errorf("the API saw %d image requests for %d images", total, n)
	}
}

// TestThreeMinutesAtTheWindowFloor: three minutes' worth of images offered
// at once, with the default burst, concurrency and window margin (limits
// equal to the emulator's, nothing else configured), reach the API within
// at most 1.05 x the window's floor: the first minute at once, then each
// minute as the window frees (2 x (1 minute + the window margin) from a
// project's first image request to its last), with zero 429s.
func TestThreeMinutesAtTheWindowFloor(t *testing.T) {
	t.Parallel()
	q := quotaLimits{
		text:        bucket.Limits{RPM: 60, RPD: 1000},
		image:       bucket.Limits{RPM: 3, RPD: 100},
		textLatency: "100ms", imgLatency: "500ms",
		projects: 2,
	}
	seed := quotaSeed(t)
	dir, vars := q.start(t, seed, fmt.Sprintf(`listen: 127.0.0.1:1
classes:
  text:
    rpm: %d
    rpd: %d
  image:
    rpm: %d
    rpd: %d
`, q.text.RPM, q.text.RPD, q.image.RPM, q.image.RPD))
	// 6 slideshows of 3 images: 18 images, 3 minutes of 2 projects at 3 RPM.
	batch := smallBatch(t, dir, 6, 3)
	start := time.Now()
	r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
	wall := time.Since(start)
	if r.code != 0 {
		t.Fatalf("batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 6, 3)
	st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
	images := imageRequests(checkAPISaw(t, q, st))
	if images != 18 {
		t.Errorf("the API saw %d image requests, want 18", images)
	}
	// Timed by what the API saw, so that the start of the process and the
	// analyses (slow on a loaded machine) do not count: per project, from
	// its first image request's arrival to its last. The floor is two
	// windows, each with the default image window margin (1 s) that every
	// slot counts from.
	floor := 2 * (time.Minute + config.DefaultImageWindowMargin)
	var span time.Duration
	for _, l := range st.Sent {
		if l.Model != emulator.DefaultImageModel || len(l.Times) == 0 {
			continue
		}
		span = max(span, l.Times[len(l.Times)-1].Sub(l.Times[0]))
	}
	t.Logf("18 images (%d requests), the batch in %v; the longest project's image requests spanned %v: %.3f x the window's floor %v",
		images, wall.Round(time.Millisecond), span.Round(time.Millisecond), span.Seconds()/floor.Seconds(), floor)
	if span.Seconds() > 1.05*floor.Seconds() {
		t.Errorf("a project's image requests spanned %v, more than 1.05 x the window's floor %v", span, floor)
	}
}
