package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// Progress counts agree with status.json: a slideshow whose analysis fails
// never makes its images; they are counted as not made, not as failed, and
// status.json lists them as pending.
func TestProgressCountsAgreeWithStatus(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{Blocked: 1})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 3)
	r := runBin(t, dir, keyEnv(base, filepath.Join(dir, "data")), "batch", batch, "-out", "out", "-progress", "lines")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	want := "progress: 0/4 steps (analyses 0/1, images 0/3), 1 failed, 3 not made (their slideshow ended first)\n"
	if !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
	}
	if strings.Contains(r.stdout, ", 4 failed") {
		t.Errorf("never-made images counted as failed:\n%s", r.stdout)
	}
	st := readOutputStatus(t, filepath.Join(dir, "out", "01-deck-number-1"))
	pending := 0
	for _, im := range st.Images {
		if im.State == "pending" {
			pending++
		}
	}
	if st.State != "failed" || pending != 3 {
		t.Errorf("status.json: %+v, want failed with 3 pending images", st)
	}
}
