package scheduler

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestSharedRedisRestartedEmpty: a running scheduler with no work notices
// Redis restarted empty at its next heartbeat and says so; a process that
// registered other limits while this one's registration was gone is named
// in an error line at the next heartbeat.
func TestSharedRedisRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const lost, other = "Redis lost the cluster's state (restarted empty)", "a live process of the cluster has other limits for a lane"
	la := newLogSignal(lost, other)
	modelScheduler(t, srv, "a", "m1", la)
	srv.Kill()
	srv.Restart()
	waitLog(t, la, lost)
	// c starts as if before a registered again (its registration gone).
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	var c *store.Redis
	for try := 0; ; try++ { // a's heartbeat may register it again in between
		// a's registration is named after its life (a~ and a suffix).
		ks, err := rc.Keys(ctx, "sched:limits:a~*").Result()
		if err == nil && len(ks) > 0 {
			err = rc.Del(ctx, ks...).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err = store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{
			Client: rc, Cluster: "sched", Process: "c",
			Classes:  []store.RedisClass{{Name: "text", RPM: 12, RPD: 1000}},
			Projects: []string{"key1"},
		})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrLimitsConflict) || try == 3 {
			t.Fatal(err)
		}
	}
	defer c.Close()
	waitLog(t, la, other)
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
}
