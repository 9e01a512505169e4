package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// modelScheduler runs a scheduler of class "text" on model on its own Redis
// ledger (own connection, own Memory store) until the test ends.
func modelScheduler(t *testing.T, srv *redistest.Server, name, model string, logw *logSignal) *Scheduler {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	classes := []ClassConfig{{Name: "text", Model: model, Limits: bucket.Limits{RPM: 60, RPD: 1000}, Concurrency: 4}}
	st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
		Client: c, Cluster: "sched", Process: name,
		Classes:  []store.RedisClass{{Name: "text", RPM: 60, RPD: 1000}},
		Projects: []string{"key1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return start(t, Config{Classes: classes, Keys: keys(1), Store: st,
		Logger: zerolog.New(logw).Level(zerolog.DebugLevel)})
}

// waitLog waits for l to log want; it fails the test after 60 s (a hang,
// not a wait for the line).
func waitLog(t *testing.T, l *logSignal, want string) {
	t.Helper()
	tm := time.NewTimer(60 * time.Second)
	defer tm.Stop()
	select {
	case <-l.seen(want):
	case <-tm.C:
		t.Fatalf("not logged: %q", want)
	}
}

// TestSharedStop: a no-quota answer seen by one scheduler stops the lane in
// the other one, which then sends nothing on it; a process with another
// model for the class does not stop; a process started meanwhile finds it
// stopped; an operator's resume on one resumes the lane in the others.
func TestSharedStop(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	la := newLogSignal("watching the cluster's events", "lane stopped until an operator resumes it", "lane resumed by another process")
	lb := newLogSignal("watching the cluster's events", "lane stopped by another process")
	lc := newLogSignal("watching the cluster's events", "under another configuration of the class")
	a := modelScheduler(t, srv, "a", "m1", la)
	b := modelScheduler(t, srv, "b", "m1", lb)
	c := modelScheduler(t, srv, "c", "m2", lc)
	for _, l := range []*logSignal{la, lb, lc} {
		waitLog(t, l, "watching the cluster's events") // a message published before is not delivered
	}
	ctx := t.Context()
	err := a.Do(ctx, Job{Class: "text", Work: func(context.Context, Lease) error {
		return &RateLimitedError{Scope: ScopeNoQuota, Quota: "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}
	}})
	if err == nil {
		t.Fatal("a's job on a lane without quota succeeded")
	}
	waitLog(t, la, "lane stopped until an operator resumes it")
	waitLog(t, lb, "lane stopped by another process")
	waitLog(t, lc, "under another configuration of the class")
	if l := b.Summary().Classes[0].Lanes[0]; l.Stopped != ReasonNoQuota || l.Enabled {
		t.Errorf("b's lane %+v, want stopped", l)
	}
	// b sends nothing on the stopped lane: its only one, so a job fails
	// with the reason at once.
	var sent atomic.Int64
	work := func(context.Context, Lease) error { sent.Add(1); return nil }
	if err := b.Do(ctx, Job{Class: "text", Work: work}); !errors.Is(err, ErrNoLanes) || !strings.Contains(err.Error(), ReasonNoQuota) {
		t.Errorf("b's job on the stopped lane: %v, want ErrNoLanes with the reason", err)
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("b sent %d on the stopped lane", n)
	}
	// c runs model m2, not stopped.
	if err := c.Do(ctx, Job{Class: "text", Work: work}); err != nil || sent.Load() != 1 {
		t.Errorf("c's job: %v, sent %d", err, sent.Load())
	}
	// A process that starts now finds the lane stopped.
	ld := newLogSignal("watching the cluster's events", "lane resumed by another process")
	d := modelScheduler(t, srv, "d", "m1", ld)
	if l := d.Summary().Classes[0].Lanes[0]; l.Stopped != ReasonNoQuota {
		t.Errorf("d's lane at start %+v, want stopped", l)
	}
	waitLog(t, ld, "watching the cluster's events")
	// An operator resumes the lane on b: a and d resume it too.
	if err := b.ResumeLane(ctx, "text", "key1"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, la, "lane resumed by another process")
	waitLog(t, ld, "lane resumed by another process")
	if l := a.Summary().Classes[0].Lanes[0]; l.Stopped != "" || !l.Enabled {
		t.Errorf("a's lane after b's resume %+v", l)
	}
	for _, s := range []*Scheduler{a, b, d} {
		if err := s.Do(ctx, Job{Class: "text", Work: work}); err != nil {
			t.Errorf("job after the resume: %v", err)
		}
	}
	// Unknown kinds (from a newer version) are ignored.
	b.applyShared(store.SharedEvent{Process: "z", Kind: "future", Lane: store.LaneID{Project: "key1", Class: "text"}})
	if l := b.Summary().Classes[0].Lanes[0]; !l.Enabled {
		t.Errorf("b's lane after an unknown event %+v", l)
	}
}

// TestSharedKeyOutage: a key disabled on one scheduler while Redis is
// unreachable is disabled there at once (the call succeeds, saying the
// change is pending; so does a lane's resume), and reaches the other one
// once Redis answers again;
// then the key is enabled on the other, which reaches the first.
func TestSharedKeyOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	la := newLogSignal("key enabled by another process", "heartbeat to the cluster restored")
	lb := newLogSignal("watching the cluster's events", "key disabled by another process")
	a := modelScheduler(t, srv, "a", "m1", la)
	b := modelScheduler(t, srv, "b", "m1", lb)
	waitLog(t, lb, "watching the cluster's events")
	srv.Stop()
	ctx := t.Context()
	t1 := time.Now()
	if err := a.DisableKey(ctx, "key1", "leaked"); err != nil {
		t.Fatalf("DisableKey with Redis unreachable: %v", err)
	}
	t.Logf("DisableKey took %v (the client's retries)", time.Since(t1))
	ks := a.Keys()
	if ks[0].Disabled != "leaked" || !ks[0].ClusterPending {
		t.Errorf("a's key after the disable %+v: want disabled, cluster pending", ks[0])
	}
	if ks := b.Keys(); ks[0].Disabled != "" {
		t.Errorf("b's key disabled during the outage: %+v", ks[0])
	}
	// A resume too succeeds here, pending for the cluster.
	if err := a.ResumeLane(ctx, "text", "key1"); err != nil {
		t.Fatalf("ResumeLane with Redis unreachable: %v", err)
	}
	if l := a.Summary().Classes[0].Lanes[0]; !l.ClusterPending {
		t.Errorf("a's lane after a resume during the outage %+v: want cluster pending", l)
	}
	srv.Restart()
	t0 := time.Now()
	waitLog(t, lb, "key disabled by another process")
	t.Logf("b learned the key %v after Redis came back", time.Since(t0))
	if ks := b.Keys(); ks[0].Disabled != "leaked" {
		t.Errorf("b's key after the reconnect %+v", ks[0])
	}
	waitLog(t, la, "heartbeat to the cluster restored") // a pushed all it kept
	if ks := a.Keys(); ks[0].ClusterPending {
		t.Errorf("a's key still pending after the reconnect %+v", ks[0])
	}
	if l := a.Summary().Classes[0].Lanes[0]; l.ClusterPending {
		t.Errorf("a's lane still pending after the reconnect %+v", l)
	}
	// Enabled again on b (Redis answers): a follows.
	if err := b.EnableKey(ctx, "key1"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, la, "key enabled by another process")
	if ks := a.Keys(); ks[0].Disabled != "" {
		t.Errorf("a's key after b's enable %+v", ks[0])
	}
}
