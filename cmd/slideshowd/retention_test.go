package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// jobDirs counts the job directories in the data directory.
func jobDirs(t *testing.T, data string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(data, "jobs"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.IsDir() {
			n++
		}
	}
	return n
}

// TestBatchRerunWithRetention: with retention set, the same batch run again
// and again succeeds every time and sends nothing: the jobs an earlier run
// finished are past their retention (1ns) when the next run starts, but the
// batch holds them until their outputs are written. Before, Run's start-up
// sweep deleted them between Submit and Wait, and every other run failed
// with "pipeline: not found: job …" (exit 1).
func TestBatchRerunWithRetention(t *testing.T) {
	e, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"retention: 1ns\n")
	batch := smallBatch(t, dir, 2, 1)
	vars := keyEnv(base, data)
	var text, image int
	for run := 1; run <= 4; run++ {
		r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-progress", "none")
		if r.code != 0 || !strings.Contains(r.stdout, "2 of 2 slideshows done") {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", run, r.code, r.stdout, r.stderr)
		}
		checkOutputs(t, filepath.Join(dir, "out"), 2, 1)
		gotText, gotImage := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)
		if run == 1 {
			text, image = gotText, gotImage
			if text != 2 || image != 2 {
				t.Fatalf("first run: %d analyses and %d images served, want 2 and 2", text, image)
			}
		} else if gotText != text || gotImage != image {
			t.Errorf("run %d sent requests for a finished batch: analyses %d -> %d, images %d -> %d", run, text, gotText, image, gotImage)
		}
	}
}

// TestRetentionConfigReachesPipeline: the config's retention reaches the
// pipeline of a batch run. With retention 1ns, the jobs of an earlier batch
// are deleted when the next (different) batch starts; with no retention
// they are all kept.
func TestRetentionConfigReachesPipeline(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	for _, tt := range []struct {
		name      string
		retention string
		want      int // job directories after the second batch
	}{
		{"unset", "", 2 + 1},
		{"1ns", "retention: 1ns\n", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+tt.retention)
			vars := keyEnv(base, data)
			first := smallBatch(t, filepath.Join(dir, "first"), 2, 1)
			if r := runBin(t, dir, vars, "batch", first, "-out", "out1", "-progress", "none"); r.code != 0 {
				t.Fatalf("first batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if n := jobDirs(t, data); n != 2 {
				t.Fatalf("%d job directories after the first batch, want 2", n)
			}
			second := writeTestFile(t, filepath.Join(dir, "second", "batch.json"),
				`[{"source": "Another deck", "slides": [{"text": "A slide of another deck"}], "images": 1}]`)
			if r := runBin(t, dir, vars, "batch", second, "-out", "out2", "-progress", "none"); r.code != 0 {
				t.Fatalf("second batch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if n := jobDirs(t, data); n != tt.want {
				t.Errorf("%d job directories after the second batch, want %d", n, tt.want)
			}
			checkOutputs(t, filepath.Join(dir, "out1"), 2, 1)
			checkOutputs(t, filepath.Join(dir, "out2"), 1, 1)
		})
	}
}
