package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// requestsBy sums an emulate process's answers by key and model.
func requestsBy(st emulatorStats, key, model string) int {
	n := 0
	for _, rc := range st.Requests {
		if rc.Key == key && rc.Model == model {
			n += rc.Count
		}
	}
	return n
}

// A project that cannot serve (issue #10 cases 1, 2 and 4), answered by
// `slideshowd emulate` as a separate process: with a second project the
// batch finishes on it, sending at most one request per class to the bad
// project; with the bad project alone it ends with the reason, not a loop.
func TestBatchProjectCannotServe(t *testing.T) {
	tests := []struct {
		name   string
		flags  []string // emulate flags making project key1 bad
		reason string
		// classes the bad project refuses; the others serve on it.
		refused map[string]bool
	}{
		{"out of credit", []string{"-out-of-credit", "key1"}, "out of credit", map[string]bool{"text": true, "image": true}},
		{"billing required", []string{"-billing-required", "key1"}, "billing required", map[string]bool{"text": true, "image": true}},
		{"no quota on the image model", []string{"-no-quota", "key1:image", "-free-tier"}, "no quota on this model", map[string]bool{"image": true}},
		{"no quota on the text model (ErrorInfo layout)", []string{"-no-quota", "key1:text", "-layout", "errorinfo"}, "no quota on this model", map[string]bool{"text": true}},
	}
	models := map[string]string{"text": emulator.DefaultTextModel, "image": emulator.DefaultImageModel}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("two projects", func(t *testing.T) {
				dir := t.TempDir()
				_, vars := startEmulate(t, append([]string{"-keys", "2", "-image-rpm", "600", "-seed", "5"}, tt.flags...)...)
				vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
				writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
				batch := smallBatch(t, dir, 2, 3)
				r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
				if r.code != 0 || !strings.Contains(r.stdout, "2 of 2 slideshows done") {
					t.Fatalf("batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
				}
				st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
				for class, model := range models {
					if n := requestsBy(st, "key1", model); tt.refused[class] && n > 1 {
						t.Errorf("%s: %d requests on the bad project, want at most 1: %+v", class, n, st.Requests)
					}
				}
				// usage names the reason of the bad project's lanes or keys
				// (from the data directory: nothing listens on port 1).
				u := runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1")
				if u.code != 0 || !strings.Contains(u.stdout, tt.reason) {
					t.Errorf("usage does not say %q: exit %d\n%s\n%s", tt.reason, u.code, u.stdout, u.stderr)
				}
			})
			t.Run("alone", func(t *testing.T) {
				dir := t.TempDir()
				_, vars := startEmulate(t, append([]string{"-keys", "1", "-image-rpm", "600", "-seed", "5"}, tt.flags...)...)
				vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
				writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
				batch := smallBatch(t, dir, 1, 2)
				r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
				if r.code == 0 || !strings.Contains(r.stdout+r.stderr, tt.reason) {
					t.Fatalf("batch: exit %d, want a failure naming %q\n%s\n%s", r.code, tt.reason, r.stdout, r.stderr)
				}
				st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
				for class, model := range models {
					n := requestsBy(st, "key1", model)
					if tt.refused[class] && n > 1 {
						t.Errorf("%s: %d requests, want at most 1 (no loop): %+v", class, n, st.Requests)
					}
				}
			})
		})
	}
}

// An expired key is disabled as "expired", and usage says so; the batch
// finishes on the other key.
func TestBatchExpiredKey(t *testing.T) {
	dir := t.TempDir()
	_, vars := startEmulate(t, "-keys", "2", "-image-rpm", "600", "-seed", "5", "-expired", "key1")
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 3)
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none"); r.code != 0 {
		t.Fatalf("batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
	if n := requestsBy(st, "key1", emulator.DefaultTextModel) + requestsBy(st, "key1", emulator.DefaultImageModel); n > 1 {
		t.Errorf("%d requests on the expired key, want at most 1", n)
	}
	u := runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1") // the data directory: nothing listens on port 1
	if requestsBy(st, "key1", emulator.DefaultTextModel)+requestsBy(st, "key1", emulator.DefaultImageModel) == 1 &&
		(u.code != 0 || !strings.Contains(u.stdout, "expired")) {
		t.Errorf("usage does not say expired: exit %d\n%s\n%s", u.code, u.stdout, u.stderr)
	}
}

// Answers that can be used (issue #10 cases 6, 7 and 8): JSON in a code
// fence, slide numbers nobody asked for (from 5), JPEG bytes labeled
// image/png. The batch finishes on the first answers, one request each, and
// the image is written and recorded as the JPEG it is.
func TestBatchRepairedAnswers(t *testing.T) {
	dir := t.TempDir()
	_, vars := startEmulate(t, "-keys", "1", "-image-rpm", "600", "-seed", "5",
		"-fenced-json", "1", "-wrong-numbers", "1", "-mislabeled-image", "1")
	vars["SLIDESHOWD_DATA"] = filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 2)
	r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
	if r.code != 0 {
		t.Fatalf("batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := emulatorStatsAt(t, vars["GEMINI_BASE_URL"])
	if n, m := requestsBy(st, "key1", emulator.DefaultTextModel), requestsBy(st, "key1", emulator.DefaultImageModel); n != 1 || m != 2 {
		t.Errorf("requests: %d analyses, %d images; want 1 and 2 (one each): %+v", n, m, st.Requests)
	}
	out := filepath.Join(dir, "out", "01-deck-number-1")
	for _, name := range []string{"image-01.jpg", "image-02.jpg"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			entries, _ := os.ReadDir(out)
			t.Fatalf("%v (the directory holds %v)", err, entries)
		}
		if got := gemini.ImageType(b); got != gemini.MIMEJPEG {
			t.Errorf("%s holds %q bytes", name, got)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "image-01.png")); err == nil {
		t.Error("image-01.png written for JPEG bytes")
	}
	b, err := os.ReadFile(filepath.Join(out, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a gemini.Analysis
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&a); err != nil || len(a.Slides) != 2 || a.Slides[0].Index != 1 || a.Slides[1].Index != 2 {
		t.Errorf("analysis.json: %v %+v\n%s", err, a, b)
	}
}
