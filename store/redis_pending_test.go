package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// nextEvent returns the next event of ch; it fails the test after 30 s (a
// hang, not a wait for the event).
func nextEvent(t *testing.T, ch <-chan store.SharedEvent, what string) store.SharedEvent {
	t.Helper()
	tm := time.NewTimer(30 * time.Second)
	defer tm.Stop()
	select {
	case ev := <-ch:
		return ev
	case <-tm.C:
		t.Fatalf("no event for %s", what)
	}
	return store.SharedEvent{}
}

// watch runs s.Watch until the test ends and returns its events once it is
// subscribed (and has re-read the shared state).
func watch(t *testing.T, s *store.Redis) <-chan store.SharedEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan store.SharedEvent, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, ready, func(ev store.SharedEvent) { events <- ev }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch: %v", err)
	}
	return events
}

// subscribe subscribes a raw client to the cluster's events.
func subscribe(t *testing.T, c *redis.Client) <-chan *redis.Message {
	t.Helper()
	sub := c.Subscribe(context.Background(), "test:events")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sub.Channel()
}

func nextMessage(t *testing.T, ch <-chan *redis.Message) store.SharedEvent {
	t.Helper()
	tm := time.NewTimer(30 * time.Second)
	defer tm.Stop()
	select {
	case m := <-ch:
		var ev store.SharedEvent
		if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
			t.Fatalf("message %q: %v", m.Payload, err)
		}
		return ev
	case <-tm.C:
		t.Fatal("no message")
	}
	return store.SharedEvent{}
}

func pendingErr(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrPending) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("%s with Redis unreachable: %v, want ErrPending", what, err)
	}
	// Said once (a newcomer saw "unavailable: unavailable: no answer").
	if n := strings.Count(err.Error(), store.ErrUnavailable.Error()); n != 1 {
		t.Errorf("%s: %q says %q %d times", what, err, store.ErrUnavailable.Error(), n)
	}
}

// TestRedisPendingChanges: keys disabled or enabled and lanes stopped or
// resumed while Redis is unreachable are stored in the Local store at once
// and pushed to Redis, in order, by the heartbeat that reaches it again:
// each one written, published and counted in the shared state's version,
// so another process learns them.
func TestRedisPendingChanges(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	raw := e.client(t)
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "leaked", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	e.clock.add(time.Second)
	at := e.clock.now()
	pendingErr(t, a.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "out of credit", At: at}), "DisableKey")
	pendingErr(t, a.EnableKey(ctx, "k2"), "EnableKey")
	pendingErr(t, a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "model=m rpm=5"}), "SetLaneState")
	pendingErr(t, a.DisableKey(ctx, store.DisabledKey{KeyID: "k3", Reason: "leaked", At: at}), "DisableKey")
	pendingErr(t, a.ResumeLane(ctx, lane), "ResumeLane")
	pendingErr(t, a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "model=m rpm=5"}), "SetLaneState")
	keys, lanes := a.Pending()
	if !slices.Equal(keys, []string{"k1", "k2", "k3"}) || !slices.Equal(lanes, []store.LaneID{lane}) {
		t.Errorf("Pending = %v, %v", keys, lanes)
	}
	// The Local store has every change already.
	local, err := a.Local.DisabledKeys(ctx)
	if err != nil || len(local) != 2 || local[0].KeyID != "k1" || local[1].KeyID != "k3" {
		t.Errorf("Local disabled keys %v, %v; want k1, k3", local, err)
	}
	if st, err := a.Local.LaneStates(ctx); err != nil || len(st) != 1 || st[0].Stopped != "no quota" {
		t.Errorf("Local lane states %v, %v", st, err)
	}

	e.srv.Restart()
	ver0, _ := raw.Get(ctx, "test:disabledv").Int()
	msgs := subscribe(t, raw)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Unreachable() {
		t.Fatal("still unreachable after the heartbeat that reached Redis")
	}
	if keys, lanes := a.Pending(); len(keys)+len(lanes) != 0 {
		t.Errorf("Pending after reconnect = %v, %v", keys, lanes)
	}
	want := []store.SharedEvent{
		{Process: "a", Kind: "disabled", KeyID: "k1", Reason: "out of credit"},
		{Process: "a", Kind: "enabled", KeyID: "k2"},
		{Process: "a", Kind: "stopped", Lane: lane, Reason: "no quota", Config: "model=m rpm=5"},
		{Process: "a", Kind: "disabled", KeyID: "k3", Reason: "leaked"},
		{Process: "a", Kind: "resumed", Lane: lane},
		{Process: "a", Kind: "stopped", Lane: lane, Reason: "no quota", Config: "model=m rpm=5"},
	}
	for i, w := range want {
		if got := noAt(nextMessage(t, msgs)); got != w {
			t.Errorf("message %d = %+v, want %+v", i, got, w)
		}
	}
	if ver, _ := raw.Get(ctx, "test:disabledv").Int(); ver != ver0+len(want) {
		t.Errorf("shared state's version %d, want %d", ver, ver0+len(want))
	}
	// b, which never heard of them, reads them.
	dk, err := b.DisabledKeys(ctx)
	if err != nil || len(dk) != 2 || dk[0].KeyID != "k1" || dk[0].Reason != "out of credit" || !dk[0].At.Equal(at) || dk[1].KeyID != "k3" {
		t.Errorf("b's disabled keys %+v, %v; want k1 (out of credit, at %v), k3", dk, err, at)
	}
	st, err := b.LaneStates(ctx)
	if err != nil || len(st) != 1 || st[0].Stopped != "no quota" || st[0].Config != "model=m rpm=5" {
		t.Errorf("b's lane states %+v, %v", st, err)
	}
	// A change while Redis answers is written at once.
	if err := a.EnableKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if ev := nextMessage(t, msgs); ev.Kind != "enabled" || ev.KeyID != "k1" {
		t.Errorf("message %+v", ev)
	}
}

// TestRedisPendingConflicts: a pending change is written only when it is
// not older than the last change of the same key or lane that Redis
// recorded (by the processes' clocks; a disable or a stop wins a tie), and
// the process that made it applies the winner (Watch reports it).
func TestRedisPendingConflicts(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	for _, k := range []string{"k2", "k4"} {
		if err := a.DisableKey(ctx, store.DisabledKey{KeyID: k, Reason: "leaked", At: e.clock.now()}); err != nil {
			t.Fatal(err)
		}
	}
	// b stopped the lane: a resumed it at 12:00:01 during its outage, b
	// stopped it again at 12:00:05.
	stop := store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}
	if err := b.SetLaneState(ctx, stop); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LaneStates(ctx); err != nil { // as the scheduler at start
		t.Fatal(err)
	}
	// a is cut off (Redis down for it) from 12:00:00.
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	e.clock.add(time.Second) // 12:00:01
	// k4 first: at 12:00:01.000 (a's later changes are a ms apart each).
	pendingErr(t, a.EnableKey(ctx, "k4"), "EnableKey k4")
	pendingErr(t, a.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "out of credit", At: e.clock.now()}), "DisableKey k1")
	pendingErr(t, a.EnableKey(ctx, "k2"), "EnableKey k2")
	pendingErr(t, a.ResumeLane(ctx, lane), "ResumeLane")
	e.srv.Restart()
	// b, which reaches Redis, changes them later (k4 at the same ms).
	if err := b.DisableKey(ctx, store.DisabledKey{KeyID: "k4", Reason: "b's", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	e.clock.add(4 * time.Second) // 12:00:05
	if err := b.EnableKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := b.DisableKey(ctx, store.DisabledKey{KeyID: "k2", Reason: "b's", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	if err := b.EnableKey(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c2"}); err != nil {
		t.Fatal(err)
	}
	// a still cut off: a change after b's is kept pending too.
	e.clock.add(5 * time.Second) // 12:00:10
	if !a.Unreachable() {
		t.Fatal("a reachable before its heartbeat")
	}
	pendingErr(t, a.DisableKey(ctx, store.DisabledKey{KeyID: "k3", Reason: "expired", At: e.clock.now()}), "DisableKey k3")
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	dk, err := b.DisabledKeys(ctx)
	var ids []string
	for _, d := range dk {
		ids = append(ids, d.KeyID+" "+d.Reason)
	}
	// k1: b's enable (12:00:05) is later than a's disable (12:00:01).
	// k2: b's disable (12:00:05) is later than a's enable (12:00:01).
	// k3: a's disable (12:00:10) is later than b's enable (12:00:05).
	// k4: a's enable and b's disable at the same ms: the disable.
	if err != nil || !slices.Equal(ids, []string{"k2 b's", "k3 expired", "k4 b's"}) {
		t.Errorf("disabled keys after a's push: %q, %v", ids, err)
	}
	// The lane: b's stop (12:00:05) is later than a's resume (12:00:01).
	st, err := b.LaneStates(ctx)
	if err != nil || len(st) != 1 || st[0].Stopped != "no quota" || st[0].Config != "c2" {
		t.Errorf("lane states after a's push: %+v, %v", st, err)
	}
	// a applies the winners where its own change lost: its Watch, started
	// now, reports them from the shared state.
	events := watch(t, a)
	var got []store.SharedEvent
	for range 3 {
		got = append(got, noAt(nextEvent(t, events, "a's lost changes")))
	}
	wantEv := []store.SharedEvent{
		{Process: store.ResyncProcess, Kind: "enabled", KeyID: "k1"},
		{Process: store.ResyncProcess, Kind: "disabled", KeyID: "k2", Reason: "b's"},
		{Process: store.ResyncProcess, Kind: "disabled", KeyID: "k4", Reason: "b's"},
	}
	if !slices.Equal(got, wantEv) {
		t.Errorf("a's events %+v, want %+v", got, wantEv)
	}
	if ev := nextEvent(t, events, "the lane stopped again"); ev.Kind != "stopped" || ev.Lane != lane || ev.Config != "c2" {
		t.Errorf("a's lane event %+v", ev)
	}
	// A process that starts later does not bring back k1 from a's Local
	// store: the cluster enabled it after.
	dk, err = a.DisabledKeys(ctx)
	ids = ids[:0]
	for _, d := range dk {
		ids = append(ids, d.KeyID)
	}
	if err != nil || !slices.Equal(ids, []string{"k2", "k3", "k4"}) {
		t.Errorf("a's disabled keys %q, %v", ids, err)
	}
	// a's Local store (its data directory) has the winners too.
	ids = ids[:0]
	for id, d := range keysOf(t, a.Local) {
		ids = append(ids, id+" "+d.Reason)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"k2 b's", "k3 expired", "k4 b's"}) {
		t.Errorf("a's Local disabled keys after the re-read: %q", ids)
	}
	if ls := laneOf(t, a.Local); ls.Stopped != "no quota" || ls.Config != "c2" {
		t.Errorf("a's Local lane after the re-read: %+v, want b's stop (c2)", ls)
	}
}

// TestRedisSharedStop: a lane stop is shared with its reason and
// configuration (published once, kept without expiry, even through a
// cooldown), read by LaneStates, and cleared everywhere by ResumeLane,
// which also overrides a stop kept in a process's Local store. A process
// that missed the messages learns them at its next grant (the version) or
// when its subscription comes back.
func TestRedisSharedStop(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	raw := e.client(t)
	events := watch(t, b)
	e.clock.t = time.Now() // cooldowns are on the processes' clocks
	stop := store.LaneState{Lane: lane, Stopped: "no quota", Config: "model=m rpm=5 rpd=8 tpm=0"}
	if err := a.SetLaneState(ctx, stop); err != nil {
		t.Fatal(err)
	}
	want := store.SharedEvent{Process: "a", Kind: "stopped", Lane: lane, Reason: stop.Stopped, Config: stop.Config}
	if ev := noAt(nextEvent(t, events, "the stop")); ev != want {
		t.Errorf("event %+v, want %+v", ev, want)
	}
	// The same stop again (a cooldown persisted with it) is not published
	// again, and the cooldown does not make the stop expire.
	cool := stop
	cool.CoolUntil = time.Now().Add(-time.Second).Truncate(time.Millisecond) // over: grants go on
	if err := a.SetLaneState(ctx, cool); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, "the cooldown"); ev.Kind != "cool" {
		t.Errorf("event %+v, want the cooldown only", ev)
	}
	if ttl, err := raw.PTTL(ctx, "test:lane:2:p1/text").Result(); err != nil || ttl != -1 {
		t.Errorf("lane state's TTL %v, %v; want none", ttl, err)
	}
	st, err := b.LaneStates(ctx)
	if err != nil || len(st) != 1 || st[0].Stopped != stop.Stopped || st[0].Config != stop.Config {
		t.Errorf("b's lane states %+v, %v", st, err)
	}
	// b's Local store kept a stop of its own: a's resume clears it too.
	if err := b.Local.SetLaneState(ctx, stop); err != nil {
		t.Fatal(err)
	}
	if err := a.ResumeLane(ctx, lane); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, "the resume"); ev.Kind != "resumed" || ev.Lane != lane || ev.Process != "a" {
		t.Errorf("event %+v", ev)
	}
	st, err = b.LaneStates(ctx)
	for _, s := range st {
		if s.Stopped != "" {
			t.Errorf("b's lane states after the resume: %+v", st)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ResumeLane(ctx, store.LaneID{Project: "", Class: "text"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ResumeLane of an empty project: %v", err)
	}

	// Missed messages: another process stops the lane and its message is
	// lost; b's next grant sees the version change and re-reads.
	raw.HSet(ctx, "test:lane:2:p1/text", "stopped", "no quota", "config", "c9", "stopat", 1)
	raw.Incr(ctx, "test:disabledv")
	if _, err := b.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	// The re-read event carries the change's recorded time (stopat).
	want = store.SharedEvent{Process: store.ResyncProcess, Kind: "stopped", Lane: lane, Reason: "no quota", Config: "c9", At: time.UnixMilli(1).UTC()}
	if ev := nextEvent(t, events, "a grant after a lost stop"); ev != want {
		t.Errorf("event %+v, want %+v", ev, want)
	}
	// Resumed while b's subscription is down: learned when it comes back.
	raw.HDel(ctx, "test:lane:2:p1/text", "stopped", "config")
	if err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, events, "the re-subscription")
		if ev.Kind == "cool" {
			continue // re-read cooldowns not over yet
		}
		if ev.Kind != "resumed" || ev.Lane != lane || ev.Process != store.ResyncProcess {
			t.Errorf("event %+v, want the lane resumed", ev)
		}
		break
	}
}

// TestRedisRestartedEmptyKeepsKeys: when Redis comes back empty, the
// processes put back the disabled keys and lane stops they last saw (the
// first grant or reconnect re-seeds), and a process never reads the empty
// state as every key enabled and every lane resumed.
func TestRedisRestartedEmptyKeepsKeys(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	events := watch(t, b)
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, Stopped: "no quota", Config: "c1"}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"disabled", "stopped"} {
		if ev := nextEvent(t, events, kind); ev.Kind != kind {
			t.Fatalf("event %+v, want %s", ev, kind)
		}
	}
	e.srv.Stop()
	e.srv.RestartEmpty()
	// A re-read before b re-seeds (its subscription came back first) finds
	// the epoch gone and reports nothing.
	store.ResyncRedis(b, func(ev store.SharedEvent) { t.Errorf("re-read of an empty Redis reported %+v", ev) })
	// b's grant finds the epoch gone: b re-seeds, with what it heard (and
	// then asks within its share of the recovery: none, its view is not a
	// heartbeat TTL after it joined).
	grantErr(t, reserveErr(b, e.record(1, 1)), "share")
	c := e.open(t, "c")
	dk, err := c.DisabledKeys(ctx)
	if err != nil || len(dk) != 1 || dk[0].KeyID != "k1" || dk[0].Reason != "leaked" {
		t.Errorf("disabled keys after Redis came back empty: %+v, %v", dk, err)
	}
	st, err := c.LaneStates(ctx)
	if err != nil || len(st) != 1 || st[0].Stopped != "no quota" || st[0].Config != "c1" {
		t.Errorf("lane states after Redis came back empty: %+v, %v", st, err)
	}
	// Until a's next change, b reported nothing back: no key enabled, no
	// lane resumed.
	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k9", Reason: "expired", At: e.clock.now()}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, events, "a's next change")
		if ev.Kind == "enabled" || ev.Kind == "resumed" {
			t.Errorf("b reported %+v after Redis came back empty", ev)
		}
		if ev.KeyID == "k9" {
			break
		}
	}
}

// silentProxy forwards TCP connections to addr until silenced; then it
// reads and drops what clients send and answers nothing (a Redis behind a
// network that lost its packets).
type silentProxy struct {
	ln     net.Listener
	silent atomic.Bool
}

func newSilentProxy(t *testing.T, addr string) *silentProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() }
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if err != nil {
				dst.Close()
				return
			}
			if !p.silent.Load() {
				if _, err := dst.Write(buf[:n]); err != nil {
					src.Close()
					return
				}
			}
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(r)
			wg.Go(func() { pipe(r, c) })
			wg.Go(func() { pipe(c, r) })
		}
	})
	return p
}

// TestRedisNoAnswer: a Redis that does not answer (its packets lost) makes
// a change of a key pending once the bound passes, instead of waiting on
// the client's retries; the process is then unreachable, and the change
// reaches Redis at the heartbeat after it answers again.
func TestRedisNoAnswer(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	p := newSilentProxy(t, e.srv.Addr())
	// As the daemon's client: context deadlines bound the socket.
	c := redis.NewClient(&redis.Options{Addr: p.ln.Addr().String(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	s, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "test", Process: "a", Classes: []store.RedisClass{textClass},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	store.SetRedisOpTimeout(s, 300*time.Millisecond)
	p.silent.Store(true)
	start := time.Now()
	pendingErr(t, s.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: e.clock.now()}), "DisableKey")
	t.Logf("DisableKey answered in %v", time.Since(start))
	if d := time.Since(start); d > 2*time.Second { // the bound is 300 ms; go-redis's read timeout 3 s
		t.Errorf("DisableKey took %v with Redis silent", d)
	}
	if !s.Unreachable() {
		t.Error("Redis silent, yet not unreachable")
	}
	p.silent.Store(false)
	start = time.Now()
	if _, err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("heartbeat answered in %v", time.Since(start))
	if v, err := e.client(t).HGet(ctx, "test:disabled", "k1").Result(); err != nil || !strings.Contains(v, "leaked") {
		t.Errorf("k1 in Redis after the heartbeat: %q, %v", v, err)
	}
}

// TestRedisShareOffline: a change made without a running ledger (the CLI on
// a data directory) reaches the running processes, without joining the
// cluster; bad options are refused naming the field.
func TestRedisShareOffline(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	b := e.open(t, "b")
	events := watch(t, b)
	raw := e.client(t)
	o := store.ShareOptions{Client: raw, Cluster: "test", Process: "cli"}
	at := e.clock.now()
	if err := store.ShareKeyChange(ctx, o, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: at}, true, at); err != nil {
		t.Fatal(err)
	}
	want := store.SharedEvent{Process: "cli", Kind: "disabled", KeyID: "k1", Reason: "leaked"}
	if ev := noAt(nextEvent(t, events, "the CLI's disable")); ev != want {
		t.Errorf("event %+v, want %+v", ev, want)
	}
	if err := store.ShareLaneResume(ctx, o, lane, at); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, "the CLI's resume"); ev.Kind != "resumed" || ev.Lane != lane || ev.Process != "cli" {
		t.Errorf("event %+v", ev)
	}
	if n, _ := raw.ZCard(ctx, "test:procs").Result(); n != 1 {
		t.Errorf("%d processes alive, want b alone (the CLI does not join)", n)
	}
	for _, bad := range []struct {
		o    store.ShareOptions
		want string
	}{
		{store.ShareOptions{Cluster: "test", Process: "cli"}, "ShareOptions.Client"},
		{store.ShareOptions{Client: raw, Process: "cli"}, "ShareOptions.Cluster"},
		{store.ShareOptions{Client: raw, Cluster: "test"}, "ShareOptions.Process"},
	} {
		err := store.ShareKeyChange(ctx, bad.o, store.DisabledKey{KeyID: "k1"}, false, at)
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ShareKeyChange(%+v): %v, want ErrInvalid naming %s", bad.o, err, bad.want)
		}
	}
}

// TestRedisPendingTimes: a cooldown or exhaustion set while Redis is
// unreachable is kept and shared by the heartbeat that reaches Redis again
// (the latest of each per lane; one that ended by then is not), so the
// other processes stop using the lane too.
func TestRedisPendingTimes(t *testing.T) {
	ctx := context.Background()
	e := &redisEnv{srv: redistest.Start(t, redistest.Options{AppendOnly: true}),
		clock: &vclock{t: time.Now().Truncate(time.Millisecond)}} // cooldowns are on the processes' clocks
	image := store.RedisClass{Name: "image", RPM: 2, RPD: 3, Margin: time.Second}
	a, b := e.open(t, "a", textClass, image), e.open(t, "b", textClass, image)
	raw := e.client(t)
	other := store.LaneID{Project: "p1", Class: "image"}
	e.srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	now := e.clock.now()
	cool, later := now.Add(20*time.Second), now.Add(40*time.Second)
	exhausted := now.Add(5 * time.Hour)
	for _, st := range []store.LaneState{
		{Lane: lane, CoolUntil: cool},
		{Lane: lane, CoolUntil: later},
		{Lane: lane, CoolUntil: cool}, // earlier than the one kept: ignored
		{Lane: other, ExhaustedUntil: exhausted},
		{Lane: store.LaneID{Project: "p2", Class: "text"}, CoolUntil: now.Add(time.Second)}, // over by the reconnect
	} {
		err := a.SetLaneState(ctx, st)
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "shared when Redis answers again") {
			t.Fatalf("SetLaneState(%+v) while unreachable: %v", st, err)
		}
	}
	if st, err := a.Local.LaneStates(ctx); err != nil || len(st) != 3 {
		t.Errorf("Local lane states %+v, %v; want the 3 lanes", st, err)
	}

	e.clock.add(2 * time.Second)
	e.srv.Restart()
	msgs := subscribe(t, raw)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Unreachable() {
		t.Fatal("still unreachable after the heartbeat that reached Redis")
	}
	want := []store.SharedEvent{ // lane by lane, in order
		{Process: "a", Kind: "exhausted", Lane: other, Until: exhausted.UTC()},
		{Process: "a", Kind: "cool", Lane: lane, Until: later.UTC()},
	}
	for i, w := range want {
		if got := nextMessage(t, msgs); !got.Until.Equal(w.Until) || got.Kind != w.Kind || got.Lane != w.Lane || got.Process != w.Process {
			t.Errorf("message %d = %+v, want %+v", i, got, w)
		}
	}
	st, err := b.LaneStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[store.LaneID]store.LaneState{}
	for _, s := range st {
		got[s.Lane] = s
	}
	if s := got[lane]; !s.CoolUntil.Equal(later) {
		t.Errorf("b's state of %v: %+v, want cooling until %v", lane, s, later)
	}
	if s := got[other]; !s.ExhaustedUntil.Equal(exhausted) {
		t.Errorf("b's state of %v: %+v, want exhausted until %v", other, s, exhausted)
	}
	if s, ok := got[store.LaneID{Project: "p2", Class: "text"}]; ok {
		t.Errorf("b sees p2's cooldown that ended before Redis answered: %+v", s)
	}
	// Shared once: the next heartbeat pushes nothing.
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	sentinel(t, raw, msgs, "the second heartbeat")
}

// TestRedisPublishLocal: a process whose Local store has keys disabled and
// lanes stopped that Redis never got (it stopped during an outage before
// Redis answered, or the CLI could not reach Redis) shares them when it
// joins again, unless the cluster recorded a later change of the same key
// or lane.
func TestRedisPublishLocal(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	e.clock.t = time.Now().Truncate(time.Millisecond) // cooldowns are on the processes' clocks
	b := e.open(t, "b")
	raw := e.client(t)
	t0 := e.clock.now()
	// The cluster enabled k2 after a's disable of it, and resumed p1/image.
	o := store.ShareOptions{Client: raw, Cluster: "test", Process: "cli"}
	if err := store.ShareKeyChange(ctx, o, store.DisabledKey{KeyID: "k2"}, false, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	image := store.LaneID{Project: "p1", Class: "image"}
	if err := store.ShareLaneResume(ctx, o, image, t0); err != nil {
		t.Fatal(err)
	}
	local := store.NewMemory()
	for _, d := range []store.DisabledKey{
		{KeyID: "k1", Reason: "leaked", At: t0.Add(time.Second)},
		{KeyID: "k2", Reason: "out of credit", At: t0.Add(time.Second)},
	} {
		if err := local.DisableKey(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []store.LaneState{
		{Lane: lane, Stopped: "no quota", Config: "model=m rpm=5"},
		{Lane: image, Stopped: "no quota", Config: "model=i rpm=2", ExhaustedUntil: t0.Add(5 * time.Hour)},
		{Lane: store.LaneID{Project: "p9", Class: "text"}, Stopped: "no quota", Config: "model=m rpm=5"}, // not a lane of a's projects
	} {
		if err := local.SetLaneState(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	msgs := subscribe(t, raw)
	a, err := store.OpenRedis(ctx, local, store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: "a",
		Classes:  []store.RedisClass{textClass, {Name: "image", RPM: 2, RPD: 3, Margin: time.Second}},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	want := []store.SharedEvent{
		{Process: "a", Kind: "exhausted", Lane: image, Until: t0.Add(5 * time.Hour).UTC()},
		{Process: "a", Kind: "disabled", KeyID: "k1", Reason: "leaked"},
		{Process: "a", Kind: "stopped", Lane: lane, Reason: "no quota", Config: "model=m rpm=5"},
	}
	for i, w := range want {
		if got := nextMessage(t, msgs); got.Kind != w.Kind || got.Lane != w.Lane || got.KeyID != w.KeyID ||
			got.Reason != w.Reason || got.Config != w.Config || !got.Until.Equal(w.Until) {
			t.Errorf("message %d = %+v, want %+v", i, got, w)
		}
	}
	sentinel(t, raw, msgs, "k2 and p1/image changed later in the cluster")
	dk, err := b.DisabledKeys(ctx)
	if err != nil || len(dk) != 1 || dk[0].KeyID != "k1" || dk[0].Reason != "leaked" || !dk[0].At.Equal(t0.Add(time.Second)) {
		t.Errorf("b's disabled keys %+v, %v; want k1 (leaked)", dk, err)
	}
	st, err := b.LaneStates(ctx)
	if err != nil || len(st) != 1 || st[0].Lane != lane || st[0].Stopped != "no quota" {
		t.Errorf("b's lane states %+v, %v; want p1/text stopped", st, err)
	}
	bi := e.open(t, "bi", textClass, store.RedisClass{Name: "image", RPM: 2, RPD: 3, Margin: time.Second})
	st, err = bi.LaneStates(ctx)
	if err != nil || len(st) != 2 || st[0].Lane != image || !st[0].ExhaustedUntil.Equal(t0.Add(5*time.Hour)) || st[0].Stopped != "" {
		t.Errorf("lane states %+v, %v; want p1/image exhausted (not stopped: resumed later in the cluster), p1/text stopped", st, err)
	}
	// Joining again publishes nothing new.
	a2, err := store.OpenRedis(ctx, local, store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: "a2", Classes: []store.RedisClass{textClass},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	sentinel(t, raw, msgs, "joining again")
}

// sentinel publishes a marker on the cluster's channel and checks that it
// is the next message: nothing else was published before it.
func sentinel(t *testing.T, raw *redis.Client, msgs <-chan *redis.Message, why string) {
	t.Helper()
	mark := store.SharedEvent{Process: "sentinel", Kind: "none"}
	b, _ := json.Marshal(mark)
	if err := raw.Publish(context.Background(), "test:events", b).Err(); err != nil {
		t.Fatal(err)
	}
	if got := nextMessage(t, msgs); got != mark {
		t.Errorf("message %+v before the sentinel (%s)", got, why)
	}
}
