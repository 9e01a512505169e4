package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// emulatorServed counts the 200 answers in emulate's stats.
func emulatorServed(t *testing.T, base string) int {
	t.Helper()
	n := 0
	for _, rc := range emulatorStatsAt(t, base).Requests {
		if rc.Status == 200 {
			n += rc.Count
		}
	}
	return n
}

// TestBatchToDaemon: batch -server hands the batch to a running serve (in
// front of an emulate process), follows it with the long poll and writes
// DIR as the local mode does; run again, it submits nothing new (each
// entry's Idempotency-Key finds its job) and rewrites the same folders.
func TestBatchToDaemon(t *testing.T) {
	_, vars := startEmulate(t, "-keys", "2", "-image-rpm", "0", "-seed", "5")
	base := vars["GEMINI_BASE_URL"]
	sdir := t.TempDir()
	writeTestFile(t, filepath.Join(sdir, "slideshowd.yaml"), fastConfig)
	vars["SLIDESHOWD_DATA"] = filepath.Join(sdir, "data")
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, sdir, vars)
	server := "http://" + d.addr

	dir := t.TempDir()
	batch := smallBatch(t, dir, 2, 2)
	cvars := map[string]string{"SLIDESHOWD_TOKEN": testToken} // no keys: the daemon has them
	r := runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", server, "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ndaemon:\n%s", r.code, r.stdout, r.stderr, d.logs())
	}
	for _, want := range []string{"2 slideshows submitted to " + server, "progress: 6/6 steps (analyses 2/2, images 4/4)",
		`done: [0] "Deck number 1" -> out/01-deck-number-1`, "2 of 2 slideshows done, 4 of 4 images written to out"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 2)
	first := readOutputStatus(t, filepath.Join(dir, "out", "02-deck-number-2"))
	if first.State != "done" || first.Entry != 1 || first.ID == "" {
		t.Errorf("status.json %+v", first)
	}
	if n := emulatorServed(t, base); n != 6 {
		t.Errorf("the emulator served %d requests, want 6 (2 analyses, 4 images)", n)
	}

	// Again: nothing is submitted twice, nothing asked of the API again.
	r = runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", server, "-progress", "none")
	if r.code != 0 || !strings.Contains(r.stdout, "2 of 2 slideshows done") {
		t.Fatalf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := emulatorServed(t, base); n != 6 {
		t.Errorf("after the second run the emulator served %d requests, want still 6", n)
	}
	if again := readOutputStatus(t, filepath.Join(dir, "out", "02-deck-number-2")); again.ID != first.ID {
		t.Errorf("second run: job %s, first run %s: the entry was submitted again", again.ID, first.ID)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 2)

	// Without the token: the daemon's 401, said plainly.
	r = runBin(t, dir, nil, "batch", batch, "-out", "out", "-server", server)
	if r.code != 1 || !strings.Contains(r.stderr, "set SLIDESHOWD_TOKEN to its token") {
		t.Errorf("no token: exit %d\n%s", r.code, r.stderr)
	}
	// No daemon there.
	r = runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", "http://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("no daemon: exit %d\n%s", r.code, r.stderr)
	}
	if r := runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", "127.0.0.1:8080"); r.code != 2 {
		t.Errorf("bad -server: exit %d\n%s", r.code, r.stderr)
	}
}
