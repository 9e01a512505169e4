package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// beat runs one heartbeat of each of ss.
func beat(t *testing.T, ss ...*store.Redis) {
	t.Helper()
	for _, s := range ss {
		if _, err := s.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisJoinReleasedEarly: b stalls (its heartbeat 7 s late; Redis
// answered every process all along), and d joins meanwhile: b's entry is
// overdue, so d is held; d's heartbeats keep it held while b's entry is
// overdue, and the first one after b beat again releases it (b was never
// unreachable: it set no recovering key, so it took no share), 2 s after
// d joined. Before, d was held joinWait, 12 s, whatever b did.
func TestRedisJoinReleasedEarly(t *testing.T) {
	e := newJoinEnv(t)
	e.clock.add(5 * time.Second)
	beat(t, e.a) // b misses this beat
	e.clock.add(2 * time.Second)
	d := e.open(t, "d", e.cls)
	if !d.Joining() || e.take(t, d, 1, 1) {
		t.Fatalf("d not held with b's heartbeat overdue (joining %v)", d.Joining())
	}
	e.clock.add(time.Second)
	beat(t, d)
	if !d.Joining() || e.take(t, d, 1, 1) {
		t.Fatalf("d released before b beat again (joining %v)", d.Joining())
	}
	e.clock.add(time.Second)
	beat(t, e.b, d) // b beats again, 9 s after its last heartbeat
	if d.Joining() || !e.take(t, d, 1, 1) {
		t.Errorf("d still held (joining %v) after b beat again, 2 s after it joined; want released", d.Joining())
	}
}

// TestRedisJoinNotReleasedEarly: the hold is not released early while a
// process may still reach Redis with its share's sends. b killed (never
// beats again; its entry is pruned once expired): d, beating every 5 s,
// is held the whole joinWait, 12 s (released when b's entry was pruned, it
// was held 6 s). And after an outage (a and b sent on their share; d joins
// as Redis answers again): a's and b's heartbeats renew their entries, but
// each set the recovering key first, to the end of its recovery and of the
// charge of the dead: d, beating every 5 s, is held until then (21 s), not
// released when their entries beat again.
func TestRedisJoinNotReleasedEarly(t *testing.T) {
	e := newJoinEnv(t)
	e.clock.add(5 * time.Second)
	beat(t, e.a) // b was killed
	e.clock.add(5 * time.Second)
	d := e.open(t, "d", e.cls)
	if held := e.heldFor(t, d, time.Minute, e.a, d); held != 12*time.Second {
		t.Errorf("d held %v with b killed, want 12 s", held)
	}

	e2 := newJoinEnv(t)
	e2.sharesThenBack(t)
	d2 := e2.open(t, "d", e2.cls)
	e2.clock.add(time.Second)
	beat(t, e2.a, e2.b, d2) // a and b reach Redis again
	if !d2.Joining() || e2.take(t, d2, 1, 1) {
		t.Fatalf("d released when a and b beat again after the outage (joining %v)", d2.Joining())
	}
	if held := e2.heldFor(t, d2, time.Minute, e2.a, e2.b, d2); held < 20*time.Second || held > 22*time.Second {
		t.Errorf("d held %v after a and b beat again, want 21 s (their recovery and the charge)", held)
	}
	worst := checkSends(t, e2.sends, time.Minute, e2.cls.RPM, e2.cls.RPD, 0)
	t.Logf("busiest minute %d of %d", worst, e2.cls.RPM)
}
