package scheduler

import (
	"bytes"
	"context"
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
	s, err := New(Config{Classes: classes, Keys: keys(1), Store: st, Observer: obs,
		Logger: zerolog.New(logw).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// TestSharedWindow: two schedulers with the same key, each allowed to start
// a whole minute's RPM at once, share it through Redis grants: together
// they start no more than RPM before both are refused. (Alone, each would
// start RPM.)
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
	<-la.seen("refused a grant")
	<-lb.seen("refused a grant")
	if n := len(rec.of(EventDispatched)); n > rpm || n == 0 {
		t.Errorf("%d jobs started in the first minute by both, RPM %d", n, rpm)
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
