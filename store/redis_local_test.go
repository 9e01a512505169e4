package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// openDir opens a ledger named process on the Bolt file of dir (a
// process's data directory); the test closes it (Close closes the file).
func (e *redisEnv) openDir(t *testing.T, process, dir string) *store.Redis {
	t.Helper()
	b, err := store.Open(filepath.Join(dir, "slideshowd.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenRedis(context.Background(), b, store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: process, Classes: []store.RedisClass{textClass},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	if err != nil {
		b.Close()
		t.Fatalf("OpenRedis(%s): %v", process, err)
	}
	return s
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

func localKeys(t *testing.T, s *store.Redis) map[string]store.DisabledKey {
	t.Helper()
	ks, err := s.Local.DisabledKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]store.DisabledKey)
	for _, k := range ks {
		out[k.KeyID] = k
	}
	return out
}

func localLane(t *testing.T, s *store.Redis) store.LaneState {
	t.Helper()
	sts, err := s.Local.LaneStates(context.Background())
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
	if k, ok := localKeys(t, a)["k2"]; ok {
		t.Errorf("a's Local store after b enabled k2: %+v, want enabled", k)
	}
	if err := b.ResumeLane(ctx, lane); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "resumed")
	if st := localLane(t, a); st.Stopped != "" {
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
	if k := localKeys(t, a)["k3"]; k.Reason != "leaked" || !k.At.Equal(at) {
		t.Errorf("a's Local k3 after b disabled it: %+v, want leaked at %v", k, at)
	}
	cool := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool}); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "cool")
	if st := localLane(t, a); !st.CoolUntil.Equal(cool) || st.Stopped != "" {
		t.Errorf("a's Local lane after b's cooldown: %+v, want cooling until %v, not stopped", st, cool)
	}
	if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool, Stopped: "gone", Config: "c2"}); err != nil {
		t.Fatal(err)
	}
	eventOf(t, events, "stopped")
	if st := localLane(t, a); st.Stopped != "gone" || st.Config != "c2" || !st.CoolUntil.Equal(cool) {
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
	if k, ok := localKeys(t, a)["k2"]; ok {
		t.Errorf("a's Local store after joining again: k2 %+v, want enabled", k)
	}
	dk, err := a.DisabledKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dk {
		if d.KeyID == "k2" {
			t.Errorf("k2 disabled in the cluster again after a joined an empty Redis: %+v", d)
		}
	}
	sts, err := a.LaneStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Stopped != "" {
			t.Errorf("lane stopped in the cluster again after a joined an empty Redis: %+v", st)
		}
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
	ks := localKeys(t, a)
	if k, ok := ks["k2"]; ok {
		t.Errorf("a's Local store after joining: k2 %+v, want enabled (by b since)", k)
	}
	if k := ks["k4"]; k.Reason != "leaked" {
		t.Errorf("a's Local store after joining: k4 %+v, want disabled (leaked, by b)", k)
	}
	if st := localLane(t, a); st.Stopped != "" {
		t.Errorf("a's Local lane after joining: %+v, want resumed (by b since)", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	e.srv.RestartEmpty()
	a = e.openDir(t, "a", dA)
	defer a.Close()
	dk, err := a.DisabledKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dk) != 1 || dk[0].KeyID != "k4" {
		t.Errorf("cluster's disabled keys after a joined an empty Redis: %+v, want k4 only", dk)
	}
	sts, err := a.LaneStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Stopped != "" {
			t.Errorf("lane stopped in the cluster again after a joined an empty Redis: %+v", st)
		}
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
	path := filepath.Join(t.TempDir(), "s.db")
	for name, open := range map[string]func() store.Store{
		"memory": func() store.Store { return store.NewMemory() },
		"bolt": func() store.Store {
			b, err := store.Open(path, store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	} {
		s := open()
		et := s.(store.EnableTimes)
		if err := s.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: at}); err != nil {
			t.Fatal(err)
		}
		if err := et.EnableKeyAt(ctx, "k1", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
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
		check := func(when string) {
			t.Helper()
			en, err := et.KeysEnabled(ctx)
			if err != nil || len(en) != 2 || !en["k1"].Equal(at.Add(time.Second)) || en["k2"].Before(before.Truncate(time.Second)) {
				t.Errorf("%s %s: KeysEnabled = %v, %v; want k1 at %v, k2 at about %v (k3 disabled since)", name, when, en, err, at.Add(time.Second), before)
			}
			if dk := mustDisabled(t, s); len(dk) != 1 || dk[0].KeyID != "k3" {
				t.Errorf("%s %s: disabled keys %+v, want k3", name, when, dk)
			}
		}
		check("")
		if name == "bolt" {
			s.Close()
			s = open()
			et = s.(store.EnableTimes)
			check("after a reopen")
			s.Close()
			if err := store.Verify(path, store.Options{}); err != nil {
				t.Errorf("Verify with enable times: %v", err)
			}
			continue
		}
		s.Close()
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
	for _, aFirst := range []bool{false, true} {
		e := newRedisEnv(t)
		raw := e.client(t)
		dA, dB := t.TempDir(), t.TempDir()
		a, b := e.openDir(t, "a", dA), e.openDir(t, "b", dB)
		if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "by an operator", At: e.clock.now()}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Second)
		if err := b.EnableKey(ctx, "k2"); err != nil {
			t.Fatal(err)
		}
		// c joins after the enable: it keeps the cluster's enable time.
		c := e.openDir(t, "c", t.TempDir())
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		e.srv.Stop()
		e.srv.RestartEmpty()
		if aFirst {
			a = e.openDir(t, "a", dA)
		}
		// c notices that Redis lost its state (its heartbeat): it
		// re-seeds and shares the enables it keeps.
		if _, err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("c's heartbeat after Redis restarted empty: %v", err)
		}
		if !aFirst {
			a = e.openDir(t, "a", dA)
		}
		if rec, err := raw.HGet(ctx, "test:disabled", "k2").Result(); err == nil {
			t.Errorf("a first %v: k2 disabled in the cluster after Redis restarted empty: %s", aFirst, rec)
		}
		if !aFirst {
			if k, ok := localKeys(t, a)["k2"]; ok {
				t.Errorf("a's Local store after joining: k2 %+v, want enabled", k)
			}
		}
		a.Close()
		c.Close()
	}

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
