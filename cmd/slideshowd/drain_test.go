package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// TestServeDrainsAfterSIGTERM: after SIGTERM, with a job's image call still
// running, serve keeps its listener for the grace: new work (a submit, a key
// change) answers 503 UNAVAILABLE with Retry-After, /readyz 503, reads are
// served; once the call ends the job is stored done and serve exits 0.
func TestServeDrainsAfterSIGTERM(t *testing.T) {
	imaging, release := make(chan struct{}, 1), make(chan struct{})
	cfg := emulator.Config{Seed: 7}
	for i, s := range secrets {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, emulator.DefaultImageModel) {
			select {
			case imaging <- struct{}{}:
			default:
			}
			<-release
		}
		e.ServeHTTP(w, r)
	}))
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 2m\n")
	vars := keyEnv(base, filepath.Join(dir, "data"))
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, dir, vars)
	code, body := d.call(t, "POST", "/v1/slideshows", testToken, `{"source":"s","slides":[{"text":"t"}],"images":1}`)
	if code != 202 {
		t.Fatalf("submit: %d %s", code, body)
	}
	var job struct{ ID string }
	if err := json.Unmarshal(body, &job); err != nil || job.ID == "" {
		t.Fatalf("submit answer %s: %v", body, err)
	}
	id := job.ID
	select {
	case <-imaging:
	case <-d.done:
		t.Fatalf("serve ended:\n%s", d.logs())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, `"message":"stopping:`)

	// A client without kept-alive connections: the server closes them now.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+d.addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s during the grace: %v", method, path, err)
		}
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/slideshows", `{"source":"new","slides":[{"text":"t"}],"images":1}`},
		{"POST", "/v1/keys/key1/disable", ""},
		{"GET", "/readyz", ""},
		{"GET", "/v1/slideshows/" + id + "?wait=30s", ""},
	} {
		resp := do(c.method, c.path, c.body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s during the grace: %d Retry-After %q, want 503 with Retry-After", c.method, c.path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if resp := do("GET", "/v1/slideshows/"+id, ""); resp.StatusCode != 200 {
		t.Errorf("GET the job during the grace: %d, want 200", resp.StatusCode)
	}
	close(release)
	released = true
	<-d.done
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, d.logs())
	}
	if !strings.Contains(d.logs(), "stopped; unfinished jobs resume") {
		t.Errorf("no clean stop logged:\n%s", d.logs())
	}
	// The running call finished within the grace and was stored.
	d2 := startServe(t, dir, vars)
	if code, body := d2.call(t, "GET", "/v1/slideshows/"+id, testToken, ""); code != 200 || !strings.Contains(string(body), `"state":"done"`) {
		t.Errorf("after the restart: %d %s, want the job done", code, body)
	}
	if n := served(e, emulator.DefaultImageModel); n != 1 {
		t.Errorf("emulator served %d image calls, want 1", n)
	}
}

// TestServeDrainsWhenIdle: after SIGTERM with nothing running, serve keeps
// its listener for the drain period (-drain, bounded by shutdown_grace) so
// that a load balancer polling /readyz sees the 503 and stops sending;
// before, it logged "stopping ... the listener stays open meanwhile" and
// "stopped" in the same second, and a client got a refused connection.
func TestServeDrainsWhenIdle(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 1m\n")
	const drain = 3 * time.Second
	d := startServeWith(t, dir, keyEnv(base, filepath.Join(dir, "data")), "-drain", drain.String())
	signaled := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, `"message":"stopping:`)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + d.addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz after the stop signal, nothing running: %v, want 503\n%s", err, d.logs())
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("GET /readyz during the drain: %d, want 503", resp.StatusCode)
	}
	<-d.done
	took := time.Since(signaled)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, d.logs())
	}
	if took < drain {
		t.Errorf("serve ended %v after SIGTERM, before the %v drain", took, drain)
	}
	if !strings.Contains(d.logs(), `"drain":"3s"`) || !strings.Contains(d.logs(), "stopped; unfinished jobs resume") {
		t.Errorf("no drain or no clean stop logged:\n%s", d.logs())
	}
}

// TestServeDrainBoundedByGrace: the drain never outlasts shutdown_grace
// (0: stops at once), and a negative -drain is refused.
func TestServeDrainBoundedByGrace(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"shutdown_grace: 0s\n")
	d := startServeWith(t, dir, keyEnv(base, filepath.Join(dir, "data")), "-drain", "10m")
	d.stop(t)
	if !strings.Contains(d.logs(), `"drain":"0s"`) {
		t.Errorf("drain not bounded by shutdown_grace 0:\n%s", d.logs())
	}
	r := runBin(t, dir, nil, "serve", "-drain", "-1s")
	if want := "slideshowd serve: -drain -1s: must not be negative (0: no drain period)\n"; r.code != exitBadArgs || r.stderr != want {
		t.Errorf("-drain -1s: exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
	}
}
