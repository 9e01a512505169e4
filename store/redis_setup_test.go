package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// Set-up shared by the Redis ledger tests: a test cluster whose Redis keeps
// its state through a restart, a ledger whose client goes through a
// command hook, Redis losing its state, and an outage in which a process
// grants from its share.

// newPersistentRedisEnv is newRedisEnv (the virtual clock at 12:00 UTC,
// 2026-03-01) with a Redis server that writes an append-only file: its
// Restart comes back with the state it had (RestartEmpty still empties it).
func newPersistentRedisEnv(t *testing.T) *redisEnv {
	t.Helper()
	return &redisEnv{srv: redistest.Start(t, redistest.Options{AppendOnly: true}),
		clock: &vclock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
}

// openHooked opens a ledger named process on local (a fresh Memory store
// when nil) with the test cluster's options (e.options: project p1,
// classes, the virtual clock), its Redis client, of its own, going through
// hook; it fails the test if OpenRedis fails, and closes the ledger at the
// test's end.
func (e *redisEnv) openHooked(t *testing.T, process string, local store.Local, hook redis.Hook, classes ...store.RedisClass) *store.Redis {
	t.Helper()
	if local == nil {
		local = store.NewMemory()
	}
	o := e.options(t, process, classes...)
	o.Client.AddHook(hook)
	s, err := store.OpenRedis(context.Background(), local, o)
	if err != nil {
		t.Fatalf("OpenRedis(%s): %v", process, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// flushAll empties Redis (FLUSHALL: as a restart without persistence,
// with no call failing), on a client of its own; an error fails the test.
// The ledgers find it out at their next call, which re-seeds.
func (e *redisEnv) flushAll(t *testing.T) {
	t.Helper()
	if err := e.client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// outageOnShare runs a and b's views to each other (20 s of heartbeats),
// a takes one grant of one day unit from Redis, Redis stops, a's heartbeat
// fails, 100 s pass (past the grace; every slot of the view left), a takes
// one grant of one unit from its outage share, and Redis restarts (with
// its state on a newPersistentRedisEnv). a has not yet reconnected: its
// next Heartbeat does.
func (e *redisEnv) outageOnShare(t *testing.T, a, b *store.Redis) {
	t.Helper()
	ctx := context.Background()
	e.heartbeats(t, 20*time.Second, a, b)
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); err == nil {
		t.Fatal("heartbeat with Redis stopped: no error")
	}
	e.clock.add(100 * time.Second) // past the grace; every slot of the view left
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("the share: %v", err)
	}
	e.srv.Restart()
}

// newDeadFixEnv is the set-up of the dead-charge replacement tests:
// newDeadFixEnvAt with the virtual clock at 12:00 UTC, 2026-03-01 (as
// newPersistentRedisEnv's).
func newDeadFixEnv(t *testing.T) *deadEnv {
	t.Helper()
	return newDeadFixEnvAt(t, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// newDeadFixEnvAt is a deadEnv whose Redis server writes an append-only
// file (its Restart comes back with the state it had; RestartEmpty
// empties it), the virtual clock at start, a lane of class text at RPM 9,
// RPD 900 and a 100 ms margin, and a and b open on Memory stores (closed
// at the test's end). c is the test's to open (on a Bolt file, so that its
// data directory can start again).
func newDeadFixEnvAt(t *testing.T, start time.Time) *deadEnv {
	t.Helper()
	e := &deadEnv{redisEnv: &redisEnv{srv: redistest.Start(t, redistest.Options{AppendOnly: true}),
		clock: &vclock{t: start}},
		cls: store.RedisClass{Name: "text", RPM: 9, RPD: 900, Margin: 100 * time.Millisecond}}
	e.a, e.b = e.open(t, "a", e.cls), e.open(t, "b", e.cls)
	return e
}

// closeAtEnd closes s at the test's end unless the returned kill closed it
// before. kill closes s as a process killed (no settlement, no Leave) and
// fails the test if Close fails; it must not be called twice.
func closeAtEnd(t *testing.T, s *store.Redis) (kill func()) {
	t.Helper()
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	return func() {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		closed = true
	}
}

// takeAll has each of ss take one grant of n slots and n day units
// (e.take); it fails the test, "<process>: <what>", on the first refused.
func (e *deadEnv) takeAll(t *testing.T, n int, what string, ss ...*store.Redis) {
	t.Helper()
	for _, s := range ss {
		if !e.take(t, s, n, n) {
			t.Fatalf("%s: %s", s.Process(), what)
		}
	}
}

// stopRedis stops Redis (a Restart brings its state back on a
// newPersistentRedisEnv) and runs a heartbeat of each of ss, failing the
// test unless each fails with store.ErrUnavailable. The clock stays.
func (e *redisEnv) stopRedis(t *testing.T, ss ...*store.Redis) {
	t.Helper()
	e.srv.Stop()
	for _, s := range ss {
		if _, err := s.Heartbeat(context.Background()); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("heartbeat with Redis stopped: %v", err)
		}
	}
}

// outage is the dead-charge tests' outage: a second passes, Redis stops
// and the heartbeats of ss fail (stopRedis), and 92 s pass: every slot
// granted before it has left the window (60 s, the grant life of 30 s,
// the margin and a second), so the share is RPM / the processes in the
// views. Redis stays stopped.
func (e *redisEnv) outage(t *testing.T, ss ...*store.Redis) {
	t.Helper()
	e.clock.add(time.Second)
	e.stopRedis(t, ss...)
	e.clock.add(92 * time.Second)
}

// restartRedis lets a second pass and restarts Redis: with its state
// (Restart), or empty (RestartEmpty). No process has reached it yet.
func (e *redisEnv) restartRedis(empty bool) {
	e.clock.add(time.Second)
	if empty {
		e.srv.RestartEmpty()
	} else {
		e.srv.Restart()
	}
}
