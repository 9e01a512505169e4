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

// fitSend is one request a sharedFitRun scheduler sent.
type fitSend struct {
	at      time.Time
	process int
}

// fitWait is a sample of a scheduler's class wait.
type fitWait struct {
	at      time.Time
	process int
	w       Wait
	rpmUsed int
}

const (
	fitTPM    = 4000
	fitRPM    = 30
	fitTokens = 992 // about a quarter of TPM, the newcomer's requests
	fitMargin = 250 * time.Millisecond
)

// sharedFitRun runs one scheduler per entry of jobs on one Redis (cluster
// name), each with that many text jobs of fitTokens estimated tokens
// submitted at once, on a text lane of RPM 30 and TPM 4,000, until every
// job is done (at most 10 minutes of the bubble's clock). It returns the
// sends, in time order, the waits sampled every second and when the last
// job was done.
func sharedFitRun(t *testing.T, srv *redistest.Server, cluster string, jobs []int) ([]fitSend, []fitWait, time.Time) {
	limits := bucket.Limits{RPM: fitRPM, RPD: 1000, TPM: fitTPM}
	ctx, cancel := context.WithCancel(context.Background())
	var runs, done sync.WaitGroup
	var mu sync.Mutex
	var sends []fitSend
	var scheds []*Scheduler
	var closers []func()
	for i, n := range jobs {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		st, err := store.OpenRedis(ctx, store.NewMemory(), store.RedisOptions{Client: c, Cluster: cluster,
			Process: fmt.Sprintf("p%d", i), Projects: []string{"key1"}, Now: time.Now,
			Classes: []store.RedisClass{{Name: "text", RPM: limits.RPM, RPD: limits.RPD, TPM: fitTPM, Margin: fitMargin}}})
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { st.Close(); c.Close() })
		s, err := New(Config{Keys: keys(1), Store: quietShared{st},
			Classes: []ClassConfig{{Name: "text", Limits: limits, WindowMargin: fitMargin, Concurrency: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		scheds = append(scheds, s)
		runs.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		for range n {
			done.Add(1)
			if _, err := s.Submit(ctx, Job{Class: "text", Tokens: fitTokens, Work: func(ctx context.Context, _ Lease) error {
				defer done.Done()
				mu.Lock()
				sends = append(sends, fitSend{at: time.Now(), process: i})
				mu.Unlock()
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all := make(chan struct{})
	go func() { done.Wait(); close(all) }()
	var waits []fitWait
	var end time.Time
	// The bubble's clock: the scenario's time, sampled every second.
	for tick := 0; tick < 600 && end.IsZero(); tick++ {
		select {
		case <-all:
			end = time.Now()
			continue
		case <-time.After(time.Second):
		}
		for i, s := range scheds {
			cs := s.Summary().Classes[0]
			if cs.Wait != nil {
				waits = append(waits, fitWait{at: time.Now(), process: i, w: *cs.Wait, rpmUsed: cs.Lanes[0].RPMUsed})
			}
		}
	}
	cancel()
	runs.Wait()
	for _, c := range closers {
		c()
	}
	if end.IsZero() {
		t.Fatalf("jobs %v not done in 10 minutes", jobs)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(sends, func(a, b fitSend) int { return a.at.Compare(b.at) })
	return sends, waits, end
}

// TestSharedTokensFit: two schedulers on one Redis share a text lane of TPM
// 4,000 with 5 jobs each of 992 estimated tokens (a quarter of TPM: the
// newcomer's F-h through the binary). A grant whose token budget does not
// fit whole in the shared token window takes what fits (store.Redis.
// ReserveFit), so while the window has room for a request and a job is
// queued, a request leaves within a heartbeat interval (a refusal's hold)
// and a second; the 10 jobs are done no later than one scheduler alone
// with all 10 (measured in the same run), plus a heartbeat interval; no
// 60 s window (plus the margin) holds more than TPM; and a lane whose RPM
// window has room never says "RPM window, next slot in" more than its
// pacing (2 s at RPM 30) away (F-g: refused grants drained its TPM pacing,
// and it waited about 15 s per request, worded as RPM). Before, the
// second scheduler's budget, sized for its 4 queued requests, was refused
// whole until the window was empty: it idled a minute beside 3,000 free
// tokens, and the jobs took 3 minutes where one scheduler takes 2.
func TestSharedTokensFit(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) {
		span := time.Minute + fitMargin
		alone, _, aloneEnd := sharedFitRun(t, srv, "fit1", []int{10})
		two, waits, twoEnd := sharedFitRun(t, srv, "fit2", []int{5, 5})
		aloneTook, twoTook := aloneEnd.Sub(alone[0].at), twoEnd.Sub(two[0].at)
		t.Logf("10 jobs of %d tokens at TPM %d: one scheduler %v, two on one Redis %v", fitTokens, fitTPM, aloneTook, twoTook)
		if twoTook > aloneTook+HeartbeatEvery {
			t.Errorf("two schedulers took %v for the 10 jobs, one alone %v: more than a heartbeat interval (%v) longer", twoTook, aloneTook, HeartbeatEvery)
		}
		if len(two) != 10 {
			t.Fatalf("%d sends, want 10", len(two))
		}
		// No 60 s window (plus the margin) above TPM.
		for i := range two {
			n := 0
			for j := i; j < len(two) && two[j].at.Sub(two[i].at) < span; j++ {
				n++
			}
			if n*fitTokens > fitTPM {
				t.Errorf("%d sends of %d tokens within %v from %v: above TPM %d", n, fitTokens, span, two[i].at.Sub(two[0].at), fitTPM)
			}
		}
		// Not idle while the window has room and a job is queued.
		start := two[0].at
		for at := start; at.Before(two[len(two)-1].at); at = at.Add(time.Second) {
			sent, live, next := 0, 0, time.Time{}
			for _, s := range two {
				if !s.at.After(at) {
					sent++
					if at.Sub(s.at) < span {
						live++
					}
				} else if next.IsZero() {
					next = s.at
				}
			}
			if sent < len(two) && (live+1)*fitTokens <= fitTPM && next.Sub(at) > HeartbeatEvery+time.Second {
				t.Errorf("at %v: %d jobs queued, room for %d more requests in the window, next send %v later",
					at.Sub(start), len(two)-sent, fitTPM/fitTokens-live, next.Sub(at))
			}
		}
		for _, w := range waits {
			if w.w.Kind == WaitRPM && w.rpmUsed < fitRPM && w.w.Until.Sub(w.at) > 2*time.Second+time.Second {
				t.Errorf("at %v: process %d waits %q (%v) with %d of RPM %d in its window", w.at.Sub(start), w.process, w.w.Reason, w.w.Until.Sub(w.at), w.rpmUsed, fitRPM)
			}
		}
	})
}
