package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// seededHook checks, once armed, at every grant Redis makes to its process
// (a script's reply starting with "ok", a grant taken ahead included), that
// the process had added its counts to Redis's epoch before (the epoch's
// ":seeded" hash names it; seedScript writes it as it re-seeds).
type seededHook struct {
	process string
	check   *redis.Client
	mu      sync.Mutex
	armed   bool
	grants  int
	early   []string
}

func (h *seededHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *seededHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.note(ctx, c)
		}
		return err
	}
}

func (h *seededHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.note(ctx, cmd)
		return err
	}
}

func (h *seededHook) note(ctx context.Context, cmd redis.Cmder) {
	c, ok := cmd.(*redis.Cmd)
	if !ok || c.Err() != nil {
		return
	}
	if res, ok := c.Val().([]any); !ok || len(res) == 0 || res[0] != "ok" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.armed {
		return
	}
	h.grants++
	ep, _ := h.check.Get(ctx, "test:epoch").Result()
	seeded, _ := h.check.HGet(ctx, "test:epoch:seeded", h.process).Result()
	if ep == "" || seeded != ep {
		h.early = append(h.early, fmt.Sprintf("%s granted with epoch %q, its re-seed in %q", h.process, ep, seeded))
	}
}

// TestRedisNoGrantBeforeReseed: after Redis lost the cluster's state
// (FLUSHALL) under two busy processes, neither is granted anything by Redis
// before it has re-seeded its own counts (issue 13: "the processes re-seed
// the day counts from their own durable records ... before taking new
// grants"): not a grant at once, not one taken ahead (a fast lane's next
// grant, in flight as Redis lost its state), not one carrying TPM tokens;
// and afterwards the shared day count is never below what the two were
// granted, their Local counts.
func TestRedisNoGrantBeforeReseed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cls    store.RedisClass
		tokens int64
	}{
		{"fast lane, grants ahead", store.RedisClass{Name: "text", RPM: 100, RPD: 1000, Margin: 100 * time.Millisecond}, 0},
		{"TPM", store.RedisClass{Name: "text", RPM: 100, RPD: 1000, TPM: 100000, Margin: 100 * time.Millisecond}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newRedisEnv(t)
			var hooks []*seededHook
			var locals []store.Local
			open := func(name string) *store.Redis {
				h := &seededHook{process: name, check: e.client(t)}
				local := store.NewMemory()
				s := e.openHooked(t, name, local, h, tc.cls)
				hooks, locals = append(hooks, h), append(locals, local)
				return s
			}
			a, b := open("a"), open("b")
			e.heartbeats(t, 15*time.Second, a, b)
			// Each process records every 500 ms (a fast lane: its next
			// grant is taken ahead, without TPM), 3 units a record.
			round := func(refusedOK bool) {
				t.Helper()
				for _, s := range []*store.Redis{a, b} {
					r := e.record(3, 3)
					r.Tokens = tc.tokens
					if _, err := s.Reserve(ctx, r); err != nil {
						if !refusedOK || !errors.Is(err, store.ErrNoGrant) {
							t.Fatalf("%s: %v", s.Process(), err)
						}
						continue
					}
					for i := range 3 {
						s.Stamped(lane, e.clock.now().Add(time.Duration(100+100*i)*time.Millisecond))
					}
				}
			}
			for i := range 6 {
				round(false)
				e.clock.add(500 * time.Millisecond)
				if i%4 == 3 {
					e.heartbeats(t, 0, a, b)
				}
			}
			store.WaitRedisPrefetch(a)
			store.WaitRedisPrefetch(b)
			e.flushAll(t)
			for _, h := range hooks {
				h.mu.Lock()
				h.armed = true
				h.mu.Unlock()
			}
			// Two minutes of both recording (within their share while
			// they recover), heartbeats every 5 s.
			for i := range 240 {
				round(true)
				e.clock.add(500 * time.Millisecond)
				if i%10 == 9 {
					for _, s := range []*store.Redis{a, b} {
						if _, err := s.Heartbeat(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			store.WaitRedisPrefetch(a)
			store.WaitRedisPrefetch(b)
			for _, h := range hooks {
				h.mu.Lock()
				t.Logf("%s: %d grants from Redis after the flush", h.process, h.grants)
				if h.grants == 0 {
					t.Errorf("%s: no grant after the flush: the test checked nothing", h.process)
				}
				for _, s := range h.early {
					t.Error(s)
				}
				h.mu.Unlock()
			}
			sent := 0
			for _, l := range locals {
				d, err := l.Daily(ctx, "2026-03-01")
				if err != nil {
					t.Fatal(err)
				}
				for _, dc := range d {
					sent += dc.Count
				}
			}
			u, err := a.Usage(ctx, "2026-03-01")
			if err != nil || len(u.Lanes) != 1 {
				t.Fatalf("Usage %+v, %v", u, err)
			}
			if u.Lanes[0].Count < sent {
				t.Errorf("shared day count %d, below the %d units the processes' Local stores count", u.Lanes[0].Count, sent)
			}
		})
	}
}
