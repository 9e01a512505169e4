package scheduler

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
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
		// Burst one second's worth (not the default, RPM), so a second of
		// the lane's traffic is at most burst + RPM/60.
		Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 6000, RPD: 1_000_000}, Concurrency: 16, Burst: 100}},
		Keys:    []bucket.Key{{ID: "k1", Project: "p1"}, {ID: "k2", Project: "p2"}, {ID: "k3", Project: "p3"}},
		Store:   st,
	}
}

// crashChild runs in the re-executed test binary: it acquires in a loop
// through a real scheduler on a bbolt store and reports every request on
// stdout as the work is called (9 bytes: the lane's index, then the request's
// window slot in big-endian unix nanoseconds), until it is killed.
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
	var mu sync.Mutex
	for {
		err := s.Do(context.Background(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
			report := make([]byte, 1, 9)
			report[0] = l.Project[1] - '1'
			report = binary.BigEndian.AppendUint64(report, uint64(l.Slot.UnixNano()))
			mu.Lock()
			defer mu.Unlock()
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
// at a random moment, three times on one store, and checks after each kill:
// the daily count recovered from the store is at least what the processes
// reported, and at most the last chunk of each lane per kill more, each
// chunk about a second of the lane's traffic (not 1 % of its RPD); the
// window a new process rebuilds from the records holds, for every lane, as
// many requests as were reported in the last 60 s, none counted earlier than
// it was (the k-th latest rebuilt slot is no earlier than the k-th latest
// reported one).
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
	cfg := crashConfig(nil)
	lanes := len(cfg.Keys)
	limits := cfg.Classes[0].Limits
	// A lane sends at most burst + RPM/60 requests in a second.
	secondOfTraffic := 2*limits.RPM/60 + 1
	reported := make([]int, lanes)
	slots := make([][]int64, lanes)
	overAllowed := 0
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
		var rec [9]byte
		read := func() error {
			if _, err := io.ReadFull(br, rec[:]); err != nil {
				return err
			}
			lane := int(rec[0])
			if lane < 0 || lane >= lanes {
				return fmt.Errorf("bad report %x", rec)
			}
			reported[lane]++
			slots[lane] = append(slots[lane], int64(binary.BigEndian.Uint64(rec[1:])))
			return nil
		}
		n := 0
		for n < killAt {
			if err := read(); err != nil {
				t.Fatalf("round %d: child stopped after %d reports: %v; stderr: %s", round, n, err, stderr.String())
			}
			n++
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for read() == nil { // reports written before the kill
			n++
		}
		cmd.Wait()

		st, err := store.Open(path, store.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		hist, err := st.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		recs, err := st.LedgerRecords(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		last := make([]int, lanes)
		for _, rc := range recs.Records {
			if rc.Units > 0 { // a renewal (0) covers what is left of the chunk before
				last[rc.Lane.Project[1]-'1'] = rc.Units
			}
			if rc.Units > secondOfTraffic || rc.Units > bucket.MaxChunk(limits) {
				t.Fatalf("round %d: a chunk of %d units on lane %s: more than a second of traffic (%d) or MaxChunk (%d)",
					round, rc.Units, rc.Lane, secondOfTraffic, bucket.MaxChunk(limits))
			}
		}
		recovered := make([]int, lanes)
		for _, dc := range hist {
			recovered[dc.Lane.Project[1]-'1'] += dc.Count
		}
		for _, u := range last {
			overAllowed += u
		}
		total, over := 0, 0
		for i := range lanes {
			if recovered[i] < reported[i] {
				t.Fatalf("round %d: lane p%d: under-count: %d requests reported, %d recovered", round, i+1, reported[i], recovered[i])
			}
			total += reported[i]
			over += recovered[i] - reported[i]
		}
		t.Logf("round %d: killed after %d reports; %d reported in all, %d over; last chunks %v", round, n, total, over, last)
		// Each kill may leave at most the last chunk of each lane unused.
		if over > overAllowed {
			t.Fatalf("round %d: over-count %d, more than the last chunk of every lane per kill (%d)", round, over, overAllowed)
		}

		// The window a restart rebuilds covers every reported request.
		cfg := crashConfig(st)
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, ll := range s.Pool().Class("text").Ledger(now) {
			i := ll.Project[1] - '1'
			var live []int64
			for _, ts := range slots[i] {
				if ts+int64(time.Minute) > now.UnixNano() {
					live = append(live, ts)
				}
			}
			slices.Sort(live)
			w := ll.Window
			if len(w) < len(live) {
				t.Fatalf("round %d: lane %s: rebuilt window holds %d, %d were sent in the last 60 s", round, ll.Project, len(w), len(live))
			}
			for k := 1; k <= len(live); k++ {
				if got, sent := w[len(w)-k].At.UnixNano(), live[len(live)-k]; got < sent {
					t.Fatalf("round %d: lane %s: rebuilt slot %d from the end at %d, before the reported one at %d", round, ll.Project, k, got, sent)
				}
			}
		}
		st.Close()
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
