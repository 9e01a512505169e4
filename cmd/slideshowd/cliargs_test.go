package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/config"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/store"
)

// TestBatchArgumentsSayWhatIsWrong: batch without -out, without a file or
// with two files prints which, then the usage (exit 2); before, the usage
// alone.
func TestBatchArgumentsSayWhatIsWrong(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // the first line of stderr
	}{
		{[]string{"batch", "b1.json"}, "slideshowd batch: missing -out DIR, the output directory (required unless -dry-run)"},
		{[]string{"batch", "-out", "out"}, "slideshowd batch: missing FILE.json, the batch file"},
		{[]string{"batch", "a.json", "b.json", "-out", "out"}, `slideshowd batch: unexpected argument "b.json": one batch file at a time`},
	} {
		r := runBin(t, t.TempDir(), nil, tt.args...)
		first, rest, _ := strings.Cut(r.stderr, "\n")
		if r.code != exitBadArgs || first != tt.want || !strings.HasPrefix(rest, "Usage: slideshowd batch FILE.json -out DIR") {
			t.Errorf("%v: exit %d, stderr\n%s\nwant %q then the usage", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestJobsLimitRange: -limit takes what the API's limit takes (1..500); 0
// listed a default page where ?limit=0 is a 400, and 501 was cut to 500 on
// the data directory where the API refuses it. Refused before anything is
// asked (no daemon needed).
func TestJobsLimitRange(t *testing.T) {
	for _, n := range []int{0, -1, pipeline.MaxPageSize + 1} {
		r := runBin(t, t.TempDir(), nil, "jobs", "-limit", fmt.Sprint(n), "-addr", "127.0.0.1:1")
		want := fmt.Sprintf("slideshowd jobs: -limit %d: want 1..%d (leave it out for %d)\n", n, pipeline.MaxPageSize, pipeline.DefaultPageSize)
		if r.code != exitBadArgs || r.stderr != want {
			t.Errorf("-limit %d: exit %d, stderr %q; want 2 and %q", n, r.code, r.stderr, want)
		}
	}
}

// TestLogDurationsAreStrings: a duration in a log line says its unit
// ("cooldown":"20s"); zerolog's default wrote float milliseconds
// ("cooldown":20000) under names without a unit.
func TestLogDurationsAreStrings(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(env{stdout: &buf, stderr: &buf}, config.Log{Format: "json", Level: "info"}, zerolog.InfoLevel)
	log.Info().Dur("cooldown", 20*time.Second).Dur("duration", 1500*time.Microsecond).Msg("lane cooling down")
	if s := buf.String(); !strings.Contains(s, `"cooldown":"20s"`) || !strings.Contains(s, `"duration":"1.5ms"`) {
		t.Errorf("log line %s: want \"cooldown\":\"20s\" and \"duration\":\"1.5ms\"", s)
	}
}

// TestServePageRefreshRange: -page-refresh is 0 (never) or whole seconds; a
// negative value meant never and 1500ms became 1s, without a word. Refused
// before the config is read (no daemon starts).
func TestServePageRefreshRange(t *testing.T) {
	for _, tt := range []struct{ arg, want string }{
		{"-5s", "slideshowd serve: -page-refresh -5s: must not be negative (0: never)\n"},
		{"1500ms", "slideshowd serve: -page-refresh 1.5s: want whole seconds (1s, 5s, 1m; 0: never): the page reloads in seconds\n"},
		{"300ms", "slideshowd serve: -page-refresh 300ms: want whole seconds (1s, 5s, 1m; 0: never): the page reloads in seconds\n"},
	} {
		r := runBin(t, t.TempDir(), nil, "serve", "-page-refresh", tt.arg) // no keys: the old code stopped at the config
		if r.code != exitBadArgs || r.stderr != tt.want {
			t.Errorf("-page-refresh %s: exit %d, stderr %q; want 2 and %q", tt.arg, r.code, r.stderr, tt.want)
		}
	}
}

// TestBatchOutCheckedFirst: an -out that can never hold the outputs (a
// regular file, a path under one, a directory that cannot be written) is
// refused before anything runs, naming the flag and the path (exit 2), in
// every mode of batch and in demo. Before, the batch ran, spent the quota
// of its first slideshow and only then failed to write it (exit 1); with
// -server it submitted the batch first.
func TestBatchOutCheckedFirst(t *testing.T) {
	e, base := startEmulator(t, emulator.Faults{})
	var daemonCalls atomic.Int32
	daemon := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		daemonCalls.Add(1)
		http.Error(w, `{"error":{"code":401,"message":"unauthorized"}}`, http.StatusUnauthorized)
	}))
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	batch := smallBatch(t, dir, 1, 1)
	writeTestFile(t, filepath.Join(dir, "afile"), "not a directory\n")
	vars := keyEnv(base, filepath.Join(dir, "data"))
	vars["SLIDESHOWD_TOKEN"] = testToken
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"batch", batch, "-out", "afile", "-progress", "lines"}, "slideshowd batch: -out afile: not a directory\n"},
		{[]string{"batch", batch, "-out", "afile/out"}, "slideshowd batch: -out afile/out: cannot be created: afile is not a directory\n"},
		{[]string{"batch", batch, "-out", "afile/a/b"}, "slideshowd batch: -out afile/a/b: cannot be created: afile is not a directory\n"},
		{[]string{"batch", batch, "-out", "afile", "-server", strings.TrimSuffix(daemon, "/")}, "slideshowd batch: -out afile: not a directory\n"},
		{[]string{"batch", batch, "-out", "afile", "-dry-run"}, "slideshowd batch: -out afile: not a directory\n"},
		{[]string{"demo", "-out", "afile", "-progress", "none"}, "slideshowd demo: -out afile: not a directory\n"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		cases = append(cases,
			struct {
				args []string
				want string
			}{[]string{"batch", batch, "-out", "ro"}, "slideshowd batch: -out ro: not writable: permission denied\n"},
			struct {
				args []string
				want string
			}{[]string{"batch", batch, "-out", "ro/out"}, "slideshowd batch: -out ro/out: does not exist and cannot be created in ro: permission denied\n"})
	}
	for _, tt := range cases {
		r := runBin(t, dir, vars, tt.args...)
		if r.code != exitBadArgs || r.stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	if n := len(e.Stats().Requests); n != 0 || daemonCalls.Load() != 0 {
		t.Errorf("the emulator saw %d kinds of request, the daemon %d requests; want none: -out is checked first", n, daemonCalls.Load())
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("a bad -out opened the data directory")
	}
	// A directory that does not exist yet, in one that can be written, is
	// fine: the batch creates it.
	if r := runBin(t, dir, vars, "batch", batch, "-out", "new/out", "-progress", "none"); r.code != exitOK {
		t.Errorf("-out new/out: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestJobsFiltersCheckedFirst: every list filter the daemon or the data
// directory would refuse is refused by jobs itself, before it asks
// anything, with one message naming the flag and the value (exit 2),
// whether a daemon answers, a data directory is there, or neither. Before,
// -since yesterday was the daemon's 400 (exit 1) and "pipeline: since: ..."
// from the data directory (exit 2); a bad -cursor and a bad -state were the
// daemon's word.
func TestJobsFiltersCheckedFirst(t *testing.T) {
	var asked atomic.Int32
	daemon := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"slideshows":[]}`)
	}))
	daemonAddr := strings.TrimSuffix(strings.TrimPrefix(daemon, "http://"), "/")
	dir := t.TempDir()
	withData := filepath.Join(dir, "data")
	if err := os.Mkdir(withData, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(withData, StoreFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	since := `slideshowd jobs: -since "yesterday": ` + pipeline.SinceReason + "\n"
	for _, tt := range []struct {
		flags []string
		want  string
	}{
		{[]string{"-since", "yesterday"}, since},
		{[]string{"-since", "-5h"}, `slideshowd jobs: -since "-5h": ` + pipeline.SinceReason + "\n"},
		{[]string{"-state", "queued,lost"}, `slideshowd jobs: -state "lost": want queued, analyzing, generating, done, failed or canceled` + "\n"},
		{[]string{"-priority", "urgent"}, `slideshowd jobs: -priority "urgent": want "high", "normal" or "low"` + "\n"},
		{[]string{"-cursor", "not-a-cursor"}, `slideshowd jobs: -cursor "not-a-cursor": not a cursor this server gave (next_cursor of a page)` + "\n"},
	} {
		for _, where := range []struct {
			name string
			vars map[string]string
			addr string
		}{
			{"daemon", map[string]string{"SLIDESHOWD_DATA": filepath.Join(dir, "none")}, daemonAddr},
			{"data directory", map[string]string{"SLIDESHOWD_DATA": withData}, "127.0.0.1:1"},
			{"neither", map[string]string{"SLIDESHOWD_DATA": filepath.Join(dir, "none")}, "127.0.0.1:1"},
		} {
			args := append([]string{"jobs", "list", "-addr", where.addr}, tt.flags...)
			r := runBin(t, dir, where.vars, args...)
			if r.code != exitBadArgs || r.stderr != tt.want {
				t.Errorf("%s, %v: exit %d, stderr %q; want 2 and %q", where.name, tt.flags, r.code, r.stderr, tt.want)
			}
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the daemon was asked %d times; want none: the filters are checked first", n)
	}
	// An unknown job in the data directory is said in words, without the
	// pipeline's prefix ("pipeline: not found: job ...").
	for _, sub := range []string{"show", "cancel"} {
		r := runBin(t, dir, map[string]string{"SLIDESHOWD_DATA": withData}, "jobs", sub, "0123456789abcdef01234567", "-addr", "127.0.0.1:1")
		want := `slideshowd: job "0123456789abcdef01234567": not found in the data directory ` + withData + "\n"
		if r.code != exitFailed || r.stderr != want {
			t.Errorf("jobs %s of an unknown job: exit %d, stderr %q; want 1 and %q", sub, r.code, r.stderr, want)
		}
	}
	// Good filters go to the daemon as given.
	r := runBin(t, dir, nil, "jobs", "list", "-addr", daemonAddr, "-since", "24h", "-state", "queued,done", "-priority", "low")
	if r.code != exitOK || asked.Load() != 1 {
		t.Errorf("good filters: exit %d, %d requests, stderr %q; want 0 and one request", r.code, asked.Load(), r.stderr)
	}
}

// TestClientAddrChecked: -addr of the client commands is the daemon's
// HOST:PORT; anything else is refused before anything is asked, naming the
// flag and the value (exit 2). A URL there (http://127.0.0.1:8080) was
// asked as http://http://127.0.0.1:8080, answered nothing, and the command
// went on to the data directory (exit 1, or the data directory's answer).
func TestClientAddrChecked(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"SLIDESHOWD_DATA": filepath.Join(dir, "data")}
	for _, cmd := range [][]string{{"jobs"}, {"keys"}, {"lanes"}, {"usage"}, {"store", "backup", "copy.db"}} {
		for _, addr := range []string{"http://127.0.0.1:8080", "localhost", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:http"} {
			r := runBin(t, dir, vars, append(cmd, "-addr", addr)...)
			want := fmt.Sprintf("slideshowd %s: -addr %q: want the running daemon's HOST:PORT, like 127.0.0.1:8080\n", cmd[0], addr)
			if r.code != exitBadArgs || r.stderr != want {
				t.Errorf("%v -addr %s: exit %d, stderr %q; want 2 and %q", cmd, addr, r.code, r.stderr, want)
			}
		}
		// A good one is asked (no daemon there, no data directory: exit 1).
		if r := runBin(t, dir, vars, append(cmd, "-addr", "127.0.0.1:1")...); r.code != exitFailed || strings.Contains(r.stderr, "-addr") {
			t.Errorf("%v -addr 127.0.0.1:1: exit %d, stderr %q; want 1, not about -addr", cmd, r.code, r.stderr)
		}
	}
}

// TestFlagLinesHoldNoSecret: the lines that refuse -addr, a jobs filter
// and -out never show a key put there by mistake.
func TestFlagLinesHoldNoSecret(t *testing.T) {
	const key = "AIzaSyB0123456789abcdefghijklmnopqrstuv" // a key's shape: AIza + 35
	dir := t.TempDir()
	vars := map[string]string{"GEMINI_API_KEYS": "plain-configured-secret", "SLIDESHOWD_DATA": filepath.Join(dir, "data")}
	for _, args := range [][]string{
		{"usage", "-addr", key},
		{"jobs", "-addr", "plain-configured-secret"},
		{"jobs", "-since", key},
		{"jobs", "-cursor", "plain-configured-secret"},
		{"batch", "b.json", "-out", filepath.Join(writeTestFile(t, filepath.Join(dir, key), ""), "out")},
	} {
		r := runBin(t, dir, vars, args...)
		if r.code != exitBadArgs {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, r.code, r.stderr)
		}
		for _, s := range []string{key, "AIza", "plain-configured-secret"} {
			if strings.Contains(r.stderr+r.stdout, s) {
				t.Errorf("%v: output shows %q: %s", args, s, r.stderr)
			}
		}
	}
}

// TestStoreBackupDestChecked: store backup's FILE is checked before the
// copy is made: a directory, or a file in a directory that does not exist
// or is not one, is refused naming it (exit 2). Before, the copy was made
// and then failed (exit 1): "rename d.tmp d: file exists", "open
// afile/x.db.tmp: not a directory".
func TestStoreBackupDestChecked(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(data, StoreFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	writeTestFile(t, filepath.Join(dir, "afile"), "")
	vars := map[string]string{"SLIDESHOWD_DATA": data}
	for _, tt := range []struct{ dest, want string }{
		{"data", "slideshowd store backup: data: a directory: want the copy's file name\n"},
		{"afile/x.db", "slideshowd store backup: afile/x.db: cannot be written in afile: not a directory\n"},
		{"none/x.db", "slideshowd store backup: none/x.db: cannot be written: none does not exist\n"},
	} {
		r := runBin(t, dir, vars, "store", "backup", tt.dest, "-addr", "127.0.0.1:1")
		if r.code != exitBadArgs || r.stderr != tt.want {
			t.Errorf("backup %s: exit %d, stderr %q; want 2 and %q", tt.dest, r.code, r.stderr, tt.want)
		}
	}
	if r := runBin(t, dir, vars, "store", "backup", "copy.db", "-addr", "127.0.0.1:1"); r.code != exitOK {
		t.Errorf("backup copy.db: exit %d, stderr %q", r.code, r.stderr)
	}
}
