package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// TestUsageViewClientRefused: with Redis refusing connections (its port
// closed), Usage through a ViewClient that does not retry fails at once with
// the refusal, within the daemon's 1 s bound; through the ledger's own client with
// go-redis's retries (each dial 5 times 100 ms apart, the command again)
// the same read is still dialing when a 300 ms bound ends. The daemon reads
// its /v1/usage view through such a ViewClient, so a refused Redis does not
// hold the answer for scheduler.ClusterTimeout (README: Usage).
func TestUsageViewClientRefused(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()}) // go-redis's default retries
	defer rc.Close()
	view := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1})
	defer view.Close()
	open := func(viewClient *redis.Client) *store.Redis {
		s, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{Client: rc, ViewClient: viewClient,
			Cluster: "view", Classes: []store.RedisClass{{Name: "text", RPM: 10, RPD: 100}}, Projects: []string{"p1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	fast, slow := open(view), open(nil)
	day := "2026-03-01"
	if u, err := fast.Usage(context.Background(), day); err != nil || len(u.Lanes) != 1 {
		t.Fatalf("with Redis up: %+v, %v", u, err)
	}
	srv.Stop()

	// The daemon's bound (scheduler.ClusterTimeout): the retrying client
	// takes longer than it (about 1.6 s), the view client answers within.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := fast.Usage(ctx, day); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("through the view client: %v, want ErrUnavailable and the refusal", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := slow.Usage(ctx, day); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("through the retrying client: %v, want the 300 ms bound reached", err)
	}
}
