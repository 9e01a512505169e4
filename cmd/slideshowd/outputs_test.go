package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// readOutputStatus reads dir/status.json.
func readOutputStatus(t *testing.T, dir string) outputStatus {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, StatusFile))
	if err != nil {
		t.Fatal(err)
	}
	var st outputStatus
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("%s/%s: %v", dir, StatusFile, err)
	}
	return st
}

// TestBatchOutputsAsTheyFinish kills a batch (SIGKILL) once its first
// slideshow is done, while the second runs: the first one's folder is in
// DIR, whole, with its status.json; the second's is not there at all.
func TestBatchOutputsAsTheyFinish(t *testing.T) {
	// The first slideshow's three images come quickly; the second's are
	// held (10 minutes) until the batch is killed, so it cannot be done.
	var mu sync.Mutex
	images := 0
	e, base := startEmulator(t, emulator.Faults{Latency: func(model string, r *rand.Rand) time.Duration {
		if model != emulator.DefaultImageModel {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		if images++; images > 3 {
			return 10 * time.Minute
		}
		return 100 * time.Millisecond
	}})
	dir := t.TempDir()
	// One slideshow at a time: the second starts when the first is done.
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"max_active: 1\n")
	batch := smallBatch(t, dir, 2, 3)
	cmd := exec.Command(bin, "batch", batch, "-out", "out", "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, keyEnv(base, filepath.Join(dir, "data")))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var seen []string
	killed := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.HasPrefix(sc.Text(), "done: [0] ") {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	if !killed {
		t.Fatalf("no line said the first slideshow was written:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	if want := `done: [0] "Deck number 1" -> ` + filepath.Join("out", "01-deck-number-1"); seen[len(seen)-1] != want {
		t.Errorf("line %q, want %q", seen[len(seen)-1], want)
	}
	first := filepath.Join(dir, "out", "01-deck-number-1")
	checkOutputs(t, filepath.Join(dir, "out"), 1, 3) // the first only, whole
	st := readOutputStatus(t, first)
	if st.State != "done" || st.Entry != 0 || st.Source != "Deck number 1" || st.Analysis != "analysis.json" || len(st.Images) != 3 || st.ID == "" {
		t.Errorf("status.json: %+v", st)
	}
	for _, im := range st.Images {
		if im.State != "done" || im.File == "" || im.Error != "" {
			t.Errorf("status.json image: %+v", im)
		}
	}
	// Nothing half-written is visible: only the first folder, and no
	// temporary folder left in DIR but hidden ones.
	entries, _ := os.ReadDir(filepath.Join(dir, "out"))
	for _, e := range entries {
		if e.Name() != "01-deck-number-1" && !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("DIR holds %s after the kill", e.Name())
		}
	}

	// Run again, with no delay: the second is made, the first rewritten
	// in place.
	if err := e.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, dir, keyEnv(base, filepath.Join(dir, "data")), "batch", batch, "-out", "out", "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 3)
	if st := readOutputStatus(t, filepath.Join(dir, "out", "02-deck-number-2")); st.State != "done" || st.Entry != 1 {
		t.Errorf("second status.json: %+v", st)
	}
}
