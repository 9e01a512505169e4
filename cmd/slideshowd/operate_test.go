package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// stop ends the daemon with SIGTERM and waits for it.
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, d.logs())
	}
}

// keyList decodes `slideshowd keys -json` or GET /v1/keys.
type keyList struct {
	Keys []struct {
		ID, Project, Disabled string
		DisabledSince         time.Time `json:"disabled_since"`
		Classes               []struct{ Class, State string }
	}
}

// A leaked key is disabled with its reason; `slideshowd keys` shows and
// steers it through the daemon and on the data directory; a new secret in
// the configuration brings it back at start.
func TestKeysCommand(t *testing.T) {
	const newSecret = "AIzaTEST-e2e-replacement-secret-04"
	cfg := emulator.Config{Seed: 3}
	for i, s := range append(secrets[:3:3], newSecret) {
		cfg.Keys = append(cfg.Keys, emulator.Key{Name: fmt.Sprintf("key%d", i+1), Secret: s, Leaked: i == 1})
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := newLoopbackServer(t, e)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	vars := keyEnv(base, data)
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, dir, vars)
	code, body := d.call(t, "POST", "/v1/slideshows", testToken, `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 3}`)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ ID string }
	json.Unmarshal(body, &created)
	if st := d.waitJob(t, created.ID, testToken, nil); st.State != "done" {
		t.Fatalf("job %+v", st)
	}
	// key2 answered 403 leaked at some point only if it was tried; make sure.
	run := func(vars map[string]string, args ...string) result {
		t.Helper()
		r := runBin(t, dir, vars, args...)
		for _, s := range append(secrets, newSecret) {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Fatalf("slideshowd %v printed a secret", args)
			}
		}
		return r
	}
	cli := keyEnv(base, data)
	cli["SLIDESHOWD_TOKEN"] = testToken
	addr := []string{"-addr", d.addr}
	r := run(cli, append([]string{"keys", "-json"}, addr...)...)
	var kl keyList
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &kl) != nil || len(kl.Keys) != 3 {
		t.Fatalf("keys -json: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if kl.Keys[1].Disabled == "" {
		t.Fatalf("key2 (leaked) was never tried: three images and an analysis go round three lanes: %+v", kl.Keys)
	}
	if k := kl.Keys[1]; !strings.Contains(k.Disabled, "leak") || k.DisabledSince.IsZero() || k.Classes[0].State != "disabled" {
		t.Fatalf("key2 = %+v, want disabled as leaked with its time", k)
	}
	r = run(cli, append([]string{"keys"}, addr...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "the running daemon") || !strings.Contains(r.stdout, "key2") || !strings.Contains(r.stdout, "since") {
		t.Fatalf("keys: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(cli, append([]string{"keys", "disable", "key3"}, addr...)...); r.code != 0 || r.stdout != fmt.Sprintf("key key3 disabled (the running daemon at http://%s)\n", d.addr) {
		t.Fatalf("keys disable key3: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := run(cli, append([]string{"keys", "enable", "nope"}, addr...)...); r.code != 1 || !strings.Contains(r.stderr, "key not found") {
		t.Fatalf("keys enable nope: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(cli, "keys", "frobnicate"); r.code != 2 {
		t.Fatalf("keys frobnicate: %d", r.code)
	}
	code, body = d.call(t, "GET", "/v1/keys", testToken, "")
	kl = keyList{}
	if code != 200 || json.Unmarshal(body, &kl) != nil || kl.Keys[2].Disabled != "disabled by an operator" {
		t.Fatalf("GET /v1/keys: %d %s", code, body)
	}
	d.stop(t)

	// No daemon: the data directory.
	off := []string{"-addr", "127.0.0.1:1"}
	r = run(cli, append([]string{"keys"}, off...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "the data directory") || !strings.Contains(r.stdout, "disabled by an operator") {
		t.Fatalf("keys offline: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(cli, append([]string{"keys", "enable", "key3"}, off...)...); r.code != 0 || !strings.Contains(r.stdout, "key key3 enabled (the data directory") {
		t.Fatalf("keys enable offline: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// key2 gets a new secret: it comes back at start; with the same one it
	// would stay out.
	vars["GEMINI_API_KEYS"] = strings.Join([]string{secrets[0], newSecret, secrets[2]}, ",")
	d2 := startServe(t, dir, vars)
	d2.waitLog(t, "key enabled: its secret changed since it was disabled")
	code, body = d2.call(t, "GET", "/v1/keys", testToken, "")
	kl = keyList{}
	if code != 200 || json.Unmarshal(body, &kl) != nil {
		t.Fatalf("GET /v1/keys: %d %s", code, body)
	}
	for _, k := range kl.Keys {
		if k.Disabled != "" {
			t.Fatalf("after restart: %+v still disabled", k)
		}
	}
	if strings.Contains(d2.logs(), newSecret) || strings.Contains(d.logs(), secrets[1]) {
		t.Fatal("a secret in the logs")
	}
}

// `slideshowd jobs` lists, shows and cancels jobs: a running one (its
// image calls at the emulator are cancelled) and a queued one, through the
// daemon, then on the data directory.
func TestJobsCommand(t *testing.T) {
	imageCall := make(chan struct{}, 16) // an image request reached the emulator
	e, base, inflight := startTrackedEmulator(t, emulator.Faults{Latency: func(model string, _ *rand.Rand) time.Duration {
		if model == emulator.DefaultImageModel {
			select {
			case imageCall <- struct{}{}:
			default:
			}
			return time.Minute
		}
		return 0
	}})
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig+"max_active: 1\nshutdown_grace: 0\n")
	vars := keyEnv(base, data)
	d := startServe(t, dir, vars)
	var ids []string
	for i := range 3 {
		code, body := d.call(t, "POST", "/v1/slideshows", "", fmt.Sprintf(`{"source": "Deck %d", "slides": [{"text": "Slide"}], "images": 2, "priority": "%s"}`, i, []string{"low", "high", "normal"}[i]))
		if code != http.StatusAccepted {
			t.Fatalf("create: %d %s", code, body)
		}
		var created struct{ ID string }
		json.Unmarshal(body, &created)
		ids = append(ids, created.ID)
	}
	// The first job's state is "generating" once its image calls are
	// made; the "analysis done" line is logged before that is stored.
	select {
	case <-imageCall:
	case <-time.After(2 * time.Minute):
		t.Fatal("no image call reached the emulator in 2 minutes")
	}
	cli := keyEnv(base, data)
	addr := []string{"-addr", d.addr}
	r := runBin(t, dir, cli, append([]string{"jobs"}, addr...)...)
	if r.code != 0 || strings.Count(r.stdout, "Deck ") != 3 || !strings.Contains(r.stdout, "generating") || !strings.Contains(r.stdout, "queued") {
		t.Fatalf("jobs: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The running one is the first job (max_active 1).
	var running string
	for _, id := range ids {
		code, body := d.call(t, "GET", "/v1/slideshows/"+id, "", "")
		var st jobState
		if json.Unmarshal(body, &st); code == 200 && st.State == "generating" {
			running = id
		}
	}
	if running == "" {
		t.Fatal("no job is generating")
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "cancel", running}, addr...)...)
	if r.code != 0 || r.stdout != "job "+running+" canceled\n" {
		t.Fatalf("jobs cancel: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "cancel", running}, addr...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "the slideshow is canceled") {
		t.Fatalf("jobs cancel again: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "show", running}, addr...)...)
	if r.code != 0 || !strings.Contains(r.stdout, `"state": "canceled"`) || !strings.Contains(r.stdout, `"analysis"`) {
		t.Fatalf("jobs show: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "list", "-state", "canceled", "-json"}, addr...)...)
	if r.code != 0 || strings.Count(r.stdout, `"id"`) != 1 || !strings.Contains(r.stdout, running) {
		t.Fatalf("jobs list -state canceled: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, dir, cli, append([]string{"jobs", "list", "-state", "lost"}, addr...)...); r.code != 2 || !strings.Contains(r.stderr, "state") {
		t.Fatalf("jobs -state lost: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The image calls that had left were cancelled (the emulator saw them
	// end with the client gone); none was answered 200.
	d.waitLog(t, "job canceled")
	d.stop(t)
	inflight.waitZero()
	if n := served(e, emulator.DefaultImageModel); n != 0 {
		t.Errorf("%d images generated; the only running job was canceled", n)
	}

	// No daemon: list and cancel on the data directory.
	off := []string{"-addr", "127.0.0.1:1"}
	r = runBin(t, dir, cli, append([]string{"jobs", "list", "-priority", "high"}, off...)...)
	if r.code != 0 || strings.Count(r.stdout, "Deck ") != 1 || !strings.Contains(r.stdout, "Deck 1") {
		t.Fatalf("jobs list offline: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "cancel", ids[2]}, off...)...)
	if r.code != 0 {
		t.Fatalf("jobs cancel offline: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Again: refused in words, as the daemon's 409 (it said "pipeline:
	// job already ended: job ... is canceled").
	r = runBin(t, dir, cli, append([]string{"jobs", "cancel", ids[2]}, off...)...)
	if want := "slideshowd: job " + ids[2] + " is canceled: only a queued or running slideshow can be canceled\n"; r.code != 1 || r.stderr != want {
		t.Errorf("jobs cancel offline again: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
	r = runBin(t, dir, cli, append([]string{"jobs", "list", "-state", "canceled", "-limit", "1"}, off...)...)
	if r.code != 0 || strings.Count(r.stdout, "Deck ") != 1 || !strings.Contains(r.stdout, "more: slideshowd jobs list ") {
		t.Fatalf("jobs list -limit 1: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The next page's command, run as printed, keeps the filters and the
	// -addr it was run with (it asks the same daemon, or none).
	next := strings.Fields(strings.TrimSpace(r.stdout[strings.LastIndex(r.stdout, "more: slideshowd ")+len("more: slideshowd "):]))
	if want := []string{"jobs", "list", "-addr", "127.0.0.1:1", "-state", "canceled", "-limit", "1", "-cursor"}; len(next) != len(want)+1 || !slices.Equal(next[:len(want)], want) {
		t.Fatalf("next page's command %q, want %q and a cursor", next, want)
	}
	r = runBin(t, dir, cli, next...)
	if r.code != 0 || strings.Count(r.stdout, "Deck ") != 1 || strings.Contains(r.stdout, "more:") {
		t.Fatalf("jobs list page 2: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, t.TempDir(), keyEnv(base, filepath.Join(dir, "nowhere")), append([]string{"jobs"}, off...)...); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("jobs on a missing data directory: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
