package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	e.saturate(t, 150*time.Second, d, e.a, e.b)
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

// joinEnv is two processes a and b of a lane at RPM 10, live for a
// heartbeat TTL, every slot they take recorded as sent when granted.
func newJoinEnv(t *testing.T) *deadEnv {
	t.Helper()
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 10, RPD: 10000, Margin: 100 * time.Millisecond}}
	e.a, e.b = e.open(t, "a", e.cls), e.open(t, "b", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b)
	return e
}

// sharesThenBack saturates the lane with a and b for 70 s, stops Redis
// (keeping its state) so that both heartbeats fail, lets every slot granted
// before the outage leave the window (92 s) and has a and b each take their
// share, RPM / 2 = 5 slots; then Redis answers again and a second passes,
// before either heartbeat reaches it.
func (e *deadEnv) sharesThenBack(t *testing.T) {
	t.Helper()
	e.saturate(t, 70*time.Second, e.a, e.b)
	e.stopRedis(t, e.a, e.b)
	// Every slot granted before the outage has left the window: the share
	// is RPM / 2 = 5 each.
	e.clock.add(92 * time.Second)
	for _, s := range []*store.Redis{e.a, e.b} {
		if !e.take(t, s, 5, 5) {
			t.Fatalf("%s: no share", s.Process())
		}
	}
	e.clock.add(2 * time.Second)
	e.srv.Restart()
	e.clock.add(time.Second)
}

// heldFor asks d for a grant of one slot every second of the virtual clock
// (heartbeats of ss every 5 s) until one is granted or d is no longer held
// as it joined (a refusal then is Redis's), at most limit, and returns how
// long that took from now (limit + 1 s: never).
func (e *deadEnv) heldFor(t *testing.T, d *store.Redis, limit time.Duration, ss ...*store.Redis) time.Duration {
	t.Helper()
	for el := time.Duration(0); el <= limit; el += time.Second {
		if e.take(t, d, 1, 1) || !d.Joining() {
			return el
		}
		e.clock.add(time.Second)
		if el%(5*time.Second) == 0 {
			for _, s := range ss {
				if _, err := s.Heartbeat(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return limit + time.Second
}

// TestRedisJoinBeforeReconnect: a and b saturate a lane at RPM 10; Redis
// becomes unreachable for both (it keeps its state), and each sends its
// share (5 a minute); Redis answers again, and a process d starts before
// either heartbeat reaches it (a daemon restarted by a supervisor as soon
// as Redis answers). Their share's sends are in no Redis window yet, so d
// is held: their heartbeats are overdue; then the recovering key a set as
// it reached Redis again holds it until the recovery's end plus the
// charge's delay. No 60 s window of the three holds more than RPM. Before,
// d was granted Redis's whole window at once: 20 in a minute of RPM 10.
func TestRedisJoinBeforeReconnect(t *testing.T) {
	ctx := context.Background()
	e := newJoinEnv(t)
	e.sharesThenBack(t)
	d := e.open(t, "d", e.cls)
	n := 0
	for n < e.cls.RPM && e.take(t, d, 1, 1) {
		n++
	}
	if n > 0 || !d.Joining() {
		t.Errorf("d granted %d (joining %v) before a and b reconciled", n, d.Joining())
	}
	e.clock.add(time.Second)
	for _, s := range []*store.Redis{e.a, e.b} { // they reach Redis again
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	held := e.heldFor(t, d, time.Minute, e.a, e.b)
	// a's recovery (15 s) and the charge's delay (6 s) from its reconnect,
	// a second after d started.
	if held < 20*time.Second || held > 22*time.Second {
		t.Errorf("d held %v after its first refusal, want 21 s", held)
	}
	e.saturate(t, 150*time.Second, d, e.a, e.b)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	u, err := d.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].ByProcess["d"] == 0 {
		t.Errorf("usage %+v, %v: d was never granted", u, err)
	}
	t.Logf("%d sends, busiest minute %d of %d; d held %v, then granted %d", len(e.sends), worst, e.cls.RPM, held, u.Lanes[0].ByProcess["d"])
}

// TestRedisJoinHealthyNotHeld: a process that joins a cluster whose
// processes beat on time, or that only holds processes that stopped
// cleanly (Leave), is granted at once; so is one that joins an idle
// cluster (nobody beat for minutes, nobody left an entry).
func TestRedisJoinHealthyNotHeld(t *testing.T) {
	ctx := context.Background()
	e := newJoinEnv(t)
	c := e.open(t, "c", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b, c)
	if err := c.Leave(ctx); err != nil { // a clean stop
		t.Fatal(err)
	}
	e.clock.add(4 * time.Second) // a's and b's last heartbeats are 4 s old: on time
	d := e.open(t, "d", e.cls)
	if d.Joining() || !e.take(t, d, 1, 1) {
		t.Errorf("d joining a healthy cluster: held (joining %v)", d.Joining())
	}
	for _, s := range []*store.Redis{e.a, e.b, d} {
		if err := s.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.add(10 * time.Minute)
	f := e.open(t, "f", e.cls)
	if f.Joining() || !e.take(t, f, 1, 1) {
		t.Errorf("f joining an idle cluster: held (joining %v)", f.Joining())
	}
}

// TestRedisJoinAfterKill: with Redis never down, b is killed (no Leave: its
// heartbeat entry stays, overdue); a process d that joins 10 s later cannot
// tell b from a process about to reach Redis from an outage: it is held,
// joinWait (12 s) at most, then granted as usual. Killed both, a and b
// leave entries nobody prunes: a process d2 that joins after them is held
// (its heartbeat prunes them), and so is d3, joining a second later, by
// the recovering key d2 set: both until d2's hold ends. Before, each was
// granted at once.
func TestRedisJoinAfterKill(t *testing.T) {
	e := newJoinEnv(t)
	e.clock.add(5 * time.Second) // b was killed after its last heartbeat
	if _, err := e.a.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clock.add(5 * time.Second)
	d := e.open(t, "d", e.cls)
	if held := e.heldFor(t, d, time.Minute, e.a); held != 12*time.Second {
		t.Errorf("d held %v, want 12 s", held)
	}
	if !e.take(t, e.a, 1, 1) || d.Joining() || !e.take(t, d, 1, 1) {
		t.Errorf("a or d not granted after d's hold")
	}

	e2 := newJoinEnv(t)
	e2.clock.add(time.Minute) // a and b killed
	d2 := e2.open(t, "d2", e2.cls)
	e2.clock.add(time.Second)
	d3 := e2.open(t, "d3", e2.cls)
	if !d2.Joining() || !d3.Joining() {
		t.Fatalf("joining: d2 %v, d3 %v; want both held", d2.Joining(), d3.Joining())
	}
	if held := e2.heldFor(t, d3, time.Minute, d2); held != 11*time.Second {
		t.Errorf("d3 held %v, want 11 s (until d2's hold ends)", held)
	}
	if !e2.take(t, d2, 1, 1) {
		t.Errorf("d2 not granted after its hold")
	}
}

// afterScript calls fn once, when armed, right after a script whose first
// key is key ran (its reply in hand, before the caller reads it).
type afterScript struct {
	key   string
	armed atomic.Bool
	fn    func()
}

func (h *afterScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if name, _ := args[0].(string); err == nil && len(args) > 3 && (name == "evalsha" || name == "eval") &&
			args[3] == h.key && h.armed.CompareAndSwap(true, false) {
			h.fn()
		}
		return err
	}
}

func (h *afterScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisJoinDuringReconnect: as TestRedisJoinBeforeReconnect, but d
// starts right after a's first heartbeat after the outage reached Redis,
// before a reconciled: that heartbeat renewed a's entry and pruned b's
// (expired), so d sees no overdue heartbeat; the recovering key a set
// before its heartbeat holds d. Before (the key set only at the end of
// the reconnect), d was granted the window a and b's share holds: 20 in a
// minute of RPM 10.
func TestRedisJoinDuringReconnect(t *testing.T) {
	ctx := context.Background()
	e := &deadEnv{redisEnv: newPersistentRedisEnv(t),
		cls: store.RedisClass{Name: "text", RPM: 10, RPD: 10000, Margin: 100 * time.Millisecond}}
	var d *store.Redis
	granted := 0
	h := &afterScript{key: "test:procs", fn: func() {
		d = e.open(t, "d", e.cls)
		for granted < e.cls.RPM && e.take(t, d, 1, 1) {
			granted++
		}
	}}
	e.a, e.b = e.openHooked(t, "a", nil, h, e.cls), e.open(t, "b", e.cls)
	e.heartbeats(t, 20*time.Second, e.a, e.b)
	e.sharesThenBack(t)
	h.armed.Store(true)
	if _, err := e.a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if d == nil {
		t.Fatal("d did not start during a's reconnect")
	}
	if granted > 0 || !d.Joining() {
		t.Errorf("d granted %d (joining %v) during a's reconnect", granted, d.Joining())
	}
	if _, err := e.b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.saturate(t, 150*time.Second, d, e.a, e.b)
	worst := checkSends(t, e.sends, time.Minute, e.cls.RPM, e.cls.RPD, 0)
	t.Logf("%d sends, busiest minute %d of %d", len(e.sends), worst, e.cls.RPM)
}
