package store_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/store"
)

// commands is a go-redis hook that keeps the name (and, for a script, the
// first key) of every command a client sends: each is one round trip, a
// pipeline one for all of its commands.
type commands struct {
	mu   sync.Mutex
	sent []string
}

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.note(cmd)
		return next(ctx, cmd)
	}
}

func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
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

func (c *commands) note(cmd redis.Cmder) {
	name := cmd.Name()
	if a := cmd.Args(); (name == "evalsha" || name == "eval") && len(a) > 3 {
		name += " " + strings.TrimPrefix(a[3].(string), "test:") // the script's first key
	}
	c.mu.Lock()
	c.sent = append(c.sent, name)
	c.mu.Unlock()
}

// since returns the commands sent since the last call, leaving out a
// script's EVAL right after its EVALSHA: Redis did not have the script yet
// (its first run on this server), go-redis sent it whole.
func (c *commands) since() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, s := range c.sent {
		if i > 0 && strings.HasPrefix(s, "eval ") && c.sent[i-1] == "evalsha "+strings.TrimPrefix(s, "eval ") {
			continue
		}
		out = append(out, s)
	}
	c.sent = c.sent[:0]
	return out
}

// TestRedisHeartbeatRoundTrips: a process that Redis answers sends one
// command per heartbeat while it has no other work: the heartbeat's script
// renews it, reads the view of the cluster (the outage share's) and the
// lanes' shared day counts (ViewedDaily, which daily protection takes), on
// a lane with TPM its token window too. Giving an idle lane's unused slots
// back and sending a token overrun cost one more, once, when there are
// some. Before, a heartbeat was three commands (the heartbeat, the view,
// the token view) and the scheduler read the day counts with a fourth.
func TestRedisHeartbeatRoundTrips(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	image := store.RedisClass{Name: "image", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	imageLane := store.LaneID{Project: "p1", Class: "image"}
	cmds := &commands{}
	c := redis.NewClient(&redis.Options{Addr: e.srv.Addr(), MaxRetries: -1})
	c.AddHook(cmds)
	t.Cleanup(func() { c.Close() })
	a, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: "test", Process: "a",
		Classes: []store.RedisClass{tpmClass, image}, Projects: []string{"p1"}, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := e.open(t, "b", tpmClass, image)
	if _, err := b.Reserve(ctx, e.tokens(2, 300)); err != nil {
		t.Fatal(err)
	}
	days := func(text, img int) {
		t.Helper()
		want := []store.DailyCount{{Day: "2026-03-01", Lane: lane, Count: text}, {Day: "2026-03-01", Lane: imageLane, Count: img}}
		got, at := a.ViewedDaily()
		slices.SortFunc(got, func(x, y store.DailyCount) int { return strings.Compare(x.Lane.Class, y.Lane.Class) })
		slices.SortFunc(want, func(x, y store.DailyCount) int { return strings.Compare(x.Lane.Class, y.Lane.Class) })
		if !slices.Equal(got, want) || !at.Equal(e.clock.now()) {
			t.Errorf("ViewedDaily %v at %v; want %v at %v", got, at, want, e.clock.now())
		}
	}
	heartbeat := func(want ...string) {
		t.Helper()
		e.clock.add(5 * time.Second)
		if _, err := b.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		cmds.since()
		if n, err := a.Heartbeat(ctx); err != nil || n != 2 {
			t.Fatalf("heartbeat: live %d, %v; want 2", n, err)
		}
		if got := cmds.since(); !slices.Equal(got, want) {
			t.Errorf("a heartbeat sent %q; want %q", got, want)
		}
	}
	const hb = "evalsha procs"
	for range 6 {
		heartbeat(hb)
	}
	days(2, 0)
	// b's next grants reach a's day counts at a's next heartbeat.
	if _, err := b.Reserve(ctx, e.tokens(1, 100)); err != nil {
		t.Fatal(err)
	}
	r := e.record(3, 3)
	r.Lane = imageLane
	if _, err := b.Reserve(ctx, r); err != nil {
		t.Fatal(err)
	}
	heartbeat(hb)
	days(3, 3)
	// a's own grant: once its lane has been idle for TTL/3 (5 s) after the
	// grant's end, one heartbeat also gives its unused slots back.
	if _, err := a.Reserve(ctx, e.tokens(1, 100)); err != nil {
		t.Fatal(err)
	}
	heartbeat(hb)
	heartbeat(hb, "evalsha epoch") // the settlement's script (its first key: the epoch)
	heartbeat(hb)
	// An overrun with no grant after it: sent by the next heartbeat.
	a.Overran(lane, 50)
	heartbeat(hb, "evalsha epoch")
	for range 4 {
		heartbeat(hb)
	}
	days(4, 3)
}
