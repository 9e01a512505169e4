package scheduler

import (
	"context"
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
		c.mu.Lock()
		c.sent = append(c.sent, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *sentCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.sent = append(c.sent, "pipeline")
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
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
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
