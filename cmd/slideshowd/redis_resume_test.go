package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/scheduler"
)

// TestOfflineResumeSharedAtJoin: two daemons on one Redis, a lane stopped
// on both (no quota). With a stopped and Redis stopped, `lanes resume` on
// a's data directory resumes it there only (the note says Redis did not
// take it); once Redis is back, b still has the lane stopped, and when a
// starts again on that data directory its join shares the resume (kept in
// the bbolt file with its time): b resumes the lane. Before, the resume was
// lost for the cluster and b kept the lane stopped.
func TestOfflineResumeSharedAtJoin(t *testing.T) {
	srv, _, daemons, dirs, envs := noQuotaPair(t)
	a, b := daemons[0], daemons[1]
	want := fmt.Sprint([]string{"image/key1: " + scheduler.ReasonNoQuota})

	a.stop(t)
	srv.Stop()
	r := runBin(t, dirs[0], envs[0], "lanes", "resume", "image", "key1", "-addr", "127.0.0.1:1")
	if r.code != 0 || !strings.Contains(r.stdout, "lane key1 of image resumed (the data directory") ||
		!strings.Contains(r.stdout, "note: made in the data directory only: the cluster's Redis did not take it") {
		t.Fatalf("lanes resume on a's data directory with Redis stopped: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	srv.Restart()
	if got := stoppedLanes(lanesOf(t, dirs[1], envs[1], "-addr", b.addr)); fmt.Sprint(got) != want {
		t.Fatalf("b's stopped lanes once Redis is back, before a joins: %q, want %q", got, want)
	}
	a = startServe(t, dirs[0], envs[0])
	a.waitLog(t, "watching the cluster's events")
	b.waitLog(t, "lane resumed by another process")
	if got := stoppedLanes(lanesOf(t, dirs[1], envs[1], "-addr", b.addr)); len(got) != 0 {
		t.Errorf("b's stopped lanes after a joined with its data directory's resume: %q", got)
	}
	if got := stoppedLanes(lanesOf(t, dirs[0], envs[0], "-addr", a.addr)); len(got) != 0 {
		t.Errorf("a's stopped lanes after it joined: %q", got)
	}
	a.stop(t)
	b.stop(t)
}
