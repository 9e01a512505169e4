package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestSeveralProcesses: three daemons and a batch, with the same key and one
// Redis, share the key's image lane against `slideshowd emulate` at the same
// limits, with more images than a minute allows. The emulator sees no
// per-minute 429, no 60 s window over RPM and the whole RPM used in the
// first minute; every job ends done.
func TestSeveralProcesses(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const rpm, perProcess = 6, 2
	_, emu := startEmulate(t, "-keys", "1", "-text-rpm", "1000", "-text-rpd", "10000",
		"-image-rpm", fmt.Sprint(rpm), "-image-rpd", "100", "-seed", "5")
	config := fmt.Sprintf("log:\n  format: json\n  level: debug\nshutdown_grace: 5s\nclasses:\n  text:\n    rpm: 1000\n    rpd: 10000\n  image:\n    rpm: %d\n    rpd: 100\n", rpm)
	env := func(dir string) map[string]string {
		return map[string]string{
			"GEMINI_API_KEYS": emu["GEMINI_API_KEYS"], "GEMINI_BASE_URL": emu["GEMINI_BASE_URL"],
			"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_REDIS_URL": srv.URL(),
			"SLIDESHOWD_TOKEN": testToken,
		}
	}
	var daemons []*daemonProc
	for range 3 {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), config)
		d := startServe(t, dir, env(dir))
		d.waitLog(t, "sharing quota through Redis")
		daemons = append(daemons, d)
	}
	var ids []string
	for i, d := range daemons {
		code, body := d.call(t, "POST", "/v1/slideshows", testToken,
			fmt.Sprintf(`{"source": "Deck %d", "slides": [{"text": "Slide one"}], "images": %d}`, i, perProcess))
		var created struct{ ID string }
		if code != 202 || json.Unmarshal(body, &created) != nil {
			t.Fatalf("create on daemon %d: %d %s", i, code, body)
		}
		ids = append(ids, created.ID)
	}
	bdir := t.TempDir()
	writeTestFile(t, filepath.Join(bdir, "slideshowd.yaml"), config)
	batch := smallBatch(t, bdir, 1, perProcess)
	var wg sync.WaitGroup
	var br result
	wg.Go(func() { br = runBin(t, bdir, env(bdir), "batch", batch, "-out", "out", "-progress", "lines") })
	for i, d := range daemons {
		if st := d.waitJob(t, ids[i], testToken, nil); st.State != "done" {
			t.Errorf("daemon %d: job %s: %s", i, st.State, st.Error)
		}
	}
	wg.Wait()
	if br.code != 0 {
		t.Errorf("batch: exit %d\n%s\n%s", br.code, br.stdout, br.stderr)
	}
	st := emulatorStatsAt(t, emu["GEMINI_BASE_URL"])
	images := 0
	for _, rc := range st.Requests {
		if rc.Status == 429 {
			t.Errorf("the emulator answered 429: %+v", rc)
		}
		if rc.Status == 200 && rc.Model == "gemini-3-pro-image-preview" {
			images += rc.Count
		}
	}
	if want := 4 * perProcess; images != want {
		t.Errorf("%d images served, want %d", images, want)
	}
	for _, lc := range st.RateLimitedPerMinute {
		if lc.Count != 0 {
			t.Errorf("per-minute 429s: %+v", lc)
		}
	}
	for _, lc := range st.MaxSentWindow {
		if lc.Model == "gemini-3-pro-image-preview" && lc.Count != rpm {
			t.Errorf("the busiest 60 s window of %s held %d image requests, want RPM %d (all of it, no more)", lc.Project, lc.Count, rpm)
		}
	}
	var names []string
	for _, d := range daemons {
		names = append(names, processName(t, d.logs()))
	}
	checkClusterView(t, daemons[0], names, perProcess, rpm)
	// usage asks the daemon and prints its cluster view; with no daemon
	// there, it reads the cluster's view from Redis without joining it.
	r := runBin(t, bdir, env(bdir), "usage", "-addr", daemons[0].addr)
	if r.code != 0 || !strings.Contains(r.stdout, "cluster slideshowd (shared through Redis)") ||
		!strings.Contains(r.stdout, "3 processes alive") || !strings.Contains(r.stdout, names[0]+" (this one)") {
		t.Errorf("usage from daemon 0: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, bdir, env(bdir), "usage", "-addr", "127.0.0.1:1")
	if r.code != 0 || !strings.Contains(r.stdout, "3 processes alive") || strings.Contains(r.stdout, "(this one)") ||
		!strings.Contains(r.stdout, "(gone)") || strings.Contains(r.stdout, srv.Addr()) {
		t.Errorf("usage from the data directory and Redis: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// processName returns the process name a daemon or batch logged when it
// joined the cluster.
func processName(t *testing.T, logs string) string {
	t.Helper()
	for line := range strings.Lines(logs) {
		var l struct{ Message, Process string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "sharing quota through Redis" && l.Process != "" {
			return l.Process
		}
	}
	t.Fatalf("no process name logged:\n%s", logs)
	return ""
}

// checkClusterView: GET /v1/usage of d shows the cluster: the daemons alive
// (d is "process"), the batch gone but its day units kept, and per lane the
// shared totals equal to the sum of the processes' parts, each no less than
// the images it made.
func checkClusterView(t *testing.T, d *daemonProc, daemons []string, perProcess, rpm int) {
	t.Helper()
	code, body := d.call(t, "GET", "/v1/usage", testToken, "")
	var sum scheduler.Summary
	if code != 200 || json.Unmarshal(body, &sum) != nil || sum.Cluster == nil {
		t.Fatalf("GET /v1/usage: %d %s", code, body)
	}
	c := sum.Cluster
	if c.Error != "" || c.Name != "slideshowd" || c.Process != daemons[0] || !slices.Equal(c.Processes, slices.Sorted(slices.Values(daemons))) {
		t.Fatalf("cluster %+v; want slideshowd seen from %s, alive %v", c, daemons[0], daemons)
	}
	found := false
	for _, l := range c.Lanes {
		day, win := 0, 0
		for _, p := range l.Processes {
			day += p.DayUsed
			win += p.WindowUsed
			if alive := slices.Contains(daemons, p.Process); p.Alive != alive {
				t.Errorf("lane %s/%s: process %+v: alive %v", l.Class, l.Project, p, alive)
			}
		}
		if day != l.DayUsed || win != l.WindowUsed || l.WindowUsed > l.RPMLimit {
			t.Errorf("lane %s/%s: totals day %d window %d (RPM %d), the processes' parts sum to %d and %d", l.Class, l.Project, l.DayUsed, l.WindowUsed, l.RPMLimit, day, win)
		}
		if l.Class != "image" {
			continue
		}
		found = true
		if l.RPMLimit != rpm || l.DayLimit != 100 || l.DayUsed < 4*perProcess {
			t.Errorf("image lane %+v: want %d RPM, 100 RPD, at least %d used", l, rpm, 4*perProcess)
		}
		// The daemons and one more process, the batch (it logs quietly:
		// its name is the one left).
		if len(l.Processes) != len(daemons)+1 {
			t.Errorf("image lane: processes %+v, want the %d daemons and the batch", l.Processes, len(daemons))
		}
		for _, p := range l.Processes {
			if p.DayUsed < perProcess {
				t.Errorf("image lane: process %s's part %d, under the %d images it made", p.Process, p.DayUsed, perProcess)
			}
		}
	}
	if !found {
		t.Errorf("no image lane in the cluster view: %+v", c.Lanes)
	}
}
