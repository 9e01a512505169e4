package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/internal/redistest"
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
		check := func(when string) {
			t.Helper()
			res, err := rt.LanesResumed(ctx)
			if err != nil || len(res) != 1 || !res[lane].Equal(at) {
				t.Errorf("%s %s: LanesResumed = %v, %v; want %s at %v only (%s stopped since)", name, when, res, err, lane, at, l2)
			}
			sts, err := s.LaneStates(ctx)
			if err != nil || len(sts) != 2 || sts[0].Stopped != "" || !sts[0].CoolUntil.Equal(cool.Add(time.Minute)) || sts[1].Stopped != "gone" {
				t.Errorf("%s %s: lane states %+v, %v; want %s cooling, not stopped, %s stopped", name, when, sts, err, lane, l2)
			}
		}
		check("")
		if name == "bolt" {
			s.Close()
			s = open()
			rt = s.(store.ResumeTimes)
			check("after a reopen")
			s.Close()
			if err := store.Verify(path, store.Options{}); err != nil {
				t.Errorf("Verify with resume times: %v", err)
			}
			continue
		}
		s.Close()
	}
}

// stopped reports whether the cluster has lane stopped (s reads Redis).
func stopped(t *testing.T, s *store.Redis) string {
	t.Helper()
	sts, err := s.LaneStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Lane == lane {
			return st.Stopped
		}
	}
	return ""
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
		switch got := stopped(t, b); {
		case laterStop && got == "":
			t.Errorf("the cluster's lane after a joined: resumed, want stopped (b's stop is later than a's resume)")
		case !laterStop && got != "":
			t.Errorf("the cluster's lane after a joined: stopped (%q), want resumed by a's data directory", got)
		}
		res, err := a.Local.(store.ResumeTimes).LanesResumed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := localLane(t, a); laterStop && (st.Stopped == "" || !res[lane].IsZero()) {
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
	e := &redisEnv{srv: redistest.Start(t, redistest.Options{AppendOnly: true}),
		clock: &vclock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
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
	if got := stopped(t, b); got == "" {
		t.Fatalf("the cluster's lane before a joined again: resumed, want still stopped")
	}
	a = e.openDir(t, "a", dA)
	defer a.Close()
	if got := stopped(t, b); got != "" {
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
	for _, aFirst := range []bool{false, true} {
		e := newRedisEnv(t)
		dA, dB := t.TempDir(), t.TempDir()
		a, b := e.openDir(t, "a", dA), e.openDir(t, "b", dB)
		if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Second)
		if err := b.SetLaneState(ctx, store.LaneState{Lane: lane}); err != nil {
			t.Fatal(err)
		}
		if err := b.ResumeLane(ctx, lane); err != nil {
			t.Fatal(err)
		}
		// c joins after the resume: it keeps the cluster's resume time.
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
		// re-seeds and shares the resumes it keeps.
		if _, err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("c's heartbeat after Redis restarted empty: %v", err)
		}
		if !aFirst {
			a = e.openDir(t, "a", dA)
		}
		if got := stopped(t, a); got != "" {
			t.Errorf("a first %v: the lane stopped (%q) in the cluster after Redis restarted empty, want resumed", aFirst, got)
		}
		if st := localLane(t, a); !aFirst && st.Stopped != "" {
			t.Errorf("a's Local lane after joining: %+v, want resumed", st)
		}
		a.Close()
		c.Close()
	}
}
