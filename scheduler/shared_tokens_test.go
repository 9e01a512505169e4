package scheduler

import (
	"context"
	"math/rand/v2"
	"strconv"
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

// tokenSend is one request a TestSharedTPM scheduler sent.
type tokenSend struct {
	at               time.Time
	process          string
	estimate, actual int
}

// TestSharedTPM: three schedulers on one Redis, each with far more work
// than the lane's TPM allows, random token estimates and actual counts
// reported below them (first run) or on both sides (second run). Within
// the first minute (the test lasts a few seconds: every send is in one 60 s
// window), the estimates of all the sends together stay within TPM, and so
// do the actual counts when none is above its estimate; the shared token
// window holds, once the schedulers stopped cleanly, no less than the
// actual tokens sent (the overruns were added); at least a third of the
// lane's TPM is used, and the view's split among the processes adds up.
// Alone, each scheduler would send its whole TPM.
func TestSharedTPM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 2 x 4 s")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -run TestSharedTPM -seed %d)", seed, seed)
	for _, above := range []bool{false, true} {
		t.Run("above="+strconv.FormatBool(above), func(t *testing.T) {
			sharedTPMRun(t, seed, above)
		})
	}
}

func sharedTPMRun(t *testing.T, seed uint64, above bool) {
	const (
		tpm     = 4000
		rpm     = 600
		run     = 4 * time.Second
		perProc = 150
	)
	srv := redistest.Start(t, redistest.Options{})
	rng := rand.New(rand.NewPCG(seed, 13))
	var rmu sync.Mutex
	rnd := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(n) }
	var mu sync.Mutex
	var sends []tokenSend
	limits := bucket.Limits{RPM: rpm, RPD: 100_000, TPM: tpm}
	var stops []func()
	var scheds []*Scheduler
	for _, name := range []string{"a", "b", "c"} {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { c.Close() })
		st, err := store.OpenRedis(context.Background(), store.NewMemory(), store.RedisOptions{
			Client: c, Cluster: "tpm", Process: name,
			Classes:  []store.RedisClass{{Name: "text", RPM: limits.RPM, RPD: limits.RPD, TPM: tpm, Margin: 50 * time.Millisecond}},
			Projects: []string{"key1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		s, err := New(Config{Classes: []ClassConfig{{Name: "text", Limits: limits, Concurrency: 4, WindowMargin: 50 * time.Millisecond}},
			Keys: keys(1), Store: st, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run(%s): %v", name, err)
			}
		}
		stops = append(stops, stop)
		scheds = append(scheds, s)
		for range perProc {
			est := 20 + rnd(100)
			actual := est * (50 + rnd(50)) / 100 // below the estimate
			if above {
				actual = est * (50 + rnd(110)) / 100 // up to 60 % above
			}
			if _, err := s.Submit(ctx, Job{Class: "text", Tokens: est, Work: func(ctx context.Context, l Lease) error {
				mu.Lock()
				sends = append(sends, tokenSend{at: time.Now(), process: name, estimate: est, actual: actual})
				mu.Unlock()
				select {
				case <-time.After(time.Duration(rnd(50)) * time.Millisecond):
				case <-ctx.Done():
				}
				l.ReportTokens(actual)
				return nil
			}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(run) // real time: the schedulers talk to a real Redis
	// The cluster's view shows the token window: every budget granted,
	// at most TPM without overruns, split by process.
	view := scheds[0].Summary().Cluster
	for _, stop := range stops {
		stop()
	}
	mu.Lock()
	defer mu.Unlock()
	est, act, by := 0, 0, map[string]int{}
	first, last := sends[0].at, sends[0].at
	for _, s := range sends {
		est += s.estimate
		act += s.actual
		by[s.process] += s.estimate
		first, last = earliest(first, s.at), latest(last, s.at)
	}
	if last.Sub(first) >= time.Minute {
		t.Fatalf("the sends span %v: the test assumes one window", last.Sub(first))
	}
	t.Logf("%d sends, estimates %d, actual %d, TPM %d; by process %v", len(sends), est, act, tpm, by)
	if est > tpm {
		t.Errorf("estimates of the sends in one minute: %d, TPM %d", est, tpm)
	}
	if !above && act > tpm {
		t.Errorf("actual tokens of the sends in one minute, none above its estimate: %d, TPM %d", act, tpm)
	}
	// How the lane's TPM splits among the processes is a race (the one
	// whose scheduler starts last may find it all taken within these 4 s
	// on a loaded machine: a 2,363 / 1,204 / 0 split was seen at load 45);
	// the bounds above are what is guaranteed.
	if est < tpm/3 {
		t.Errorf("estimates %d of TPM %d by %d processes: want a third of TPM used", est, tpm, len(by))
	}
	if view == nil || len(view.Lanes) != 1 {
		t.Fatalf("cluster view %+v", view)
	}
	l := view.Lanes[0]
	parts := int64(0)
	for _, p := range l.Processes {
		parts += p.TokensUsed
	}
	for _, p := range l.Processes {
		if _, ok := by[p.Process]; !ok && p.TokensUsed > 0 {
			t.Errorf("cluster lane: process %s holds %d tokens but sent nothing", p.Process, p.TokensUsed)
		}
	}
	if l.TPMLimit != tpm || l.TokensUsed < int64(est) || (!above && l.TokensUsed > tpm) || parts != l.TokensUsed || len(l.Processes) < len(by) {
		t.Errorf("cluster lane %+v: want TPM %d, tokens used between the estimates sent (%d) and TPM, split among the processes that sent (%v)", l, tpm, est, by)
	}
	// The shared window holds every grant's budget, the overruns added:
	// never less than what was sent.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	all, err := c.HGetAll(context.Background(), "tpm:tok:4:key1/text").Result()
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, v := range all {
		_, n, _ := strings.Cut(v, " ")
		k, _ := strconv.Atoi(n)
		held += k
	}
	if held < act || held < est {
		t.Errorf("the shared token window holds %d, the sends' estimates %d and actual counts %d", held, est, act)
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
