package scheduler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// sentCommands is a go-redis hook that keeps the name of every command a
// client sends (a pipeline as one).
type sentCommands struct {
	mu   sync.Mutex
	sent []string
}

func (c *sentCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *sentCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if a := cmd.Args(); name == "evalsha" && len(a) > 3 {
			name += " " + strings.TrimPrefix(fmt.Sprint(a[3]), "idle:") // the script's first key
		}
		c.mu.Lock()
		c.sent = append(c.sent, name)
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *sentCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmd.Name()
		}
		c.mu.Lock()
		c.sent = append(c.sent, "pipeline("+strings.Join(names, " ")+")")
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *sentCommands) since() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sent
	c.sent = nil
	return out
}

// TestSharedIdleRoundTrips: a scheduler on a Redis ledger with no work
// sends Redis one command per HeartbeatEvery (the heartbeat's script), and
// daily protection still learns the other processes' day counts from it:
// another process's grant is in this one's ClusterDayUsed after its next
// heartbeat. On a virtual clock (Redis's scripts on the bubble's clock).
// Before, each HeartbeatEvery cost three (the heartbeat, the view of the
// cluster, the day counts read for daily protection).
func TestSharedIdleRoundTrips(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		classes := []store.RedisClass{{Name: "text", RPM: 60, RPD: 100}}
		open := func(name string, hook redis.Hook) *store.Redis {
			return openHooked(ctx, t, srv.Addr(), name, classes, hook)
		}
		cmds := &sentCommands{}
		st := open("a", cmds)
		other := open("b", nil)
		s, err := New(Config{Keys: keys(1), Store: quietShared{st},
			Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 100}}}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait() // Run's read of the day counts, before its dispatchers start
		if got := cmds.since(); len(got) == 0 {
			t.Error("Run sent nothing at its start; want the day counts read")
		}
		// b's grant of 7 units, then a's heartbeats.
		now := time.Now()
		if _, err := other.Reserve(ctx, store.Record{Lane: store.LaneID{Project: "key1", Class: "text"},
			Day: bucket.Day(now, bucket.Pacific), Units: 7, Covers: 7, At: now, Until: now.Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		const beats = 12
		time.Sleep(beats*HeartbeatEvery + HeartbeatEvery/2) // the virtual clock: the scenario, not a wait for an event
		synctest.Wait()
		if got := cmds.since(); len(got) != beats {
			t.Errorf("%d heartbeats sent %d commands %q; want one each", beats, len(got), got)
		}
		if cs := s.Summary().Classes[0]; cs.ClusterDayUsed != 7 {
			t.Errorf("ClusterDayUsed %d after a's heartbeats; want b's 7 (from the heartbeat's day counts)", cs.ClusterDayUsed)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestSharedBeatRides: a scheduler whose lane is granted about every
// second sends no heartbeat of its own after its first (at Run's start): a
// grant made once the last heartbeat is 1 s old carries the next one (one
// pipeline for both scripts), and Run's heartbeat, due 5 s after the last,
// finds it done. The other process keeps counting it alive, and daily protection
// still gets the other process's day count. On a virtual clock (Redis's
// scripts on the bubble's clock).
func TestSharedBeatRides(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		classes := []store.RedisClass{{Name: "text", RPM: 600, RPD: 10000}}
		open := func(name string, hook redis.Hook) *store.Redis {
			return openHooked(ctx, t, srv.Addr(), name, classes, hook)
		}
		cmds := &sentCommands{}
		st := open("a", cmds)
		other := open("b", nil)
		s, err := New(Config{Keys: keys(1), Store: quietShared{st},
			Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 600, RPD: 10000}, Burst: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		cmds.since() // OpenRedis's
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for range 1000 {
			if _, err := s.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		if _, err := other.Reserve(ctx, store.Record{Lane: store.LaneID{Project: "key1", Class: "text"},
			Day: bucket.Day(now, bucket.Pacific), Units: 7, Covers: 1, At: now, Until: now.Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		for range 12 {
			time.Sleep(HeartbeatEvery) // the virtual clock: the scenario, not a wait for an event
			if n, err := other.Heartbeat(ctx); err != nil || n != 2 {
				t.Fatalf("b's heartbeat: %d alive, %v; want a counted alive too", n, err)
			}
		}
		synctest.Wait()
		beats, carried := 0, 0
		for _, c := range cmds.since() {
			switch c {
			case "evalsha procs":
				beats++
			case "pipeline(evalsha evalsha)":
				carried++
			}
		}
		if beats != 1 || carried < 10 {
			t.Errorf("in 60 s: %d heartbeats of its own, %d carried by grants; want 1 (the first) and at least 10", beats, carried)
		}
		if cs := s.Summary().Classes[0]; cs.ClusterDayUsed < 7+50 {
			t.Errorf("ClusterDayUsed %d; want b's 7 and a's own", cs.ClusterDayUsed)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// openHooked opens a Redis ledger named name in cluster "idle" (project
// key1, classes) on its own client, with hook (nil: none) counting what it
// sends; both are closed when the test ends.
func openHooked(ctx context.Context, t *testing.T, addr, name string, classes []store.RedisClass, hook redis.Hook) *store.Redis {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	if hook != nil {
		c.AddHook(hook)
	}
	st, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: "idle",
		Process: name, Projects: []string{"key1"}, Classes: classes, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); c.Close() })
	return st
}
