package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

const testToken = "test-token-0123456789abcdef"

// daemonProc is a running `slideshowd serve`.
type daemonProc struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr bytes.Buffer // JSON log lines
	stdout bytes.Buffer
	logged chan struct{} // closed and replaced at each log line
	done   chan struct{}
}

// waitLog blocks until a log line contains want; it fails the test when
// the daemon ends first or after a minute.
func (d *daemonProc) waitLog(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		d.mu.Lock()
		found, logged := strings.Contains(d.stderr.String(), want), d.logged
		d.mu.Unlock()
		if found {
			return
		}
		select {
		case <-logged:
		case <-d.done:
			t.Fatalf("serve ended before logging %q:\n%s", want, d.logs())
		case <-timeout:
			t.Fatalf("serve did not log %q within a minute:\n%s", want, d.logs())
		}
	}
}

func (d *daemonProc) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String() + d.stdout.String()
}

// startServe starts serve in dir and waits for its "serving" log line.
func startServe(t *testing.T, dir string, vars map[string]string) *daemonProc {
	t.Helper()
	return startServeAt(t, dir, vars, "127.0.0.1:0")
}

// startServeWith is startServe with more flags.
func startServeWith(t *testing.T, dir string, vars map[string]string, flags ...string) *daemonProc {
	t.Helper()
	return startServeAt(t, dir, vars, "127.0.0.1:0", flags...)
}

// startServeAt is startServe listening on addr, with more flags.
func startServeAt(t *testing.T, dir string, vars map[string]string, addr string, flags ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{done: make(chan struct{}), logged: make(chan struct{})}
	// -drain 0: the tests that stop serve do not wait for a load balancer
	// (TestServeDrainsWhenIdle gives its own -drain, which comes later and
	// wins).
	d.cmd = exec.Command(bin, append([]string{"serve", "-addr", addr, "-drain", "0"}, flags...)...)
	d.cmd.Dir = dir
	d.cmd.Env = cmdEnv(t, vars)
	d.cmd.Stdout = &lockedWriter{mu: &d.mu, w: &d.stdout}
	pipe, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.stderr.WriteString(line + "\n")
			close(d.logged)
			d.logged = make(chan struct{})
			d.mu.Unlock()
			var l struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Message == "serving the HTTP API" {
				addrc <- l.Addr
			}
		}
	}()
	select {
	case d.addr = <-addrc:
	case <-d.done:
		d.cmd.Wait()
		t.Fatalf("serve ended at start:\n%s", d.logs())
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("serve did not start:\n%s", d.logs())
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		d.cmd.Wait()
	})
	return d
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// call makes an HTTP request to the daemon and returns status and body.
func (d *daemonProc) call(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// jobState is the part of a job's status the tests read.
type jobState struct {
	State  string
	Error  string
	Images []struct{ State string }
}

func (s jobState) final() bool { return s.State == "done" || s.State == "failed" }

// waitJob long-polls the job until it is done or failed (each request
// answers at the job's end or after 60 s) and returns its status; the
// bodies go to seen when it is not nil.
func (d *daemonProc) waitJob(t *testing.T, id, token string, seen *bytes.Buffer) jobState {
	t.Helper()
	var st jobState
	for polls := 0; !st.final(); polls++ {
		if polls == 3 {
			t.Fatalf("job %s still %s after %d long polls of 60s\nlogs:\n%s", id, st.State, polls, d.logs())
		}
		code, body := d.call(t, "GET", "/v1/slideshows/"+id+"?wait=60s", token, "")
		if seen != nil {
			seen.Write(body)
		}
		if code != http.StatusOK {
			t.Fatalf("status: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("status %s: %v", body, err)
		}
	}
	return st
}

// answer is the end of a request made in the background.
type answer struct {
	code int
	body []byte
	err  error
}

// goCall makes a request in the background; the answer arrives on the
// channel.
func (d *daemonProc) goCall(path string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + d.addr + path)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- answer{code: resp.StatusCode, body: body, err: err}
	}()
	return out
}

// TestServeAndNoSecretAnywhere runs the daemon against an emulator with
// faults and a leaked key, drives the HTTP API, stops it with SIGTERM, and
// then searches every log line, response and file for the keys.
func TestServeAndNoSecretAnywhere(t *testing.T) {
	cfg := emulator.Config{Seed: 11, Faults: emulator.Faults{Rate503: 0.2}}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s, Leaked: i == 2})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := newLoopbackServer(t, e)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 5s\n")
	vars := keyEnv(srv, data)
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, dir, vars)
	var seen bytes.Buffer // every response body

	// Auth.
	if code, body := d.call(t, "GET", "/v1/usage", "", ""); code != http.StatusUnauthorized {
		t.Errorf("usage without token: %d %s", code, body)
	}
	if code, body := d.call(t, "GET", "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("healthz: %d %s", code, body)
	}
	// Bad input names the field.
	code, body := d.call(t, "POST", "/v1/slideshows", testToken, `{"source": "s", "slides": [{"text": "t"}], "images": 25}`)
	seen.Write(body)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "images") {
		t.Errorf("images 25: %d %s", code, body)
	}
	// A job to the end.
	code, body = d.call(t, "POST", "/v1/slideshows", testToken, `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 3, "priority": "high"}`)
	seen.Write(body)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		t.Fatalf("create answer %s", body)
	}
	if st := d.waitJob(t, created.ID, testToken, &seen); st.State != "done" {
		t.Fatalf("job %s: %s\nlogs:\n%s", st.State, st.Error, d.logs())
	}
	code, body = d.call(t, "GET", "/v1/slideshows/"+created.ID+"/images/2", testToken, "")
	if code != http.StatusOK {
		t.Fatalf("image: %d %s", code, body)
	}
	if _, err := png.Decode(bytes.NewReader(body)); err != nil {
		t.Errorf("image 2 is not a PNG: %v", err)
	}
	if code, body := d.call(t, "GET", "/v1/slideshows/0123456789abcdef01234567", testToken, ""); code != http.StatusNotFound {
		t.Errorf("unknown id: %d %s", code, body)
	}
	code, body = d.call(t, "GET", "/v1/usage", testToken, "")
	seen.Write(body)
	if code != http.StatusOK || !strings.Contains(string(body), `"disabled_keys":[{"id":"key3"`) {
		t.Errorf("usage: %d %s", code, body)
	}
	code, body = d.call(t, "GET", "/metrics", testToken, "")
	seen.Write(body)
	if code != http.StatusOK {
		t.Errorf("metrics: %d", code)
	}

	// `slideshowd usage` reads the running daemon, with the token.
	uvars := map[string]string{"SLIDESHOWD_TOKEN": testToken, "SLIDESHOWD_DATA": data, "GEMINI_API_KEYS": strings.Join(secrets, ",")}
	r := runBin(t, dir, uvars, "usage", "-addr", d.addr)
	seen.WriteString(r.stdout + r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "usage from the running daemon at http://"+d.addr+"/v1/usage") ||
		!strings.Contains(r.stdout, "key3 (project key3): ") {
		t.Errorf("usage: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// No daemon at that address, and the data directory locked: say so.
	r = runBin(t, dir, uvars, "usage", "-addr", "127.0.0.1:1")
	seen.WriteString(r.stdout + r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "slideshowd.db is locked by a running slideshowd serve (pid ") ||
		!strings.Contains(r.stderr, "serving on "+d.addr+", not asked there (no daemon answered at http://127.0.0.1:1/v1/usage") ||
		!strings.Contains(r.stderr, "give it with -addr "+d.addr) {
		t.Errorf("usage with the file locked: exit %d\n%s", r.code, r.stderr)
	}
	// A second daemon on the same data directory refuses to start.
	r = runBin(t, dir, vars, "serve", "-addr", "127.0.0.1:0")
	seen.WriteString(r.stdout + r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "is in use by another slideshowd") {
		t.Errorf("second serve: exit %d\n%s", r.code, r.stderr)
	}

	// SIGTERM: the daemon stops cleanly.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, d.logs())
	}
	logs := d.logs()
	if !strings.Contains(logs, "unfinished jobs resume at the next start") || !strings.Contains(logs, `"key":"key3"`) {
		t.Errorf("logs lack the stop line or the disabled key by id:\n%s", logs)
	}
	disabledLines := 0
	for _, line := range strings.Split(strings.TrimSpace(d.stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if dup := duplicateKeys(line); len(dup) > 0 {
			t.Errorf("log line has the keys %v more than once: %s", dup, line)
		}
		var l struct{ Message, Key string }
		json.Unmarshal([]byte(line), &l)
		if strings.Contains(l.Message, "key disabled") {
			disabledLines++
		}
	}
	if disabledLines != 1 {
		t.Errorf("key3 disabled: logged %d times, want once:\n%s", disabledLines, logs)
	}
	if e.Stats().Status(http.StatusForbidden) == 0 {
		t.Error("the leaked key was never tried: the test does not exercise key errors")
	}

	// No secret anywhere: logs, responses, files (bbolt included).
	haystacks := map[string][]byte{"logs": []byte(logs), "responses": seen.Bytes()}
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			b, _ := os.ReadFile(path)
			haystacks[path] = b
		}
		return nil
	})
	if len(haystacks) < 5 {
		t.Fatalf("only %d places searched", len(haystacks))
	}
	for where, b := range haystacks {
		for _, s := range append(secrets, testToken) {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a secret (%s...)", where, s[:12])
			}
		}
	}
}

// TestBatchLogsHoldNoSecret runs a batch at debug level against an emulator
// with faults and a leaked key and searches its output and files for keys.
func TestBatchLogsHoldNoSecret(t *testing.T) {
	cfg := emulator.Config{Seed: 5, Faults: emulator.Faults{Rate503: 0.2, Rate500: 0.1}}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s, Leaked: i == 0})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := newLoopbackServer(t, e)
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 2, 3)
	r := runBin(t, dir, keyEnv(base, filepath.Join(dir, "data")), "batch", batch, "-out", "out", "-v")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, `"level":"error"`) || !strings.Contains(r.stderr, `"key":"key1"`) {
		t.Errorf("the disabled key is not logged by id:\n%s", r.stderr)
	}
	if e.Stats().Status(http.StatusServiceUnavailable) == 0 {
		t.Error("no 503 was served: the test does not exercise failures")
	}
	// One line per event, each key once in it.
	disabled := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if dup := duplicateKeys(line); len(dup) > 0 {
			t.Errorf("log line has the keys %v more than once: %s", dup, line)
		}
		if strings.Contains(line, "key disabled") {
			disabled++
		}
	}
	if disabled != 1 {
		t.Errorf("key1 disabled: logged %d times, want once:\n%s", disabled, r.stderr)
	}
	places := map[string][]byte{"stdout": []byte(r.stdout), "stderr": []byte(r.stderr)}
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			b, _ := os.ReadFile(path)
			places[path] = b
		}
		return nil
	})
	for where, b := range places {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a secret (%s...)", where, s[:12])
			}
		}
	}
}

// TestServeStopsAndResumes stops the daemon with SIGTERM, shutdown_grace 0,
// while a job's images are being generated and a client long-polls it, and
// starts it again: the long poll is answered at the stop, the job ends done
// after the restart, and no image stored before the stop is generated again.
func TestServeStopsAndResumes(t *testing.T) {
	// The first image request is answered at once; the others are held
	// (an hour, ended by the stop's cancel) until the daemon has stopped,
	// so exactly one image is stored before the stop however loaded the
	// machine is (a 1.5 s latency let a slow test stop after all four).
	var mu sync.Mutex
	images, hold := 0, true
	e, base, inflight := startTrackedEmulator(t, emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
		if model != emulator.DefaultImageModel {
			return 10 * time.Millisecond
		}
		mu.Lock()
		defer mu.Unlock()
		images++
		if images == 1 || !hold {
			return 10 * time.Millisecond
		}
		return time.Hour
	}})
	dir := t.TempDir()
	// An explicit 0 (not the 30s default): running calls stop at once.
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 0\n")
	vars := keyEnv(base, filepath.Join(dir, "data"))
	d := startServe(t, dir, vars)
	code, body := d.call(t, "POST", "/v1/slideshows", "", `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 4}`)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ ID string }
	json.Unmarshal(body, &created)
	// Logged once the image's state is stored done.
	d.waitLog(t, `"message":"image done"`)
	// A client long-polls the job; once the handler waits, stop the daemon.
	polled := d.goCall("/v1/slideshows/" + created.ID + "?wait=60s")
	d.waitLog(t, "long poll: waiting for the job to end")
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case a := <-polled:
		var st jobState
		if a.err != nil || a.code != http.StatusOK || json.Unmarshal(a.body, &st) != nil || st.State != "generating" {
			t.Errorf("the long poll at the stop: %d %s %v; want 200 and the job generating", a.code, a.body, a.err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the long poll was not answered at the stop")
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, d.logs())
	}
	if logs := d.logs(); !strings.Contains(logs, `"grace":"0s",`) {
		t.Errorf("the stop did not use shutdown_grace 0:\n%s", logs)
	}
	inflight.waitZero()
	imagesBefore := countFiles(t, filepath.Join(dir, "data", "jobs"), "image-*.png")
	if imagesBefore != 1 {
		t.Fatalf("%d images stored before the stop, want the 1 answered (the others were held)", imagesBefore)
	}
	mu.Lock()
	hold = false
	mu.Unlock()
	text0, image0 := served(e, emulator.DefaultTextModel), served(e, emulator.DefaultImageModel)

	d2 := startServe(t, dir, vars)
	if st := d2.waitJob(t, created.ID, "", nil); st.State != "done" {
		t.Fatalf("after the restart the job is %q (%s)\n%s", st.State, st.Error, d2.logs())
	}
	if n := served(e, emulator.DefaultTextModel) - text0; n != 0 {
		t.Errorf("the analysis was asked for again %d times", n)
	}
	if got, want := served(e, emulator.DefaultImageModel)-image0, 4-imagesBefore; got != want {
		t.Errorf("%d images generated after the restart, want %d", got, want)
	}
}

// duplicateKeys returns the members of a JSON object that appear more than
// once (a log line with "component" twice reads as one value to most tools).
func duplicateKeys(line string) []string {
	dec := json.NewDecoder(strings.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return dup
		}
		k, _ := t.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return dup
		}
	}
	return dup
}
