package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisRestartSameName: an embedder that gives its process a fixed
// name and restarts it after a kill -9. The new life's grants are added to
// the shared window and token window next to the killed life's, which are
// still there: none overwrites another, so the window holds both lives'
// slots and budgets and a grant beyond RPM or TPM is refused. Usage shows
// the configured name (once, though the killed life's heartbeat is still
// alive: Live counts both lives), with both lives' parts. Before, the
// second life's first grant was named as the first life's first
// ("a:1:g*3"): it was granted, but the window kept one of the two grants
// (3 slots and 400 tokens, not 6 and 800), and a third grant of 300 tokens
// went through at TPM 1000 (a reviewer measured 7,000 tokens in 25 s at
// TPM 4,000 that way through an embedding program).
func TestRedisRestartSameName(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	first := e.open(t, "a", tpmClass)
	if _, err := first.Reserve(ctx, e.tokens(3, 400)); err != nil {
		t.Fatal(err)
	}
	// Killed (no Settle, no Leave): its grant stays in the window until
	// its minute passes, its heartbeat until it expires.
	e.clock.add(time.Second)
	second := e.open(t, "a", tpmClass)
	if _, err := second.Reserve(ctx, e.tokens(3, 400)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // sent: its next grant's settlement keeps them
		second.Stamped(lane, e.clock.now().Add(tpmClass.Margin))
	}
	u, err := second.Usage(ctx, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.Processes, []string{"a"}) || u.Process != "a" {
		t.Errorf("processes %v, process %q; want the configured name a, once", u.Processes, u.Process)
	}
	if n := second.Live(); n != 2 {
		t.Errorf("live %d, want 2 (the killed life's heartbeat has not expired)", n)
	}
	if len(u.Lanes) != 1 {
		t.Fatalf("lanes %+v", u.Lanes)
	}
	lu := u.Lanes[0]
	if lu.Window != 6 || lu.Tokens != 800 || lu.Count != 6 {
		t.Errorf("window %d slots, %d tokens, day count %d; want 6, 800 and 6 (both lives' grants)", lu.Window, lu.Tokens, lu.Count)
	}
	if lu.WindowByProcess["a"] != 6 || lu.TokensByProcess["a"] != 800 || lu.ByProcess["a"] != 6 || len(lu.WindowByProcess) != 1 || len(lu.TokensByProcess) != 1 || len(lu.ByProcess) != 1 {
		t.Errorf("per process: window %v, tokens %v, day %v; want a alone with 6, 800 and 6", lu.WindowByProcess, lu.TokensByProcess, lu.ByProcess)
	}
	if sum(tokenWindow(t, e)) != 800 {
		t.Errorf("token window %v, want both lives' budgets (800)", tokenWindow(t, e))
	}
	// 800 + 300 > TPM 1000.
	e.clock.add(time.Second)
	grantErr(t, reserveErr(second, e.tokens(1, 300)), "tpm")
	// 6 + 5 > RPM 10.
	grantErr(t, reserveErr(second, e.tokens(5, 100)), "window")
	// A third life with other limits is refused while the others'
	// heartbeats last, the conflict naming the process a.
	other := tpmClass
	other.RPM = 12
	if err := e.joinErr(t, "a", other); !errors.Is(err, store.ErrLimitsConflict) || !strings.HasSuffix(err.Error(), " in process a") {
		t.Errorf("a third life with rpm 12: %v; want refused, naming process a", err)
	}
}

// TestRedisRestartSameNameCharged: c is killed during an outage that Redis
// survives, after it sent on its share, and restarted under its own name as
// soon as Redis answers (before a and b reconnect). Its new life's
// heartbeat is not its killed life's: a and b still presume the killed
// life dead and charge it, under the name c, and no 60 s window of all
// the sends holds more than RPM. Before, the new life's heartbeat passed
// for the killed one's (one name in the processes zset): nobody was
// charged, and the new life was granted the room the killed life's share
// held.
func TestRedisRestartSameNameCharged(t *testing.T) {
	e := newDeadEnv(t, 900)
	e.clock.add(time.Second)
	e.srv.Restart()
	c2 := e.open(t, "c", e.cls) // c was killed
	e.clock.add(time.Second)
	for _, s := range []*store.Redis{e.a, e.b, c2} {
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.saturate(t, 150*time.Second, c2, e.a, e.b)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if cs := e.charges(e.a, e.b, c2); len(cs) != 1 || cs[0].Process != "c" {
		t.Errorf("charges %+v, want c (its killed life) once", cs)
	}
	t.Logf("%d sends, busiest minute %d of %d", len(e.sends), worst, e.cls.RPM)
}
