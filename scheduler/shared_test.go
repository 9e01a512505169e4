package scheduler

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// logSignal is a log writer that closes a channel the first time a line
// holds its text, for each of its texts.
type logSignal struct {
	mu    sync.Mutex
	wants map[string]chan struct{}
}

func newLogSignal(wants ...string) *logSignal {
	l := &logSignal{wants: make(map[string]chan struct{})}
	for _, w := range wants {
		l.wants[w] = make(chan struct{})
	}
	return l
}

// seen returns the channel closed once want was logged.
func (l *logSignal) seen(want string) <-chan struct{} { return l.wants[want] }

func (l *logSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w, c := range l.wants {
		if bytes.Contains(p, []byte(w)) {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	}
	return len(p), nil
}

// sharedScheduler runs a scheduler on its own Redis ledger (own connection,
// own Memory store) until the test ends.
func sharedScheduler(t *testing.T, srv *redistest.Server, name string, rpm int, obs Observer, logw *logSignal) *Scheduler {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	classes := []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: rpm, RPD: 1000}, Concurrency: 4, Burst: rpm}}
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "sched", Process: name,
		Classes:  []store.RedisClass{{Name: "text", RPM: rpm, RPD: 1000}},
		Projects: []string{"key1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return start(t, Config{Classes: classes, Keys: keys(1), Store: st, Observer: obs,
		Logger: zerolog.New(logw).Level(zerolog.DebugLevel)})
}

// TestSharedWindow: two schedulers with the same key, each allowed to start
// a whole minute's RPM at once, share it through Redis grants: together
// they start no more than RPM before one of them is refused. (Alone, each
// would start RPM.) Which one is refused depends on timing: one that took
// the whole window first, its own RPM jobs, never asks again (the test used
// to wait for both, and hung when the machine was loaded enough for a to
// finish before b started).
func TestSharedWindow(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const rpm = 6
	rec := &recorder{}
	la, lb := newLogSignal("refused a grant"), newLogSignal("refused a grant")
	a := sharedScheduler(t, srv, "a", rpm, rec, la)
	b := sharedScheduler(t, srv, "b", rpm, rec, lb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range []*Scheduler{a, b} {
		for range rpm {
			if _, err := s.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-la.seen("refused a grant"):
	case <-lb.seen("refused a grant"):
	}
	if n := len(rec.of(EventDispatched)); n > rpm || n == 0 {
		t.Errorf("%d jobs started in the first minute by both, RPM %d", n, rpm)
	}
	cancel()
}

// TestSharedWindowHeld: a lane waiting for room in the cluster's window (a
// grant refused, no 429) is reported as held for that reason, not as a
// cooldown: in Summary (held, no cool_until), Keys ("held", not
// "cooling") and the class's wait (WaitCluster, not WaitCooldown).
func TestSharedWindowHeld(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const rpm = 4
	la, lb := newLogSignal("refused a grant"), newLogSignal()
	a := sharedScheduler(t, srv, "a", rpm, nil, la)
	b := sharedScheduler(t, srv, "b", rpm, nil, lb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range rpm {
		if err := b.Do(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("refused a grant") // logged after the lane was held
	now := time.Now()
	l := a.Summary().Classes[0].Lanes[0]
	if !l.CoolUntil.IsZero() || l.Held != HoldWindow || !l.HeldUntil.After(now) {
		t.Errorf("lane waiting for the cluster's window: cool_until %v, held %q until %v; want no cooldown, held %q",
			l.CoolUntil, l.Held, l.HeldUntil, HoldWindow)
	}
	if cs := a.Keys()[0].Classes[0]; cs.State != "held" || cs.Reason != HoldWindow || !cs.Until.Equal(l.HeldUntil) {
		t.Errorf("key state %+v, want held: %q until %v", cs, HoldWindow, l.HeldUntil)
	}
	kind, held := a.classes["text"].waitKind(now, 0)
	if kind != WaitCluster || held != HoldWindow {
		t.Errorf("wait kind %q (%q), want %q (%q)", kind, held, WaitCluster, HoldWindow)
	}
	w := Wait{Kind: kind, Until: now.Add(12 * time.Second), held: held}
	if got, want := w.reason(now, time.UTC), "waiting for the cluster's window, next slot in 12s"; got != want {
		t.Errorf("wait reason %q, want %q", got, want)
	}
	if got, want := HoldWords(l.Held, now.Add(12*time.Second), now), "waiting for the cluster's window (12s)"; got != want {
		t.Errorf("HoldWords %q, want %q", got, want)
	}
	cancel()
}

// TestSharedEvents: a per-minute 429 seen by one scheduler cools the lane in
// the other one through pub/sub.
func TestSharedEvents(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	la, lb := newLogSignal("lane cooling down"), newLogSignal("watching the cluster's events", "lane state from another process")
	a := sharedScheduler(t, srv, "a", 60, nil, la)
	b := sharedScheduler(t, srv, "b", 60, nil, lb)
	<-lb.seen("watching the cluster's events") // a message published before is not delivered
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := a.Submit(ctx, Job{Class: "text", Work: func(context.Context, Lease) error {
		return &RateLimitedError{Scope: ScopeMinute, RetryAfter: time.Hour}
	}}); err != nil {
		t.Fatal(err)
	}
	<-la.seen("lane cooling down")
	<-lb.seen("lane state from another process")
	for _, l := range b.Summary().Classes[0].Lanes {
		if l.Project == "key1" && l.CoolUntil.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("b's lane cools until %v, want about an hour", l.CoolUntil)
		}
	}
}

// TestSharedSummary: with a shared store, Summary carries the cluster's
// view: both processes alive, and per lane the shared day count and window
// with each process's part, no less than what each one sent. Without one,
// no cluster view.
func TestSharedSummary(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := sharedScheduler(t, srv, "a", 60, nil, newLogSignal())
	b := sharedScheduler(t, srv, "b", 60, nil, newLogSignal())
	ctx := context.Background()
	sent := map[string]int{"a": 2, "b": 3}
	for name, s := range map[string]*Scheduler{"a": a, "b": b} {
		for range sent[name] {
			if err := s.Do(ctx, Job{Class: "text", Work: func(context.Context, Lease) error { return nil }}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := a.Summary().Cluster
	if c == nil {
		t.Fatal("no cluster view")
	}
	if c.Error != "" || c.Name != "sched" || c.Process != "a" || len(c.Processes) != 2 || c.Processes[0] != "a" || c.Processes[1] != "b" {
		t.Fatalf("cluster %+v; want sched seen from a, a and b alive", c)
	}
	if len(c.Lanes) != 1 {
		t.Fatalf("lanes %+v, want key1/text", c.Lanes)
	}
	l := c.Lanes[0]
	if l.Class != "text" || l.Project != "key1" || l.RPMLimit != 60 || l.DayLimit != 1000 || len(l.Processes) != 2 {
		t.Fatalf("lane %+v", l)
	}
	day, win := 0, 0
	for _, p := range l.Processes {
		if !p.Alive || p.DayUsed < sent[p.Process] || p.WindowUsed < sent[p.Process] {
			t.Errorf("process %+v: want alive, day and window at least the %d it sent", p, sent[p.Process])
		}
		day += p.DayUsed
		win += p.WindowUsed
	}
	if day != l.DayUsed || win != l.WindowUsed || l.WindowUsed > l.RPMLimit {
		t.Errorf("lane totals day %d window %d, processes' sum %d and %d", l.DayUsed, l.WindowUsed, day, win)
	}
	// This process's own lane shows what it sent; the cluster's, all.
	if own := a.Summary().Classes[0].Lanes[0]; own.DayUsed != sent["a"] {
		t.Errorf("a's own day %d, want %d", own.DayUsed, sent["a"])
	}
	// Redis stopped: the view says so, within ClusterTimeout, with this
	// process's lanes still shown (a scheduler that does not run: Run's
	// own handling of a lost Redis is not this test's).
	srv2 := redistest.Start(t, redistest.Options{})
	rc := redis.NewClient(&redis.Options{Addr: srv2.Addr(), MaxRetries: -1})
	defer rc.Close()
	st, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: rc, Cluster: "sched", Process: "c",
		Classes: []store.RedisClass{{Name: "text", RPM: 60, RPD: 1000}}, Projects: []string{"key1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, err := New(Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 1000}}}, Keys: keys(1), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Stop()
	if sum := cs.Summary(); sum.Cluster == nil || !strings.Contains(sum.Cluster.Error, "Redis did not answer") ||
		sum.Cluster.Process != "c" || len(sum.Cluster.Lanes) != 0 || len(sum.Classes) != 1 {
		t.Errorf("with Redis stopped: %+v", sum.Cluster)
	}
	alone, err := New(Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 1000}}}, Keys: keys(1)})
	if err != nil {
		t.Fatal(err)
	}
	if alone.Summary().Cluster != nil {
		t.Error("a scheduler without a shared store shows a cluster view")
	}
}

// protectedScheduler is sharedScheduler with 10 RPD and daily protection at
// half the day (Config.Critical 0.5).
func protectedScheduler(t *testing.T, srv *redistest.Server, name string, logw *logSignal) *Scheduler {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "protect", Process: name,
		Classes:  []store.RedisClass{{Name: "text", RPM: 60, RPD: 10}},
		Projects: []string{"key1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return start(t, Config{Classes: []ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 60, RPD: 10}, Concurrency: 2}},
		Keys: keys(1), Store: st, Critical: 0.5, Logger: zerolog.New(logw).Level(zerolog.DebugLevel)})
}

// TestSharedDailyProtection: daily protection compares the day used by all
// the schedulers sharing a lane through Redis with RPD, not each one's own
// use. a sends half the day (10 RPD, critical at 0.5) at high priority; b,
// started then, has sent nothing itself and still holds low priority (it
// reads the shared day before dispatching); c, running since before a's
// sends, learns the shared day from its own next grant. High priority still
// runs on both.
func TestSharedDailyProtection(t *testing.T) {
	if now := time.Now(); bucket.NextMidnight(now, bucket.Pacific).Sub(now) < 5*time.Minute {
		t.Skip("within 5 minutes of Pacific midnight: the quota day would change under the test")
	}
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	ok := func(context.Context, Lease) error { return nil }
	a := protectedScheduler(t, srv, "a", newLogSignal())
	c := protectedScheduler(t, srv, "c", newLogSignal())
	for range 5 {
		if err := a.Do(ctx, Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
			t.Fatal(err)
		}
	}
	held := func(name string, s *Scheduler) {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		h, err := s.Submit(dctx, Job{Class: "text", Priority: PriorityLow, Work: ok})
		if err != nil {
			t.Fatal(err)
		}
		var nc *NoCapacityError
		if err := h.Wait(ctx); !errors.As(err, &nc) || !nc.Earliest.Equal(bucket.NextMidnight(time.Now(), bucket.Pacific)) {
			t.Errorf("%s: a low-priority job due within a minute: %v; want no capacity until Pacific midnight (daily protection)", name, err)
		}
	}
	lb := newLogSignal("daily protection counts the cluster's day")
	b := protectedScheduler(t, srv, "b", lb)
	<-lb.seen("daily protection counts the cluster's day")
	// The cluster's 5 sent, or 6: a's lane records more than once in 2 s,
	// so its store holds its next grant (1 unit) taken ahead, counted in
	// the shared day until served or given back.
	if cs := b.Summary().Classes[0]; !cs.Critical || cs.DayUsed != 0 || cs.ClusterDayUsed < 5 || cs.ClusterDayUsed > 6 || cs.DayRemaining != 10-cs.ClusterDayUsed {
		t.Errorf("b: critical %v, own day used %d, cluster's %d, remaining %d; want critical on the cluster's 5 (or 6, a grant taken ahead) of 10 with none of its own, the rest left",
			cs.Critical, cs.DayUsed, cs.ClusterDayUsed, cs.DayRemaining)
	}
	held("b", b)
	if err := b.Do(ctx, Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
		t.Errorf("b: a high-priority job: %v", err)
	}
	// c's grant for its high-priority job returns the shared count (7).
	if err := c.Do(ctx, Job{Class: "text", Priority: PriorityHigh, Work: ok}); err != nil {
		t.Fatal(err)
	}
	if cs := c.Summary().Classes[0]; !cs.Critical || cs.DayUsed != 1 || cs.ClusterDayUsed < 7 || cs.DayRemaining != 10-cs.ClusterDayUsed {
		t.Errorf("c: critical %v, own day used %d, cluster's %d, remaining %d; want critical on the cluster's 7 of 10, the cluster's remaining",
			cs.Critical, cs.DayUsed, cs.ClusterDayUsed, cs.DayRemaining)
	}
	held("c", c)
}
