package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/store"
)

// quietShared is a store.Redis whose Watch only waits: a subscription
// blocks reading its connection, which a synctest bubble does not count as
// durably blocked, so the bubble's clock would never advance. Grants still
// see every lane's state.
type quietShared struct{ *store.Redis }

func (quietShared) Watch(ctx context.Context, ready chan<- struct{}, _ func(store.SharedEvent)) error {
	if ready != nil {
		close(ready)
	}
	<-ctx.Done()
	return nil
}

// TestSharedSaturation: three schedulers on one Redis, at the image
// class's defaults (RPM 60 here, window margin 1 s, burst RPM), with work
// for all of the first minute in one of them and less in the others (their
// work ends: their last grants covered more than they sent), and jobs of 2
// to 8 s. On a virtual clock (Redis's scripts on the bubble's clock), the
// 60 s from the first dispatch hold at least 99 % of RPM from all of them
// together, and no 60 s holds more than RPM. Before unused slots were
// given back (Stamped), the first minute held 59 and 52 of 60.
func TestSharedSaturation(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	for _, work := range [][]int{{200, 200, 200}, {15, 30, 200}} {
		t.Run(fmt.Sprint(work), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { sharedSaturation(t, srv, work) })
		})
	}
}

var debugSat = false

func sharedSaturation(t *testing.T, srv *redistest.Server, work []int) {
	start0 := time.Now()
	const rpm = 60
	cluster := fmt.Sprintf("sat%d", work[0])
	var mu sync.Mutex
	var sends []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	var closers []func()
	for i, n := range work {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		st, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: cluster,
			Process: fmt.Sprintf("p%d", i), Projects: []string{"key1"}, Now: time.Now,
			Classes: []store.RedisClass{{Name: "image", RPM: rpm, RPD: 5000, Margin: time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { st.Close(); c.Close() })
		s, err := New(Config{Keys: keys(1), Store: quietShared{st},
			Classes: []ClassConfig{{Name: "image", Limits: bucket.Limits{RPM: rpm, RPD: 5000}, WindowMargin: time.Second, Concurrency: 30}}})
		if err != nil {
			t.Fatal(err)
		}
		runs.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		for j := range n {
			d := 2*time.Second + time.Duration(j%7)*time.Second
			if _, err := s.Submit(ctx, Job{Class: "image", Work: func(ctx context.Context, _ Lease) error {
				mu.Lock()
				sends = append(sends, time.Now())
				if debugSat {
					fmt.Printf("p%d send %v\n", i, time.Since(start0))
				}
				mu.Unlock()
				tm := time.NewTimer(d)
				defer tm.Stop()
				select {
				case <-tm.C:
				case <-ctx.Done():
				}
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(100 * time.Second) // the virtual clock: the test's scenario, not a wait for an event
	cancel()
	runs.Wait()
	for _, c := range closers {
		c()
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
	if len(sends) == 0 {
		t.Fatal("nothing sent")
	}
	first := sends[0]
	in := func(from time.Time) int {
		n := 0
		for _, s := range sends {
			if !s.Before(from) && s.Before(from.Add(time.Minute)) {
				n++
			}
		}
		return n
	}
	worst := 0
	for _, s := range sends {
		worst = max(worst, in(s))
	}
	got := in(first)
	t.Logf("the first minute held %d of RPM %d; %d sent in all; the busiest 60 s %d", got, rpm, len(sends), worst)
	if float64(got) < 0.99*rpm {
		t.Errorf("the first minute held %d of RPM %d: under 99 %%", got, rpm)
	}
	if worst > rpm {
		t.Errorf("a 60 s window held %d, RPM %d", worst, rpm)
	}
}
