package store_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

var redisSeed = flag.Uint64("redis-seed", 0, "seed of the randomized Redis model tests (0: random)")

// modelSeed returns the seed of a randomized Redis model test, -redis-seed
// or a random one, and logs how to replay the run.
func modelSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *redisSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (go test ./store -run '^%s$' -redis-seed %d)", seed, t.Name(), seed)
	return seed
}

// vclock is a virtual clock the scripts use instead of Redis's TIME.
type vclock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *vclock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *vclock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var textClass = store.RedisClass{Name: "text", RPM: 5, RPD: 8, Margin: 100 * time.Millisecond}

type redisEnv struct {
	srv   *redistest.Server
	clock *vclock
}

func newRedisEnv(t *testing.T) *redisEnv {
	t.Helper()
	return &redisEnv{srv: redistest.Start(t, redistest.Options{}),
		clock: &vclock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
}

func (e *redisEnv) client(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// options are the RedisOptions of a ledger named process in the test
// cluster: project p1 on classes (textClass when none), the virtual clock,
// a client of its own.
func (e *redisEnv) options(t *testing.T, process string, classes ...store.RedisClass) store.RedisOptions {
	if len(classes) == 0 {
		classes = []store.RedisClass{textClass}
	}
	return store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: process, Classes: classes,
		Projects: []string{"p1"}, Now: e.clock.now,
	}
}

// joinErr tries to join the cluster as process with cls on a fresh Memory
// store and returns OpenRedis's error; a ledger that joins is closed at
// once.
func (e *redisEnv) joinErr(t *testing.T, process string, cls store.RedisClass) error {
	s, err := store.OpenRedis(context.Background(), store.NewMemory(), e.options(t, process, cls))
	if err == nil {
		s.Close()
	}
	return err
}

// open opens a ledger named process on a fresh Memory store.
func (e *redisEnv) open(t *testing.T, process string, classes ...store.RedisClass) *store.Redis {
	t.Helper()
	s, err := store.OpenRedis(context.Background(), store.NewMemory(), e.options(t, process, classes...))
	if err != nil {
		t.Fatalf("OpenRedis(%s): %v", process, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var lane = store.LaneID{Project: "p1", Class: "text"}

func (e *redisEnv) record(covers, units int) store.Record {
	at := e.clock.now()
	return store.Record{Lane: lane, Day: "2026-03-01", Units: units, Covers: covers, At: at, Until: at.Add(2 * time.Second)}
}

func reserveErr(s *store.Redis, r store.Record) error {
	_, err := s.Reserve(context.Background(), r)
	return err
}

// grantErr checks that err is a grant refused for reason: "confirming" is
// Reason "share" with Confirming (the grace after a failed call), "share"
// the share's own refusal (not Confirming).
func grantErr(t *testing.T, err error, reason string) *store.GrantError {
	t.Helper()
	var ge *store.GrantError
	if !errors.As(err, &ge) || !errors.Is(err, store.ErrNoGrant) {
		t.Fatalf("err = %v, want a grant refused for %q", err, reason)
	}
	got := ge.Reason
	if got == "share" && ge.Confirming {
		got = "confirming"
	}
	if got != reason {
		t.Fatalf("err = %v (%s), want a grant refused for %q", err, got, reason)
	}
	return ge
}

// TestRedisGrants: grants take window slots as if sent at their expiry
// plus the margin, and day units; a grant that does not fit is refused
// whole, saying when to ask again; unused day units come back at Settle.
func TestRedisGrants(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	if n, err := a.Reserve(ctx, e.record(3, 3)); err != nil || n != 3 {
		t.Fatalf("a: %d, %v", n, err)
	}
	// Each grant is in the process's own store too (write-ahead).
	if recs, err := a.LedgerRecords(ctx); err != nil || len(recs.Records) != 1 || recs.Records[0].Units != 3 {
		t.Errorf("a's records %v, %v; want the grant", recs, err)
	}
	e.clock.add(time.Second)
	if n, err := b.Reserve(ctx, e.record(2, 2)); err != nil || n != 5 {
		t.Fatalf("b: %d, %v", n, err)
	}
	// a sent its 3 at the last moment: stamped at the grant's expiry plus
	// the margin, they stay there once its grant is settled (at its next).
	for range 3 {
		a.Stamped(lane, e.clock.now().Add(time.Second+100*time.Millisecond))
	}
	// The window holds 5 = RPM: a's 3 slots count from 12:00:02.1, b's 2
	// from 12:00:03.1. One more needs a's slots gone: 60 s later; but b
	// may give slots back before (see Stamped): ask again once b's grant
	// may have been settled, its life (2 s), the margin, two thirds of
	// the heartbeat TTL (10 s) and a second from now.
	ge := grantErr(t, reserveErr(a, e.record(1, 1)), "window")
	if want := time.Now().Add(13100 * time.Millisecond); ge.Until.Before(want.Add(-time.Second)) || ge.Until.After(want.Add(time.Second)) {
		t.Errorf("Until %v, want about %v", ge.Until, want)
	}
	e.clock.add(61 * time.Second) // 12:01:02: a's slots (12:00:02.1) still count
	grantErr(t, reserveErr(a, e.record(1, 1)), "window")
	e.clock.add(101 * time.Millisecond)
	if n, err := a.Reserve(ctx, e.record(3, 3)); err != nil || n != 8 {
		t.Fatalf("after a's minute: %d, %v", n, err)
	}
	// The day is at its 8.
	e.clock.add(2 * time.Minute)
	ge = grantErr(t, reserveErr(b, e.record(1, 1)), "day")
	if ge.Day != 8 {
		t.Errorf("Day = %d, want 8", ge.Day)
	}
	// a gives 2 unused units back; b can take them.
	if err := a.Settle(ctx, store.Settlement{GiveBack: []store.DailyCount{{Day: "2026-03-01", Lane: lane, Count: 2}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Reserve(ctx, e.record(2, 2)); err != nil || n != 8 {
		t.Fatalf("after the give-back: %d, %v", n, err)
	}
	for _, s := range []*store.Redis{a, b} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Lanes) != 1 || u.Lanes[0].Count != 8 || u.Lanes[0].ByProcess["a"] != 4 || u.Lanes[0].ByProcess["b"] != 4 {
		t.Errorf("usage %+v, want 8: a 4, b 4", u)
	}
	// The window holds b's last grant (2 slots) only: a's are over a
	// minute old. The limits come with the counts.
	if l := u.Lanes[0]; l.Window != 2 || l.WindowByProcess["b"] != 2 || len(l.WindowByProcess) != 1 || l.RPM != 5 || l.RPD != 8 {
		t.Errorf("window %d by process %v, limits %d/%d; want 2, all b's, 5 RPM, 8 RPD", l.Window, l.WindowByProcess, l.RPM, l.RPD)
	}
	if u.Cluster != "test" || u.Process != "a" {
		t.Errorf("cluster %q, process %q; want test, a", u.Cluster, u.Process)
	}
	// Read without joining: the same view, no process added.
	r, err := store.ReadClusterUsage(ctx, "2026-03-01", store.ClusterUsageOptions{Client: e.client(t), Cluster: "test",
		Classes: []store.RedisClass{textClass}, Projects: []string{"p1"}, Now: e.clock.now})
	if err != nil || r.Process != "" || !slices.Equal(r.Processes, u.Processes) || len(r.Lanes) != 1 ||
		r.Lanes[0].Count != 8 || r.Lanes[0].Window != 2 {
		t.Errorf("ReadClusterUsage: %+v, %v; want %+v without a process", r, err, u)
	}
	if !slices.Equal(u.Processes, []string{"a", "b"}) {
		t.Errorf("processes %v, want a, b", u.Processes)
	}
}

// TestRedisEvents: a cooldown, an exhaustion or a disabled key written by one
// process stops the others at their next grant and reaches them by pub/sub.
func TestRedisEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newRedisEnv(t)
	a, b := e.open(t, "a"), e.open(t, "b")
	events := make(chan store.SharedEvent, 10)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- b.Watch(ctx, ready, func(ev store.SharedEvent) { events <- ev }) }()
	<-ready

	until := time.Now().Add(30 * time.Second).Truncate(time.Millisecond).UTC()
	e.clock.t = time.Now() // lane states are on the processes' clocks
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, CoolUntil: until}); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev.Kind != "cool" || ev.Lane != lane || !ev.Until.Equal(until) || ev.Process != "a" {
		t.Errorf("event %+v", ev)
	}
	grantErr(t, reserveErr(b, e.record(1, 1)), "cool")
	states, err := b.LaneStates(ctx)
	if err != nil || len(states) != 1 || !states[0].CoolUntil.Equal(until) {
		t.Errorf("b's lane states %v, %v; want cooling until %v", states, err, until)
	}
	if err := a.SetLaneState(ctx, store.LaneState{Lane: lane, ExhaustedUntil: until.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Kind != "exhausted" {
		t.Errorf("event %+v", ev)
	}
	grantErr(t, reserveErr(b, e.record(1, 1)), "exhausted")

	if err := a.DisableKey(ctx, store.DisabledKey{KeyID: "k1", Reason: "leaked", At: until}); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Kind != "disabled" || ev.KeyID != "k1" || ev.Reason != "leaked" {
		t.Errorf("event %+v", ev)
	}
	keys, err := b.DisabledKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].KeyID != "k1" || keys[0].Reason != "leaked" || !keys[0].At.Equal(until) {
		t.Errorf("b's disabled keys %v, %v", keys, err)
	}
	if err := a.EnableKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Kind != "enabled" {
		t.Errorf("event %+v", ev)
	}
	if keys, err := b.DisabledKeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("b's disabled keys after enable: %v, %v", keys, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
}

// TestRedisLimitsConflict: a process with other limits for a lane is
// refused while one with the first limits is alive, in one line naming the
// lane and both values.
func TestRedisLimitsConflict(t *testing.T) {
	e := newRedisEnv(t)
	e.open(t, "a")
	other := textClass
	other.RPM = 6
	_, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: e.client(t), Cluster: "test", Process: "b", Classes: []store.RedisClass{other},
		Projects: []string{"p1"}, Now: e.clock.now,
	})
	want := "store: redis: limits differ between processes: lane p1/text: rpm 6, rpd 8, window margin 100ms here, rpm 5, rpd 8, window margin 100ms in process a"
	if !errors.Is(err, store.ErrLimitsConflict) || err.Error() != want {
		t.Fatalf("err\n got %v\nwant %s", err, want)
	}
	// Once a's heartbeat has expired, the new limits are taken.
	e.clock.add(16 * time.Second)
	c := e.open(t, "c", other)
	if n, err := c.Heartbeat(context.Background()); err != nil || n != 1 {
		t.Errorf("live %d, %v; want 1", n, err)
	}
}

// TestRedisRestartedEmpty: when Redis comes back empty, the next grant
// re-seeds the day count from each process's own records (never below what
// was granted) and the window from its recent grants.
func TestRedisRestartedEmpty(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 20}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	if _, err := a.Reserve(ctx, e.record(4, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, e.record(5, 5)); err != nil {
		t.Fatal(err)
	}
	for range 5 { // b sends its 5 in the grant's last millisecond (see TestRedisReserveUpTo)
		b.Stamped(lane, e.clock.now().Add(2*time.Second-time.Millisecond))
	}
	e.srv.Kill()
	// The grace; then, a joined less than a heartbeat TTL ago: it has no
	// share of its own.
	grantErr(t, reserveErr(a, e.record(1, 1)), "confirming")
	e.clock.add(6 * time.Second)
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	e.srv.Restart()
	// a's next heartbeat reconnects and re-seeds (4 of its own); b's grant
	// re-seeds b's 5. Neither has a share of its recovery (a's view came
	// as it joined, b's less than a TTL after it joined), which lasts
	// until every slot granted before may have left the window (a's, back
	// after an outage: a TTL more), so the window's re-seeded slots are
	// read from Redis; past both recoveries, the day is at 9 + 1.
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.add(16 * time.Second)
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	grantErr(t, reserveErr(b, e.record(2, 2)), "share")
	if n := len(e.windowScores(t, e.client(t))); n != 9 {
		t.Errorf("window after the re-seeds: %d slots; want 9 (a's 4, b's 5)", n)
	}
	e.clock.add(110 * time.Second)
	if n, err := a.Reserve(ctx, e.record(1, 1)); err != nil || n != 10 {
		t.Fatalf("a after the recoveries: %d, %v; want 10", n, err)
	}
	// The heartbeats were lost with the rest: each process counts again
	// at its next one.
	if n, err := a.Heartbeat(ctx); err != nil || n != 1 {
		t.Errorf("live %d, %v; want 1", n, err)
	}
	if n, err := b.Heartbeat(ctx); err != nil || n != 2 {
		t.Errorf("live %d, %v; want 2", n, err)
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].Count != 10 {
		t.Errorf("day count after re-seeding %+v, %v; want 10 (4 + 1 + 5)", u, err)
	}
}

// TestRedisModel drives several processes, each with its own connection,
// against one Redis in real time (a shortened window): random grant sizes,
// sends at random times within each grant, each stamped (Stamped: at the
// send plus the margin, or later), unused slots, leases stamped and
// refunded (never sent), kills (a process drops its grants and a new one
// starts). Each grant is settled at the process's next one (its unused
// slots given back). Every interval of one window plus
// the margin holds at most RPM sends, the day at most RPD, and the shared
// day count is never below the sends.
// stampSends picks the sends of a grant of covers slots in hand from got
// until until, as a process's dispatcher would: some slots unused, the
// others sent at random times, each stamped (s.Stamped) at its send plus
// the margin or up to a margin later, in order; and some leases stamped
// and then refunded (never sent, their slots taken again). The j-th send
// takes the grant's j-th slot, and the last len(sched) slots are sent no
// earlier than their times (ReserveUpTo's schedule; a slot whose time is
// not before until is not used). It returns the sends.
func stampSends(rng *rand.Rand, s *store.Redis, got, until time.Time, covers int, margin time.Duration, sched []time.Time) []time.Time {
	room := until.Sub(got)
	if room <= 0 {
		return nil
	}
	type lease struct {
		at   time.Time // dispatch
		sent bool
	}
	var ls []lease
	for left := covers; left > 0; {
		switch rng.IntN(6) {
		case 0:
			left-- // unused
		case 1: // stamped, then refunded: the slot is taken again
			ls = append(ls, lease{at: got.Add(time.Duration(rng.Int64N(int64(room))))})
		default:
			ls = append(ls, lease{at: got.Add(time.Duration(rng.Int64N(int64(room)))), sent: true})
			left--
		}
	}
	slices.SortFunc(ls, func(a, b lease) int { return a.at.Compare(b.at) })
	j := 0 // the slot the next send takes
	for i := range ls {
		if !ls[i].sent {
			continue
		}
		if k := j - (covers - len(sched)); k >= 0 {
			if !sched[k].Before(until) {
				ls[i].sent = false
				ls[i].at = time.Time{} // not used: not stamped
				continue
			}
			if ls[i].at.Before(sched[k]) {
				ls[i].at = sched[k]
			}
		}
		j++
	}
	ls = slices.DeleteFunc(ls, func(l lease) bool { return l.at.IsZero() })
	slices.SortStableFunc(ls, func(a, b lease) int { return a.at.Compare(b.at) })
	var sends []time.Time
	for _, l := range ls {
		s.Stamped(lane, l.at.Add(margin+time.Duration(rng.Int64N(int64(margin)+1))))
		if l.sent {
			sends = append(sends, l.at)
		}
	}
	return sends
}

// TestRedisModel runs the randomized model of 4 processes on one Redis in
// rounds: each round must keep every window and the day within their limits;
// and the model must exercise the lane, saturated and with scheduled slots
// granted. Both depend on the machine's speed (the processes and their
// grants' expiry run on the real clock; the day's RPD ends a round): a
// round that exercised them too little is run again on a fresh cluster, up
// to modelRounds rounds (under two busy loops about 1 round in 30 granted no
// scheduled slot).
func TestRedisModel(t *testing.T) {
	seed := modelSeed(t)
	srv := redistest.Start(t, redistest.Options{})
	const modelRounds = 5
	for round := range modelRounds {
		sends, future := redisModelRound(t, srv.Addr(), seed, round)
		if t.Failed() {
			return
		}
		if future > 0 && sends >= 2*redisModelRPM {
			return
		}
		t.Logf("round %d: %d sends, %d scheduled slots granted: run again", round, sends, future)
	}
	t.Errorf("in %d rounds none saturated the lane (at least %d sends) with a scheduled slot granted: the model did not exercise them", modelRounds, 2*redisModelRPM)
}

// redisModelRPM is TestRedisModel's RPM.
const redisModelRPM = 12

// redisModelRound is one round of TestRedisModel on a cluster of its own
// (round 0: "model"); it checks the limits and returns the sends and the
// scheduled slots granted.
func redisModelRound(t *testing.T, addr string, seed uint64, round int) (int, int) {
	cluster := "model"
	if round > 0 {
		cluster += strconv.Itoa(round)
	}
	const (
		window  = 300 * time.Millisecond
		margin  = 20 * time.Millisecond
		ttl     = 40 * time.Millisecond
		rpm     = redisModelRPM
		rpd     = 80
		clients = 4
		run     = 3 * time.Second
	)
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: rpd, Margin: margin}
	var mu sync.Mutex
	var sends []time.Time
	future := 0 // scheduled slots granted
	var wg sync.WaitGroup
	deadline := time.Now().Add(run)
	for i := range clients {
		rng := rand.New(rand.NewPCG(seed+uint64(round), uint64(i)))
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		wg.Go(func() {
			ctx := context.Background()
			gen := 0
			open := func() *store.Redis {
				gen++
				s, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: cluster,
					Process: "p" + string(rune('a'+i)) + string(rune('0'+gen%10)), Classes: []store.RedisClass{cls}, Projects: []string{"p1"}})
				if err != nil {
					t.Error(err)
					return nil
				}
				store.SetRedisWindow(s, window)
				return s
			}
			s := open()
			for s != nil && time.Now().Before(deadline) {
				covers := 1 + rng.IntN(4)
				at := time.Now()
				r := store.Record{Lane: lane, Day: "2026-03-01", Units: covers, Covers: covers, At: at, Until: at.Add(ttl)}
				var sched []time.Time
				var err error
				if rng.IntN(2) == 0 {
					_, err = s.Reserve(ctx, r)
				} else { // a scheduled grant when the window has some room
					_, covers, sched, err = s.ReserveUpTo(ctx, r)
				}
				if errors.Is(err, store.ErrNoGrant) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got := time.Now() // no send before the grant is in hand
				mine := stampSends(rng, s, got, r.Until, covers, margin, sched)
				mu.Lock()
				sends = append(sends, mine...)
				future += len(sched)
				mu.Unlock()
				if rng.IntN(20) == 0 { // killed: its grants are dropped, a new process starts
					s.Close()
					s = open()
				}
			}
			if s != nil {
				s.Close()
			}
		})
	}
	wg.Wait()
	span := window + margin
	worst := checkSends(t, sends, span, rpm, rpd, seed)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, _ := c.Keys(context.Background(), cluster+":day:*").Result()
	if len(keys) != 1 {
		t.Fatalf("day keys %v", keys)
	}
	count, err := c.Get(context.Background(), keys[0]).Int()
	if err != nil || count < len(sends) || count > rpd {
		t.Errorf("shared day count %d (%v), sends %d, RPD %d (seed %d)", count, err, len(sends), rpd, seed)
	}
	t.Logf("round %d: %d sends, busiest %v interval %d of %d, day count %d of %d, %d scheduled slots granted", round, len(sends), span, worst, rpm, count, rpd, future)
	return len(sends), future
}

// checkSends fails t when an interval of span (the window plus the margin)
// holds more than rpm of sends, or sends holds more than rpd: the bounds
// the randomized Redis model tests check (seed named in the error). It
// returns the most sends an interval of span held.
func checkSends(t *testing.T, sends []time.Time, span time.Duration, rpm, rpd int, seed uint64) int {
	t.Helper()
	slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
	worst := 0
	for i := range sends {
		j, _ := slices.BinarySearchFunc(sends, sends[i].Add(span), func(a, b time.Time) int { return a.Compare(b) })
		worst = max(worst, j-i)
	}
	if worst > rpm {
		t.Errorf("an interval of %v held %d sends, RPM %d (seed %d)", span, worst, rpm, seed)
	}
	if len(sends) > rpd {
		t.Errorf("%d sends in the day, RPD %d (seed %d)", len(sends), rpd, seed)
	}
	return worst
}
