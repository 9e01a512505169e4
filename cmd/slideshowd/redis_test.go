package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/slideshowd/slideshowd/internal/redistest"
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
}
