package redistest_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// childEnv makes the test binary run TestDiesWithTestBinary's child part.
const childEnv = "REDISTEST_CHILD"

// TestDiesWithTestBinary: a test binary killed with SIGKILL takes its
// redis-server with it (leftover servers were seen when a test binary was
// killed). The child is this test binary, started again to run only this
// test with childEnv set: it starts a server, prints its pid and waits to
// be killed.
func TestDiesWithTestBinary(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		s := redistest.Start(t, redistest.Options{})
		fmt.Printf("redis-server pid %d\n", s.Pid())
		select {} // until killed
	}
	if _, err := exec.LookPath(redistest.Program); err != nil && os.Getenv(redistest.RequireEnv) == "" {
		t.Skipf("%s is not installed", redistest.Program)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "redis-server pid "); ok {
			pid, _ = strconv.Atoi(p)
			break
		}
	}
	if pid <= 0 {
		t.Fatal("the child printed no redis-server pid")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel signals the server as the child dies; it is then reaped by
	// init. Poll for its end with a deadline (it is not our child: there is
	// nothing to wait on).
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(state), ") Z ") {
			return // dead, waiting for init to reap it
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("redis-server %d still runs 30 s after its test binary was killed", pid)
		}
		<-tick.C
	}
}
