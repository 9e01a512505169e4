package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// heartbeats renews a's and b's heartbeats every 5 s of the virtual clock
// for d, so that both have been live for a TTL and see each other.
func (e *redisEnv) heartbeats(t *testing.T, d time.Duration, ss ...*store.Redis) {
	t.Helper()
	for el := time.Duration(0); el < d; el += 5 * time.Second {
		e.clock.add(5 * time.Second)
		for _, s := range ss {
			if _, err := s.Heartbeat(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range ss { // each one's view counts all of them
		if n, err := s.Heartbeat(context.Background()); err != nil || n != len(ss) {
			t.Fatalf("live %d, %v; want %d", n, err, len(ss))
		}
	}
}

// TestRedisShare: with Redis unreachable, a process grants itself its
// share of each lane: of the window, the room its view's slots leave as
// they leave it (RPM / live processes once every slot granted before the
// outage may have left), and of the day left. /healthz's error says so;
// on reconnect its own grants are added to the shared day count and window
// (Redis kept its state), and for one heartbeat TTL its grants from Redis
// stay within the share.
func TestRedisShare(t *testing.T) {
	ctx := context.Background()
	e := newPersistentRedisEnv(t)
	cls := store.RedisClass{Name: "text", RPM: 10, RPD: 100, Margin: 100 * time.Millisecond}
	a, b := e.open(t, "a", cls), e.open(t, "b", cls)
	e.heartbeats(t, 20*time.Second, a, b)
	if _, err := a.Reserve(ctx, e.record(3, 3)); err != nil { // slots leave the window at 12:01:22.1
		t.Fatal(err)
	}
	e.clock.add(10 * time.Second)
	if _, err := b.Reserve(ctx, e.record(2, 2)); err != nil { // at 12:01:32.1
		t.Fatal(err)
	}
	for _, s := range []*store.Redis{b, a} {
		if _, err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a.Health() != nil || a.Unreachable() {
		t.Fatalf("healthy Redis: %v", a.Health())
	}
	e.srv.Stop() // 12:00:30
	if _, err := a.Heartbeat(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("heartbeat with Redis stopped: %v", err)
	}
	if h := a.Health(); !errors.Is(h, store.ErrDegraded) || !a.Unreachable() || a.Outages() != 1 {
		t.Fatalf("Health %v, Unreachable %v, Outages %d", h, a.Unreachable(), a.Outages())
	} else {
		t.Log(h)
	}
	// The grace: no share before 12:00:36 (a heartbeat interval and a
	// second after the failed call: Redis may still answer the others);
	// the refusal says to ask again at the next retry, a second on.
	ge := grantErr(t, reserveErr(a, e.record(1, 1)), "confirming")
	if want := time.Date(2026, 3, 1, 12, 0, 31, 0, time.UTC); !ge.Until.Equal(want) {
		t.Errorf("Until %v, want %v (the next retry)", ge.Until, want)
	}
	e.clock.add(5*time.Second + 999*time.Millisecond)
	ge = grantErr(t, reserveErr(a, e.record(1, 1)), "confirming")
	if want := time.Date(2026, 3, 1, 12, 0, 36, 0, time.UTC); !ge.Until.Equal(want) {
		t.Errorf("Until %v, want %v (the share begins)", ge.Until, want)
	}
	// No slot of the view has left: no room yet. The refusal says to ask
	// again at the next heartbeat (Redis may answer then), before the
	// first slots leave (12:01:23).
	e.clock.add(time.Millisecond) // 12:00:36
	ge = grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if want := time.Date(2026, 3, 1, 12, 0, 41, 0, time.UTC); !ge.Until.Equal(want) {
		t.Errorf("Until %v, want %v (the next heartbeat)", ge.Until, want)
	}
	e.clock.add(47 * time.Second) // 12:01:23: a's 3 slots left: room 3, a's share 1
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("a's share of the room: %v", err)
	}
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	e.clock.add(10 * time.Second) // 12:01:33: b's 2 left too: room 5, a's share 2
	if _, err := a.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatalf("a's share of the room: %v", err)
	}
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	// Every slot granted before the outage has left once 60 s, the grant
	// life, the margin and a second of rounding passed the outage's start
	// (12:00:30 + 63.1 s): from then on the share is RPM / 2 = 5.
	e.clock.add(30 * time.Second) // 12:02:03
	if _, err := a.Reserve(ctx, e.record(3, 3)); err != nil {
		t.Fatalf("RPM / 2: %v", err)
	}
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	// The day: (100 - 5 counted - 5 the others may have taken after the
	// view) / 2 = 45, of which a took 5.
	e.clock.add(63 * time.Second) // 12:03:06: the 3 slots of 12:02:03 left
	grantErr(t, reserveErr(a, e.record(5, 41)), "share")
	if _, err := a.Reserve(ctx, e.record(5, 40)); err != nil {
		t.Fatalf("the day's share: %v", err)
	}
	e.srv.Restart()
	e.clock.add(time.Second)
	// While down, grants do not call Redis: the next heartbeat reconciles.
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	// a's 45 units are added to the 5 counted, its 5 live slots (granted at
	// 12:03:06) to the window.
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Health() != nil || a.Outages() != 1 {
		t.Errorf("after reconnect: %v", a.Health())
	}
	u, err := a.Usage(ctx, "2026-03-01")
	if err != nil || u.Lanes[0].Count != 50 || u.Lanes[0].ByProcess["a"] != 48 {
		t.Errorf("usage after reconcile %+v, %v; want 50 (a 48)", u, err)
	}
	// b has nothing to reconcile and sees the window a filled: 5 of 10;
	// a stays within its share for a TTL: its 5 are used.
	if _, err := b.Reserve(ctx, e.record(6, 1)); !errors.Is(err, store.ErrNoGrant) {
		t.Errorf("b over the reconciled window: %v", err)
	}
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if _, err := b.Reserve(ctx, e.record(5, 1)); err != nil {
		t.Errorf("b within the reconciled window: %v", err)
	}
}

// TestRedisShareNoView: a process that joined less than a heartbeat TTL
// before its last view takes no share (the others may not count it yet),
// and a process cannot start while Redis is unreachable.
func TestRedisShareNoView(t *testing.T) {
	ctx := context.Background()
	e := newRedisEnv(t)
	a := e.open(t, "a")
	e.clock.add(5 * time.Second)
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	grantErr(t, reserveErr(a, e.record(1, 1)), "confirming")
	e.clock.add(6 * time.Second) // past the grace: no share either
	grantErr(t, reserveErr(a, e.record(1, 1)), "share")
	if h := a.Health(); !errors.Is(h, store.ErrDegraded) {
		t.Errorf("Health %v", h)
	}
	if err := e.joinErr(t, "late", textClass); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("OpenRedis with Redis stopped: %v, want ErrUnavailable", err)
	}
}

// TestRedisFaultModel drives several processes against one Redis in real
// time (a shortened window), each with its own connection and heartbeats,
// while Redis stops and starts again, keeping its state (append-only file)
// or coming back empty; in each outage one process (the seed's pick) is
// killed after a while and never comes back (its sends on its share
// count). Every interval of one window plus the margin holds at most RPM
// sends of all of them, the day at most RPD, and the shared day count is
// never below the sends (the killed processes' included). The window is
// 300 ms with a heartbeat TTL of 600 ms; and 1.2 s, as in production
// longer than the TTL, so that a process killed late in an outage may
// have sent in the window after the others' recovery ended (before its
// share was charged, 13 and 14 of RPM 12 in a window in 2 runs of 4).
func TestRedisFaultModel(t *testing.T) {
	for _, m := range []struct {
		name          string
		persist       bool
		window, after time.Duration
	}{
		{"persisted", true, 300 * time.Millisecond, 1800 * time.Millisecond},
		{"empty", false, 300 * time.Millisecond, 1800 * time.Millisecond},
		{"persisted-long-window", true, 1200 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(m.name, func(t *testing.T) { faultModel(t, m.persist, m.window, m.after) })
	}
}

// faultModel runs the model with the window, outages of after each (long
// enough for the share to grow to RPM / N: life, margin, window and a
// second of the view's rounding), and after again between them.
func faultModel(t *testing.T, persist bool, window, after time.Duration) {
	seed := modelSeed(t)
	srv := redistest.Start(t, redistest.Options{AppendOnly: persist})
	const (
		margin  = 20 * time.Millisecond
		life    = 40 * time.Millisecond
		hbTTL   = 600 * time.Millisecond
		rpm     = 12
		rpd     = 5000
		clients = 3
	)
	cls := store.RedisClass{Name: "text", RPM: rpm, RPD: rpd, Margin: margin}
	var mu sync.Mutex
	var sends []time.Time
	var shared int // grants taken on a share
	var wg sync.WaitGroup
	stop := make(chan struct{})
	kills := make([]chan struct{}, clients) // closed: that process is killed
	for i := range kills {
		kills[i] = make(chan struct{})
	}
	pacific, _ := time.LoadLocation("America/Los_Angeles")
	day := time.Now().In(pacific).Format(store.DayFormat) // a re-seed counts today's records
	for i := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		kill := kills[i]
		// One dial per call, and no dial circuit breaker (it probes once a
		// second, which the model's shortened time would not scale).
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1, PoolSize: 1000})
		defer c.Close()
		s, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{Client: c, Cluster: "fault",
			Process: "p" + string(rune('a'+i)), Classes: []store.RedisClass{cls}, Projects: []string{"p1"}, HeartbeatTTL: hbTTL})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		store.SetRedisWindow(s, window)
		store.SetRedisGrantLife(s, life)
		wg.Go(func() { // heartbeats, as the scheduler keeps them
			tick := time.NewTicker(hbTTL / 3)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-kill:
					return
				case <-tick.C:
					_, _ = s.Heartbeat(context.Background())
				}
			}
		})
		wg.Go(func() {
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				case <-kill:
					return
				default:
				}
				covers := 1 + rng.IntN(3)
				at := time.Now()
				r := store.Record{Lane: lane, Day: day, Units: covers, Covers: covers, At: at, Until: at.Add(life)}
				down := s.Unreachable()
				var sched []time.Time
				var err error
				if rng.IntN(2) == 0 {
					_, err = s.Reserve(ctx, r)
				} else { // a scheduled grant when the window has some room
					_, covers, sched, err = s.ReserveUpTo(ctx, r)
				}
				if errors.Is(err, store.ErrNoGrant) || errors.Is(err, store.ErrUnavailable) {
					// The lane waits until the refusal's Until, as the
					// scheduler's does (at most a tenth of a window).
					d := window / 10
					var ge *store.GrantError
					if errors.As(err, &ge) && !ge.Until.IsZero() {
						d = min(d, max(time.Until(ge.Until), 0))
					}
					if d <= 0 {
						runtime.Gosched()
						continue
					}
					tm := time.NewTimer(d)
					select {
					case <-stop:
						tm.Stop()
						return
					case <-kill:
						tm.Stop()
						return
					case <-tm.C:
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got := time.Now()
				mine := stampSends(rng, s, got, r.Until, covers, margin, sched)
				mu.Lock() // a kill now still leaves these sent: counted
				sends = append(sends, mine...)
				if down && s.Unreachable() {
					shared++
				}
				mu.Unlock()
			}
		})
	}
	// Two outages of a few windows each, the first after every process
	// has been live for more than a heartbeat TTL. Time here is the
	// model's: the processes run in real time.
	pause := func(d time.Duration) {
		tm := time.NewTimer(d)
		<-tm.C
	}
	pause(4 * hbTTL)
	krng := rand.New(rand.NewPCG(seed, clients))
	victims := krng.Perm(clients)
	for k := range 2 {
		srv.Stop()
		// Killed once the share has had time to grow (every slot from
		// before may have left the window: life, margin, window and a
		// second of rounding), late in the outage: its last sends on
		// its share are then still in the window when the others'
		// recovery ends (with the longer window).
		grown := life + margin + window + time.Second
		before := after - 50*time.Millisecond - time.Duration(krng.Int64N(int64(min(after-grown, window/4))))
		pause(before)
		close(kills[victims[k]])
		t.Logf("process p%c killed %v into outage %d", 'a'+victims[k], before, k+1)
		pause(after - before)
		srv.Restart()
		pause(after)
	}
	close(stop)
	wg.Wait()
	span := window + margin
	worst := checkSends(t, sends, span, rpm, rpd, seed)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	keys, _ := c.Keys(context.Background(), "fault:day:*").Result()
	if len(keys) != 1 {
		t.Fatalf("day keys %v", keys)
	}
	count, err := c.Get(context.Background(), keys[0]).Int()
	if err != nil || count < len(sends) || count > rpd {
		t.Errorf("shared day count %d (%v), sends %d, RPD %d (seed %d)", count, err, len(sends), rpd, seed)
	}
	t.Logf("%d sends (%d grants on a share), busiest %v interval %d of %d, day count %d of %d", len(sends), shared, span, worst, rpm, count, rpd)
	if shared == 0 {
		t.Errorf("no grant was taken on a share during the outages (seed %d)", seed)
	}
}

// TestRedisResync: an event a process missed (its pub/sub connection was
// down, or the message was lost) is learned at its next grant (for the
// disabled keys: a grant returns their version) or when its subscription
// comes back, from the shared state Watch re-reads.
func TestRedisResync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := newRedisEnv(t)
	b := e.open(t, "b")
	raw := e.client(t)
	if _, err := b.DisabledKeys(ctx); err != nil { // as the scheduler does at start
		t.Fatal(err)
	}
	events := make(chan store.SharedEvent, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- b.Watch(ctx, ready, func(ev store.SharedEvent) { events <- ev }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-ready
	next := func(what string) store.SharedEvent {
		t.Helper()
		tm := time.NewTimer(30 * time.Second) // a hang, not a wait for the event
		defer tm.Stop()
		select {
		case ev := <-events:
			return ev
		case <-tm.C:
			t.Fatalf("no event for %s", what)
		}
		return store.SharedEvent{}
	}
	// Another process disabled k1 and its message was lost.
	if err := raw.HSet(ctx, "test:disabled", "k1", `{"reason":"leaked"}`).Err(); err != nil {
		t.Fatal(err)
	}
	raw.Incr(ctx, "test:disabledv")
	if _, err := b.Reserve(ctx, e.record(1, 1)); err != nil {
		t.Fatal(err)
	}
	if ev := next("a grant after a lost disable"); ev.Kind != "disabled" || ev.KeyID != "k1" || ev.Reason != "leaked" || ev.Process != store.ResyncProcess {
		t.Errorf("event %+v", ev)
	}
	// k1 enabled again and the lane cooling while b's subscription is
	// down: learned when it comes back.
	raw.HDel(ctx, "test:disabled", "k1")
	raw.Incr(ctx, "test:disabledv")
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC()
	raw.HSet(ctx, "test:lane:2:p1/text", "cool", until.UnixMilli())
	if err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	got := []store.SharedEvent{next("re-subscription"), next("re-subscription")}
	slices.SortFunc(got, func(a, b store.SharedEvent) int {
		if a.Kind < b.Kind {
			return -1
		}
		return 1
	})
	if got[0].Kind != "cool" || got[0].Lane != lane || !got[0].Until.Equal(until) || got[1].Kind != "enabled" || got[1].KeyID != "k1" {
		t.Errorf("events after re-subscription %+v", got)
	}
}
