package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestEnableThroughAnotherDaemon (a newcomer's report): two daemons on one
// Redis; key2 disabled through a, enabled through b. a applies the enable
// and writes it to its data directory: after a's clean stop, `keys` on
// its data directory (no daemon answering) says key2 is enabled; and once
// Redis restarted empty, b then a started again, key2 stays enabled on
// both (a's join used to share the stale disable from its bbolt file,
// undoing the operator's enable cluster-wide).
func TestEnableThroughAnotherDaemon(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	_, emu := startEmulate(t, "-keys", "2", "-seed", "5")
	config := "log:\n  format: json\n  level: debug\nshutdown_grace: 5s\n"
	daemons, dirs, envs := startClusterPair(t, srv, emu, config)
	a, b := daemons[0], daemons[1]
	disabled := func(args ...string) string {
		t.Helper()
		r := runBin(t, dirs[0], envs[0], append([]string{"keys", "-json"}, args...)...)
		var kl keyList
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &kl) != nil {
			t.Fatalf("keys -json %v: exit %d %q %s", args, r.code, r.stdout, r.stderr)
		}
		for _, k := range kl.Keys {
			if k.ID == "key2" {
				return k.Disabled
			}
		}
		t.Fatalf("keys -json %v: no key2 in %s", args, r.stdout)
		return ""
	}
	if r := runBin(t, dirs[0], envs[0], "keys", "disable", "key2", "-addr", a.addr); r.code != 0 {
		t.Fatalf("keys disable through a: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	b.waitLog(t, "key disabled by another process")
	if r := runBin(t, dirs[1], envs[1], "keys", "enable", "key2", "-addr", b.addr); r.code != 0 {
		t.Fatalf("keys enable through b: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	a.waitLog(t, "key enabled by another process")
	if got := disabled("-addr", a.addr); got != "" {
		t.Fatalf("a's keys after b's enable: key2 %q, want enabled", got)
	}
	a.stop(t)
	if got := disabled("-addr", "127.0.0.1:1"); got != "" {
		t.Fatalf("keys on a's data directory after its clean stop: key2 %q, want enabled (b enabled it, a applied it)", got)
	}
	b.stop(t)
	srv.Stop()
	srv.RestartEmpty()
	b = startServe(t, dirs[1], envs[1])
	b.waitLog(t, "watching the cluster's events")
	a = startServe(t, dirs[0], envs[0])
	a.waitLog(t, "watching the cluster's events")
	if got := disabled("-addr", a.addr); got != "" {
		t.Errorf("a's keys after Redis restarted empty and a joined again: key2 %q, want enabled", got)
	}
	a.stop(t)
	b.stop(t)
	if logs := b.logs(); strings.Contains(logs, "key disabled by another process") {
		t.Errorf("b applied a disable after Redis restarted empty (a shared the disable the cluster had superseded):\n%s", logs)
	}
}
