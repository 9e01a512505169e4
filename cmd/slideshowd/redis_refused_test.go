package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestRefusedStartLeavesNothing (a newcomer's report at fa4369c): with a
// daemon running at image RPM 10, a daemon started with image RPM 12 is
// refused three times (exit 1, the README's line naming the lane and both
// values), and one with the same limits fails to bind its HTTP listener
// (exit 1) after it joined. The running daemon's /v1/usage then lists
// itself alone as alive. Before, each refused or failed start stayed
// alive in the cluster for its heartbeat's 15 s (/v1/usage listed 11
// processes after 8 refused starts, and each was charged as presumed dead
// after an outage).
func TestRefusedStartLeavesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	_, emu := startEmulate(t, "-keys", "1", "-seed", "5")
	config := func(rpm string) string {
		return "log:\n  format: json\n  level: debug\nshutdown_grace: 5s\nclasses:\n  image:\n    rpm: " + rpm + "\n"
	}
	env := func(dir string) map[string]string {
		return map[string]string{
			"GEMINI_API_KEYS": emu["GEMINI_API_KEYS"], "GEMINI_BASE_URL": emu["GEMINI_BASE_URL"],
			"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_REDIS_URL": srv.URL(),
			"SLIDESHOWD_TOKEN": testToken,
		}
	}
	adir := t.TempDir()
	writeTestFile(t, filepath.Join(adir, "slideshowd.yaml"), config("10"))
	a := startServe(t, adir, env(adir))
	a.waitLog(t, "watching the cluster's events")
	name := processName(t, a.logs())

	bdir := t.TempDir()
	writeTestFile(t, filepath.Join(bdir, "slideshowd.yaml"), config("12"))
	want := "slideshowd: redis_url " + srv.URL() + ": store: redis: limits differ between processes: lane key1/image: rpm 12, "
	for range 3 {
		r := runBin(t, bdir, env(bdir), "serve", "-addr", "127.0.0.1:0")
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "rpm 10, ") ||
			!strings.Contains(r.stderr, " in process "+name+"\n") {
			t.Fatalf("serve with image RPM 12: exit %d, stderr:\n%s\nwant exit 1 and %q...", r.code, r.stderr, want)
		}
	}
	cdir := t.TempDir()
	writeTestFile(t, filepath.Join(cdir, "slideshowd.yaml"), config("10"))
	r := runBin(t, cdir, env(cdir), "serve", "-addr", a.addr)
	if r.code != 1 || !strings.Contains(r.stderr, "address already in use") || !strings.Contains(r.stderr, "sharing quota through Redis") {
		t.Fatalf("serve on a's address: exit %d, stderr:\n%s\nwant exit 1 after it joined the cluster", r.code, r.stderr)
	}

	code, body := a.call(t, "GET", "/v1/usage", testToken, "")
	var sum scheduler.Summary
	if code != 200 || json.Unmarshal(body, &sum) != nil || sum.Cluster == nil {
		t.Fatalf("GET /v1/usage: %d %s", code, body)
	}
	if c := sum.Cluster; c.Error != "" || !slices.Equal(c.Processes, []string{name}) {
		t.Errorf("cluster processes %v (error %q); want %s alone: a refused or failed start left counted alive", c.Processes, c.Error, name)
	}
}
