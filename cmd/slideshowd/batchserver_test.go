package main

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// emulatorServed counts the 200 answers in emulate's stats.
func emulatorServed(t *testing.T, base string) int {
	t.Helper()
	n := 0
	for _, rc := range emulatorStatsAt(t, base).Requests {
		if rc.Status == 200 {
			n += rc.Count
		}
	}
	return n
}

// TestBatchToDaemon: batch -server hands the batch to a running serve (in
// front of an emulate process), follows it with the long poll and writes
// DIR as the local mode does; run again, it submits nothing new (each
// entry's Idempotency-Key finds its job) and rewrites the same folders.
func TestBatchToDaemon(t *testing.T) {
	_, vars := startEmulate(t, "-keys", "2", "-image-rpm", "0", "-seed", "5")
	base := vars["GEMINI_BASE_URL"]
	sdir := t.TempDir()
	writeTestFile(t, filepath.Join(sdir, "slideshowd.yaml"), fastConfig)
	vars["SLIDESHOWD_DATA"] = filepath.Join(sdir, "data")
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, sdir, vars)
	server := "http://" + d.addr

	dir := t.TempDir()
	batch := smallBatch(t, dir, 2, 2)
	cvars := map[string]string{"SLIDESHOWD_TOKEN": testToken} // no keys: the daemon has them
	r := runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", server, "-progress", "lines")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s\ndaemon:\n%s", r.code, r.stdout, r.stderr, d.logs())
	}
	for _, want := range []string{"2 slideshows submitted to " + server, "progress: 6/6 steps (analyses 2/2, images 4/4)",
		`done: [0] "Deck number 1" -> out/01-deck-number-1`, "2 of 2 slideshows done, 4 of 4 images written to out"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 2)
	first := readOutputStatus(t, filepath.Join(dir, "out", "02-deck-number-2"))
	if first.State != "done" || first.Entry != 1 || first.ID == "" {
		t.Errorf("status.json %+v", first)
	}
	if n := emulatorServed(t, base); n != 6 {
		t.Errorf("the emulator served %d requests, want 6 (2 analyses, 4 images)", n)
	}

	// Again: nothing is submitted twice, nothing asked of the API again.
	r = runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", server, "-progress", "none")
	if r.code != 0 || !strings.Contains(r.stdout, "2 of 2 slideshows done") {
		t.Fatalf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// It says what it found: it said "2 slideshows submitted".
	if want := "0 slideshows submitted to " + server + ", 2 found there from an earlier run; following them\n"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("second run: stdout\n%s\nwant it to start with %q", r.stdout, want)
	}
	if n := emulatorServed(t, base); n != 6 {
		t.Errorf("after the second run the emulator served %d requests, want still 6", n)
	}
	if again := readOutputStatus(t, filepath.Join(dir, "out", "02-deck-number-2")); again.ID != first.ID {
		t.Errorf("second run: job %s, first run %s: the entry was submitted again", again.ID, first.ID)
	}
	checkOutputs(t, filepath.Join(dir, "out"), 2, 2)

	// Without the token: the daemon's 401, said plainly.
	r = runBin(t, dir, nil, "batch", batch, "-out", "out", "-server", server)
	if r.code != 1 || !strings.Contains(r.stderr, "set SLIDESHOWD_TOKEN to its token") {
		t.Errorf("no token: exit %d\n%s", r.code, r.stderr)
	}
	// No daemon there.
	r = runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", "http://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("no daemon: exit %d\n%s", r.code, r.stderr)
	}
	if r := runBin(t, dir, cvars, "batch", batch, "-out", "out", "-server", "127.0.0.1:8080"); r.code != 2 {
		t.Errorf("bad -server: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBatchToDaemonSurvivesRestart: the daemon stops (SIGTERM) while batch
// -server follows a job whose image is being made, and starts again on the
// same address: the batch tries again until it answers, then follows the
// resumed job to its end and writes its folder (exit 0).
func TestBatchToDaemonSurvivesRestart(t *testing.T) {
	imaging := make(chan struct{}, 1)
	e, base := startEmulator(t, emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
		if model != emulator.DefaultImageModel {
			return 0
		}
		select {
		case imaging <- struct{}{}:
		default:
		}
		return 10 * time.Minute
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sdir := t.TempDir()
	writeTestFile(t, filepath.Join(sdir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 0s\n")
	vars := keyEnv(base, filepath.Join(sdir, "data"))
	d1 := startServeAt(t, sdir, vars, addr)

	dir := t.TempDir()
	batch := smallBatch(t, dir, 1, 1)
	cmd := exec.Command(bin, "batch", batch, "-out", "out", "-server", "http://"+addr, "-progress", "lines")
	cmd.Dir = dir
	cmd.Env = cmdEnv(t, nil)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	<-imaging // the daemon is making the image
	d1.cmd.Process.Signal(syscall.SIGTERM)
	<-d1.done
	d1.cmd.Wait()
	if err := e.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	startServeAt(t, sdir, vars, addr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("batch -server across a restart: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "1 of 1 slideshows done") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	checkOutputs(t, filepath.Join(dir, "out"), 1, 1)
}

// TestBatchServerURLRefused: batch -server takes the daemon's base URL
// only. User information and a fragment are refused (exit 2) before
// anything is asked, with one line naming the flag and the kind of
// mistake that never shows the secret-looking part: a fragment was
// accepted and printed back as given.
func TestBatchServerURLRefused(t *testing.T) {
	const key = "AIzaSyB0123456789abcdefghijklmnopqrstuv" // a key's shape: AIza + 35
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "not here", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	batch := smallBatch(t, dir, 1, 1)
	vars := map[string]string{"SLIDESHOWD_TOKEN": testToken}
	for _, tt := range []struct {
		server, want string
	}{
		{"http://" + host + "/#" + key, `slideshowd: -server: "http://` + host + `/#[REDACTED]": must not have a fragment ('#...')`},
		{"http://" + host + "#token=hunter2secret", `slideshowd: -server: "http://` + host + `#[REDACTED]": must not have a fragment ('#...')`},
		{"http://" + host + "/#", `slideshowd: -server: "http://` + host + `/#[REDACTED]": must not have a fragment ('#...')`},
		{"http://admin:hunter2secret@" + host, `slideshowd: -server: "http://[REDACTED]@` + host + `": must not carry credentials (user information before '@'); the daemon's token goes in SLIDESHOWD_TOKEN`},
		{"http://" + key + "@" + host + "/", `slideshowd: -server: "http://[REDACTED]@` + host + `/": must not carry credentials`},
		{"http://" + host + "/?token=hunter2secret", `slideshowd: -server: "http://` + host + `/?token=[REDACTED]": want the daemon's base URL`},
		{"http://127.0.0.1:hunter2secret/", `slideshowd: -server: not a URL: invalid port after the host (want a number after ':') (the value is not shown)`},
		{"127.0.0.1:8080", `slideshowd: -server: not a URL: no scheme, and a ':' in the first path segment (the value is not shown)`},
	} {
		r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-server", tt.server)
		if r.code != exitBadArgs || !strings.HasPrefix(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("-server %s: exit %d, stdout %q, stderr %q; want 2 and one line starting %q", tt.server, r.code, r.stdout, r.stderr, tt.want)
		}
		for _, s := range []string{key, "AIza", "hunter2secret", "admin"} {
			if strings.Contains(r.stderr, s) {
				t.Errorf("-server %s: stderr shows %q: %s", tt.server, s, r.stderr)
			}
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the server was asked %d times by refused URLs", n)
	}
	// The base URL itself is taken (and asked).
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out", "-server", srv.URL+"/"); r.code == exitBadArgs || asked.Load() == 0 {
		t.Errorf("-server %s/: exit %d, %d requests; want it asked\n%s", srv.URL, r.code, asked.Load(), r.stderr)
	}
}
