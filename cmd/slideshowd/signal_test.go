package main

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// TestSecondSignalWhenStartedIgnoringSIGINT runs a batch as a
// non-interactive shell runs a background job: with SIGINT ignored. The
// first SIGINT starts the graceful stop (running calls may take 10
// minutes); the second must end the process at once with 130, not be
// ignored.
func TestSecondSignalWhenStartedIgnoringSIGINT(t *testing.T) {
	imaging := make(chan struct{}, 1) // an image request is being answered
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
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 10m\n")
	batch := smallBatch(t, dir, 1, 2)
	cmd := exec.Command("sh", "-c", `trap "" INT; exec "$0" "$@"`, bin, "batch", batch, "-out", "out", "-progress", "lines")
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
	<-imaging // a call is running: the first signal lets it finish (10 minutes)
	cmd.Process.Signal(syscall.SIGINT)
	sc := bufio.NewScanner(stdout)
	var seen []string
	second := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.HasPrefix(sc.Text(), "interrupted after") { // the first signal is handled
			cmd.Process.Signal(syscall.SIGINT)
			second = true
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !second {
		t.Fatalf("the batch ended before the second signal:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitSignal {
		t.Fatalf("exit %v, want %d\n%s", err, exitSignal, stderr.String())
	}
	if !strings.Contains(stderr.String(), "slideshowd: interrupt again: stopping at once") {
		t.Errorf("stderr lacks the second signal's line:\n%s", stderr.String())
	}
}
