package store_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// Processes stopped while Redis restarted empty, and started again: each
// one's data directory (a Bolt file) must put its day counts back, whatever
// the process's name, and add nothing when Redis kept its state. The
// newcomer's binary run (2026-12-01): two daemons stopped, Redis restarted
// empty, B started then A: the day count came back at B's 63, A's 50 never
// added (141 sent of RPD 240, 318 would have been granted). These fail on
// main at 842c215.

// openBolt opens a ledger named process on the Bolt file at path, without
// grants taken ahead (so that day counts are exact).
func (e *redisEnv) openBolt(t *testing.T, path, process string, cls store.RedisClass) *store.Redis {
	t.Helper()
	local, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenRedis(context.Background(), local, e.options(t, process, cls))
	if err != nil {
		local.Close()
		t.Fatalf("OpenRedis(%s): %v", process, err)
	}
	store.SetRedisPrefetch(s, false)
	return s
}

// boltPair opens a1 and b1 on the Bolt files a.db and b.db of a new
// directory (openBolt) and returns their paths, to start them again.
func (e *redisEnv) boltPair(t *testing.T, cls store.RedisClass) (pa, pb string, a, b *store.Redis) {
	t.Helper()
	dir := t.TempDir()
	pa, pb = filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	return pa, pb, e.openBolt(t, pa, "a1", cls), e.openBolt(t, pb, "b1", cls)
}

// stop stops s cleanly as the daemon does (Settle with windows, its window
// logs; Leave; Close).
func stop(t *testing.T, s *store.Redis, windows ...store.Window) {
	t.Helper()
	ctx := context.Background()
	if err := s.Settle(ctx, store.Settlement{Windows: windows}); err != nil {
		t.Fatal(err)
	}
	if err := s.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// windowOf is the lane's window log of sends, as the scheduler settles it.
func windowOf(sends []time.Time) store.Window {
	w := store.Window{Lane: lane}
	for _, at := range sends {
		w.Sent = append(w.Sent, store.Sent{At: at})
	}
	return w
}

// grantUnits takes n day units in grants of one.
func grantUnits(t *testing.T, e *redisEnv, s *store.Redis, n int) {
	t.Helper()
	for range n {
		if _, err := s.Reserve(context.Background(), e.record(1, 1)); err != nil {
			t.Fatalf("%s: grant: %v", s.Process(), err)
		}
	}
}

func sharedDay(t *testing.T, s *store.Redis) int {
	t.Helper()
	u, err := s.Usage(context.Background(), "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range u.Lanes {
		if l.Lane == lane {
			return l.Count
		}
	}
	return 0
}

// TestRedisEmptyRestartRejoin: a and b took 5 and 7 units, both stop,
// Redis restarts empty, b then a start again (other names): the day count
// is 12, not b's 7. Then a restarts (yet another name) and b (the same
// name) with Redis keeping its state: still 12, and a grant makes it 13
// (once the recovery b's start began is over: b's data directory had
// joined the cluster, so Redis lost its state).
func TestRedisEmptyRestartRejoin(t *testing.T) {
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 100, RPD: 40}
	pa, pb, a, b := e.boltPair(t, cls)
	grantUnits(t, e, a, 5)
	grantUnits(t, e, b, 7)
	stop(t, a)
	stop(t, b)
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(3 * time.Second)
	b = e.openBolt(t, pb, "b2", cls)
	if n := sharedDay(t, b); n != 7 {
		t.Errorf("day count once b started again: %d; want 7 (b's own)", n)
	}
	a = e.openBolt(t, pa, "a2", cls)
	if n := sharedDay(t, a); n != 12 {
		t.Errorf("day count once a started again after b: %d; want 12 (a's 5 and b's 7)", n)
	}
	stop(t, a)
	a = e.openBolt(t, pa, "a3", cls) // Redis kept its state: nothing to add
	stop(t, b)
	b = e.openBolt(t, pb, "b2", cls)
	if n := sharedDay(t, b); n != 12 {
		t.Errorf("day count after a and b restarted, Redis kept: %d; want 12 (nothing counted twice)", n)
	}
	e.clock.add(100 * time.Second) // b's start after Redis lost its state began a recovery
	grantUnits(t, e, a, 1)
	if n := sharedDay(t, a); n != 13 {
		t.Errorf("day count after a's grant: %d; want 13", n)
	}
	stop(t, a)
	stop(t, b)
}

// TestRedisEmptyRestartRejoinSlack: c stays running (its own 3, and a view
// of the day count 15: a's 5, b's 7, c's 3); a sends 2 more after it, then
// a and b stop, Redis restarts empty, and c re-seeds at its heartbeat: 15
// (c's 3, raised to the 15 it saw: 12 of slack). b joins (7: within the
// slack, no raise), then a (7: 5 of the slack left, raised by 2): 17, what
// the three sent, neither below it (the old code: 15) nor the sum of the
// seen count and the joiners' (29).
func TestRedisEmptyRestartRejoinSlack(t *testing.T) {
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 100, RPD: 40}
	pa, pb, a, b := e.boltPair(t, cls)
	c := e.open(t, "c", cls)
	store.SetRedisPrefetch(c, false)
	grantUnits(t, e, a, 5)
	grantUnits(t, e, b, 7)
	grantUnits(t, e, c, 3)
	e.heartbeats(t, 0, a, b, c) // c's view: 15
	grantUnits(t, e, a, 2)
	stop(t, a)
	stop(t, b)
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(time.Second)
	if _, err := c.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := sharedDay(t, c); n != 15 {
		t.Fatalf("day count after c's re-seed: %d; want 15 (the count c saw)", n)
	}
	e.clock.add(time.Second)
	b = e.openBolt(t, pb, "b2", cls)
	if n := sharedDay(t, c); n != 15 {
		t.Errorf("day count once b joined: %d; want 15 (b's 7 within the seen count)", n)
	}
	a = e.openBolt(t, pa, "a2", cls)
	if n := sharedDay(t, c); n != 17 {
		t.Errorf("day count once a joined: %d; want 17 (what a, b and c sent: 7 + 7 + 3)", n)
	}
	stop(t, a)
	stop(t, b)
}

// TestRedisEmptyRestartRejoinWindow: a sent 6 of RPM 10 and stopped
// cleanly (its window log in its Bolt file), b was granted 4 and killed
// (its records there); Redis restarts empty and both start again within
// the minute: the window holds their 10 slots again (6 at their sends, 4
// at b's grant's expiry), and a process new to the cluster that joins then
// is held (Reason "share") until the recovery a's start began is over,
// then granted. On the old code the window was empty: 10 more slots in
// the same minute.
func TestRedisEmptyRestartRejoinWindow(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	pa, pb, a, b := e.boltPair(t, cls)
	sent := e.clock.now()
	stop(t, a, windowOf(sendGranted(t, e, a, 6, sent)))
	if _, err := b.Reserve(ctx, e.record(4, 4)); err != nil {
		t.Fatal(err)
	}
	b.Close() // killed: no Settle, no Leave
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(10 * time.Second)
	a = e.openBolt(t, pa, "a2", cls)
	defer a.Close()
	b = e.openBolt(t, pb, "b2", cls)
	defer b.Close()
	got := e.windowScores(t, e.client(t))
	want := append(rep(sent.UnixMilli(), 6), rep(sent.Add(2*time.Second).UnixMilli(), 4)...)
	if !slices.Equal(got, want) {
		t.Errorf("window once a and b started again: %v; want %v (a's 6 sends, b's grant of 4)", got, want)
	}
	if n := sharedDay(t, a); n != 10 {
		t.Errorf("day count %d; want 10", n)
	}
	c := e.open(t, "c", cls)
	store.SetRedisPrefetch(c, false)
	grantErr(t, reserveErr(c, e.record(1, 1)), "share")
	e.clock.add(100 * time.Second)
	if n, err := c.Reserve(ctx, e.record(1, 1)); err != nil || n != 11 {
		t.Errorf("c after the recovery: day count %d, %v; want 11", n, err)
	}
}

// TestRedisEmptyRestartRejoinTokens: on a lane with TPM, a process stopped
// cleanly with 3 sends of 100, 200 and 300 tokens in its window log puts
// their budgets back in the shared token window when it starts after Redis
// restarted empty (600 tokens, with their 3 slots).
func TestRedisEmptyRestartRejoinTokens(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, TPM: 10000}
	path := filepath.Join(t.TempDir(), "a.db")
	a := e.openBolt(t, path, "a1", cls)
	if _, err := a.Reserve(ctx, e.tokens(3, 600)); err != nil {
		t.Fatal(err)
	}
	now := e.clock.now()
	w := store.Window{Lane: lane, Sent: []store.Sent{{At: now, Tokens: 100}, {At: now, Tokens: 200}, {At: now, Tokens: 300}}}
	for range 3 {
		a.Stamped(lane, now)
	}
	stop(t, a, w)
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(5 * time.Second)
	a = e.openBolt(t, path, "a2", cls)
	defer a.Close()
	if got := sum(tokenWindow(t, e)); got != 600 {
		t.Errorf("token window once a started again: %d tokens; want 600", got)
	}
	if n := len(e.windowScores(t, e.client(t))); n != 3 {
		t.Errorf("window: %d slots; want 3", n)
	}
}
