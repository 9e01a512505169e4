package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// openDir opens a ledger named process on the Bolt file of dir (a
// process's data directory) with textClass (openBolt); the test closes it
// (Close closes the file).
func (e *redisEnv) openDir(t *testing.T, process, dir string) *store.Redis {
	t.Helper()
	return e.openBolt(t, filepath.Join(dir, "slideshowd.db"), process, textClass)
}

// watchUntil runs s.Watch until the returned stop is called (or the test
// ends) and returns its events once it is subscribed.
func watchUntil(t *testing.T, s *store.Redis) (<-chan store.SharedEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan store.SharedEvent, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, ready, func(ev store.SharedEvent) { events <- ev }) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch: %v", err)
	}
	return events, stop
}

// eventOf returns the next event of ch of kind, skipping the others.
func eventOf(t *testing.T, ch <-chan store.SharedEvent, kind string) store.SharedEvent {
	t.Helper()
	for {
		if ev := nextEvent(t, ch, kind); ev.Kind == kind {
			if ev.LocalErr != nil {
				t.Errorf("%s: not written to the Local store: %v", kind, ev.LocalErr)
			}
			return ev
		}
	}
}

// states is where a test reads the keys' and lanes' states: a Redis ledger
// (the cluster's, merged with its Local store) or its Local store (the
// process's data directory).
type states interface {
	DisabledKeys(context.Context) ([]store.DisabledKey, error)
	LaneStates(context.Context) ([]store.LaneState, error)
}

// keysOf returns the keys disabled in s, by key id.
func keysOf(t *testing.T, s states) map[string]store.DisabledKey {
	t.Helper()
	ks, err := s.DisabledKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]store.DisabledKey)
	for _, k := range ks {
		out[k.KeyID] = k
	}
	return out
}

// laneOf returns lane's state in s (its zero state when s has none).
func laneOf(t *testing.T, s states) store.LaneState {
	t.Helper()
	sts, err := s.LaneStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Lane == lane {
			return st
		}
	}
	return store.LaneState{Lane: lane}
}

// TestRedisClusterChangesKeptLocal: a key enabled, a lane resumed, a key
// disabled, a lane stopped and a cooldown raised by another process are
// written to this process's Local store (its data directory) with the
// change's time, so after this process stops, Redis restarts empty and it
// joins again, it does not share the disable and the stop the cluster had
// superseded (a newcomer saw an operator's enable undone cluster-wide).
func TestRedisClusterChangesKeptLocal(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	dA, dB := t.TempDir(), t.TempDir()
	a, b := e.openDir(t, "a", dA), e.openDir(t, "b", dB)
	defer b.Close()
	events, stopWatch := watchUntil(t, a)
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "by an operator", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	if err := b.EnableKey(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "enabled")
	if k, ok := keysOf(t, a.Local)["k2"]; ok {
		t.Errorf("a's Local store after b enabled k2: %+v, want enabled", k)
	}
	if err := b.ResumeLane(ctx, lane); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "resumed")
	if st := laneOf(t, a.Local); st.Stopped != "" {
		t.Errorf("a's Local lane after b resumed it: %+v, want not stopped", st)
	}
	// Changes the other way, and a cooldown, are kept too, with the
	// change's time.
	e.clock.add(time.Second)
	at := e.clock.now()
	if err := b.DisableKey(ctx, store.DisabledKey{KeyID: "k3", Reason: "leaked", At: at}); err != nil {
		t.Fatal(err)
	}
	if ev := eventOf(t, events, "disabled"); !ev.At.Equal(at) {
		t.Errorf("disabled event's time %v, want the change's %v", ev.At, at)
	}
	if k := keysOf(t, a.Local)["k3"]; k.Reason != "leaked" || !k.At.Equal(at) {
		t.Errorf("a's Local k3 after b disabled it: %+v, want leaked at %v", k, at)
	}
	cool := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool}); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "cool")
	if st := laneOf(t, a.Local); !st.CoolUntil.Equal(cool) || st.Stopped != "" {
		t.Errorf("a's Local lane after b's cooldown: %+v, want cooling until %v, not stopped", st, cool)
	}
	if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool, Stopped: "gone", Config: "c2"}); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "stopped")
	if st := laneOf(t, a.Local); st.Stopped != "gone" || st.Config != "c2" || !st.CoolUntil.Equal(cool) {
		t.Errorf("a's Local lane after b stopped it: %+v, want stopped (gone, c2), cooling until %v", st, cool)
	}
	if err := b.ResumeLane(ctx, lane); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "resumed")
	stopWatch()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	e.srv.RestartEmpty()
	a = e.openDir(t, "a", dA)
	defer a.Close()
	if k, ok := keysOf(t, a.Local)["k2"]; ok {
		t.Errorf("a's Local store after joining again: k2 %+v, want enabled", k)
	}
	if d, ok := keysOf(t, a)["k2"]; ok {
		t.Errorf("k2 disabled in the cluster again after a joined an empty Redis: %+v", d)
	}
	if st := laneOf(t, a); st.Stopped != "" {
		t.Errorf("lane stopped in the cluster again after a joined an empty Redis: %+v", st)
	}
}

// TestRedisJoinAgreesLocal: a process stopped while another enabled a key
// it had disabled and resumed a lane it had stopped, and disabled another
// key, finds them at its next join: its Local store (data directory) is
// made to agree with the cluster, so a later join into an empty Redis
// does not share the superseded disable and stop again.
func TestRedisJoinAgreesLocal(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	dA, dB := t.TempDir(), t.TempDir()
	a, b := e.openDir(t, "a", dA), e.openDir(t, "b", dB)
	defer b.Close()
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "by an operator", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	if err := b.EnableKey(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	if err := b.ResumeLane(ctx, lane); err != nil {
		t.Fatal(err)
	}
	if err := b.DisableKey(ctx, store.DisabledKey{KeyID: "k4", Reason: "leaked", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	a = e.openDir(t, "a", dA)
	ks := keysOf(t, a.Local)
	if k, ok := ks["k2"]; ok {
		t.Errorf("a's Local store after joining: k2 %+v, want enabled (by b since)", k)
	}
	if k := ks["k4"]; k.Reason != "leaked" {
		t.Errorf("a's Local store after joining: k4 %+v, want disabled (leaked, by b)", k)
	}
	if st := laneOf(t, a.Local); st.Stopped != "" {
		t.Errorf("a's Local lane after joining: %+v, want resumed (by b since)", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	e.srv.RestartEmpty()
	a = e.openDir(t, "a", dA)
	defer a.Close()
	if dk := keysOf(t, a); len(dk) != 1 || dk["k4"].KeyID != "k4" {
		t.Errorf("cluster's disabled keys after a joined an empty Redis: %+v, want k4 only", dk)
	}
	if st := laneOf(t, a); st.Stopped != "" {
		t.Errorf("lane stopped in the cluster again after a joined an empty Redis: %+v", st)
	}
}

// undoCase is a change a process makes (change: a key disabled, a lane
// stopped) and its undoing by another process (undo: the key enabled, the
// lane resumed), with what is left of the change in the cluster and in the
// first process's Local store ("": nothing, undone).
type undoCase struct {
	change  func(e *redisEnv, a *store.Redis) error
	undo    func(b *store.Redis) error
	cluster func(t *testing.T, e *redisEnv, a *store.Redis) string
	local   func(t *testing.T, a *store.Redis) string
}

// undoOutlivesEmptyRestart: a makes u's change and stops; b undoes it a
// second later; c joins after the undo (it keeps the cluster's time of
// it) and b stops. Redis restarts empty, then a joins again before or after
// c notices (its heartbeat: c re-seeds and shares what it keeps): the undo
// wins in the cluster either way, and a's Local store has it when a joined
// after c (a first: a learns it from c's push through Watch, not run here).
func undoOutlivesEmptyRestart(t *testing.T, u undoCase) {
	t.Helper()
	ctx := context.Background()
	for _, aFirst := range []bool{false, true} {
		e := newRedisEnv(t)
		dA, dB := t.TempDir(), t.TempDir()
		a, b := e.openDir(t, "a", dA), e.openDir(t, "b", dB)
		if err := u.change(e, a); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Second)
		if err := u.undo(b); err != nil {
			t.Fatal(err)
		}
		c := e.openDir(t, "c", t.TempDir())
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		e.srv.Stop()
		e.srv.RestartEmpty()
		if aFirst {
			a = e.openDir(t, "a", dA)
		}
		if _, err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("c's heartbeat after Redis restarted empty: %v", err)
		}
		if !aFirst {
			a = e.openDir(t, "a", dA)
		}
		if got := u.cluster(t, e, a); got != "" {
			t.Errorf("a first %v: a's change (%q) back in the cluster after Redis restarted empty, want it undone", aFirst, got)
		}
		if got := u.local(t, a); !aFirst && got != "" {
			t.Errorf("a's Local store after joining: its change (%q) still there, want it undone", got)
		}
		a.Close()
		c.Close()
	}
}

// noAt returns ev without its time (SharedEvent.At), for tests that
// compare events whole.
func noAt(ev store.SharedEvent) store.SharedEvent {
	ev.At = time.Time{}
	return ev
}

// TestEnableTimes: Bolt and Memory keep when a key was enabled (EnableKey:
// now; EnableKeyAt: the given time) until it is disabled again, and
// across a reopen for Bolt.
func TestEnableTimes(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var before time.Time
	memoryAndBolt(t, func(name string, s store.Store) {
		et := s.(store.EnableTimes)
		if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: at}); err != nil {
			t.Fatal(err)
		}
		if err := et.EnableKeyAt(ctx, "k1", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		before = time.Now()
		if err := s.EnableKey(ctx, "k2"); err != nil {
			t.Fatal(err)
		}
		if err := et.EnableKeyAt(ctx, "k3", at); err != nil {
			t.Fatal(err)
		}
		if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "k3", Reason: "expired", At: at.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := et.EnableKeyAt(ctx, "", at); err == nil {
			t.Errorf("%s: EnableKeyAt with an empty key id: no error", name)
		}
	}, func(name, when string, s store.Store) {
		en, err := s.(store.EnableTimes).KeysEnabled(ctx)
		if err != nil || len(en) != 2 || !en["k1"].Equal(at.Add(time.Second)) || en["k2"].Before(before.Truncate(time.Second)) {
			t.Errorf("%s %s: KeysEnabled = %v, %v; want k1 at %v, k2 at about %v (k3 disabled since)", name, when, en, err, at.Add(time.Second), before)
		}
		if dk := mustDisabled(t, s); len(dk) != 1 || dk[0].KeyID != "k3" {
			t.Errorf("%s %s: disabled keys %+v, want k3", name, when, dk)
		}
	})
}

// memoryAndBolt runs fill on a new Memory store and on a new Bolt file,
// then check on each (when ""), and on the Bolt file again after a reopen
// (when "after a reopen"); then store.Verify must accept the file.
func memoryAndBolt(t *testing.T, fill func(name string, s store.Store), check func(name, when string, s store.Store)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	openBolt := func() store.Store {
		b, err := store.Open(path, store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m := store.NewMemory()
	fill("memory", m)
	check("memory", "", m)
	m.Close()
	b := openBolt()
	fill("bolt", b)
	check("bolt", "", b)
	b.Close()
	b = openBolt()
	check("bolt", "after a reopen", b)
	b.Close()
	if err := store.Verify(path, store.Options{}); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// TestRedisEnableOutlivesEmptyRestart: a process stopped while another
// enabled the key it had disabled keeps the disable in its data
// directory; when Redis lost its state before that process joins again,
// the enable (kept with its time by the processes that made or applied it,
// and by those that joined after it) still wins, whichever process reaches
// the empty Redis first. And an enable made on a data directory while
// Redis was unreachable (no daemon) is shared with its time at the next
// join.
func TestRedisEnableOutlivesEmptyRestart(t *testing.T) {
	ctx := context.Background()
	undoOutlivesEmptyRestart(t, undoCase{
		change: func(e *redisEnv, a *store.Redis) error {
			return a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "by an operator", At: e.clock.now()})
		},
		undo: func(b *store.Redis) error { return b.EnableKey(ctx, "k2") },
		cluster: func(t *testing.T, e *redisEnv, _ *store.Redis) string {
			if rec, err := e.client(t).HGet(ctx, "test:disabled", "k2").Result(); err == nil {
				return "k2 disabled: " + rec
			}
			return ""
		},
		local: func(t *testing.T, a *store.Redis) string {
			if k, ok := keysOf(t, a.Local)["k2"]; ok {
				return fmt.Sprintf("k2 disabled: %+v", k)
			}
			return ""
		},
	})

	// An enable on a's data directory while Redis was unreachable.
	e := newRedisEnv(t)
	raw := e.client(t)
	dA := t.TempDir()
	a := e.openDir(t, "a", dA)
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "by an operator", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	local, err := store.Open(filepath.Join(dA, "slideshowd.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.EnableKeyAt(ctx, "k2", e.clock.now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	local.Close()
	a = e.openDir(t, "a", dA)
	defer a.Close()
	if rec, err := raw.HGet(ctx, "test:disabled", "k2").Result(); err == nil {
		t.Errorf("k2 disabled in the cluster after a joined with its later enable: %s", rec)
	}
}
