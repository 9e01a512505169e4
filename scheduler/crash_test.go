package scheduler

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

const crashChildEnv = "SLIDESHOWD_CRASH_CHILD_STORE"

// crashConfig is shared by the child and the parent's checks: three lanes
// whose RPM lets the child acquire fast, so chunks are 100 units.
func crashConfig(st store.Store) Config {
	return Config{
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 6000, RPD: 1_000_000}, Concurrency: 16}},
		Keys:    []bucket.Key{{ID: "k1", Project: "p1"}, {ID: "k2", Project: "p2"}, {ID: "k3", Project: "p3"}},
		Store:   st,
	}
}

// crashChild runs in the re-executed test binary: it acquires in a loop
// through a real scheduler on a bbolt store and reports every request on
// stdout (one byte each) as the work is called, until it is killed.
func crashChild(path string) {
	st, err := store.Open(path, store.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	s, err := New(crashConfig(st))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	go s.Run(context.Background())
	report := make([]byte, 1)
	for {
		err := s.Do(context.Background(), Job{Class: "text", Work: func(context.Context, Lease) error {
			if _, err := os.Stdout.Write(report); err != nil {
				os.Exit(4)
			}
			return nil
		}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(5)
		}
	}
}

// TestCrashNeverUnderCounts kills a process that is acquiring with SIGKILL
// at a random moment and checks that the daily count recovered from the
// store is at least what it reported, and at most one chunk per lane more.
func TestCrashNeverUnderCounts(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	path := filepath.Join(t.TempDir(), "slideshowd.db")
	reported := 0
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr limitedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 50 + r.IntN(2000)
		br := bufio.NewReader(out)
		n := 0
		for n < killAt {
			if _, err := br.ReadByte(); err != nil {
				t.Fatalf("round %d: child stopped after %d reports: %v; stderr: %s", round, n, err, stderr.String())
			}
			n++
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.Copy(io.Discard, br) // reports written before the kill
		cmd.Wait()
		reported += n + int(rest)

		st, err := store.Open(path, store.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		hist, err := st.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		recovered := 0
		for _, dc := range hist {
			recovered += dc.Count
		}
		chunk := bucket.DefaultChunk(crashConfig(nil).Classes[0].Limits)
		lanes := len(crashConfig(nil).Keys)
		t.Logf("round %d: killed after %d reports; %d reported in all, %d recovered", round, n+int(rest), reported, recovered)
		if recovered < reported {
			t.Fatalf("under-count: %d requests reported, %d recovered", reported, recovered)
		}
		// Each round may leave at most one unused chunk per lane behind.
		if max := reported + (round+1)*chunk*lanes; recovered > max {
			t.Fatalf("over-count: %d recovered for %d reported, more than one chunk (%d) per lane per crash", recovered, reported, chunk)
		}
	}
}

type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b) < 4096 {
		l.b = append(l.b, p[:min(len(p), 4096-len(l.b))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
