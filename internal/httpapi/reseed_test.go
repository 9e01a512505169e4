package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// TestUsageClusterReseeding: two processes share a lane through a real
// Redis, a took 3 day units and b 5, and Redis is emptied (FLUSHALL). Until
// both re-seed, a's /v1/usage says "reseeding" with the processes waited
// for, and the lane's day_used is the 8 the cluster had used (the last
// count a saw), with redis_day_used the 0 Redis holds; the status page says
// so in words, and GET /metrics has slideshowd_cluster_reseeding 1 and
// slideshowd_cluster_reseed_waiting the number waited for. Before, both
// showed day 0 and no process alive, as if the quota were fresh. Once both
// re-seeded, no marker (the gauges 0).
func TestUsageClusterReseeding(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cls := store.RedisClass{Name: "text", RPM: 20, RPD: 100}
	l := store.LaneID{Project: "p1", Class: "text"}
	open := func(name string) *store.Redis {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		s, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: "test", Process: name,
			Classes: []store.RedisClass{cls}, Projects: []string{"p1"}, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open("a"), open("b")
	beat := func(ss ...*store.Redis) {
		for _, s := range ss {
			if _, err := s.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 3 { // a TTL: each one's view holds both
		tick(5 * time.Second)
		beat(a, b)
	}
	for _, g := range []struct {
		s *store.Redis
		n int
	}{{a, 3}, {b, 5}} {
		at := clock()
		if _, err := g.s.Reserve(ctx, store.Record{Lane: l, Day: "2026-03-01", Units: g.n, Covers: g.n, At: at, Until: at.Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	beat(a, b)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	sum := func() scheduler.Summary {
		u, err := a.Usage(ctx, "2026-03-01")
		return scheduler.Summary{Time: clock(), Cluster: scheduler.ClusterView(u, "2026-03-01", err)}
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	metrics.Attach(sum)
	env := newEnv(t, func(c *Config) { c.Summary = sum; c.Metrics = metrics })
	type view struct {
		Cluster struct {
			Reseeding     bool     `json:"reseeding"`
			ReseedWaiting []string `json:"reseed_waiting"`
			Lanes         []struct {
				DayUsed      int  `json:"day_used"`
				RedisDayUsed *int `json:"redis_day_used"`
			} `json:"lanes"`
		} `json:"cluster"`
	}
	check := func(what string, waiting []string, day int, redisDay *int, page []string) {
		t.Helper()
		w := env.do(t, "GET", "/v1/usage", "")
		var v view
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || w.Code != 200 || len(v.Cluster.Lanes) != 1 {
			t.Fatalf("%s: /v1/usage %d %s: %v", what, w.Code, w.Body, err)
		}
		c := v.Cluster
		if c.Reseeding != (waiting != nil) || strings.Join(c.ReseedWaiting, ",") != strings.Join(waiting, ",") {
			t.Errorf("%s: reseeding %v, reseed_waiting %q; want %v, %q", what, c.Reseeding, c.ReseedWaiting, waiting != nil, waiting)
		}
		if got := c.Lanes[0]; got.DayUsed != day || (got.RedisDayUsed == nil) != (redisDay == nil) ||
			(redisDay != nil && *got.RedisDayUsed != *redisDay) {
			t.Errorf("%s: lane %s", what, w.Body)
		}
		if redisDay == nil && strings.Contains(w.Body.String(), "redis_day_used") {
			t.Errorf("%s: redis_day_used while not re-seeding: %s", what, w.Body)
		}
		body := env.do(t, "GET", "/", "").Body.String()
		for _, want := range page {
			if !strings.Contains(body, want) {
				t.Errorf("%s: status page without %q:\n%s", what, want, body)
			}
		}
		if waiting == nil && strings.Contains(body, `id="cluster-reseeding"`) {
			t.Errorf("%s: the status page says re-seeding:\n%s", what, body)
		}
		// GET /metrics: the re-seeding gauge and the processes waited for.
		scrape := env.do(t, "GET", "/metrics", "")
		reseeding := 0
		if waiting != nil {
			reseeding = 1
		}
		for _, want := range []string{fmt.Sprintf("\nslideshowd_cluster_reseeding %d\n", reseeding),
			fmt.Sprintf("\nslideshowd_cluster_reseed_waiting %d\n", len(waiting))} {
			if scrape.Code != 200 || !strings.Contains(scrape.Body.String(), want) {
				t.Errorf("%s: GET /metrics %d without %q:\n%s", what, scrape.Code, strings.TrimSpace(want), scrape.Body)
			}
		}
	}
	zero, eight := 0, 8
	check("flushed", []string{"a", "b"}, 8, &zero, []string{`id="cluster-reseeding"`, "re-seeding: Redis lost the cluster's state",
		"(waiting for a, b)", "8/100</span> <span class=\"muted\">(Redis 0)</span>"})
	tick(time.Second)
	beat(a)
	check("a re-seeded", []string{"b"}, 8, &eight, []string{"(waiting for b)", "(Redis 8)"})
	tick(time.Second)
	beat(b)
	check("both re-seeded", nil, 8, nil, []string{"8/100</span></td>"})
}
