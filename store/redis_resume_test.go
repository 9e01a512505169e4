package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// TestResumeTimes: Bolt and Memory keep when a lane was resumed
// (ResumeLaneAt clears its stop, keeps its cooldown) until it is stopped
// again (SetLaneState with a stop), and across a reopen for Bolt; a state
// without a stop (a cooldown) keeps the time.
func TestResumeTimes(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cool := at.Add(time.Hour)
	l2 := store.LaneID{Project: "p2", Class: "text"}
	memoryAndBolt(t, func(name string, s store.Store) {
		rt := s.(store.ResumeTimes)
		if err := s.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool, Stopped: "no quota", Config: "c1"}); err != nil {
			t.Fatal(err)
		}
		if err := rt.ResumeLaneAt(ctx, lane, at); err != nil {
			t.Fatal(err)
		}
		if err := s.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: cool.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := rt.ResumeLaneAt(ctx, l2, at); err != nil { // a lane with no state
			t.Fatal(err)
		}
		if err := s.SetLaneState(ctx, store.LaneState{Lane: l2, Stopped: "gone", Config: "c2"}); err != nil {
			t.Fatal(err)
		}
		if err := rt.ResumeLaneAt(ctx, store.LaneID{Project: "p1"}, at); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: ResumeLaneAt of a lane without a class: %v, want ErrInvalid", name, err)
		}
	}, func(name, when string, s store.Store) {
		res, err := s.(store.ResumeTimes).LanesResumed(ctx)
		if err != nil || len(res) != 1 || !res[lane].Equal(at) {
			t.Errorf("%s %s: LanesResumed = %v, %v; want %s at %v only (%s stopped since)", name, when, res, err, lane, at, l2)
		}
		sts, err := s.LaneStates(ctx)
		if err != nil || len(sts) != 2 || sts[0].Stopped != "" || !sts[0].CoolUntil.Equal(cool.Add(time.Minute)) || sts[1].Stopped != "gone" {
			t.Errorf("%s %s: lane states %+v, %v; want %s cooling, not stopped, %s stopped", name, when, sts, err, lane, l2)
		}
	})
}

// TestRedisOfflineResumeShared: a resume made on a data directory while no
// process on it runs and Redis does not take it (slideshowd lanes resume
// with no daemon: ResumeLaneAt, as the scheduler does on a Bolt store) is
// shared with its time when a process on that data directory joins,
// unless the cluster recorded a later change of the lane's stop: then the
// data directory takes the cluster's stop and forgets the resume.
func TestRedisOfflineResumeShared(t *testing.T) {
	ctx := context.Background()
	for _, laterStop := range []bool{false, true} {
		e := newRedisEnv(t)
		dA := t.TempDir()
		a, b := e.openDir(t, "a", dA), e.openDir(t, "b", t.TempDir())
		if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		local, err := store.Open(filepath.Join(dA, "slideshowd.db"), store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := local.ResumeLaneAt(ctx, lane, e.clock.now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		local.Close()
		if laterStop {
			e.clock.add(2 * time.Second)
			if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c2"}); err != nil {
				t.Fatal(err)
			}
		}
		a = e.openDir(t, "a", dA)
		switch got := laneOf(t, b).Stopped; {
		case laterStop && got == "":
			t.Errorf("the cluster's lane after a joined: resumed, want stopped (b's stop is later than a's resume)")
		case !laterStop && got != "":
			t.Errorf("the cluster's lane after a joined: stopped (%q), want resumed by a's data directory", got)
		}
		res, err := a.Local.(store.ResumeTimes).LanesResumed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := laneOf(t, a.Local); laterStop && (st.Stopped == "" || !res[lane].IsZero()) {
			t.Errorf("a's Local lane after joining: %+v, resumed at %v; want b's stop, no resume time", st, res[lane])
		}
		a.Close()
		b.Close()
	}
}

// TestRedisOutageResumeShared: a process that resumed a lane while Redis
// was unreachable (ErrPending) and stopped before Redis answered again
// shares the resume when it joins again (Redis kept its state).
func TestRedisOutageResumeShared(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	dA := t.TempDir()
	a, b := e.openDir(t, "a", dA), e.openDir(t, "b", t.TempDir())
	defer b.Close()
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	e.srv.Stop()
	if err := a.ResumeLane(ctx, lane); !errors.Is(err, store.ErrPending) {
		t.Fatalf("ResumeLane with Redis stopped: %v, want ErrPending", err)
	}
	a.Close()
	e.srv.Restart()
	if got := laneOf(t, b).Stopped; got == "" {
		t.Fatalf("the cluster's lane before a joined again: resumed, want still stopped")
	}
	a = e.openDir(t, "a", dA)
	defer a.Close()
	if got := laneOf(t, b).Stopped; got != "" {
		t.Errorf("the cluster's lane after a joined again: stopped (%q), want resumed (a's pending resume)", got)
	}
}

// TestRedisResumeOutlivesEmptyRestart: a process stopped while another
// resumed the lane it had stopped keeps the stop (with no time) in its
// data directory; when Redis lost its state before that process joins
// again, the resume (kept with its time by the process that made it and by
// those that joined after it) wins, whichever reaches the empty Redis
// first.
func TestRedisResumeOutlivesEmptyRestart(t *testing.T) {
	ctx := context.Background()
	undoOutlivesEmptyRestart(t, undoCase{
		change: func(_ *redisEnv, a *store.Redis) error {
			return a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"})
		},
		undo: func(b *store.Redis) error {
			if err := b.SetLaneState(ctx, store.LaneState{Lane: lane}); err != nil {
				return err
			}
			return b.ResumeLane(ctx, lane)
		},
		cluster: func(t *testing.T, _ *redisEnv, a *store.Redis) string { return laneOf(t, a).Stopped },
		local:   func(t *testing.T, a *store.Redis) string { return laneOf(t, a.Local).Stopped },
	})
}
