package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCleanStopsExactCounts runs three batches one after another against
// `slideshowd emulate` (a separate process) with bursts as large as the
// limits, so lanes reserve chunks of several daily units, and checks after
// each that the day count slideshowd stored for every lane equals the
// requests the emulator received on it: each clean end of a batch gives
// back the units it reserved and did not send.
func TestCleanStopsExactCounts(t *testing.T) {
	dir := t.TempDir()
	_, vars := startEmulate(t, "-keys", "2", "-image-rpm", "60", "-seed", "9")
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), `listen: 127.0.0.1:1
classes:
  text:
    burst: 900
  image:
    rpm: 60
    burst: 60
`)
	models := map[string]string{"text": "gemini-3-flash-preview", "image": "gemini-3-pro-image-preview"}
	for run := range 3 {
		sub := filepath.Join(dir, fmt.Sprintf("run%d", run))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		batch := smallBatch(t, sub, 3+run, 2)
		if r := runBin(t, dir, vars, "batch", batch, "-out", filepath.Join(sub, "out"), "-progress", "none"); r.code != 0 {
			t.Fatalf("run %d: batch: exit %d\n%s\n%s", run, r.code, r.stdout, r.stderr)
		}
		st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
		received := map[string]int{} // "project model" -> requests the API saw
		for _, l := range st.Sent {
			received[l.Project+" "+l.Model] = len(l.Times)
		}
		r := runBin(t, dir, vars, "usage", "-json")
		if r.code != 0 {
			t.Fatalf("usage: exit %d\n%s", r.code, r.stderr)
		}
		var sum struct {
			Classes []struct {
				Name  string `json:"name"`
				Lanes []struct {
					Project string `json:"project"`
					DayUsed int    `json:"day_used"`
				} `json:"lanes"`
			} `json:"classes"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatalf("usage -json: %v\n%s", err, r.stdout)
		}
		lanes := 0
		for _, c := range sum.Classes {
			for _, l := range c.Lanes {
				lanes++
				want := received[l.Project+" "+models[c.Name]]
				if l.DayUsed != want {
					t.Errorf("run %d: %s/%s: stored %d, the emulator received %d: want equal after a clean stop", run, l.Project, c.Name, l.DayUsed, want)
				}
			}
		}
		if lanes != 4 {
			t.Fatalf("usage shows %d lanes, want 4:\n%s", lanes, r.stdout)
		}
		for _, l := range st.RateLimitedPerMinute {
			if l.Count > 0 {
				t.Errorf("run %d: %d per-minute 429s on %s %s", run, l.Count, l.Project, l.Model)
			}
		}
		t.Logf("run %d: the emulator received %v", run, received)
	}
}
