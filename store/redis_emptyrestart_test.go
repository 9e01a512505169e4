package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

// Reproductions found by the newcomer's binary run (2026-12-01): Redis
// restarted empty while every process could still reach it a moment later,
// so no process saw a call fail. They fail on main at 399bfa6.

// emptyAfterB joins a and b on one lane of cls; b takes n slots and day
// units, both heartbeats read it (their views), then Redis restarts empty
// (killed: nothing saved).
func emptyAfterB(t *testing.T, cls store.RedisClass, n int) (*redisEnv, *store.Redis) {
	t.Helper()
	e := newRedisEnv(t)
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	if _, err := b.Reserve(context.Background(), e.record(n, n)); err != nil {
		t.Fatal(err)
	}
	e.heartbeats(t, 0, a, b)
	e.srv.Kill()
	e.srv.Restart()
	return e, a
}

// TestRedisEmptyRestartKeepsWindow: b holds the lane's whole minute (10
// slots of RPM 10), a's heartbeat has seen it, Redis restarts empty, and a
// asks first. a re-seeds only its own grants, so it is granted a slot in a
// minute that already holds 10 (the binary run: 13 and 12 requests in a 60 s
// window at RPM 10, 5 per-minute 429s).
func TestRedisEmptyRestartKeepsWindow(t *testing.T) {
	e, a := emptyAfterB(t, store.RedisClass{Name: "text", RPM: 10, RPD: 100}, 10)
	e.clock.add(5 * time.Second)
	if n, err := a.Reserve(context.Background(), e.record(1, 1)); !errors.Is(err, store.ErrNoGrant) {
		t.Errorf("a granted a slot (day count %d, err %v) 5 s after b took the whole minute (RPM 10): Redis restarted empty between", n, err)
	}
}

// TestRedisEmptyRestartKeepsDay: b used 15 of RPD 20, a's heartbeat read
// it, Redis restarts empty, and a asks for 10: the day would hold 25 (the
// binary run: a shared day count of 4 after 12 requests sent at RPD 12,
// and 2 per-day 429s).
func TestRedisEmptyRestartKeepsDay(t *testing.T) {
	e, a := emptyAfterB(t, store.RedisClass{Name: "text", RPM: 100, RPD: 20}, 15)
	e.clock.add(70 * time.Second) // the window is free again; the day is not
	if n, err := a.Reserve(context.Background(), e.record(10, 10)); err == nil {
		t.Errorf("a granted 10 day units (shared day count %d) after b's 15 of RPD 20: Redis restarted empty between", n)
	}
}

// TestRedisEmptyRestartKeepsLimits: after Redis restarted empty, a process
// with other limits for a lane is no longer refused while a and b live
// (the binary run: one at RPM 12 joined daemons at RPM 10, 3 per-minute
// 429s); limits registrations are also never renewed (EXPIRE 86400 once).
func TestRedisEmptyRestartKeepsLimits(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	a := e.open(t, "a", cls)
	e.srv.Kill()
	e.srv.Restart()
	for i := 0; i < 2; i++ { // a notices (heartbeat, grant) and goes on
		_, _ = a.Heartbeat(ctx)
		_, _ = a.Reserve(ctx, e.record(1, 1))
	}
	err := e.joinErr(t, "c", store.RedisClass{Name: "text", RPM: 12, RPD: 100})
	if err == nil {
		t.Errorf("a process at RPM 12 joined while a (RPM 10) is alive: Redis restarted empty before; want ErrLimitsConflict")
	} else if !errors.Is(err, store.ErrLimitsConflict) {
		t.Errorf("OpenRedis: %v; want ErrLimitsConflict", err)
	}
}

// TestRedisEmptyRestartRecovery: with views a heartbeat TTL after both
// joined, an idle process re-seeds at its next heartbeat; the grants after
// the restart stay within the share of the last view (b's whole minute
// leaves no room) until every slot of it has left the window; the day
// count is re-seeded to the larger of the counts seen and the sum of the
// own counts (b's 10 once, not twice); and after the recovery Redis grants
// alone again.
func TestRedisEmptyRestartRecovery(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 20, RPD: 100}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 15*time.Second, a, b)
	for _, g := range []struct {
		s *store.Redis
		n int
	}{{a, 3}, {b, 10}} {
		sendGranted(t, e, g.s, g.n, e.clock.now().Add(2*time.Second-time.Millisecond)) // sent in the grant's last millisecond (see TestRedisReserveUpTo)
	}
	e.heartbeats(t, 0, a, b) // both views: 13 slots and day count 13
	e.srv.Kill()
	e.srv.Restart()
	e.clock.add(time.Second)
	// b, idle, re-seeds at its heartbeat.
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if u, err := a.Usage(ctx, "2026-03-01"); err != nil || len(u.Lanes) != 1 || u.Lanes[0].Count != 13 {
		t.Errorf("day count after b's heartbeat %+v, %v; want 13 (b's 10, raised to the 13 it saw)", u, err)
	}
	if b.Restarts() != 1 {
		t.Errorf("b's Restarts %d, want 1", b.Restarts())
	}
	// a's grant finds the new epoch: a re-seeds (its own 3 and the 13
	// it saw: the count stays 13, not 16) and asks within its share: the
	// view's slots leave after the restart, no room yet (Redis would have
	// granted it: its window holds 13 of 20).
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if u, err := a.Usage(ctx, "2026-03-01"); err != nil || len(u.Lanes) != 1 || u.Lanes[0].Count != 13 {
		t.Errorf("day count after a's re-seed %+v, %v; want 13 (sum of own counts 13, seen 13)", u, err)
	}
	// The re-seeded slots are in the window; the recovery lasts until
	// every slot granted before the restart may have left it (the view's
	// 13 are still there 20 s later: no room in the share yet).
	e.heartbeats(t, 20*time.Second, a, b)
	if n := len(e.windowScores(t, e.client(t))); n != 13 {
		t.Errorf("window after the re-seeds: %d slots; want 13 (a's 3, b's 10)", n)
	}
	grantErr(t, reserveErr(a, e.record(8, 8)), "share")
	e.heartbeats(t, 45*time.Second, a, b) // the 13 have left, the recovery is over
	if n, err := a.Reserve(ctx, e.record(2, 2)); err != nil || n != 15 {
		t.Errorf("a after the minute: day count %d, %v; want 15", n, err)
	}
}

// TestRedisEmptyRestartLimitsConflict: a process that started in the
// seconds after Redis restarted empty, with other limits, is found by a
// running process's next heartbeat: LimitsConflict and Health name the
// lane and both values, and a process starting after is refused. The
// registration is renewed at each heartbeat for two heartbeat TTLs.
func TestRedisEmptyRestartLimitsConflict(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	a := e.open(t, "a", cls)
	rc := e.client(t)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if ttl, err := rc.PTTL(ctx, "test:limits:"+store.RedisLife(a)).Result(); err != nil || ttl <= 0 || ttl > 30*time.Second {
		t.Errorf("a's limits registration expires in %v (%v); want within two heartbeat TTLs", ttl, err)
	}
	if err := a.LimitsConflict(); err != nil {
		t.Errorf("LimitsConflict alone: %v", err)
	}
	e.srv.Kill()
	e.srv.Restart()
	c := e.open(t, "c", store.RedisClass{Name: "text", RPM: 12, RPD: 100})
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{a.LimitsConflict(), a.Health()} {
		if !errors.Is(err, store.ErrLimitsConflict) || !strings.Contains(err.Error(), "lane p1/text: rpm 10, rpd 100, window margin 0s here, rpm 12, rpd 100, window margin 0s in process c") {
			t.Errorf("a after c joined with other limits: %v", err)
		}
	}
	if err := e.joinErr(t, "d", cls); !errors.Is(err, store.ErrLimitsConflict) {
		t.Errorf("d at RPM 10 with c at RPM 12 alive: %v; want ErrLimitsConflict", err)
	}
	// c stops: a's next heartbeat finds no conflict any more.
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Health(); err != nil {
		t.Errorf("Health once c left: %v", err)
	}
}

// TestRedisEmptyRestartModel: five processes on a virtual clock, each on
// its own Bolt file, take random grants and send everything they are
// granted at once, with heartbeats every 5 s, while Redis restarts empty
// now and then with every live process still reaching it (no call fails in
// between); now and then a process stops, cleanly (Settle and Leave) or
// killed (nothing), leaving its slots in the window where no re-seed puts
// them back, and now and then a stopped one starts again on its file under
// another name (after Redis restarted empty meanwhile or not). No 60 s
// window of sends may hold more than RPM, nor the day more than RPD, and
// the shared day count is never below the sends (seed printed).
func TestRedisEmptyRestartModel(t *testing.T) {
	seed := modelSeed(t)
	rng := rand.New(rand.NewPCG(seed, 13))
	ctx := context.Background()
	e := newRedisEnv(t)
	const rpm, rpd = 12, 50
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: rpd}
	type proc struct {
		s     *store.Redis
		path  string
		runs  int
		sends []time.Time // its own, for its window log at a clean stop
	}
	// settlement is what the scheduler writes at a clean stop: p's sends
	// of the last minute as its window log.
	settlement := func(p *proc) store.Settlement {
		w := store.Window{Lane: lane}
		for _, at := range p.sends {
			if at.After(e.clock.now().Add(-time.Minute)) {
				w.Sent = append(w.Sent, store.Sent{At: at})
			}
		}
		return store.Settlement{Windows: []store.Window{w}}
	}
	dir := t.TempDir()
	var ps, stopped []*proc
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		p := &proc{path: filepath.Join(dir, n+".db")}
		p.s = e.openBolt(t, p.path, n+"0", cls)
		ps = append(ps, p)
	}
	defer func() {
		for _, p := range ps {
			p.s.Close()
		}
	}()
	beat := func() {
		for _, p := range ps {
			if _, err := p.s.Heartbeat(ctx); err != nil {
				t.Fatalf("heartbeat: %v", err)
			}
		}
	}
	for range 4 {
		e.clock.add(5 * time.Second)
		beat()
	}
	var sends []time.Time
	restarts, exits, rejoins, outs := 0, 0, 0, 0
	start := func(i int) { // stopped[i] starts again under another name
		p := stopped[i]
		stopped = append(stopped[:i], stopped[i+1:]...)
		p.runs++
		p.s = e.openBolt(t, p.path, fmt.Sprintf("%s%d", strings.TrimSuffix(filepath.Base(p.path), ".db"), p.runs), cls)
		ps = append(ps, p)
		rejoins++
	}
	next := e.clock.now().Add(5 * time.Second)
	// 400 steps, more while fewer than two minutes' RPM were sent (each
	// restart with every process stopped holds them for a recovery).
	for step := 0; step < 2000 && (step < 400 || len(sends) < 2*rpm); step++ {
		e.clock.add(time.Duration(200+rng.IntN(2800)) * time.Millisecond)
		if len(ps) > 2 && rng.IntN(25) == 0 {
			i := rng.IntN(len(ps))
			if rng.IntN(2) == 0 { // a clean stop; else killed
				if err := ps[i].s.Settle(ctx, settlement(ps[i])); err != nil && !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("step %d: settle: %v", step, err)
				}
				_ = ps[i].s.Leave(ctx)
			}
			ps[i].s.Close()
			stopped = append(stopped, ps[i])
			ps = append(ps[:i], ps[i+1:]...)
			exits++
		}
		if len(stopped) > 0 && rng.IntN(20) == 0 {
			start(rng.IntN(len(stopped)))
		}
		if rng.IntN(120) == 0 { // every process stops while Redis restarts empty, then each starts again
			for _, p := range ps {
				_ = p.s.Settle(ctx, settlement(p))
				_ = p.s.Leave(ctx)
				p.s.Close()
			}
			stopped, ps = append(stopped, ps...), nil
			e.srv.Kill()
			e.srv.Restart()
			restarts++
			rng.Shuffle(len(stopped), func(i, j int) { stopped[i], stopped[j] = stopped[j], stopped[i] })
			for len(stopped) > 0 { // every data directory, one after the other
				e.clock.add(time.Duration(rng.IntN(2000)) * time.Millisecond)
				start(len(stopped) - 1)
			}
			outs++
		}
		if now := e.clock.now(); !now.Before(next) {
			beat()
			next = now.Add(5 * time.Second)
		}
		if rng.IntN(40) == 0 {
			e.srv.Kill()
			e.srv.Restart()
			restarts++
		}
		pr, k := ps[rng.IntN(len(ps))], 1+rng.IntN(3)
		p := pr.s
		_, err := p.Reserve(ctx, e.record(k, k))
		if errors.Is(err, store.ErrNoGrant) {
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		now := e.clock.now()
		for range k {
			p.Stamped(lane, now)
			sends = append(sends, now)
			pr.sends = append(pr.sends, now)
		}
	}
	checkSends(t, sends, time.Minute, rpm, rpd, seed)
	beat() // a restart of Redis at the last step: re-seeded
	if n := sharedDay(t, ps[0].s); n < len(sends) {
		t.Errorf("shared day count %d below the %d sends (seed %d)", n, len(sends), seed)
	}
	t.Logf("%d sends, %d restarts of Redis (%d with every process stopped), %d processes stopped, %d started again", len(sends), restarts, outs, exits, rejoins)
	if restarts == 0 || len(sends) < rpm {
		t.Errorf("%d restarts, %d sends: the model did not exercise a restart under load", restarts, len(sends))
	}
}

// TestRedisEmptyRestartGrantRegisters: a process that notices the restart
// at a grant registers its limits again at once, not at its next
// heartbeat: a process starting right after with other limits is refused.
func TestRedisEmptyRestartGrantRegisters(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100}
	a := e.open(t, "a", cls)
	e.srv.Kill()
	e.srv.Restart()
	_, _ = a.Reserve(ctx, e.record(1, 1)) // re-seeds; refused or not
	if a.Restarts() != 1 {
		t.Fatalf("a's Restarts %d after its grant, want 1", a.Restarts())
	}
	if err := e.joinErr(t, "c", store.RedisClass{Name: "text", RPM: 12, RPD: 100}); !errors.Is(err, store.ErrLimitsConflict) {
		t.Errorf("c at RPM 12 right after a's grant re-seeded: %v; want ErrLimitsConflict", err)
	}
}

// TestRedisEmptyRestartRecoveryKeptOverOutage (review11 R11-4): Redis
// restarts empty at T while d, just killed, has 8 requests in the API's
// minute (its grant's slots are lost with Redis's state). a and b notice at
// T+1: their grants stay within their shares until every slot granted
// before T may have left the window (newEpoch: about T+92). At T+20 Redis
// is unreachable for 10 s and comes back with its state: the reconnect
// (pushPending) used to set the recovery's end to now + HeartbeatTTL
// (T+45), cutting the longer recovery short, so from T+45 a was granted the
// whole RPM while d's 8 were still in the API's minute (18 in 60 s at RPM
// 10). The control runs the same events without the outage.
func TestRedisEmptyRestartRecoveryKeptOverOutage(t *testing.T) {
	for _, blip := range []bool{false, true} {
		name := "control"
		if blip {
			name = "outage during the recovery"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			e := newPersistentRedisEnv(t)
			cls := store.RedisClass{Name: "text", RPM: 10, RPD: 1000, Margin: 100 * time.Millisecond}
			a, b, d := e.open(t, "a", cls), e.open(t, "b", cls), e.open(t, "d", cls)
			for _, s := range []*store.Redis{a, b, d} {
				store.SetRedisPrefetch(s, false)
			}
			e.heartbeats(t, 20*time.Second, a, b, d)
			var sends []time.Time
			at := e.clock.now()
			if _, err := d.Reserve(ctx, store.Record{Lane: lane, Day: "2026-03-01", Units: 8, Covers: 8, At: at, Until: at.Add(30 * time.Second)}); err != nil {
				t.Fatal(err)
			}
			for range 8 {
				d.Stamped(lane, e.clock.now().Add(cls.Margin))
				sends = append(sends, e.clock.now())
			}
			e.clock.add(time.Second)
			T := e.clock.now()
			e.srv.Kill()
			e.srv.RestartEmpty() // d is killed now too: it never re-seeds
			d.Close()
			e.clock.add(time.Second)
			beat(t, a, b) // both notice and re-seed: recovery until about T+92
			if blip {
				e.clock.add(T.Add(20 * time.Second).Sub(e.clock.now()))
				e.srv.Stop()
				for _, s := range []*store.Redis{a, b} {
					if _, err := s.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
						t.Fatalf("heartbeat with Redis stopped: %v", err)
					}
				}
				e.clock.add(10 * time.Second)
				e.srv.Restart()
				beat(t, a, b) // reconnect
			}
			// Heartbeats every 5 s to T+50, then a asks for the whole RPM.
			for e.clock.now().Before(T.Add(50 * time.Second)) {
				e.clock.add(5 * time.Second)
				beat(t, a, b)
			}
			at = e.clock.now()
			_, covers, sched, err := a.ReserveUpTo(ctx, store.Record{Lane: lane, Day: "2026-03-01", Units: 10, Covers: 10, At: at, Until: at.Add(2 * time.Second)})
			n := 0
			if err == nil {
				n = covers - len(sched)
			}
			for range n {
				a.Stamped(lane, e.clock.now().Add(cls.Margin))
				sends = append(sends, e.clock.now())
			}
			in := 0
			for _, s := range sends {
				if e.clock.now().Sub(s) < time.Minute {
					in++
				}
			}
			t.Logf("at T+%v a granted %d now (err %v); requests in the last 60 s: %d (d's 8 sent at T-1 s)", e.clock.now().Sub(T), n, err, in)
			if in > cls.RPM {
				t.Errorf("%d requests within 60 s at RPM %d: the recovery after the empty restart was cut short by the outage's reconnect", in, cls.RPM)
			}
		})
	}
}
