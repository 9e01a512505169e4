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
// script's EVAL right after its EVALSHA (Redis did not have the script yet:
// its first run on this server, go-redis sent it whole) and a new
// connection's set-up (HELLO, CLIENT SETINFO: the client's first pipeline
// takes a connection of its own, once).
func (c *commands) since() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, s := range c.sent {
		if i > 0 && strings.HasPrefix(s, "eval ") && c.sent[i-1] == "evalsha "+strings.TrimPrefix(s, "eval ") {
			continue
		}
		if s == "hello" || s == "client" || strings.HasPrefix(s, "pipeline(client") {
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
	a := e.openHooked(t, "a", nil, cmds, tpmClass, image)
	b := e.open(t, "b", tpmClass, image)
	// Grants taken ahead in the background (redis_prefetch.go) would add
	// commands at any moment: off, to count a heartbeat's.
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
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

// TestRedisBeatRides: once Beat is called, a grant made when the last
// heartbeat is at least HeartbeatTTL/15 old carries the heartbeat's script
// in its own round trip (one pipeline), and Beat skips its script while
// one came with a grant within its fresh; the view (and the day counts) is
// then the carried one's. A heartbeat carried by a grant that finds the
// epoch gone (Redis lost its state) does not count: the next Beat sends
// the script. A process that only calls Heartbeat gets none carried.
func TestRedisBeatRides(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 100, RPD: 1000, Margin: 100 * time.Millisecond}
	cmds := &commands{}
	a := e.openHooked(t, "a", nil, cmds, cls)
	store.SetRedisBeatClock(a, e.clock.now)
	b := e.open(t, "b", cls)
	store.SetRedisBeatClock(b, e.clock.now)
	// Grants taken ahead in the background (redis_prefetch.go) would send
	// commands, and carry heartbeats, at any moment: off, to count them.
	store.SetRedisPrefetch(a, false)
	store.SetRedisPrefetch(b, false)
	sent := func(what string, want ...string) {
		t.Helper()
		if got := cmds.since(); !slices.Equal(got, want) {
			t.Errorf("%s sent %q; want %q", what, got, want)
		}
	}
	count := func(want int) {
		t.Helper()
		if got, _ := a.ViewedDaily(); len(got) != 1 || got[0].Count != want {
			t.Errorf("ViewedDaily %v; want the count %d", got, want)
		}
	}
	const fresh = 5 * time.Second
	cmds.since()
	if n, err := a.Beat(ctx, fresh); err != nil || n != 2 {
		t.Fatalf("Beat: %d, %v", n, err)
	}
	sent("the first Beat", "evalsha procs")
	if got := a.LastBeat(); !got.Equal(e.clock.now()) {
		t.Errorf("LastBeat %v, want now %v", got, e.clock.now())
	}
	e.clock.add(500 * time.Millisecond) // 0.5 s < TTL/15 since the heartbeat
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	sent("a grant 0.5 s after the heartbeat", "evalsha epoch")
	e.clock.add(500 * time.Millisecond) // 1 s >= TTL/15
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	sent("a grant 1 s after the heartbeat", "pipeline(evalsha evalsha)")
	carried := e.clock.now()
	if got := a.LastBeat(); !got.Equal(carried) {
		t.Errorf("LastBeat %v, want the grant's %v", got, carried)
	}
	count(2) // the heartbeat runs after the grant: its view has it
	if _, err := b.Reserve(ctx, e.record(3, 3)); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Second)
	if n, err := a.Beat(ctx, fresh); err != nil || n != 2 {
		t.Fatalf("Beat: %d, %v", n, err)
	}
	sent("a Beat 1 s after a grant carried the heartbeat")
	count(2) // b's grant is not seen yet
	e.clock.add(4 * time.Second)
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Beat(ctx, fresh); err != nil || n != 2 {
		t.Fatalf("Beat: %d, %v", n, err)
	}
	sent("a Beat 5 s after the carried heartbeat", "evalsha procs")
	count(5)

	// b calls only Heartbeat: its grants carry nothing.
	e.clock.add(10 * time.Second)
	before := b.LastBeat()
	if _, err := b.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := b.LastBeat(); !got.Equal(before) {
		t.Errorf("b's LastBeat %v after a grant, want %v: only Beat lets grants carry heartbeats", got, before)
	}

	// Redis lost its state (FLUSHALL: the scripts stay): the heartbeat
	// carried by the grant that finds the epoch gone does not count (its
	// reply has no view of the epoch joined); the next Beat sends the
	// script.
	if _, err := a.Beat(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	last := a.LastBeat()
	e.flushAll(t)
	e.clock.add(4 * time.Second)
	cmds.since()
	if _, err := a.Reserve(ctx, e.record(1, 1)); err == nil || a.Restarts() != 1 {
		t.Fatalf("the grant after the flush: %v, restarts %d; want refused (its share: none) after a re-seed", err, a.Restarts())
	}
	if got := cmds.since(); len(got) == 0 || got[0] != "pipeline(evalsha evalsha)" {
		t.Errorf("the grant after the flush sent %q; want the heartbeat carried", got)
	}
	if got := a.LastBeat(); !got.Equal(last) {
		t.Errorf("LastBeat %v after a grant that found the epoch gone, want %v", got, last)
	}
	e.clock.add(time.Second)
	if _, err := a.Beat(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if got := cmds.since(); len(got) == 0 || got[0] != "evalsha procs" {
		t.Errorf("the Beat after it sent %q; want the heartbeat's script first", got)
	}
}
