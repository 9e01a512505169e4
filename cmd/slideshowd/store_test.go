package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/store"
)

// truncatedLine is the line of a truncated store (see the README's
// example, which TestREADMEDamageExamples matches against it too).
var truncatedLine = regexp.MustCompile(`^slideshowd: store: \S+ is damaged: the file has \d+ whole pages of \d+ bytes but the store uses \d+: it is truncated; see slideshowd store restore\n$`)

// The README's examples of damage lines are the real lines.
func TestREADMEDamageExamples(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "it is truncated") && strings.HasPrefix(line, "slideshowd: store:") {
			found = true
			if !truncatedLine.MatchString(line) {
				t.Errorf("README: %q is not the real line (%s)", line, truncatedLine)
			}
		}
	}
	if !found {
		t.Error("README: no example of a truncated store's line")
	}
}

// setLife writes l as cluster "c1"'s life record in the store file at path.
func setLife(t *testing.T, path string, l store.SharedLife) {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetSharedLife(context.Background(), "c1", l); err != nil {
		t.Fatal(err)
	}
}

// sharedLife returns cluster "c1"'s life record in the store file at path.
func sharedLife(t *testing.T, path string) store.SharedLife {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.SharedLife(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// todayCounts reads today's counts from a store file, by lane.
func todayCounts(t *testing.T, path string) map[store.LaneID]int {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts, err := st.Daily(context.Background(), bucket.Day(time.Now(), bucket.Pacific))
	if err != nil {
		t.Fatal(err)
	}
	out := map[store.LaneID]int{}
	for _, c := range counts {
		out[c.Lane] = c.Count
	}
	return out
}

// The store proves itself at start: a damaged, empty or lost store stops
// start-up with one line naming the file and exit 2; store check, backup and
// restore bring it back, with the day counts never below the backup's plus
// the allowance for what may have been sent since.
func TestStoreDamageBackupRestore(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: 127.0.0.1:1\n")
	batch := smallBatch(t, dir, 2, 2)
	data := filepath.Join(dir, "data")
	db := filepath.Join(data, StoreFile)
	vars := keyEnv(base, data)
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out"); r.code != 0 {
		t.Fatalf("batch: exit %d\n%s", r.code, r.stderr)
	}
	if r := runBin(t, dir, vars, "store", "check"); r.code != 0 || !strings.Contains(r.stdout, db+": ok") {
		t.Fatalf("store check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	backup := filepath.Join(dir, "b1.db")
	r := runBin(t, dir, vars, "store", "backup", backup)
	if r.code != 0 || !strings.Contains(r.stdout, "read-only, no daemon answered") {
		t.Fatalf("store backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := todayCounts(t, backup)
	if len(before) == 0 {
		t.Fatal("the backup holds no counts for today")
	}
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}

	damage := []struct {
		name  string
		apply func() error
		want  string
	}{
		{"truncated", func() error { return os.WriteFile(db, good[:len(good)/3], 0o600) }, "is damaged: "},
		{"zeroed meta pages", func() error {
			b := append([]byte(nil), good...)
			clear(b[:8192])
			return os.WriteFile(db, b, 0o600)
		}, "is damaged: "},
		{"empty", func() error { return os.WriteFile(db, nil, 0o600) }, "is damaged: empty file (0 bytes)"},
		{"missing", func() error { return os.Remove(db) }, "is damaged: missing, but the data directory was used before"},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			if err := d.apply(); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"batch", batch, "-out", "out"}, {"store", "check"}} {
				r := runBin(t, dir, vars, args...)
				if r.code != exitBadArgs {
					t.Errorf("%s: exit %d, want 2\n%s", args[0], r.code, r.stderr)
				}
				if !strings.Contains(r.stderr, "slideshowd: store: "+db+" "+d.want) || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("%s: stderr %q: want one line naming %s and %q", args[0], r.stderr, db, d.want)
				}
				// Every damage line says the way back.
				if !strings.Contains(r.stderr, "slideshowd store restore") {
					t.Errorf("%s: stderr %q: no hint to slideshowd store restore", args[0], r.stderr)
				}
				// The same line from batch (store.Open, as serve) and
				// store check: not bbolt's "invalid freelist page".
				if d.name == "truncated" && !truncatedLine.MatchString(r.stderr) {
					t.Errorf("%s: %q, want the line of the README's example (%s)", args[0], r.stderr, truncatedLine)
				}
				if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine") {
					t.Errorf("%s: a crash: %s", args[0], r.stderr)
				}
			}
		})
	}

	// A life record in the backup (a process on Redis wrote it): restore
	// forgets it, so no start replaces a dead life's charge by the stale
	// units of the backup (review10 R10-1).
	setLife(t, backup, store.SharedLife{Life: "c:1", Epoch: "e1", Gen: 1})

	// Restore: the counts are the backup's plus the allowance. The store
	// is missing (the last damage): no previous file is kept, none made up.
	r = runBin(t, dir, vars, "store", "restore", backup)
	if r.code != 0 || !strings.Contains(r.stdout, "restored from "+backup) {
		t.Fatalf("store restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if kept, _ := filepath.Glob(db + ".replaced-*"); len(kept) != 0 || strings.Contains(r.stdout, "previous file") {
		t.Errorf("restore over a missing store kept a phantom previous file %v: %s", kept, r.stdout)
	}
	if l := sharedLife(t, db); l.Life != "" {
		t.Errorf("life record after restore: %+v, want none (forgotten)", l)
	}
	after := todayCounts(t, db)
	for _, p := range []string{"key1", "key2", "key3"} {
		for _, c := range []struct {
			class    string
			rpm, rpd int
		}{{"text", 900, 9000}, {"image", 18, 240}} {
			lane := store.LaneID{Project: p, Class: c.class}
			if want := min(c.rpd, before[lane]+c.rpm); after[lane] < want {
				t.Errorf("%s: %d after restore, want >= %d (backup %d + one minute at %d RPM)", lane, after[lane], want, before[lane], c.rpm)
			}
		}
	}
	if r := runBin(t, dir, vars, "batch", batch, "-out", "out"); r.code != 0 {
		t.Fatalf("batch after restore: exit %d\n%s", r.code, r.stderr)
	}

	// While the daemon runs: backup goes through its API; restore is refused.
	d := startServe(t, dir, vars)
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: "+d.addr+"\n")
	backup2 := filepath.Join(dir, "b2.db")
	r = runBin(t, dir, vars, "store", "backup", backup2)
	if want := "(through the running daemon at http://" + d.addr + "/v1/store/backup)\n"; r.code != 0 || !strings.HasSuffix(r.stdout, want) {
		t.Fatalf("store backup with the daemon: exit %d, want stdout ending %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	// store check cannot check a store in use, and says so: exit 1.
	r = runBin(t, dir, vars, "store", "check")
	if want := "slideshowd: " + db + " is in use by a running slideshowd: store check cannot check a store in use (exit 1); stop the daemon, or check a copy (store backup checks each copy it writes)\n"; r.code != exitFailed || r.stderr != want {
		t.Errorf("store check while running: exit %d %q, want 1 %q", r.code, r.stderr, want)
	}
	if err := store.Verify(backup2, store.Options{}); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, dir, vars, "store", "restore", backup2)
	if r.code != exitFailed || !strings.Contains(r.stderr, "in use by a running slideshowd") {
		t.Errorf("restore while running: exit %d\n%s", r.code, r.stderr)
	}
}

// TestStoreBackupAddr: store backup reaches a daemon started with
// serve -addr through its own -addr (store had none, so it asked listen's
// address, found the file held and said only that), and when no daemon
// answers and the file is held, it names the address it asked and how to
// give the right one.
func TestStoreBackupAddr(t *testing.T) {
	_, base := startEmulator(t, emulator.Faults{})
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), "listen: 127.0.0.1:1\n") // not where the daemon serves
	data := filepath.Join(dir, "data")
	vars := keyEnv(base, data)
	d := startServe(t, dir, vars) // serve -addr 127.0.0.1:0

	backup := filepath.Join(dir, "bk.db")
	r := runBin(t, dir, vars, "store", "backup", backup)
	if r.code != exitFailed {
		t.Errorf("store backup without -addr: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"no daemon answered at http://127.0.0.1:1/v1/store/backup (",
		filepath.Join(data, StoreFile) + " is held by another process", "give it with -addr HOST:PORT"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("store backup without -addr: stderr %q, want it to say %q", r.stderr, want)
		}
	}
	if strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("store backup without -addr: want one line, got %q", r.stderr)
	}
	if _, err := os.Stat(backup); err == nil {
		t.Error("a failed backup left its file")
	}

	r = runBin(t, dir, vars, "store", "backup", backup, "-addr", d.addr)
	// The daemon's store, not this shell's data directory (the same here,
	// but not known to be; it had named this one's path: newcomer9 N9-4).
	if want := "a consistent copy of the daemon's store (through the running daemon at http://" + d.addr + "/v1/store/backup)\n"; r.code != 0 || !strings.HasSuffix(r.stdout, want) {
		t.Fatalf("store backup -addr: exit %d, want stdout ending %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	if err := store.Verify(backup, store.Options{}); err != nil {
		t.Errorf("the backup through -addr: %v", err)
	}
	r = runBin(t, dir, vars, "store", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "-addr") {
		t.Errorf("store -h: exit %d, no -addr in\n%s", r.code, r.stderr)
	}
}
