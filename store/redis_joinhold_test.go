package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestRedisJoinBeforeDeadCharged: of three processes that sent on their
// share of an outage that Redis survives with its state, c is killed
// before Redis answers again; a and b reconnect, and a process d starts
// right after (c restarted by a supervisor as soon as it can reach Redis,
// under a new name). d is held (no grant) until c has
// been charged its share, so no 60 s window of all the sends, c's
// included, holds more than RPM. Before, d was granted the room c's
// share's sends held: a window of 11 at RPM 9 (as a verifier saw through
// the binary: 11 at image RPM 10 and a per-minute 429).
func TestRedisJoinBeforeDeadCharged(t *testing.T) {
	e := newDeadEnv(t, 900)
	e.clock.add(time.Second)
	e.srv.Restart()
	for _, s := range []*store.Redis{e.a, e.b} { // c was killed
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.add(time.Second)
	d := e.open(t, "d", e.cls)
	if e.take(t, d, 1, 1) {
		t.Errorf("d was granted a slot before c was charged")
	}
	e.saturate(t, 150*time.Second, e.a, e.b, d)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	if cs := e.charges(e.a, e.b); len(cs) != 1 || cs[0].Process != "c" {
		t.Errorf("charges %+v, want c once", cs)
	}
	t.Logf("%d sends, busiest minute %d of %d", len(e.sends), worst, e.cls.RPM)
	e.clock.add(2 * time.Minute) // the hold is over: d is granted again
	if !e.take(t, d, 1, 1) {
		t.Errorf("d: no grant %v after the survivors' recovery", 2*time.Minute)
	}
}
