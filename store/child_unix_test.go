//go:build unix

package store_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// childEnv names the file the child process of TestBoltAfterKilledProcess
// writes to.
const childEnv = "STORE_TEST_CHILD_DB"

// TestBoltAfterKilledProcess runs a child process that opens the file, records
// a count and is killed (SIGKILL) while holding the file: the lock dies with
// it, so the parent opens the file at once and finds the count.
func TestBoltAfterKilledProcess(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		runChild(path)
		return
	}
	path := dbPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltAfterKilledProcess$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: %v, want killed\n%s", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL\n%s", err, out)
	}
	b := mustOpen(t, path, store.Options{Timeout: 100 * time.Millisecond})
	if got := mustDaily(t, b, day(0)); len(got) != 1 || got[0].Count != 10 {
		t.Fatalf("after the child was killed: Daily = %v, want 10 on %v", got, textA)
	}
}

// runChild opens path, records 10 units and kills its own process without
// closing the store.
func runChild(path string) {
	b, err := store.Open(path, store.Options{})
	if err != nil {
		os.Exit(3)
	}
	if _, err := b.AddDaily(context.Background(), day(0), textA, 10); err != nil {
		os.Exit(4)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	os.Exit(5) // not reached: SIGKILL to itself ends the process
}
