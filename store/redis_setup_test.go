package store_test

import (
	"context"
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
