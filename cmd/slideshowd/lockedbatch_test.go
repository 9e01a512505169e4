package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// TestUsageOnARunningBatchSaysBatch: usage (and keys) on the data
// directory of a running local batch say that a batch holds it and how
// to get the usage, not "give the daemon's -addr": a batch serves
// nothing (newcomer10 N10-4). The batch's note goes when it ends.
func TestUsageOnARunningBatchSaysBatch(t *testing.T) {
	imaging := make(chan struct{}, 1)
	_, base := startEmulator(t, emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
		if model == emulator.DefaultImageModel {
			select {
			case imaging <- struct{}{}:
			default:
			}
			return 10 * time.Minute
		}
		return 0
	}})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 1s\n")
	batch := smallBatch(t, dir, 1, 1)
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "batch", batch, "-out", "out", "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, keyEnv(base, data))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	<-imaging // the batch holds the store and waits for its image

	vars := keyEnv(base, data)
	r := runBin(t, dir, vars, "usage", "-addr", "127.0.0.1:1")
	pid := strconv.Itoa(cmd.Process.Pid)
	if r.code != 1 || !strings.Contains(r.stderr, "slideshowd.db is locked by a running slideshowd batch (pid "+pid+"), which serves no HTTP API") ||
		!strings.Contains(r.stderr, "the usage can be read from the data directory once the batch ends") || strings.Contains(r.stderr, "give it with -addr") {
		t.Errorf("usage on the batch's data directory: exit %d\n%s", r.code, r.stderr)
	}
	r = runBin(t, dir, vars, "keys", "-addr", "127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "locked by a running slideshowd batch (pid "+pid+")") {
		t.Errorf("keys on the batch's data directory: exit %d\n%s", r.code, r.stderr)
	}

	cmd.Process.Signal(syscall.SIGTERM) // the image's call is cut after shutdown_grace
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(data, holderNote)); err == nil {
		t.Errorf("the holder note is still there after the batch ended:\n%s", stderr.String())
	}
}
