package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
)

// TestSharedStopAndKeys: two daemons on one Redis. A no-quota answer to
// one stops the lane on both (the other sends nothing on it), `lanes
// resume` on the other resumes it on both; a key disabled through one
// while Redis is down answers 200 saying the change is pending (the CLI
// adds a note) and reaches the other once Redis is back; with the first
// daemon stopped, keys enable and lanes resume on its data directory reach
// the other through Redis.
func TestSharedStopAndKeys(t *testing.T) {
	srv, emu, daemons, dirs, envs := noQuotaPair(t)
	a, b := daemons[0], daemons[1]
	images := func() int {
		return requestsBy(emulatorStatsAt(t, emu["GEMINI_BASE_URL"]), "key1", emulator.DefaultImageModel)
	}
	want := fmt.Sprint([]string{"image/key1: " + scheduler.ReasonNoQuota})
	if got := stoppedLanes(lanesOf(t, dirs[1], envs[1], "-addr", b.addr)); fmt.Sprint(got) != want {
		t.Fatalf("b's stopped lanes %q, want %q", got, want)
	}
	if st := b.waitJob(t, b.createTides(t), testToken, nil); st.State != "failed" || !strings.Contains(st.Error, scheduler.ReasonNoQuota) {
		t.Fatalf("b's job %+v, want failed with the reason", st)
	}
	if n := images(); n != 1 {
		t.Fatalf("the API saw %d image requests, want 1 (a's): b sends nothing on the stopped lane", n)
	}
	r := runBin(t, dirs[1], envs[1], "lanes", "resume", "image", "key1", "-addr", b.addr)
	if r.code != 0 || strings.Contains(r.stdout, "note:") {
		t.Fatalf("lanes resume on b: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	a.waitLog(t, "lane resumed by another process")
	if got := stoppedLanes(lanesOf(t, dirs[0], envs[0], "-addr", a.addr)); len(got) != 0 {
		t.Fatalf("a's stopped lanes after b's resume: %q", got)
	}

	// Redis down: a key disabled through a is disabled there at once.
	srv.Stop()
	r = runBin(t, dirs[0], envs[0], "keys", "disable", "key1", "-addr", a.addr)
	if r.code != 0 || !strings.Contains(r.stdout, "key key1 disabled") || !strings.Contains(r.stdout, "note: Redis is unreachable") {
		t.Fatalf("keys disable with Redis down: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	code, body := a.call(t, "GET", "/v1/keys", testToken, "")
	var kl struct{ Keys []scheduler.KeyStatus }
	if code != 200 || json.Unmarshal(body, &kl) != nil || kl.Keys[0].Disabled == "" || !kl.Keys[0].ClusterPending ||
		!strings.Contains(string(body), `"cluster_pending":true`) {
		t.Fatalf("a's GET /v1/keys during the outage: %d %s", code, body)
	}
	srv.Restart()
	b.waitLog(t, "key disabled by another process")
	code, body = b.call(t, "GET", "/v1/keys", testToken, "")
	kl.Keys = nil
	if code != 200 || json.Unmarshal(body, &kl) != nil || kl.Keys[0].Disabled != "disabled by an operator" {
		t.Fatalf("b's GET /v1/keys after Redis came back: %d %s", code, body)
	}

	// a stopped: keys enable and lanes resume on its data directory reach
	// b through Redis.
	a.stop(t)
	off := []string{"-addr", "127.0.0.1:1"}
	r = runBin(t, dirs[0], envs[0], append([]string{"keys", "enable", "key1"}, off...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "key key1 enabled (the data directory") ||
		!strings.Contains(r.stdout, "note: made in the data directory and sent to the cluster through Redis") {
		t.Fatalf("keys enable on a's data directory: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	b.waitLog(t, "key enabled by another process")
	r = runBin(t, dirs[0], envs[0], append([]string{"lanes", "resume", "image", "key1"}, off...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "sent to the cluster through Redis") {
		t.Fatalf("lanes resume on a's data directory: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	b.waitLog(t, "lane resumed by another process")
}

// TestUsageRedisHangs: with Redis hung (SIGSTOP: connections open, no
// answer), GET /v1/usage answers within the summary's 1 s bound on the
// cluster's view (plus the rest of the handler), with the view's error,
// instead of waiting for the Redis client's read timeout (5.1 s without the
// client's ContextTimeoutEnabled); so `slideshowd usage` gets it from the
// daemon.
func TestUsageRedisHangs(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	_, emu := startEmulate(t, "-keys", "1", "-seed", "5")
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "log:\n  format: json\n  level: debug\nclasses:\n  image:\n    rpm: 600\n    rpd: 240\n")
	d := startServe(t, dir, map[string]string{
		"GEMINI_API_KEYS": emu["GEMINI_API_KEYS"], "GEMINI_BASE_URL": emu["GEMINI_BASE_URL"],
		"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_REDIS_URL": srv.URL(),
		"SLIDESHOWD_TOKEN": testToken,
	})
	d.waitLog(t, "watching the cluster's events")
	if code, body := d.call(t, "GET", "/v1/usage", testToken, ""); code != 200 {
		t.Fatalf("GET /v1/usage: %d %s", code, body)
	}
	pid := srv.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) // before the server's stop
	start := time.Now()
	code, body := d.call(t, "GET", "/v1/usage", testToken, "")
	took := time.Since(start)
	t.Logf("GET /v1/usage with Redis hung: %v", took)
	var sum scheduler.Summary
	if code != 200 || json.Unmarshal(body, &sum) != nil || sum.Cluster == nil || sum.Cluster.Error == "" {
		t.Errorf("GET /v1/usage with Redis hung: %d %s", code, body)
	}
	if took > 2500*time.Millisecond { // the client's read timeout is 3 s
		t.Errorf("GET /v1/usage took %v with Redis hung, want about the 1 s bound", took)
	}
	// slideshowd usage (which waits 2 s for the daemon) gets the daemon's.
	vars := map[string]string{"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_TOKEN": testToken}
	if r := runBin(t, dir, vars, "usage", "-addr", d.addr); r.code != 0 || !strings.Contains(r.stdout, "usage from the running daemon") {
		t.Errorf("usage with Redis hung: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// noQuotaPair starts an append-only Redis, the emulator with key1 without
// quota on the image model, and two daemons a and b on them at the
// emulator's limits (startClusterPair); then a job through a fails, which
// stops key1's image lane, and b logs that it applied the stop. It returns
// Redis, the emulator's environment, a and b, their directories and
// environments.
func noQuotaPair(t *testing.T) (*redistest.Server, map[string]string, []*daemonProc, []string, []map[string]string) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	_, emu := startEmulate(t, "-keys", "1", "-image-rpm", "600", "-seed", "5", "-no-quota", "key1:image")
	config := "log:\n  format: json\n  level: debug\nshutdown_grace: 5s\nclasses:\n  text:\n    rpm: 1000\n    rpd: 10000\n  image:\n    rpm: 600\n    rpd: 240\n"
	daemons, dirs, envs := startClusterPair(t, srv, emu, config)
	a, b := daemons[0], daemons[1]
	if st := a.waitJob(t, a.createTides(t), testToken, nil); st.State != "failed" {
		t.Fatalf("a's job %+v, want failed: its only image lane has no quota", st)
	}
	b.waitLog(t, "lane stopped by another process")
	return srv, emu, daemons, dirs, envs
}

// startClusterPair starts two serve daemons with config, each in its own
// directory and data directory, on emu's keys and srv's Redis, and waits
// until each watches the cluster's events; it returns them with their
// directories and environments (to start one again).
func startClusterPair(t *testing.T, srv *redistest.Server, emu map[string]string, config string) ([]*daemonProc, []string, []map[string]string) {
	t.Helper()
	var daemons []*daemonProc
	var dirs []string
	var envs []map[string]string
	for range 2 {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), config)
		env := map[string]string{
			"GEMINI_API_KEYS": emu["GEMINI_API_KEYS"], "GEMINI_BASE_URL": emu["GEMINI_BASE_URL"],
			"SLIDESHOWD_DATA": filepath.Join(dir, "data"), "SLIDESHOWD_REDIS_URL": srv.URL(),
			"SLIDESHOWD_TOKEN": testToken,
		}
		d := startServe(t, dir, env)
		d.waitLog(t, "watching the cluster's events")
		daemons, dirs, envs = append(daemons, d), append(dirs, dir), append(envs, env)
	}
	return daemons, dirs, envs
}
