package gemini

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/gemini/emulator"
	"github.com/slideshowd/slideshowd/internal/redistest"
	"github.com/slideshowd/slideshowd/scheduler"
	"github.com/slideshowd/slideshowd/store"
)

// noWatch is a store.Redis whose Watch only waits: the bubble's clock
// stops while a goroutine waits on a socket, and a subscription waits on
// one for ever. Grants and heartbeats still carry every lane's state.
type noWatch struct{ *store.Redis }

func (noWatch) Watch(ctx context.Context, ready chan<- struct{}, _ func(store.SharedEvent)) error {
	if ready != nil {
		close(ready)
	}
	<-ctx.Done()
	return nil
}

// TestMidnightTwoProcessesRedis (gap 4 of the midnight charge, end to
// end): two schedulers sharing one lane through a real Redis (store.Redis,
// Redis's scripts on the bubble's clock), each with the real genai client,
// against the emulator at the same limits (RPM 10, RPD 3, margin 250 ms).
// Each dispatches a request 0.5 s before Pacific midnight whose write ends
// 1.5 s after it (the API counts it on the new day), and each gets two more
// 0.5 s after midnight, before those writes are reported. Each process
// charges its request in flight on the new day before midnight, in Redis
// too (the day's last margin: bucket.Class.PreCharge), so the new day
// starts at 2 of 3 in the cluster's count, and of the four later requests
// one is sent that day. The emulator sees no per-day 429 on either day,
// and the cluster's day counts are never below the emulator's. Before, each
// process sent two on the new day (Redis counted none of the late ones until
// their writes were reported): 6 arrivals at RPD 3 and per-day 429s.
func TestMidnightTwoProcessesRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	synctest.Test(t, func(t *testing.T) { twoProcessesAtMidnight(t, srv) })
}

func twoProcessesAtMidnight(t *testing.T, srv *redistest.Server) {
	const rpm, rpd = 10, 3
	const margin = 250 * time.Millisecond
	emu := newEmulator(t, emulator.Config{Models: map[string]emulator.Limits{DefaultTextModel: {RPM: rpm, RPD: rpd}},
		Keys: []emulator.Key{{Name: "k1", Secret: "secret-1", Project: "p1"}}})
	lane := emulator.LaneKey{Project: "p1", Model: DefaultTextModel}
	type proc struct {
		st           *store.Redis
		late, prompt *Client // the first writes its first request 2 s late
	}
	var procs []proc
	var runs sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); runs.Wait() }()
	for _, name := range []string{"a", "b"} {
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rc.Close() })
		st, err := store.OpenRedis(t.Context(), store.NewMemory(), store.RedisOptions{Client: rc, Cluster: "midnight",
			Process: name, Projects: []string{"p1"}, Now: time.Now, Classes: []store.RedisClass{
				{Name: DefaultTextClass, RPM: rpm, RPD: rpd, Margin: margin},
				{Name: DefaultImageClass, RPM: 10, RPD: 100},
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sched, err := scheduler.New(scheduler.Config{
			Classes: []scheduler.ClassConfig{
				{Name: DefaultTextClass, Limits: bucket.Limits{RPM: rpm, RPD: rpd}, WindowMargin: margin},
				{Name: DefaultImageClass, Limits: bucket.Limits{RPM: 10, RPD: 100}},
			},
			Keys: []bucket.Key{{ID: "k1", Project: "p1"}}, Classifier: Classify, Store: noWatch{st}, Seed: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		runs.Go(func() {
			if err := sched.Run(ctx); err != nil {
				t.Errorf("Run(%s): %v", name, err)
			}
		})
		p := proc{st: st}
		for _, rt := range []http.RoundTripper{&firstLate{base: emu.Transport(), delay: 2 * time.Second}, emu.Transport()} {
			c, err := New(t.Context(), Config{Keys: []Key{{ID: "k1", Secret: "secret-1"}}, BaseURL: testBase,
				HTTPClient: &http.Client{Transport: rt}, Scheduler: sched})
			if err != nil {
				t.Fatal(err)
			}
			if p.late == nil {
				p.late = c
			} else {
				p.prompt = c
			}
		}
		procs = append(procs, p)
	}

	midnight := bucket.NextMidnight(time.Now(), bucket.Pacific)
	oldDay, newDay := bucket.Day(midnight.Add(-time.Second), bucket.Pacific), bucket.Day(midnight, bucket.Pacific)
	// The virtual clock: the scenario's times, not waits for events.
	time.Sleep(time.Until(midnight.Add(-500 * time.Millisecond)))
	jobs, cancelJobs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	analyze := func(c *Client) {
		wg.Go(func() {
			if _, err := c.AnalyzeSlideshow(jobs, testSlideshow()); err != nil && jobs.Err() == nil {
				t.Error(err)
			}
		})
	}
	for _, p := range procs {
		analyze(p.late) // written 1.5 s after midnight
	}
	time.Sleep(time.Second) // 0.5 s after midnight
	for _, p := range procs {
		analyze(p.prompt)
		analyze(p.prompt)
	}
	time.Sleep(10 * time.Second)

	stats := emu.Stats()
	perDay := make(map[string]int)
	for _, at := range stats.Sent[lane] {
		perDay[bucket.Day(at, bucket.Pacific)]++
	}
	t.Logf("arrivals %v; per Pacific day %v; 429s %v", stats.Sent[lane], perDay, stats.RateLimited)
	if n := stats.RateLimited[emulator.QuotaRequestsPerDay]; n != 0 {
		t.Errorf("%d per-day 429s", n)
	}
	for day, n := range perDay {
		if n > rpd {
			t.Errorf("%d requests reached the API on the Pacific day %s, RPD %d", n, day, rpd)
		}
	}
	if perDay[newDay] != rpd {
		t.Errorf("%d requests on the new day %s by 10 s after midnight, want %d (the two late ones and one more)", perDay[newDay], newDay, rpd)
	}
	for _, day := range []string{oldDay, newDay} {
		counts, err := procs[0].st.SharedDaily(t.Context(), day)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			if c.Lane.Class == DefaultTextClass {
				n += c.Count
			}
		}
		if n < perDay[day] {
			t.Errorf("the cluster's count of %s is %d, below the emulator's %d", day, n, perDay[day])
		}
	}
	cancelJobs()
	wg.Wait()
	if err := context.Cause(jobs); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
