package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// TestBatchDryRunServerPlansTheDaemonsLimits: batch -dry-run -server plans
// against the daemon's limits (GET /v1/usage), not the built-in defaults
// it planned with before (newcomer11 N11-5: 480/day where the daemon had
// 800); with no daemon answering it says the quota is not planned.
func TestBatchDryRunServerPlansTheDaemonsLimits(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"),
		"log: {format: json, level: debug}\nclasses:\n  text: {rpm: 30, rpd: 1000}\n  image: {rpm: 10, rpd: 400}\n")
	vars := keyEnv(base, filepath.Join(dir, "data"))
	d := startServe(t, dir, vars)
	defer d.stop(t)
	batch := smallBatch(t, dir, 1, 4)
	// The shell has keys too (as on the daemon's machine): the plan is
	// still the daemon's, not the defaults over these keys.
	r := runBin(t, dir, vars, "batch", batch, "-dry-run", "-server", "http://"+d.addr)
	for _, want := range []string{
		"calls: 1 text, 4 image, over the daemon's 3 keys in 3 projects (its limits, from http://" + d.addr + "/v1/usage)",
		"  text (the daemon's): 1 call of 3,000/day (90 RPM); at least 1 minute at full RPM",
		"  image (the daemon's): 4 calls of 1,200/day (30 RPM); at least 1 minute at full RPM",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("dry run against the daemon: exit %d, no %q\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	r = runBin(t, dir, vars, "batch", batch, "-dry-run", "-server", "http://127.0.0.1:1")
	if want := "calls: 1 text, 4 image; the daemon did not answer http://127.0.0.1:1/v1/usage ("; r.code != 0 ||
		!strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "so its quota is not planned (its limits are not known here)") ||
		strings.Contains(r.stdout, "/day") {
		t.Errorf("dry run with no daemon: exit %d, want %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
}
