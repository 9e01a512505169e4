package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/gemini/emulator"
)

// The client commands need no key: with only listen: in the config and
// SLIDESHOWD_TOKEN, usage, keys, jobs, store backup (through the daemon)
// and batch -dry-run work. Without a daemon, what needs the lanes (usage,
// keys on the data directory; store restore) says precisely why; what does
// not (jobs, store check) works.
func TestClientCommandsNeedNoKeys(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	srv := t.TempDir()
	data := filepath.Join(srv, "data")
	writeTestFile(t, filepath.Join(srv, "slideshowd.yaml"), fastConfig)
	vars := keyEnv(base, data)
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, srv, vars)

	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: "+d.addr+"\n")
	smallBatch(t, dir, 1, 1)
	cli := map[string]string{"SLIDESHOWD_TOKEN": testToken, "SLIDESHOWD_DATA": data}
	for _, args := range [][]string{
		{"usage"}, {"keys"}, {"jobs"}, {"store", "backup", "bk.db"},
		{"batch", "batch.json", "-out", "out", "-dry-run"},
	} {
		r := runBin(t, dir, cli, args...)
		if r.code != 0 || strings.Contains(r.stderr, "keys: none") {
			t.Errorf("slideshowd %v with no keys: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	r := runBin(t, dir, cli, "batch", "batch.json", "-out", "out", "-dry-run")
	if !strings.Contains(r.stdout, "calls: 1 text, 1 image; no keys configured, so the quota (per project) is not planned") {
		t.Errorf("dry run with no keys:\n%s", r.stdout)
	}

	d.stop(t)
	// No daemon: nothing listens on port 1 (the stopped daemon's port may
	// be taken again by anything).
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: 127.0.0.1:1\n")
	needs := "needs the keys by id and project"
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"usage"}, 1, "the usage table from the data directory " + needs},
		{[]string{"keys"}, 1, "the keys' states from the data directory " + needs},
		{[]string{"store", "restore", "bk.db"}, 2, "restore raises today's count of every configured lane"},
		{[]string{"jobs"}, 0, ""},
		{[]string{"store", "check"}, 0, ""},
	} {
		r := runBin(t, dir, cli, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "keys: none") {
			t.Errorf("slideshowd %v, no daemon, no keys: exit %d (want %d), want %q in stderr:\n%s%s", tt.args, r.code, tt.code, tt.want, r.stdout, r.stderr)
		}
	}
	// The commands that call Gemini themselves still require a key.
	r = runBin(t, dir, cli, "batch", "batch.json", "-out", "out")
	if want := "slideshowd: config: keys: none: set GEMINI_API_KEYS or list keys (id, secret_env) in the config file\n"; r.code != 2 || r.stderr != want {
		t.Errorf("batch with no keys: exit %d %q", r.code, r.stderr)
	}
}
