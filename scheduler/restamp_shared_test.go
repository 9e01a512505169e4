package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

// TestLateWriteShared: with a Redis ledger, a request written late
// (Lease.Wrote with a write 2 s after the stamp, a margin of 0 here) gets
// a slot of its own in the shared window at its write, so every process
// counts it from there (store.Redis.Restamped; the bound across processes is
// store's TestRedisRestamped). One written on time adds nothing.
func TestLateWriteShared(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := sharedScheduler(t, srv, "a", 10, nil, newLogSignal())
	var late time.Time
	for i := range 2 {
		err := s.Do(context.Background(), Job{Class: "text", Work: func(_ context.Context, l Lease) error {
			w := l.Slot // on time: at the stamp (the margin is 0 here)
			if i == 1 {
				w = w.Add(2 * time.Second)
				late = w
			}
			l.Wrote(w)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	zs, err := c.ZRangeWithScores(context.Background(), "sched:win:4:key1/text", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for _, z := range zs {
		if strings.HasSuffix(z.Member.(string), ":w*1") {
			got = append(got, z.Score)
		}
	}
	if len(got) != 1 || int64(got[0]) < late.UnixMilli() {
		t.Fatalf("late slots in the shared window at %v, want one at %d or later (window %v)", got, late.UnixMilli(), zs)
	}
}
