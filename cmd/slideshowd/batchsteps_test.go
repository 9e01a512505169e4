package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestBatchToDaemonProgressBySteps: batch -server's progress moves step by
// step as the local mode's does, read from the daemon's running jobs every
// second; before, it moved only when a long poll answered, at a job's end
// (0 -> 3 steps here, 0 -> 6 -> 12 in the newcomer's batch). Images take 2 s
// each, one at a time, so the steps end seconds apart.
func TestBatchToDaemonProgressBySteps(t *testing.T) {
	_, vars := startEmulate(t, "-keys", "1", "-image-rpm", "0", "-image-latency", "2s", "-seed", "5")
	sdir := t.TempDir()
	writeTestFile(t, filepath.Join(sdir, "slideshowd.yaml"), fastConfig+"    concurrency: 1\n")
	vars["SLIDESHOWD_DATA"] = filepath.Join(sdir, "data")
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, sdir, vars)

	dir := t.TempDir()
	batch := smallBatch(t, dir, 1, 2)
	r := runBin(t, dir, map[string]string{"SLIDESHOWD_TOKEN": testToken}, "batch", batch, "-out", "out", "-server", "http://"+d.addr, "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ndaemon:\n%s", r.code, r.stdout, r.stderr, d.logs())
	}
	var seen []int
	for _, m := range regexp.MustCompile(`(?m)^progress: (\d+)/3 steps`).FindAllStringSubmatch(r.stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		seen = append(seen, n)
	}
	between := 0
	for _, n := range seen {
		if n > 0 && n < 3 {
			between++
		}
	}
	if len(seen) == 0 || seen[len(seen)-1] != 3 || between == 0 {
		t.Errorf("progress lines %v: want some between 0 and 3 steps, ending at 3:\n%s", seen, r.stdout)
	}
}
